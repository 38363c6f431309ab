-- Read model "claim_status" (projection claim_status): one row per claim, the pended claims per
-- payer, and the adjudication notices payers receive as a resumable feed.
-- Positions are ledger positions (ledger_events.notification_id); amounts are integer cents.

CREATE TABLE claim_status (
    claim_id text PRIMARY KEY,                  -- the claim's stream id, as text
    provider_id text NOT NULL,                  -- billing provider NPI
    payer_id text NOT NULL,
    member_id text NOT NULL,
    visit_id text,
    status text NOT NULL CHECK (status IN ('submitted', 'adjudicated', 'pended', 'voided', 'replaced')),
    frequency_code text NOT NULL,
    replaces_claim_id text,
    replaced_by text,
    void_reason text,
    place_of_service text NOT NULL,
    received_on date NOT NULL,
    first_date_of_service date NOT NULL,
    last_date_of_service date NOT NULL,
    diagnosis_codes text[] NOT NULL,
    lines jsonb NOT NULL,                       -- the submitted lines, dates as ISO text
    outcome text,                               -- PAID / PARTIALLY_PAID / DENIED / PENDED
    total_billed_cents bigint NOT NULL,
    total_allowed_cents bigint,
    total_paid_cents bigint,
    total_patient_responsibility_cents bigint,
    decision jsonb,                             -- the decision in force (engine, review or dispute)
    ruleset_version text,
    ruleset_hash text,
    review jsonb,                               -- {reviewer, note} once a reviewer resolved it
    disputes jsonb NOT NULL,                    -- [{dispute_id, reason, opened_by, resolution, note, ...}]
    open_dispute_id text,
    submitted_position bigint NOT NULL,
    last_position bigint NOT NULL,              -- position of the claim's latest event
    stream_version bigint NOT NULL
);
-- A provider's claims, newest first (keyset on submitted_position), optionally by status / member.
CREATE INDEX claim_status_provider_idx ON claim_status (provider_id, submitted_position DESC);
CREATE INDEX claim_status_provider_status_idx ON claim_status (provider_id, status, submitted_position DESC);
CREATE INDEX claim_status_provider_member_idx ON claim_status (provider_id, member_id, submitted_position DESC);
-- A provider's claim changes after a position (WatchClaims).
CREATE INDEX claim_status_provider_changes_idx ON claim_status (provider_id, last_position);

-- Pended claims waiting for a payer's reviewer, oldest first.
CREATE TABLE payer_worklist (
    claim_id text PRIMARY KEY,
    payer_id text NOT NULL,
    provider_id text NOT NULL,
    member_id text NOT NULL,
    received_on date NOT NULL,
    pended_position bigint NOT NULL,
    total_billed_cents bigint NOT NULL,
    reasons jsonb NOT NULL,                     -- the pended lines: [{line_number, adjustments, remarks}]
    decision jsonb NOT NULL                     -- the provisional decision
);
CREATE INDEX payer_worklist_payer_idx ON payer_worklist (payer_id, pended_position);

-- Every adjudication notice, in ledger order: a payer's feed is an index range scan on
-- (payer_id, position), so a stream resumes from any position without gaps.
CREATE TABLE adjudication_notices (
    position bigint PRIMARY KEY,
    payer_id text NOT NULL,
    claim_id text NOT NULL,
    member_id text NOT NULL,
    provider_id text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('adjudicated', 'pended', 'review_resolved', 'dispute_resolved')),
    status text NOT NULL,                       -- the claim's status after this event
    outcome text,
    decision jsonb,
    dispute_id text,
    resolution text,                            -- upheld / overturned (dispute_resolved)
    recorded_at timestamptz                     -- the event's own timestamp
);
CREATE INDEX adjudication_notices_payer_idx ON adjudication_notices (payer_id, position);

INSERT INTO read_model_tables (projection, table_name) VALUES
    ('claim_status', 'claim_status'),
    ('claim_status', 'payer_worklist'),
    ('claim_status', 'adjudication_notices');
INSERT INTO ledger_tracking (application_name, notification_id) VALUES ('projection.claim_status', 0)
ON CONFLICT (application_name) DO NOTHING;
