"""`claimsctl demo`: one story told as each party sees it, against the running service.

An administrator sets up a plan, a provider and a fee schedule; the provider submits five claims
(clean, duplicate, not covered, high-dollar, over the daily unit limit); the payer's stream shows
each adjudication; the payer resolves the pended claim and issues payments; a dispute team replays
the unit-limit denial, tries rule set 2026.2 as a what-if, and overturns it; the ledger verifies and
one claim's bundle is exported for offline checking. Every run uses a fresh member, so it can be
run again and again.
"""

from __future__ import annotations

import json
import secrets
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc

from claims.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    common_pb2,
    dispute_pb2,
    dispute_pb2_grpc,
    ledger_pb2,
    ledger_pb2_grpc,
    payer_pb2,
    payer_pb2_grpc,
    provider_pb2,
    provider_pb2_grpc,
)
from claims_service.config import Config
from claims_service.files import write_private

CONTRACT = "DEMO-2026"
FEES = {"99213": 9_000, "97110": 3_000, "97140": 2_800, "29881": 180_000, "80053": 1_500}


def say(text: str = "") -> None:
    print(text, flush=True)


def dollars(cents: int) -> str:
    return f"${cents / 100:,.2f}"


def describe(decision: common_pb2.Decision) -> str:
    outcome = common_pb2.Outcome.Name(decision.outcome).removeprefix("OUTCOME_")
    codes = sorted({f"{a.group}-{a.carc}" for line in decision.lines for a in line.adjustments}
                   | {r for line in decision.lines for r in line.remarks})
    return (f"{outcome}: billed {dollars(decision.total_billed_cents)}, allowed {dollars(decision.total_allowed_cents)}, "
            f"paid {dollars(decision.total_paid_cents)}, member owes {dollars(decision.total_patient_responsibility_cents)}"
            + (f"  [{', '.join(codes)}]" if codes else ""))


class Party:
    """A gRPC channel plus the credential of one role."""

    def __init__(self, channel: grpc.Channel, key: str) -> None:
        self.metadata = (("authorization", f"Bearer {key}"),)
        self.channel = channel

    def call(self, method: Any, request: Any, *, tolerate: tuple[grpc.StatusCode, ...] = (),
             timeout: float | None = 15) -> Any:
        try:
            return method(request, metadata=self.metadata, timeout=timeout)
        except grpc.RpcError as error:
            if error.code() in tolerate:
                return None
            raise


