"""A claim's bundle as the claims see it: which streams make up a claim (its own and its
payments'), and whether the decision recorded in a bundle replays under its recorded rule set.
The proofs themselves are the ledger's (claims_service.ledger.bundle), which knows nothing of
claims."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import adjudicator
from adjudicator.replay import compare
from claims.v1 import ledger_pb2
from claims_service.adjudication.effects import payment_id_for
from claims_service.adjudication.facts import claim_input_from
from claims_service.domain.payment import Payment
from claims_service.ledger.bundle import BundleReport, Completeness, export_bundle, verify_bundle
from claims_service.ledger.checkpointer import Checkpointer
from claims_service.ledger.payloads import UndecodablePayloadError, decode_state, is_erased

MAX_PAYMENTS_PER_CLAIM = 10_000  # a bound on the search, far beyond any claim's


def claim_completeness(claim_stream: uuid.UUID) -> Completeness:
    """A claim's streams: its own, and its payments', whose ids are dense (effects.payment_id_for:
    payment n is scheduled only after payments 0 .. n-1), so the first payment stream that does not
    exist bounds them, and the stream map proves it does not."""

    def payment(n: int) -> tuple[uuid.UUID, str]:
        payment_id = payment_id_for(str(claim_stream), n)
        return Payment.create_id(payment_id), f"payment {n} ({payment_id})"

    return Completeness([(claim_stream, "the claim")], payment, MAX_PAYMENTS_PER_CLAIM)


def claim_streams(claim_stream: uuid.UUID, count: int) -> list[uuid.UUID]:
    """The claim's stream and the streams of its first `count` payments."""
    family = claim_completeness(claim_stream).family
    assert family is not None
    return [claim_stream] + [family(n)[0] for n in range(count)]


def export_claim_bundle(database_url: str, claim_stream: uuid.UUID, checkpointer: Checkpointer) -> ledger_pb2.ClaimBundle:
    return export_bundle(database_url, claim_stream, claim_completeness(claim_stream), checkpointer)


def verify_claim_bundle(bundle: ledger_pb2.ClaimBundle, verifier_key: str | Sequence[str], *,
                        witnesses: Sequence[str] = (), min_witnesses: int | None = None,
                        inclusion_only: bool = False) -> BundleReport:
    """The bundle's proofs (signature, cosignatures, inclusion, chains, completeness: the claim and
    every payment of it), then its decision replayed (docs/LEDGER.md, "Claim bundles")."""
    try:
        claim = uuid.UUID(bundle.claim_id)
    except ValueError:
        return BundleReport(claim_id=bundle.claim_id, failures=["the bundle's claim id is not a UUID"])
    return verify_bundle(bundle, verifier_key, replay=replay_bundle, completeness=claim_completeness(claim),
                         witnesses=witnesses, min_witnesses=min_witnesses, inclusion_only=inclusion_only)


def replay_bundle(bundle: ledger_pb2.ClaimBundle) -> tuple[str, list[str]]:
    """Re-run the recorded rule set on the recorded facts of the bundle's automatic decision;
    (what it showed, failures)."""
    claim_events = [e for e in bundle.events if e.stream_id == bundle.claim_id]
    submitted = next((e for e in claim_events if e.topic.endswith("Claim.Submitted")), None)
    decided = next((e for e in claim_events if e.topic.endswith(("Claim.Adjudicated", "Claim.Pended"))), None)
    if submitted is None or decided is None:
        return "no decision recorded yet", []
    try:
        claim = decode_state(bytes(submitted.state))
        run = decode_state(bytes(decided.state))
    except UndecodablePayloadError:
        # The hashes proved the bytes are the ledger's; reading them takes the ledger's key (or the
        # member's data key, which only the ledger's database and its KEKs open).
        return ("not checked: the payloads are encrypted (with CIPHER_TOPIC and CIPHER_KEY set, or where the "
                "ledger's member keys can be read, the verifier decrypts and replays them)"), []
    except (ValueError, TypeError) as error:
        return "not checked", [f"event payloads cannot be decoded: {error}"]
    if is_erased(claim) or is_erased(run):
        # Proven the ledger's bytes all the same; what they held of the member is gone for good.
        return "not checked: the claim's member data was erased (its data key destroyed)", []
    try:
        ruleset = adjudicator.get_ruleset(run["ruleset_version"])
    except adjudicator.UnknownRuleSetError:
        return "not checked", [f"rule set {run['ruleset_version']} is not known to this verifier"]
    if ruleset.content_hash != run["ruleset_hash"]:
        return "not checked", [f"rule set {ruleset.version}: the recorded hash differs from this verifier's code"]
    try:
        replayed = adjudicator.adjudicate(claim_input_from(claim), adjudicator.Facts.model_validate(run["facts"]), ruleset)
    except Exception as error:  # noqa: BLE001 - what the adjudicator did too: it pended the claim for review
        if decided.topic.endswith("Claim.Pended"):
            return (f"rule set {ruleset.version} cannot decide this claim ({type(error).__name__}); "
                    "it was pended for manual review"), []
        return "different", [f"the decision does not replay: rule set {ruleset.version} cannot decide "
                             f"the recorded facts ({type(error).__name__})"]
    differences = compare(adjudicator.Decision.model_validate(run["decision"]), replayed)
    if differences:
        return "different", ["the decision does not replay: " + "; ".join(differences)]
    return f"identical under rule set {ruleset.version}", []
