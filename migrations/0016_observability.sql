-- What operators need to see inside the service, kept beside the ledger but outside its evidence.
--
-- ledger_events.metadata: operational metadata of an event, written once with its row: the W3C
-- trace context of the request or worker that wrote it ({"traceparent": "00-…-…-01"}), so that one
-- claim's trace follows it from SubmitClaim through the adjudicator and the projections to the
-- payer's notice. It is NOT hashed: ledger_link_event() (0002, 0012) hashes position, stream,
-- version, topic and state only, so tracing changes no hash, no proof and no checkpoint, and
-- `claimsctl verify` reads none of it. NULL for every event written without a sampled trace (all
-- of them while tracing is off). It is never evidence: the append-only guard (0003) keeps it as
-- written, but a rewrite of it would not be detected.

ALTER TABLE ledger_events ADD COLUMN metadata jsonb;

-- ledger_verifications: every full verification of the chain (`claimsctl verify`,
-- DisputeService/VerifyLedger), so that metrics and `claimsctl status` can say when the ledger was
-- last verified and what was found, whichever process or machine ran it.
CREATE TABLE ledger_verifications (
    id bigserial PRIMARY KEY,
    verified_at timestamptz NOT NULL DEFAULT now(),
    intact boolean NOT NULL,
    events bigint NOT NULL,
    head_position bigint,
    problem_position bigint,
    problem text,
    seconds double precision NOT NULL,
    verified_by text NOT NULL  -- "claimsctl verify", "DisputeService/VerifyLedger"
);
