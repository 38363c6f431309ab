-- A count of member-key erasures, moved by the erasing transaction itself. A process caching
-- members' data keys (claims_service.keys.store) reads this one row every `cache_seconds` instead
-- of reading every cached key again: while the count stands still, no cached key was destroyed,
-- and a key is read from the table only on its first use. Before, a key not used for
-- `cache_seconds` was read again at its next use, so most of the service's claims cost a key
-- query, in the one thread every ledger write waits for.
--
-- Triggers, not the erasure's code, move the count: any statement that deletes a data key or
-- marks a member erased counts, however it was issued. A statement that changes no row counts too:
-- the caches then read their keys again for nothing, which is safe.
CREATE TABLE member_key_erasures (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    erasures bigint NOT NULL
);

INSERT INTO member_key_erasures (only_row, erasures)
SELECT true, count(*) FROM member_keys WHERE erased_at IS NOT NULL;

CREATE FUNCTION member_key_erasures_count() RETURNS trigger
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    UPDATE member_key_erasures SET erasures = erasures + 1;
    RETURN NULL;
END;
$$;

CREATE TRIGGER member_data_keys_deleted AFTER DELETE ON member_data_keys
    FOR EACH STATEMENT EXECUTE FUNCTION member_key_erasures_count();

CREATE TRIGGER member_keys_erased AFTER UPDATE OF erased_at ON member_keys
    FOR EACH STATEMENT EXECUTE FUNCTION member_key_erasures_count();
