-- Read model "benefits" (projection benefits): member coverage (plan limits), accumulators per
-- payer + member + plan year, each claim's effect on them, and the explanation of benefits.

CREATE TABLE member_coverage (
    stream_id uuid PRIMARY KEY,                 -- the MemberCoverage stream
    payer_id text NOT NULL,
    member_id text NOT NULL,
    plan_id text NOT NULL,                      -- of the latest segment
    effective_date date NOT NULL,
    termination_date date,
    segments jsonb NOT NULL,                    -- [{effective_on, plan_id, deductible_cents, oop_max_cents}] by date
    last_position bigint NOT NULL,
    UNIQUE (payer_id, member_id)
);

CREATE TABLE member_accumulators (
    stream_id uuid PRIMARY KEY,                 -- the BenefitPeriod stream
    payer_id text NOT NULL,
    member_id text NOT NULL,
    plan_year integer NOT NULL,
    deductible_met_cents bigint NOT NULL,
    oop_met_cents bigint NOT NULL,
    benefit_units jsonb NOT NULL,               -- procedure code -> units used
    last_position bigint NOT NULL,
    UNIQUE (payer_id, member_id, plan_year)
);

-- Each claim's current effect on a benefit period ("set", not "add": a later decision replaces it).
CREATE TABLE benefit_claims (
    stream_id uuid NOT NULL,
    claim_id text NOT NULL,
    deductible_cents bigint NOT NULL,
    oop_cents bigint NOT NULL,
    benefit_units jsonb NOT NULL,
    reversed boolean NOT NULL,
    last_position bigint NOT NULL,
    PRIMARY KEY (stream_id, claim_id)
);

-- The member-facing view of each claim: per line billed, allowed, paid and what the member owes.
CREATE TABLE explanation_of_benefits (
    claim_id text PRIMARY KEY,
    payer_id text NOT NULL,
    member_id text NOT NULL,
    provider_id text NOT NULL,
    claim_status text NOT NULL,
    outcome text,
    received_on date NOT NULL,
    first_date_of_service date NOT NULL,
    lines jsonb NOT NULL,                       -- [{line_number, date_of_service, procedure_code, modifiers, units,
                                                --   billed_cents, allowed_cents, paid_cents, you_owe_cents, status,
                                                --   adjustments, remarks}]
    total_billed_cents bigint NOT NULL,
    total_allowed_cents bigint,
    total_paid_cents bigint,
    total_you_owe_cents bigint,
    submitted_position bigint NOT NULL,
    last_position bigint NOT NULL
);
CREATE INDEX explanation_of_benefits_member_idx
    ON explanation_of_benefits (payer_id, member_id, first_date_of_service, submitted_position);

INSERT INTO read_model_tables (projection, table_name) VALUES
    ('benefits', 'member_coverage'),
    ('benefits', 'member_accumulators'),
    ('benefits', 'benefit_claims'),
    ('benefits', 'explanation_of_benefits');
INSERT INTO ledger_tracking (application_name, notification_id) VALUES ('projection.benefits', 0)
ON CONFLICT (application_name) DO NOTHING;
