-- Read model "dispute_timeline" (projection dispute_timeline): for each claim, every event of the
-- claim's stream and of its payments' streams, in ledger order, with the chain fields needed to
-- check it (hash, prev_hash, stream_prev_hash; see docs/LEDGER.md).

CREATE TABLE dispute_timeline (
    claim_id text NOT NULL,
    position bigint NOT NULL,
    stream_id uuid NOT NULL,
    stream_version bigint NOT NULL,
    event_type text NOT NULL,                   -- e.g. 'Claim.Adjudicated', 'Payment.Issued'
    topic text NOT NULL,
    payload text NOT NULL,                      -- the stored JSON, or base64 of encrypted/compressed bytes
    payload_encoding text NOT NULL CHECK (payload_encoding IN ('json', 'base64')),
    hash bytea NOT NULL,
    prev_hash bytea NOT NULL,
    stream_prev_hash bytea NOT NULL,
    recorded_at timestamptz,                    -- the event's own timestamp (null when encrypted)
    PRIMARY KEY (claim_id, position)
);

-- Which claims a payment stream belongs to (from Payment.Scheduled).
CREATE TABLE timeline_streams (
    stream_id uuid NOT NULL,
    claim_id text NOT NULL,
    PRIMARY KEY (stream_id, claim_id)
);

INSERT INTO read_model_tables (projection, table_name) VALUES
    ('dispute_timeline', 'dispute_timeline'),
    ('dispute_timeline', 'timeline_streams');
INSERT INTO ledger_tracking (application_name, notification_id) VALUES ('projection.dispute_timeline', 0)
ON CONFLICT (application_name) DO NOTHING;
