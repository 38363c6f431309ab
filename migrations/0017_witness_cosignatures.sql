-- Witness cosignatures of signed checkpoints (docs/LEDGER.md, "Witnesses"): one row per checkpoint
-- and witness key, the C2SP cosignature/v1 line exactly as the witness returned it (verified by the
-- log before it is stored). Kept beside ledger_checkpoints rather than written into its note, so
-- that table stays strictly append-only (no UPDATE, not even by the service); readers take the
-- note with its cosignatures appended, the log's own signature first, from the view
-- ledger_checkpoints_cosigned. root_hash ties a line to the checkpoint it was made for: a
-- checkpoint signed again for the same size after a rewrite never shows another tree's lines.

CREATE TABLE ledger_cosignatures (
    tree_size bigint NOT NULL CHECK (tree_size >= 0),
    root_hash bytea NOT NULL CHECK (octet_length(root_hash) = 32),
    cosigner text NOT NULL,                  -- <witness name>+<key id, 8 hex digits>
    line text NOT NULL,                      -- "— <name> <base64(key id || timestamp || signature)>\n"
    cosigned_at timestamptz NOT NULL,        -- the cosignature's own timestamp
    received_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tree_size, cosigner)
);

CREATE TRIGGER ledger_cosignatures_guard
    BEFORE UPDATE OR DELETE ON ledger_cosignatures
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_rewrite();
CREATE TRIGGER ledger_cosignatures_guard_truncate
    BEFORE TRUNCATE ON ledger_cosignatures
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_rewrite();

CREATE VIEW ledger_checkpoints_cosigned AS
SELECT c.tree_size,
       c.root_hash,
       c.note || coalesce((SELECT string_agg(w.line, '' ORDER BY w.received_at, w.cosigner)
                             FROM ledger_cosignatures w
                            WHERE w.tree_size = c.tree_size AND w.root_hash = c.root_hash), '') AS note,
       c.signed_at
  FROM ledger_checkpoints c;
