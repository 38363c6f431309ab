-- A provider's claims by status move to a narrow table of their own, so that no index of
-- claim_status holds a column its updates change. A claim's row is updated at its decision (and
-- again when voided, replaced, reviewed, disputed), and its status changes there: with status in
-- claim_status_provider_status_idx no update of the table was HOT (`make bench` counted 0 % of
-- them), so each new version of a row took an entry in all four of its indexes, one of them keyed
-- by member (a random leaf page: on a long history a read from outside the buffers, and after a
-- checkpoint a whole-page image in the WAL). Now the row's new version stays on its page with no
-- index entry (the 30 % of each page that migration 0028 keeps free is there for it), and the
-- status listing costs one small row deleted and one inserted at a change of status.
--
-- claim_status_by_status: one row per claim, keyed by (provider_id, status, submitted_position),
-- the order ListClaims pages in; `projections.claims.list_claims` joins it to claim_status by
-- claim_id for the rest of the row and the other filters.
CREATE TABLE claim_status_by_status (
    provider_id text NOT NULL,
    status text NOT NULL,
    submitted_position bigint NOT NULL,
    claim_id text NOT NULL,
    PRIMARY KEY (provider_id, status, submitted_position)
);

INSERT INTO claim_status_by_status (provider_id, status, submitted_position, claim_id)
SELECT provider_id, status, submitted_position, claim_id FROM claim_status;

-- A rebuild of claim_status under way copied every table of the projection, indexes included:
-- give it this one too, filled from the rebuild's own claim_status, and drop its copy of the status
-- index, so that what the swap at its end puts in place is what this migration makes.
DO $$
DECLARE
    copied text;
BEGIN
    IF to_regclass('claim_status_rebuild') IS NOT NULL THEN
        CREATE TABLE claim_status_by_status_rebuild (LIKE claim_status_by_status INCLUDING ALL);
        INSERT INTO claim_status_by_status_rebuild (provider_id, status, submitted_position, claim_id)
        SELECT provider_id, status, submitted_position, claim_id FROM claim_status_rebuild;
        FOR copied IN SELECT indexname FROM pg_indexes
                       WHERE schemaname = current_schema() AND tablename = 'claim_status_rebuild'
                         AND indexdef LIKE '%(provider_id, status, submitted_position DESC)%' LOOP
            EXECUTE format('DROP INDEX %I', copied);
        END LOOP;
    END IF;
END;
$$;

INSERT INTO read_model_tables (projection, table_name) VALUES ('claim_status', 'claim_status_by_status');

DROP INDEX IF EXISTS claim_status_provider_status_idx;
