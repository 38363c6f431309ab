"""Builders for adjudicator tests: a clean claim and facts to start from, changed per test.

The defaults pay an office visit (99213 billed $150.00, fee $90.00) to an in-network, licensed
provider, under a plan with no deductible and no member cost share, so a test only states what it
changes. Line defaults point at diagnosis 1 (E119); 3 is M1711 (knee), 5 is J069, 6 is Z23.
"""

from __future__ import annotations

from datetime import date, timedelta
from types import ModuleType

from adjudicator import (
    Accumulators,
    ClaimInput,
    ClaimLineInput,
    CostShare,
    Coverage,
    Credential,
    Decision,
    EarlierClaimLine,
    Facts,
    FeeSchedule,
    LineResult,
    NetworkMembership,
    PlanTerms,
    PriorAuthorization,
    ProviderFacts,
    adjudicate,
    get_ruleset,
)
from adjudicator.engine import evaluate
from adjudicator.findings import Finding

NPI = "1234567893"
OTHER_NPI = "1245319599"
PAYER = "PAYER-A"
MEMBER = "MEM-1"
DOS = date(2026, 3, 10)
RECEIVED = date(2026, 3, 20)
DIAGNOSES = ("E119", "I10", "M1711", "Z0000", "J069", "Z23")
KNEE = (3,)
FEES = {
    "99212": 6_000,
    "99213": 9_000,
    "99214": 13_000,
    "99395": 15_000,
    "80048": 1_200,
    "80053": 1_500,
    "85025": 900,
    "36415": 300,
    "71045": 3_000,
    "71046": 4_000,
    "71046:26": 1_200,
    "73721": 25_000,
    "93000": 2_000,
    "93010": 800,
    "20610": 7_000,
    "96372": 2_500,
    "29881": 60_000,
    "97110": 3_000,
    "97140": 2_800,
    "J1100": 100,
    "J3301": 150,
    "G0008": 2_500,
}  # 99202, 99203 and 99215 have no price


def day(offset: int) -> date:
    """The default date of service moved by `offset` days."""
    return DOS + timedelta(days=offset)


def line(
    number: int = 1,
    code: str = "99213",
    *,
    units: int = 1,
    billed: int = 15_000,
    dos: date = DOS,
    modifiers: tuple[str, ...] = (),
    pointers: tuple[int, ...] = (1,),
) -> ClaimLineInput:
    return ClaimLineInput(
        line_number=number,
        procedure_code=code,
        modifiers=list(modifiers),
        diagnosis_pointers=list(pointers),
        units=units,
        billed_cents=billed,
        date_of_service=dos,
    )


def claim(
    *lines: ClaimLineInput,
    claim_id: str = "CLM-1",
    frequency: str = "1",
    original: str | None = None,
    diagnoses: tuple[str, ...] = DIAGNOSES,
    provider: str = NPI,
) -> ClaimInput:
    return ClaimInput(
        claim_id=claim_id,
        member_id=MEMBER,
        provider_id=provider,
        payer_id=PAYER,
        frequency_code=frequency,
        diagnosis_codes=list(diagnoses),
        lines=list(lines) or [line()],
        place_of_service="11",
        original_claim_id=original,
    )


def share(copay: int = 0, coinsurance_bp: int = 0) -> CostShare:
    return CostShare(copay_cents=copay, coinsurance_bp=coinsurance_bp)


def terms(**changes) -> PlanTerms:
    values = dict(
        deductible_cents=0,
        oop_max_cents=1_000_000,
        cost_share={"default": share()},
        timely_filing_days=90,
        in_network_only=True,
        review_threshold_cents=1_000_000,
    )
    values.update(changes)
    return PlanTerms(**values)


def coverage(
    start: date = date(2025, 1, 1),
    end: date | None = None,
    *,
    payer: str = PAYER,
    plan: str = "PLAN-1",
    **term_changes,
) -> Coverage:
    return Coverage(
        member_id=MEMBER,
        payer_id=payer,
        plan_id=plan,
        effective_date=start,
        termination_date=end,
        terms=terms(**term_changes),
    )


def credential(
    valid_from: date = date(2020, 1, 1), valid_to: date = date(2030, 12, 31), revoked_on: date | None = None
) -> Credential:
    return Credential(licence_number="LIC-1", state="CA", valid_from=valid_from, valid_to=valid_to, revoked_on=revoked_on)


def network(payer: str = PAYER, start: date = date(2020, 1, 1), end: date | None = None) -> NetworkMembership:
    return NetworkMembership(payer_id=payer, contract_id="K-1", effective_date=start, end_date=end)


