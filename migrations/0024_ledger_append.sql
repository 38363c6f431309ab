-- One statement that appends events to the ledger: a follower's tracking row (when it gives one),
-- the lock timeout, the events table's lock, the NOTIFY and the INSERT (each row linked by the 0012
-- trigger), returning each row's position, hash and leaf index. Called alone in a transaction of
-- its own (autocommit), it is committed by PostgreSQL before it answers, so the table's lock is
-- held for the server's own work and the WAL flush only: no round trip to the client falls inside
-- it, and a writer whose thread waits for its interpreter lock (or for a core) no longer keeps
-- every other writer out. The statements and their order are those the writers sent one by one
-- before (claims_service/application.py).
CREATE FUNCTION ledger_append(
    p_tracking_name text,       -- a follower's name (ledger_tracking), or NULL: no tracking row
    p_tracking_position bigint, -- the last position it has processed with these events
    p_lock_timeout text,
    p_originator_ids uuid[],
    p_originator_versions bigint[],
    p_topics text[],
    p_states bytea[],
    p_metadata text[]           -- each event's trace context (JSON text) or NULL; NULL for none at all
) RETURNS TABLE (notification_id bigint, hash bytea, leaf_index bigint)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF p_tracking_name IS NOT NULL THEN
        -- The library's single-row tracking: a position only moves forward; the same position
        -- again means the events were recorded already (exactly once), refused as a conflict.
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
    LOCK TABLE ledger_events IN EXCLUSIVE MODE;
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
