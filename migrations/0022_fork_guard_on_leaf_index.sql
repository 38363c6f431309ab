-- A fork is refused by the unique index on leaf_index alone; the unique index on prev_hash (0002)
-- goes. The trigger (0012) reads the predecessor's hash and leaf index in one SELECT and numbers
-- the new row predecessor + 1, so two rows naming the same predecessor carry the same leaf index
-- and the second cannot commit: the guard 0002 wanted, kept for a writer that skips the table lock.
-- The prev_hash index was a second copy of that guard keyed by a random 32-byte hash: every insert
-- touched a random page of it, under the events table's lock, and it grew with the ledger out of
-- the buffer cache. leaf_index grows by one, so its index is appended at its right edge.
DROP INDEX ledger_events_prev_hash_idx;
