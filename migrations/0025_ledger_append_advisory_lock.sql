-- Writers are serialised by a transaction advisory lock instead of LOCK TABLE ledger_events IN
-- EXCLUSIVE MODE. The table lock conflicts with VACUUM's (SHARE UPDATE EXCLUSIVE): while autovacuum
-- worked on the events table, every append waited, for deadlock_timeout (1 s), until the deadlock
-- check cancelled the vacuum, which then never finished and came back again — a stall of every
-- writer each time (`make bench` saw one of about 1.02 s in nearly every paced minute), and a table
-- that is never vacuumed: its visibility map stays empty, and the vacuum that freezes old rows
-- against transaction-id wraparound is not cancelled, so it would hold every writer for as long as
-- it takes over the whole ledger. Plain INSERTs (ROW EXCLUSIVE) do not conflict with VACUUM.
--
-- The lock is the same key in both places (0x4C6564676572, "Ledger"): ledger_append takes it
-- before its INSERT, so that positions are handed out and committed in the same order (readers
-- never pass over a gap that fills in later, as with the table lock); the link trigger takes it
-- again on every row (a no-op for a holder), so a writer that inserts without ledger_append waits
-- for the one in flight as it did at the table lock. The fork guard (0022) is unchanged.

CREATE OR REPLACE FUNCTION ledger_append(
    p_tracking_name text,
    p_tracking_position bigint,
    p_lock_timeout text,
    p_originator_ids uuid[],
    p_originator_versions bigint[],
    p_topics text[],
    p_states bytea[],
    p_metadata text[]
) RETURNS TABLE (notification_id bigint, hash bytea, leaf_index bigint)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF p_tracking_name IS NOT NULL THEN
        INSERT INTO ledger_tracking AS k (application_name, notification_id)
        VALUES (p_tracking_name, p_tracking_position)
        ON CONFLICT (application_name) DO UPDATE SET notification_id = excluded.notification_id
         WHERE k.notification_id < excluded.notification_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'tracking of % is already at or past position %', p_tracking_name, p_tracking_position
                USING ERRCODE = 'unique_violation';
        END IF;
    END IF;
    PERFORM set_config('lock_timeout', p_lock_timeout, true);
    PERFORM pg_advisory_xact_lock(x'4C6564676572'::bigint);
    PERFORM pg_notify('ledger_events', '');
    RETURN QUERY
        INSERT INTO ledger_events AS t (originator_id, originator_version, topic, state, metadata)
        SELECT e.originator_id, e.originator_version, e.topic, e.state, e.metadata::jsonb
          FROM unnest(p_originator_ids, p_originator_versions, p_topics, p_states, p_metadata)
               WITH ORDINALITY AS e (originator_id, originator_version, topic, state, metadata, n)
         ORDER BY e.n
        RETURNING t.notification_id, t.hash, t.leaf_index;
END;
$$;

-- As in 0012, plus the lock.
CREATE OR REPLACE FUNCTION ledger_link_event() RETURNS trigger
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    zero constant bytea := '\x0000000000000000000000000000000000000000000000000000000000000000';
    topic_bytes bytea := convert_to(NEW.topic, 'UTF8');
    previous_leaf bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(x'4C6564676572'::bigint);
    SELECT e.hash, e.leaf_index INTO NEW.prev_hash, previous_leaf
      FROM ledger_events e
     ORDER BY e.notification_id DESC
     LIMIT 1;
    NEW.prev_hash := coalesce(NEW.prev_hash, zero);
    NEW.leaf_index := coalesce(previous_leaf + 1, 0);

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
