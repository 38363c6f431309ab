-- Every event's leaf index in the Merkle tree, known at commit time, so that a write's receipt can
-- name it: leaves are the events in position order, numbered 0, 1, 2, … with no gaps (positions may
-- skip numbers after a rolled-back insert; leaf indexes may not). Not hashed: it is derived from
-- the order, which the chain already fixes; `claimsctl verify` and the tree builder agree with it.

ALTER TABLE ledger_events ADD COLUMN leaf_index bigint;

-- Number the rows already there. The append-only guard is lifted for this one statement, inside
-- this migration's transaction, and only a column that did not exist before is written.
ALTER TABLE ledger_events DISABLE TRIGGER ledger_events_guard;
UPDATE ledger_events e
   SET leaf_index = r.n
  FROM (SELECT notification_id, row_number() OVER (ORDER BY notification_id) - 1 AS n FROM ledger_events) r
 WHERE e.notification_id = r.notification_id;
ALTER TABLE ledger_events ENABLE TRIGGER ledger_events_guard;

ALTER TABLE ledger_events ALTER COLUMN leaf_index SET NOT NULL;
CREATE UNIQUE INDEX ledger_events_leaf_index_idx ON ledger_events (leaf_index);

-- As in 0002, plus the leaf index: the previous existing row's, plus one.
CREATE OR REPLACE FUNCTION ledger_link_event() RETURNS trigger
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    zero constant bytea := '\x0000000000000000000000000000000000000000000000000000000000000000';
    topic_bytes bytea := convert_to(NEW.topic, 'UTF8');
    previous_leaf bigint;
BEGIN
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
