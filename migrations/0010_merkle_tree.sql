-- The Merkle tree over the ledger (docs/LEDGER.md, "Merkle tree and checkpoints").
--   ledger_leaves: one row per event, in position order; leaf_index is gapless (0, 1, 2, …) even
--                  where positions skip numbers. event_hash is the event's `hash`, copied so that
--                  a proof never reads the events table and a rewrite of it shows.
--   merkle_nodes:  the hash of every complete (perfect) subtree of two or more leaves: the node at
--                  (level, idx) covers leaves [idx * 2^level, (idx + 1) * 2^level). Level 0 is not
--                  stored: a leaf's hash is SHA-256(0x00 || ledger_leaves.event_hash).
-- Appending a leaf writes one leaf row and, on average, one node row (at most log2 n); any root or
-- proof reads O(log n) rows by primary key. Both tables are append-only, like the events table.

CREATE TABLE ledger_leaves (
    leaf_index bigint PRIMARY KEY CHECK (leaf_index >= 0),
    position bigint UNIQUE NOT NULL,
    event_hash bytea NOT NULL CHECK (octet_length(event_hash) = 32)
);

CREATE TABLE merkle_nodes (
    level smallint NOT NULL CHECK (level BETWEEN 1 AND 63),
    idx bigint NOT NULL CHECK (idx >= 0),
    hash bytea NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (level, idx)
);

CREATE FUNCTION ledger_refuse_rewrite() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER ledger_leaves_guard
    BEFORE UPDATE OR DELETE ON ledger_leaves
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_rewrite();
CREATE TRIGGER ledger_leaves_guard_truncate
    BEFORE TRUNCATE ON ledger_leaves
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_rewrite();
CREATE TRIGGER merkle_nodes_guard
    BEFORE UPDATE OR DELETE ON merkle_nodes
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_rewrite();
CREATE TRIGGER merkle_nodes_guard_truncate
    BEFORE TRUNCATE ON merkle_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_rewrite();
