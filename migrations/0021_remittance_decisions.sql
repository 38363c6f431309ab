-- Read model "payments": every decision the payer's claims were given, in ledger order, so that a
-- run's 835s can report the claims decided since the payer's previous run that pay nothing
-- (denied, or all the member's: CLP02 4 or 1, CLP04 0), to every provider that has some. No
-- payment is scheduled for those, so the payments themselves never show them. One row per claim
-- event that sets or ends a decision:
--   kind 'decided'   an adjudication, a review or an overturned dispute (pended ones are 'pended':
--                    not final, so never remitted);
--   kind 'withdrawn' a void or a replacement (the claim is no longer the provider's to be paid).
-- A claim is remitted as unpaid when its last row at a run's end is 'decided' with paid_cents 0
-- and lies after the payer's previous run; `lines` is kept for those rows only, as the decision
-- said them then, so a run's 835 reads the same whenever it is written.
-- Ledgers migrated with decisions already made: `claimsctl projections rebuild payments` fills
-- this table from the ledger (until then, earlier unpaid claims are simply not in the 835s).

CREATE TABLE remittance_decisions (
    claim_id text NOT NULL,
    payer_id text NOT NULL,
    provider_id text NOT NULL,
    member_id text NOT NULL,
    frequency_code text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('decided', 'pended', 'withdrawn')),
    outcome text,
    paid_cents bigint NOT NULL,
    billed_cents bigint NOT NULL,
    patient_responsibility_cents bigint,
    lines jsonb,                                -- as payment_claims.lines, for unpaid decisions only
    position bigint NOT NULL,
    PRIMARY KEY (claim_id, position)
);
-- A payer's run: the unpaid decisions between its previous run's last issue position and its own.
CREATE INDEX remittance_decisions_unpaid_idx ON remittance_decisions (payer_id, position)
    WHERE kind = 'decided' AND paid_cents = 0;
-- Where a payer's previous run ended, without reading its every payment.
CREATE INDEX payments_payer_issued_idx ON payments (payer_id, issued_position) WHERE issued_position IS NOT NULL;

INSERT INTO read_model_tables (projection, table_name) VALUES ('payments', 'remittance_decisions');
