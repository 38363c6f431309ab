-- Two of claim_status's indexes that no query needs, each written at every new version of a row
-- (a claim's status changes at its decision, so its updates are not HOT and every index of the
-- table takes an entry for each version):
-- * (provider_id, last_position) served WatchClaims until migration 0014 moved a provider's
--   changes to claim_changes, which has its own (provider_id, position) index; nothing has read
--   claim_status by last_position since.
-- * (provider_id, member_id, submitted_position) served a provider's list of one member's claims.
--   (member_id, submitted_position) from migration 0019 serves it as well: a member has few claims,
--   and the provider is a filter on them. Its member keys are random, so each new version went to a
--   random leaf page: on a long history one read from outside the buffers, and after a checkpoint
--   a whole-page image in the WAL.
DROP INDEX IF EXISTS claim_status_provider_changes_idx;
DROP INDEX IF EXISTS claim_status_provider_member_idx;