def provider_facts(credentials=None, networks=None, npi: str = NPI) -> ProviderFacts:
    return ProviderFacts(
        npi=npi,
        credentials=[credential()] if credentials is None else list(credentials),
        networks=[network()] if networks is None else list(networks),
    )


def fee_schedule(effective: date = date(2025, 1, 1), fees: dict[str, int] | None = None) -> FeeSchedule:
    return FeeSchedule(contract_id="K-1", version=1, effective_date=effective, fees=FEES if fees is None else fees)


def accumulators(year: int = 2026, deductible: int = 0, oop: int = 0, **units: int) -> Accumulators:
    return Accumulators(plan_year=year, deductible_met_cents=deductible, oop_met_cents=oop, benefit_units=units)


def authorization(
    code: str, units: int, valid_from: date = day(-30), valid_to: date = day(30), used: int = 0, auth_id: str = "PA-1"
) -> PriorAuthorization:
    return PriorAuthorization(
        auth_id=auth_id, procedure_code=code, units=units, valid_from=valid_from, valid_to=valid_to, units_used=used
    )


def earlier(
    code: str = "99213",
    *,
    claim_id: str = "OLD-1",
    dos: date = DOS,
    units: int = 1,
    modifiers: tuple[str, ...] = (),
    voided: bool = False,
    provider: str = NPI,
) -> EarlierClaimLine:
    return EarlierClaimLine(
        claim_id=claim_id,
        provider_id=provider,
        date_of_service=dos,
        procedure_code=code,
        modifiers=list(modifiers),
        units=units,
        voided=voided,
    )


_DEFAULT = object()


def facts(
    *,
    received: date = RECEIVED,
    member_known: bool = True,
    coverages=None,
    accumulators=(),
    provider=_DEFAULT,
    schedule=_DEFAULT,
    authorizations=(),
    earlier_lines=(),
    **term_changes,
) -> Facts:
    """Facts for the default claim; keyword arguments that are plan terms change the one coverage."""
    return Facts(
        received_on=received,
        member_known=member_known,
        coverages=[coverage(**term_changes)] if coverages is None else list(coverages),
        accumulators=list(accumulators),
        provider=provider_facts() if provider is _DEFAULT else provider,
        fee_schedule=fee_schedule() if schedule is _DEFAULT else schedule,
        prior_authorizations=list(authorizations),
        earlier_claim_lines=list(earlier_lines),
    )


def run(claim_: ClaimInput, facts_: Facts, version: str = "2026.1") -> Decision:
    return adjudicate(claim_, facts_, get_ruleset(version))


def findings_of(rule: ModuleType, claim_: ClaimInput, facts_: Facts, version: str = "2026.1") -> list[Finding]:
    """What `rule` finds after the rules before it in `version` have run."""
    steps = get_ruleset(version).steps
    position = next(n for n, step in enumerate(steps) if step.rule is rule.RULE)
    state = evaluate(claim_, facts_, steps[:position])
    step = steps[position]
    return step.rule.check(claim_, facts_, step.params, state)


def described(found: list[Finding]) -> list[str]:
    """Findings as "line kind reason [units|amount]" text, e.g. "2 cut CO-151 N362 x2"."""
    out = []
    for finding in found:
        text = f"{finding.line_number} {finding.kind.value} {finding.reason}"
        if finding.units:
            text += f" x{finding.units}"
        if finding.amount_cents:
            text += f" ${finding.amount_cents}"
        out.append(text)
    return out


def summary(result: LineResult) -> tuple:
    """(line, status, allowed, paid, patient responsibility, "GROUP-CARC:amount ...", "REMARK ...")."""
    return (
        result.line_number,
        result.status,
        result.allowed_cents,
        result.paid_cents,
        result.patient_responsibility_cents,
        " ".join(f"{a.group}-{a.carc}:{a.amount_cents}" for a in result.adjustments),
        " ".join(result.remarks),
    )


def assert_balanced(decision: Decision) -> None:
    for result in decision.lines:
        member = sum(a.amount_cents for a in result.adjustments if a.group == "PR")
        other = sum(a.amount_cents for a in result.adjustments if a.group != "PR")
        assert result.patient_responsibility_cents == member, result
        assert result.billed_cents == result.paid_cents + member + other, result
        assert 0 <= result.paid_cents <= result.allowed_cents <= result.billed_cents, result
    assert decision.total_billed_cents == sum(r.billed_cents for r in decision.lines)
    assert decision.total_allowed_cents == sum(r.allowed_cents for r in decision.lines)
    assert decision.total_paid_cents == sum(r.paid_cents for r in decision.lines)
    assert decision.total_patient_responsibility_cents == sum(r.patient_responsibility_cents for r in decision.lines)
