-- Read model "payments" (projection payments): scheduled, issued and reversed payments, each
-- paid claim with its lines and CAS adjustments as decided when the payment was scheduled
-- (what an X12 835 needs), and the projection's own copy of the claims it pays.

CREATE TABLE payments (
    stream_id uuid PRIMARY KEY,                 -- the Payment stream
    payment_id text NOT NULL UNIQUE,
    payer_id text NOT NULL,
    provider_id text NOT NULL,
    status text NOT NULL CHECK (status IN ('scheduled', 'issued', 'reversed')),
    amount_cents bigint NOT NULL,
    reversed_cents bigint NOT NULL,
    claim_ids text[] NOT NULL,
    trace_number text,
    issued_on date,
    reversals jsonb NOT NULL,                   -- [{reason, amount_cents, position}]
    scheduled_position bigint NOT NULL,
    issued_position bigint,
    last_position bigint NOT NULL
);
CREATE INDEX payments_provider_idx ON payments (provider_id, scheduled_position DESC);
CREATE INDEX payments_trace_idx ON payments (trace_number) WHERE trace_number IS NOT NULL;
-- Scheduled payments due, per payer (and provider), oldest first: what IssuePayments picks up.
CREATE INDEX payments_due_idx ON payments (payer_id, provider_id, scheduled_position) WHERE status = 'scheduled';

CREATE TABLE payment_claims (
    payment_id text NOT NULL,
    claim_id text NOT NULL,
    payer_id text NOT NULL,
    provider_id text NOT NULL,
    member_id text NOT NULL,
    frequency_code text NOT NULL,
    outcome text,
    billed_cents bigint NOT NULL,
    paid_cents bigint NOT NULL,                 -- by this payment
    patient_responsibility_cents bigint,
    lines jsonb NOT NULL,                       -- [{line_number, procedure_code, modifiers, units, date_of_service,
                                                --   billed_cents, allowed_cents, paid_cents, patient_responsibility_cents,
                                                --   adjustments: [{group, carc, amount_cents}], remarks}]
    scheduled_position bigint NOT NULL,
    PRIMARY KEY (payment_id, claim_id)
);
CREATE INDEX payment_claims_claim_idx ON payment_claims (claim_id);

-- What the payments projection needs of each claim (kept here so the projection never reads
-- another projection's tables, which move at their own pace).
CREATE TABLE remittance_claims (
    claim_id text PRIMARY KEY,
    payer_id text NOT NULL,
    provider_id text NOT NULL,
    member_id text NOT NULL,
    frequency_code text NOT NULL,
    status text NOT NULL,
    lines jsonb NOT NULL,
    decision jsonb,
    last_position bigint NOT NULL
);

INSERT INTO read_model_tables (projection, table_name) VALUES
    ('payments', 'payments'),
    ('payments', 'payment_claims'),
    ('payments', 'remittance_claims');
INSERT INTO ledger_tracking (application_name, notification_id) VALUES ('projection.payments', 0)
ON CONFLICT (application_name) DO NOTHING;
