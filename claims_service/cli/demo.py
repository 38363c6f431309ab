"""`claimsctl demo`: one story told as each party sees it, against the running service.

An administrator sets up a plan, a provider and a fee schedule; the provider submits five claims
(clean, duplicate, not covered, high-dollar, over the daily unit limit); the payer's stream shows
each adjudication; the payer resolves the pended claim and issues payments; a dispute team replays
the unit-limit denial, tries rule set 2026.2 as a what-if, and overturns it; the ledger verifies and
one claim's bundle is exported for offline checking; then a clearinghouse's day in X12: an 837
of three claims in, its 999 and 277CA, the payer's run and its 835 out (files beside the demo
keys). Every run uses a fresh member, so it can be run again and again.
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
from claims_service.x12.interchange import Envelope, Group, Transaction, amount, d8, read, write

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
    visit = provider.call(provider_api.RecordVisit, provider_pb2.RecordVisitRequest(
        visit_id=f"V-{run}", member_id=member, payer_id=payer_id, date_of_service=day, place_of_service="11",
        diagnosis_codes=["E119", "M5450", "M1711"]))
    with arrived:  # the payer hears of the visit before any claim of it
        arrived.wait_for(lambda: any(n.visit_id == f"V-{run}" for n in notices), timeout=10)
    told = next((n for n in notices if n.visit_id == f"V-{run}"), None)
    say(f"   visit V-{run} at position {visit.receipt.position}: "
        + (f"the payer was told at once (place of service {told.place_of_service}, "
           f"emergency: {'yes' if told.emergency else 'no'}; no diagnoses)" if told else "the payer has not heard of it yet"))

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
        arrived.wait_for(lambda: sum(1 for n in notices if n.claim_id) >= len(claims), timeout=30)
    by_claim = {n.claim_id: n for n in notices if n.claim_id}
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

    say("\n== 8. A clearinghouse's day in X12: an 837 in, its 999 and 277CA, the payer's run, the 835 out")
    text = demo_837(npi, member, payer_id, today - timedelta(days=2), run)
    answer = provider.call(provider_api.SubmitX12, provider_pb2.SubmitX12Request(interchange=text))
    for suffix, content in (("999", answer.ack_999), ("277ca", answer.ack_277ca)):
        write_private(data_dir / f"claims-{run}.837.{suffix}", content)
    ak9 = next(s for s in read(answer.ack_999.decode())[1] if s.id == "AK9")
    say(f"   999: functional group {ak9[1]} ({ak9[4]} of {ak9[3]} transaction sets accepted); 277CA, claim by claim:")
    for claim in answer.claims:
        say(f"   {claim.patient_control_number:<12} {claim.status:<8} "
            + (f"accepted, claim {claim.claim_id[:8]}…" if claim.accepted else f"rejected: {claim.field}: {claim.description}"))
    taken = [c for c in answer.claims if c.accepted]
    with arrived:
        arrived.wait_for(lambda: all(c.claim_id in {n.claim_id for n in notices} for c in taken), timeout=30)
    decided = max([n.position for n in notices if n.claim_id in {c.claim_id for c in taken}] or [0])
    issued = payer.call(payer_api.IssuePayments, payer_pb2.IssuePaymentsRequest(min_position=decided))
    if not issued.payments:
        say("   nothing was due")
        stream.cancel()
        return 0
    remittance = payer.call(payer_api.GetRemittance835, payer_pb2.GetRemittance835Request(
        run_id=issued.run_id, min_position=issued.receipt.position, payer=payer_pb2.RemittancePayer(
            name="DEMO HEALTH PLAN", tax_id="131234567", address_line="1 PLAN PLAZA", city="ALBANY", state="NY",
            postal_code="12207", contact="edi@plan.example")))
    path = write_private(data_dir / f"run-{issued.run_id}.835", remittance.interchange)
    for summary in remittance.remittances:
        say(f"   run {issued.run_id}: 835 to {summary.provider_id}, trace {summary.trace_number}, "
            f"{summary.claims} claim(s), {dollars(summary.amount_cents)} paid (BPR02); written to {path}")
    for clp in (s for s in read(remittance.interchange.decode())[1] if s.id == "CLP"):
        say(f"     CLP {clp[1]:<22} status {clp[2]:<2} charged ${clp[3]:<8} paid ${clp[4]:<8} claim {clp[7][:8]}…")
    stream.cancel()
    return 0


def demo_837(npi: str, member: str, payer_id: str, day: Any, run: str) -> bytes:
    """The 837P a clinic's billing system sends for the day: an office visit with labs, a
    dependent's visit (2000C) and a claim with a diagnosis code that does not exist."""
    t = Transaction("837", "005010X222A1")
    t.add("BHT", "0019", "00", f"DEMO-{run}", d8(day), "1700", "CH")
    t.add("NM1", "41", "2", "RIVERSIDE FAMILY CLINIC", "", "", "", "", "46", "RIVERSIDE")
    t.add("PER", "IC", "BILLING OFFICE", "TE", "5185550100")
    t.add("NM1", "40", "2", "DEMO HEALTH PLAN", "", "", "", "", "46", "DEMOPLAN")
    t.add("HL", "1", "", "20", "1")
    t.add("NM1", "85", "2", "RIVERSIDE FAMILY CLINIC", "", "", "", "", "XX", npi)
    t.add("N3", "12 RIVER ROAD")
    t.add("N4", "ALBANY", "NY", "122070001")
    t.add("REF", "EI", "141234567")
    claims = [("self", f"{run}-A", [("99213", "", 12_000), ("80053", "", 4_000)], ["E119", "I10"]),
              ("child", f"{run}-B", [("99213", "25", 12_000)], ["J069"]),
              ("self", f"{run}-C", [("99213", "", 12_000)], ["Q9999X"])]
    hl = 1
    for who, pcn, lines, diagnoses in claims:
        hl += 1
        t.add("HL", str(hl), "1", "22", "1" if who == "child" else "0")
        t.add("SBR", "P", "18" if who == "self" else "", "DEMOGOLD", "", "", "", "", "", "CI")
        t.add("NM1", "IL", "1", "SAMPLE", "ALEX", "", "", "", "MI", member)
        if who == "self":
            t.add("N3", "44 ELM STREET")
            t.add("N4", "ALBANY", "NY", "122080002")
            t.add("DMG", "D8", "19790312", "F")
        t.add("NM1", "PR", "2", "DEMO HEALTH PLAN", "", "", "", "", "PI", payer_id)
        if who == "child":
            hl += 1
            t.add("HL", str(hl), str(hl - 1), "23", "0")
            t.add("PAT", "19")
            t.add("NM1", "QC", "1", "SAMPLE", "LILY")
            t.add("N3", "44 ELM STREET")
            t.add("N4", "ALBANY", "NY", "122080002")
            t.add("DMG", "D8", "20150704", "F")
        t.add("CLM", pcn, amount(sum(c for _, _, c in lines)), "", "", ["11", "B", "1"], "Y", "A", "Y", "Y")
        t.add("HI", *[["ABK" if i == 0 else "ABF", code] for i, code in enumerate(diagnoses)])
        for number, (code, modifier, cents) in enumerate(lines, start=1):
            t.add("LX", str(number))
            t.add("SV1", ["HC", code, modifier], amount(cents), "UN", "1", "", "", [str(i + 1) for i in range(len(diagnoses))][:4])
            t.add("DTP", "472", "D8", d8(day))
    control = int(run, 16) % 999_999_999 + 1
    return write(Envelope(("ZZ", "RIVERSIDE"), ("ZZ", "DEMOPLAN"), control, datetime.now(UTC)),
                 [Group("HC", "RIVERSIDE", "DEMOPLAN", "005010X222A1", control, [t])]).encode()
