-- Member data keys (#16, point 5: erasure without breaking the proofs). Every member's data on the
-- ledger is sealed under a data key of the member's own (docs/LEDGER.md, "Member data keys"); the
-- key lives here, wrapped by a key-encryption key held outside the database, never in the events
-- table: erasing a member deletes their key's row, after which their events, unchanged and still
-- hashed as stored, read as erased.

-- One row per member, kept for good: the member's pseudonymous key id (what their sealed events
-- name) and whether their data was erased. `member_ref` is the uuid5 of the member id, as the
-- ledger's own stream ids are made: it keeps member ids out of sight, not out of reach of someone
-- who guesses one (README, "Erasure").
CREATE TABLE member_keys (
    key_id uuid PRIMARY KEY,
    member_ref uuid NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    erased_at timestamptz              -- set when the data key was destroyed
);

-- The key material: the data key wrapped under KEK `kek_id` (AES-256-GCM bound to the key id).
-- An erasure deletes the row. (PostgreSQL keeps a deleted row's bytes until VACUUM, and the WAL
-- and backups keep them wrapped: README, "Erasure", says how rotating the KEK finishes the job.)
CREATE TABLE member_data_keys (
    key_id uuid PRIMARY KEY REFERENCES member_keys (key_id),
    kek_id text NOT NULL,
    wrapped_key bytea NOT NULL,
    wrapped_at timestamptz NOT NULL DEFAULT now()
);
