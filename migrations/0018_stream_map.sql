-- The stream map (docs/LEDGER.md, "The stream map"): every stream's head (latest version and its
-- event's hash) at each tree size, as a sparse Merkle tree keyed by SHA-256(stream id) whose root
-- a checkpoint commits to in an extension line. Built by the tree builder in the same transaction
-- as the leaves, for the streams each batch touched.
--   stream_map_nodes: every node and leaf ever made, by its hash (content-addressed): an inner node
--                     has left_hash and right_hash, a leaf stream_id, version and event_hash. A new
--                     head adds a leaf and the nodes up its path; nothing is ever changed, so every
--                     earlier root still opens.
--   stream_map_roots: the map's root at each tree size a builder's batch ended at.
-- Both append-only, like the tree.

CREATE TABLE stream_map_nodes (
    hash bytea PRIMARY KEY CHECK (octet_length(hash) = 32),
    left_hash bytea CHECK (octet_length(left_hash) = 32),
    right_hash bytea CHECK (octet_length(right_hash) = 32),
    stream_id uuid,
    version bigint CHECK (version >= 1),
    event_hash bytea CHECK (octet_length(event_hash) = 32),
    CHECK ((left_hash IS NOT NULL AND right_hash IS NOT NULL AND stream_id IS NULL AND version IS NULL
            AND event_hash IS NULL)
        OR (left_hash IS NULL AND right_hash IS NULL AND stream_id IS NOT NULL AND version IS NOT NULL
            AND event_hash IS NOT NULL))
);

CREATE TABLE stream_map_roots (
    tree_size bigint PRIMARY KEY CHECK (tree_size > 0),
    root bytea NOT NULL CHECK (octet_length(root) = 32)
);

CREATE TRIGGER stream_map_nodes_guard
    BEFORE UPDATE OR DELETE ON stream_map_nodes
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_rewrite();
CREATE TRIGGER stream_map_nodes_guard_truncate
    BEFORE TRUNCATE ON stream_map_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_rewrite();
CREATE TRIGGER stream_map_roots_guard
    BEFORE UPDATE OR DELETE ON stream_map_roots
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_rewrite();
CREATE TRIGGER stream_map_roots_guard_truncate
    BEFORE TRUNCATE ON stream_map_roots
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_rewrite();
