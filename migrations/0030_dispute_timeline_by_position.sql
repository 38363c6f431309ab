-- The dispute timeline names its events by position and reads them from the ledger, instead of
-- keeping a copy of each. Its rows held every claim and payment event again: the payload as stored
-- (base64 of the sealed bytes, or the JSON text), the three hashes, the topic and the stream's
-- version, about 1.9 kB of heap and of WAL a row and four rows a claim in `make bench`'s load
-- (README, "Scale", twelfth pass). The ledger is immutable and its rows are found by position
-- (ledger_events_notification_id_idx), so `projections.timeline.claim_timeline` joins them at read
-- time: the payload and the hashes a dispute team reads are the ledger's own bytes, not a copy.
-- Kept here: which claim an event belongs to (a payment's events belong to each claim it pays),
-- its stream (an erasure deletes by claim and by stream, as before) and its timestamp (taken
-- from the opened payload, which a reader without the member's key could not open).
--
-- Dropping a column frees no space in the rows already written; `claimsctl projections rebuild
-- dispute_timeline` (a copy built from position 0, then swapped in) writes them anew without it.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['dispute_timeline', 'dispute_timeline_rebuild', 'dispute_timeline_previous'] LOOP
        IF to_regclass(quote_ident(t)) IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %I DROP COLUMN stream_version, DROP COLUMN event_type, DROP COLUMN topic,'
                           ' DROP COLUMN payload, DROP COLUMN payload_encoding, DROP COLUMN hash, DROP COLUMN prev_hash,'
                           ' DROP COLUMN stream_prev_hash', t);
        END IF;
    END LOOP;
END;
$$;
