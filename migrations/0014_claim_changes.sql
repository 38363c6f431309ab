-- Every change of every claim, in ledger order: WatchClaims streams a provider's changes from
-- here (an index range scan on (provider_id, position)), each with the claim as it stood after
-- that event, so a provider that resumes misses no intermediate state (pended, then approved).
-- The columns are claim_status's, plus the position of the changing event; a column added to
-- claim_status later must be added here too (the projection writes the same row to both).

CREATE TABLE claim_changes (
    position bigint PRIMARY KEY,
    LIKE claim_status INCLUDING DEFAULTS
);
CREATE INDEX claim_changes_provider_idx ON claim_changes (provider_id, position);

-- History recorded before this table existed: each claim's current state at its latest change
-- (a projection rebuild fills in the intermediate states).
INSERT INTO claim_changes SELECT last_position, * FROM claim_status;

INSERT INTO read_model_tables (projection, table_name) VALUES ('claim_status', 'claim_changes');
