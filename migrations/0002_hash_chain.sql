-- Hash-link every event (docs/LEDGER.md specifies the bytes).
--   prev_hash:        hash of the row just before this one in position order (32 zero bytes first)
--   stream_prev_hash: hash of this stream's previous event (32 zero bytes for version 1), so one
--                     aggregate's history can be checked without the rest of the ledger
--   hash:             SHA-256(prev_hash || canonical row)
--
-- Computed in the database, not in Python, so that every writer is linked the same way, whatever
-- client it uses. Writers are serialised by the recorder's LOCK TABLE ... IN EXCLUSIVE MODE; the
-- unique index on prev_hash makes a fork impossible even for a writer that forgets the lock: two
-- rows naming the same predecessor cannot both commit.

ALTER TABLE ledger_events
    ADD COLUMN prev_hash bytea,
    ADD COLUMN stream_prev_hash bytea,
    ADD COLUMN hash bytea;

CREATE UNIQUE INDEX ledger_events_prev_hash_idx ON ledger_events (prev_hash);

-- VOLATILE, not STABLE: a STABLE function cannot see the rows inserted earlier by the same
-- multi-row INSERT, so every row of a batch would link to the same predecessor.
CREATE FUNCTION ledger_link_event() RETURNS trigger
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    zero constant bytea := '\x0000000000000000000000000000000000000000000000000000000000000000';
    topic_bytes bytea := convert_to(NEW.topic, 'UTF8');
BEGIN
    -- Link to the previous existing row, never to notification_id - 1: a rolled-back insert
    -- burns sequence values, so positions may skip numbers but the chain may not.
    SELECT e.hash INTO NEW.prev_hash
      FROM ledger_events e
     ORDER BY e.notification_id DESC
     LIMIT 1;
    NEW.prev_hash := coalesce(NEW.prev_hash, zero);

    IF NEW.originator_version > 1 THEN
        SELECT e.hash INTO NEW.stream_prev_hash
          FROM ledger_events e
         WHERE e.originator_id = NEW.originator_id
           AND e.originator_version = NEW.originator_version - 1;
        IF NEW.stream_prev_hash IS NULL THEN
            RAISE EXCEPTION 'stream % has no version % to link version % to',
                NEW.originator_id, NEW.originator_version - 1, NEW.originator_version
                USING ERRCODE = 'foreign_key_violation';
        END IF;
    ELSE
        NEW.stream_prev_hash := zero;
    END IF;

    NEW.hash := sha256(
        NEW.prev_hash
        || int8send(NEW.notification_id)
        || uuid_send(NEW.originator_id)
        || int8send(NEW.originator_version)
        || int4send(octet_length(topic_bytes)) || topic_bytes
        || int4send(octet_length(NEW.state)) || NEW.state
    );
    RETURN NEW;
END;
$$;

CREATE TRIGGER ledger_events_link
    BEFORE INSERT ON ledger_events
    FOR EACH ROW EXECUTE FUNCTION ledger_link_event();

ALTER TABLE ledger_events
    ALTER COLUMN prev_hash SET NOT NULL,
    ALTER COLUMN stream_prev_hash SET NOT NULL,
    ALTER COLUMN hash SET NOT NULL;
