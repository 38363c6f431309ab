-- Claim ids in the order claims arrive. A claim's id was the uuid5 of its provider and idempotency
-- key, so that a retry addressed the same stream; but then every new claim took a random page of
-- every index keyed by claim id (the events table's primary key, claim_status, the explanations of
-- benefits, the timeline, the remittance decisions), and on a long history, after each checkpoint,
-- nearly every one of those pages was a first change that logs the whole page to the WAL every
-- commit flushes (README, "Scale"). A new claim's id is now a UUIDv7, and that uuid5 becomes its
-- request id, kept here beside it: a retry finds its claim by it.
--
-- Written by ledger_append in the same transaction as the claim's first event, so a claim exists
-- exactly when its request id does, and two submissions of one request cannot both commit: the
-- second's unique violation fails its write as the events table's primary key used to.
CREATE TABLE claim_requests (
    request_id uuid PRIMARY KEY,   -- uuid5 of ("claim", provider id, idempotency key): claims_service/domain/ids.py
    claim_id uuid NOT NULL         -- the claim's stream id
);

CREATE TRIGGER claim_requests_guard
    BEFORE UPDATE OR DELETE ON claim_requests
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

CREATE TRIGGER claim_requests_guard_truncate
    BEFORE TRUNCATE ON claim_requests
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- The claims submitted so far: their request id is their id.
INSERT INTO claim_requests (request_id, claim_id)
SELECT originator_id, originator_id
  FROM ledger_events
 WHERE originator_version = 1
   AND topic = 'claims_service.domain.claim:Claim.Submitted';

-- As in 0025, with each event's request id (NULL for all but a new claim's first event).
DROP FUNCTION ledger_append(text, bigint, text, uuid[], bigint[], text[], bytea[], text[]);

CREATE FUNCTION ledger_append(
    p_tracking_name text,
    p_tracking_position bigint,
    p_lock_timeout text,
    p_originator_ids uuid[],
    p_originator_versions bigint[],
    p_topics text[],
    p_states bytea[],
    p_metadata text[],
    p_request_ids uuid[]        -- NULL for none at all
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
    -- Before the ledger's lock: a retried request fails here without holding every writer.
    IF p_request_ids IS NOT NULL THEN
        INSERT INTO claim_requests (request_id, claim_id)
        SELECT r.request_id, r.claim_id
          FROM unnest(p_request_ids, p_originator_ids) AS r (request_id, claim_id)
         WHERE r.request_id IS NOT NULL;
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
