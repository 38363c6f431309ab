-- Signed checkpoints (docs/LEDGER.md, "Merkle tree and checkpoints"): one row per signed tree
-- size. `note` is the whole signed note (C2SP tlog-checkpoint), exactly as handed out; root_hash
-- repeats its root so that the signer can check each new tree against the last checkpoint
-- without parsing notes. Append-only, like the events table and the tree.

CREATE TABLE ledger_checkpoints (
    tree_size bigint PRIMARY KEY CHECK (tree_size >= 0),
    root_hash bytea NOT NULL CHECK (octet_length(root_hash) = 32),
    note text NOT NULL,
    signed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER ledger_checkpoints_guard
    BEFORE UPDATE OR DELETE ON ledger_checkpoints
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_rewrite();
CREATE TRIGGER ledger_checkpoints_guard_truncate
    BEFORE TRUNCATE ON ledger_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_rewrite();