def run_demo(config: Config) -> int:
    keys_path = config.data_dir / "demo-keys.json"
    if not keys_path.exists():
        print(f"claimsctl demo: {keys_path} not found. Start the service first with `make run` "
              "(it creates demo keys on first start).", file=sys.stderr)
        return 2
    keys = json.loads(keys_path.read_text())
    channel = grpc.insecure_channel(config.grpc_addr)
    try:
        grpc.channel_ready_future(channel).result(timeout=10)
    except grpc.FutureTimeoutError:
        print(f"claimsctl demo: no service at {config.grpc_addr}; is `make run` running?", file=sys.stderr)
        return 2
    try:
        return _story(channel, keys, config.data_dir)
    except grpc.RpcError as error:
        print(f"claimsctl demo: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    finally:
        channel.close()


def _story(channel: grpc.Channel, keys: dict[str, Any], data_dir: Path) -> int:
    admin, provider, payer, dispute = (Party(channel, keys[r]["api_key"]) for r in ("admin", "provider", "payer", "dispute"))
    admin_api, provider_api = admin_pb2_grpc.AdminServiceStub(channel), provider_pb2_grpc.ProviderServiceStub(channel)
    payer_api, dispute_api = payer_pb2_grpc.PayerServiceStub(channel), dispute_pb2_grpc.DisputeServiceStub(channel)
    ledger_api = ledger_pb2_grpc.LedgerServiceStub(channel)
    npi, payer_id = keys["provider"]["party_id"], keys["payer"]["party_id"]
    run = secrets.token_hex(3)
    member = f"M-{run}"
    today = datetime.now(UTC).date()
    day = (today - timedelta(days=3)).isoformat()

    say("== 1. The administrator sets up the plan, the provider and the rule set")
    terms = admin_pb2.PlanTerms(
        deductible_cents=5_000, oop_max_cents=300_000, timely_filing_days=365, in_network_only=True,
        review_threshold_cents=200_000, non_covered_procedures=["97140"], benefit_limits={"97110": 40},
        cost_share={"default": admin_pb2.CostShare(coinsurance_bp=2000),
                    "office_visit": admin_pb2.CostShare(copay_cents=2_500)},
    )
    enrolled = admin.call(admin_api.EnrollMember, admin_pb2.EnrollMemberRequest(
        member_id=member, payer_id=payer_id, plan_id="DEMO-GOLD", effective_date=f"{today.year}-01-01", terms=terms))
    say(f"   member {member} enrolled with {payer_id} (plan DEMO-GOLD: $50 deductible, $25 office copay, 20% coinsurance)"
        f" at ledger position {enrolled.receipt.position}")
    exists = (grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.FAILED_PRECONDITION)
    admin.call(admin_api.RegisterProvider, admin_pb2.RegisterProviderRequest(
        npi=npi, name="Riverside Family Clinic", taxonomy="207Q00000X"), tolerate=exists)
    admin.call(admin_api.RecordCredential, admin_pb2.RecordCredentialRequest(
        npi=npi, licence_number="MD-55012", state="NY", valid_from="2020-01-01", valid_to="2030-12-31"), tolerate=exists)
    admin.call(admin_api.PublishFeeSchedule, admin_pb2.PublishFeeScheduleRequest(
        contract_id=CONTRACT, payer_id=payer_id, version=1, effective_date="2020-01-01",
        entries=[admin_pb2.FeeScheduleEntry(procedure_code=c, allowed_cents=v) for c, v in FEES.items()]), tolerate=exists)
    admin.call(admin_api.JoinNetwork, admin_pb2.JoinNetworkRequest(
        npi=npi, payer_id=payer_id, contract_id=CONTRACT, effective_date="2020-01-01"), tolerate=exists)
    deployed = admin.call(admin_api.DeployRuleSet, admin_pb2.DeployRuleSetRequest(version="2026.1", effective_date="2020-01-01"))
    say(f"   provider {npi} credentialed and in network under contract {CONTRACT}; rule set 2026.1 in force "
        f"(content hash {deployed.ruleset_hash[:16]}…)")

    say("\n== 2. The payer subscribes to adjudications")
    notices: list[Any] = []
    arrived = threading.Condition()
    stream = payer.call(payer_api.SubscribeAdjudications,
                        payer_pb2.SubscribeAdjudicationsRequest(after_position=enrolled.receipt.position), timeout=None)

    def listen() -> None:
        try:
            for item in stream:
                if item.WhichOneof("kind") == "notice" and item.notice.member_id == member:
                    with arrived:
                        notices.append(item.notice)
                        arrived.notify_all()
        except grpc.RpcError:
            pass  # cancelled at the end of the story

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    say(f"   stream open after position {enrolled.receipt.position}")

    say("\n== 3. The provider records a visit and submits five claims")
    provider.call(provider_api.RecordVisit, provider_pb2.RecordVisitRequest(
        visit_id=f"V-{run}", member_id=member, payer_id=payer_id, date_of_service=day, place_of_service="11",
        diagnosis_codes=["E119", "M5450", "M1711"]))

    def submit(label: str, lines: list[tuple[str, int, int]], pointer: int) -> str:
        request = provider_pb2.SubmitClaimRequest(
            idempotency_key=f"{run}-{label}", member_id=member, payer_id=payer_id, visit_id=f"V-{run}",
            diagnosis_codes=["E119", "M5450", "M1711"], place_of_service="11",
            lines=[common_pb2.ServiceLine(line_number=i + 1, procedure_code=code, units=units, billed_cents=cents,
                                          diagnosis_pointers=[pointer], date_of_service=day)
                   for i, (code, units, cents) in enumerate(lines)])
        response = provider.call(provider_api.SubmitClaim, request)
        again = provider.call(provider_api.SubmitClaim, request)  # a retry: same key, same body
        assert again.claim_id == response.claim_id and again.receipt.position == response.receipt.position
        say(f"   {label:<13} claim {response.claim_id[:8]}…  receipt: position {response.receipt.position}, "
            f"hash {response.receipt.event_hash.hex()[:16]}…  (a retry returned the same receipt)")
        return response.claim_id

    claims = {
        "clean visit": submit("clean visit", [("99213", 1, 12_000)], 1),
        "duplicate": submit("duplicate", [("99213", 1, 12_000)], 1),
        "not covered": submit("not covered", [("97140", 1, 4_000)], 2),
        "high dollar": submit("high dollar", [("29881", 1, 250_000)], 3),
        "therapy": submit("therapy", [("97110", 6, 21_000)], 2),
    }

    say("\n== 4. The payer's stream shows each adjudication")
    with arrived:
        arrived.wait_for(lambda: len(notices) >= len(claims), timeout=30)
    by_claim = {n.claim_id: n for n in notices}
    for label, claim_id in claims.items():
        notice = by_claim.get(claim_id)
        say(f"   {label:<13} " + (f"position {notice.position}: {describe(notice.decision)}" if notice else "(no notice yet)"))
    if len(by_claim) < len(claims):
        say("   not every adjudication arrived within 30 s")
        return 1

    say("\n== 5. The payer works the pended claim and issues payments")
    high = claims["high dollar"]
    pended = payer.call(payer_api.ListPendedClaims, payer_pb2.ListPendedClaimsRequest(
        min_position=by_claim[high].position))
    reasons = next((", ".join(f"{r.remark_code} ({r.description})" for r in c.pend_reasons)
                    for c in pended.claims if c.claim_id == high), "")
    say(f"   worklist: {len(pended.claims)} pended claim(s), including {high[:8]}…: {reasons}")
    resolved = payer.call(payer_api.ResolvePendedClaim, payer_pb2.ResolvePendedClaimRequest(
        claim_id=high, note="operative report reviewed",
        approve=payer_pb2.PendedClaimApproval(lines=[payer_pb2.PendedLineApproval(line_number=1, allowed_cents=180_000)])))
    say(f"   approved (the plan's cost share applies): {describe(resolved.decision)}")
    # The approval scheduled its payment in the same commit: a run that waits for that position sees it.
    issued = payer.call(payer_api.IssuePayments, payer_pb2.IssuePaymentsRequest(min_position=resolved.receipt.position))
    for payment in issued.payments:
        say(f"   payment {payment.trace_number}: {dollars(payment.amount_cents)} to {payment.provider_id}")

    say("\n== 6. A dispute team takes the therapy claim (two units denied over the daily limit)")
    therapy = claims["therapy"]
    opened = dispute.call(dispute_api.OpenDispute, dispute_pb2.OpenDisputeRequest(
        claim_id=therapy, reason="six units were medically necessary"))
    history = dispute.call(dispute_api.GetClaimHistory, dispute_pb2.GetClaimHistoryRequest(
        claim_id=therapy, min_position=opened.receipt.position))
    for event in history.events:
        say(f"   position {event.position:>6}  v{event.stream_version}  {event.event_type:<18} hash {event.hash.hex()[:16]}…")
    replay = dispute.call(dispute_api.ReplayAdjudication, dispute_pb2.ReplayAdjudicationRequest(claim_id=therapy))
    say(f"   replay under the recorded rule set: {'identical' if replay.identical else 'DIFFERENT'}")
    what_if = dispute.call(dispute_api.ReplayAdjudication, dispute_pb2.ReplayAdjudicationRequest(
        claim_id=therapy, ruleset_version="2026.2"))
    say("   what-if under rule set 2026.2:" + ("" if what_if.differences else " no difference"))
    for difference in what_if.differences:
        if "ruleset_hash" not in difference:
            say(f"     - {difference}")
    overturned = dispute.call(dispute_api.ResolveDispute, dispute_pb2.ResolveDisputeRequest(
        claim_id=therapy, dispute_id=opened.dispute_id, resolution=dispute_pb2.DISPUTE_RESOLUTION_OVERTURNED,
        note="policy updated in 2026.2", ruleset_version="2026.2"))
    say(f"   overturned: {describe(overturned.decision)}")

    say("\n== 7. Anyone can check the ledger")
    verified = dispute.call(dispute_api.VerifyLedger, dispute_pb2.VerifyLedgerRequest())
    say(f"   chain {'intact' if verified.intact else 'BROKEN'}: {verified.events} events in {verified.streams} streams, "
        f"head {verified.head_position}:{verified.head_hash.hex()[:16]}…")
    key = dispute.call(ledger_api.GetPublicKey, ledger_pb2.GetPublicKeyRequest())
    bundle = dispute.call(ledger_api.ExportClaimBundle, ledger_pb2.ExportClaimBundleRequest(claim_id=therapy))
    from claims_service.ledger.bundle import bundle_to_json

    path = data_dir / f"bundle-{therapy[:8]}.json"  # beside the demo keys, not in the working tree
    write_private(path, bundle_to_json(bundle.bundle))  # member data: 0600, in the 0700 data dir
    say(f"   claim bundle written to {path} ({len(bundle.bundle.events)} events, checkpoint of "
        f"{bundle.bundle.checkpoint.tree_size} leaves); check it offline with:")
    say(f"   claimsctl verify-bundle {path} --public-key '{key.verifier_key}'")
    stream.cancel()
    return 0
