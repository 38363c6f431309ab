-- Money that reconciles: payments move scheduled -> issued -> recouped, or scheduled -> cancelled;
-- each recoupment is its own (negative) remittance entry; payers are notified of voids,
-- replacements, cancelled and recouped payments; a pended claim says why it waits.

ALTER TABLE payments DROP CONSTRAINT payments_status_check;
UPDATE payments SET status = 'recouped' WHERE status = 'reversed';
ALTER TABLE payments ADD CONSTRAINT payments_status_check
    CHECK (status IN ('scheduled', 'issued', 'cancelled', 'recouped'));
ALTER TABLE payments
    ADD COLUMN cancel_reason text,
    ADD COLUMN cancelled_position bigint;

-- entry 0 is what the payment pays on the claim; entry n >= 1 is its n-th recoupment, with
-- negative amounts (paid_cents and each line's paid_cents), so a remittance's total is the sum
-- of its entries.
ALTER TABLE payment_claims
    ADD COLUMN entry integer NOT NULL DEFAULT 0,
    ADD COLUMN reason text;
ALTER TABLE payment_claims DROP CONSTRAINT payment_claims_pkey;
ALTER TABLE payment_claims ADD PRIMARY KEY (payment_id, claim_id, entry);

ALTER TABLE adjudication_notices DROP CONSTRAINT adjudication_notices_kind_check;
ALTER TABLE adjudication_notices ADD CONSTRAINT adjudication_notices_kind_check
    CHECK (kind IN ('adjudicated', 'pended', 'review_resolved', 'dispute_resolved',
                    'voided', 'replaced', 'payment_cancelled', 'payment_recouped'));
ALTER TABLE adjudication_notices
    ADD COLUMN pend_reasons text[],             -- remark codes (pended notices)
    ADD COLUMN payment_id text,                 -- payment notices
    ADD COLUMN amount_cents bigint,             -- cancelled or recouped (payment notices)
    ADD COLUMN reason text,                     -- the void's, cancellation's or recoupment's reason
    ADD COLUMN replaced_by text;                -- the replacement claim (replaced notices)

ALTER TABLE claim_status ADD COLUMN pend_reasons text[] NOT NULL DEFAULT '{}';
ALTER TABLE payer_worklist ADD COLUMN pend_reasons text[] NOT NULL DEFAULT '{}';
