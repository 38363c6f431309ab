-- Members as parties (#16, points 1-4): payers hear of visits and of emergency accesses on their
-- notice feed; every read of a member's data, the emergency accesses payers review and the
-- consents members give are read models of their own (projection access_log); a member's claims
-- and coverage are found by member id.

-- Notices without a claim: a visit (before any claim of it) and an emergency access to a member's
-- history. An emergency access is told to every payer that covers the member: one row per payer
-- at the same position, so the key is (position, payer_id); a payer's feed is still an index range
-- scan on (payer_id, position). (Visits recorded before this migration are told after a rebuild of
-- claim_status only: the live projection is past them.)
ALTER TABLE adjudication_notices
    ALTER COLUMN claim_id DROP NOT NULL,
    ALTER COLUMN status DROP NOT NULL,
    ADD COLUMN visit_id text,                   -- the provider's visit id (visit notices)
    ADD COLUMN date_of_service date,            -- the visit's date (visit notices)
    ADD COLUMN place_of_service text,           -- the visit's place of service (visit notices)
    ADD COLUMN emergency boolean,               -- the visit is an emergency (visit notices)
    ADD COLUMN access_id text;                  -- the emergency access (emergency access notices)
ALTER TABLE adjudication_notices DROP CONSTRAINT adjudication_notices_kind_check;
ALTER TABLE adjudication_notices ADD CONSTRAINT adjudication_notices_kind_check
    CHECK (kind IN ('adjudicated', 'pended', 'review_resolved', 'dispute_resolved',
                    'voided', 'replaced', 'payment_cancelled', 'payment_recouped',
                    'visit', 'emergency_access'));
ALTER TABLE adjudication_notices DROP CONSTRAINT adjudication_notices_pkey;
ALTER TABLE adjudication_notices ADD PRIMARY KEY (position, payer_id);

-- A member's claims of every provider, newest first (MemberService, GetMemberHistory).
CREATE INDEX claim_status_member_idx ON claim_status (member_id, submitted_position DESC);
-- The payers that cover a member id (an emergency access is told to each).
CREATE INDEX member_coverage_member_idx ON member_coverage (member_id);

-- Read model "access_log" (projection access_log).
-- Every recorded read of a member's data (MemberAccess.Recorded): one row per event.
CREATE TABLE access_log (
    position bigint PRIMARY KEY,
    member_id text NOT NULL,
    role text NOT NULL,                         -- of the credential that read
    party_id text NOT NULL,                     -- its party ('' for the dispute team)
    key_id text NOT NULL,                       -- its public key id
    method text NOT NULL,                       -- the RPC or FHIR interaction
    resources text[] NOT NULL,                  -- claim:<id>, eob:<id>, payment:<id>, ...
    access_grant text NOT NULL,                 -- provider / payer / dispute / self / consent:<id> / emergency:<id>
    emergency_reason text,                      -- the reason declared (emergency accesses)
    accessed_at timestamptz                     -- the event's own timestamp
);
CREATE INDEX access_log_member_idx ON access_log (member_id, position DESC);
CREATE INDEX access_log_member_emergency_idx ON access_log (member_id, position DESC)
    WHERE emergency_reason IS NOT NULL;

-- Emergency accesses (EmergencyAccess.Declared), one row per payer told, for its review.
CREATE TABLE emergency_accesses (
    access_id text NOT NULL,
    payer_id text NOT NULL,
    position bigint NOT NULL,
    member_id text NOT NULL,
    provider_id text NOT NULL,
    key_id text NOT NULL,
    reason text NOT NULL,
    claim_ids text[] NOT NULL,                  -- the claims read under it (its access record)
    declared_at timestamptz,
    PRIMARY KEY (access_id, payer_id)
);
CREATE INDEX emergency_accesses_payer_idx ON emergency_accesses (payer_id, position DESC);
CREATE INDEX emergency_accesses_payer_member_idx ON emergency_accesses (payer_id, member_id, position DESC);

-- Each member's latest grant to each provider (Consent events); the ledger's Consent stream is
-- what GetMemberHistory checks.
CREATE TABLE member_consents (
    stream_id uuid PRIMARY KEY,                 -- the Consent stream: (member, provider)
    member_id text NOT NULL,
    provider_id text NOT NULL,
    grant_id text,                              -- NULL until the first grant
    scope text,
    granted_at timestamptz,
    expires_at timestamptz,
    revoked_at timestamptz,
    revoke_reason text,
    granted_position bigint,
    last_position bigint NOT NULL
);
CREATE INDEX member_consents_member_idx ON member_consents (member_id, granted_position DESC);

INSERT INTO read_model_tables (projection, table_name) VALUES
    ('access_log', 'access_log'),
    ('access_log', 'emergency_accesses'),
    ('access_log', 'member_consents');
INSERT INTO ledger_tracking (application_name, notification_id) VALUES ('projection.access_log', 0)
ON CONFLICT (application_name) DO NOTHING;
