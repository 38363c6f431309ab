"""Properties over random claims and facts: adjudication never raises, every line and the claim
balance to the cent, no amount is negative, and the same inputs give the same decision, also after
a JSON round trip of the claim, the facts and the decision."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    NetworkMembership,
    Outcome,
    PlanTerms,
    PriorAuthorization,
    ProviderFacts,
    adjudicate,
    codeset,
    get_ruleset,
)

from .kit import MEMBER, NPI, OTHER_NPI, PAYER, assert_balanced

PROCEDURES = sorted(codeset.procedure_categories()) + ["A9999"]  # one code no table knows
CATEGORIES = sorted(set(codeset.procedure_categories().values())) + ["default"]
DIAGNOSES = sorted(codeset.diagnoses())
MODIFIERS = ["25", "26", "59", "GP", "XS"]
FIRST_DAY, LAST_DAY = date(2025, 1, 1), date(2026, 12, 31)

days = st.dates(FIRST_DAY, LAST_DAY)
cents = st.integers(0, 150_000)
procedure_subsets = st.lists(st.sampled_from(PROCEDURES), max_size=4, unique=True)

PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def terms():
    return st.builds(
        PlanTerms,
        deductible_cents=st.integers(0, 20_000) | st.integers(0, 100_000),
        oop_max_cents=st.integers(0, 300_000),
        cost_share=st.dictionaries(
            st.sampled_from(CATEGORIES),
            st.builds(CostShare, copay_cents=st.integers(0, 5_000), coinsurance_bp=st.integers(0, 10_000)),
            max_size=3,
        ).map(lambda shares: {"default": CostShare(copay_cents=0, coinsurance_bp=2_000)} | shares),
        timely_filing_days=st.integers(0, 400).map(lambda n: n if n < 40 else n + 60),
        in_network_only=st.booleans(),
        review_threshold_cents=st.integers(200_000, 2_000_000) | st.integers(0, 600_000),
        non_covered_procedures=procedure_subsets,
        benefit_limits=st.dictionaries(st.sampled_from(PROCEDURES), st.integers(0, 8), max_size=3),
        prior_auth_required=procedure_subsets,
    )


def likely(draw) -> bool:
    """Mostly true (the first element is where hypothesis starts and shrinks to)."""
    return draw(st.sampled_from([True] * 9 + [False]))


def optional_day():
    return st.none() | days


@st.composite
def claims_and_facts(draw) -> tuple[ClaimInput, Facts]:
    diagnoses = draw(st.lists(st.sampled_from(DIAGNOSES), min_size=1, max_size=4, unique=True))
    count = draw(st.integers(1, 6))
    first_day = draw(days)
    # Lines within a fortnight, as on a real claim; a few claims reach back much further.
    line_days = st.integers(0, 14).map(lambda n: first_day + timedelta(days=n)) if likely(draw) else days
    numbers = draw(st.permutations(range(1, count + 1)))
    lines = [
        ClaimLineInput(
            line_number=number,
            procedure_code=draw(st.sampled_from(PROCEDURES)),
            modifiers=draw(st.lists(st.sampled_from(MODIFIERS), max_size=2, unique=True)),
            diagnosis_pointers=draw(st.lists(st.integers(1, len(diagnoses)), max_size=3, unique=True)),
            units=draw(st.integers(1, 6)),
            billed_cents=draw(cents),
            date_of_service=draw(line_days),
        )
        for number in numbers
    ]
    if count < 50 and draw(st.booleans()):  # a copy of the first line: a duplicate within the claim
        lines.append(lines[0].model_copy(update={"line_number": count + 1}))
    claim = ClaimInput(
        claim_id="CLM-P",
        member_id=MEMBER,
        provider_id=NPI,
        payer_id=PAYER,
        frequency_code=draw(st.sampled_from(["1", "7"])),
        diagnosis_codes=diagnoses,
        lines=lines,
        place_of_service="11",
        original_claim_id=draw(st.none() | st.just("OLD-1")),
    )
    latest = max(line.date_of_service for line in lines)
    coverages = [
        Coverage(
            member_id=MEMBER,
            payer_id=draw(st.sampled_from([PAYER, PAYER, "PAYER-B"])),
            plan_id=f"PLAN-{n}",
            effective_date=draw(days),
            termination_date=draw(optional_day()),
            terms=draw(terms()),
        )
        for n in range(draw(st.integers(0, 1)))
    ]
    if likely(draw):  # most members are covered all along, so that the later rules get to run
        coverages.append(
            Coverage(
                member_id=MEMBER,
                payer_id=PAYER,
                plan_id="PLAN-MAIN",
                effective_date=FIRST_DAY,
                terms=draw(terms()),
            )
        )
    accumulators = [
        Accumulators(
            plan_year=year,
            deductible_met_cents=draw(st.integers(0, 100_000)),
            oop_met_cents=draw(st.integers(0, 300_000)),
            benefit_units=draw(st.dictionaries(st.sampled_from(PROCEDURES), st.integers(0, 10), max_size=2)),
        )
        for year in (2025, 2026)
        if draw(st.booleans())
    ]
    provider = draw(
        st.none()
        | st.builds(
            ProviderFacts,
            npi=st.sampled_from([NPI, NPI, OTHER_NPI]),
            credentials=st.lists(
                st.builds(
                    Credential,
                    licence_number=st.just("LIC"),
                    state=st.just("CA"),
                    valid_from=days,
                    valid_to=days,
                    revoked_on=optional_day(),
                ),
                max_size=2,
            ),
            networks=st.lists(
                st.builds(
                    NetworkMembership,
                    payer_id=st.sampled_from([PAYER, "PAYER-B"]),
                    contract_id=st.just("K"),
                    effective_date=days,
                    end_date=optional_day(),
                ),
                max_size=2,
            ),
        )
    )
    if likely(draw):
        provider = ProviderFacts(
            npi=NPI,
            credentials=[Credential(licence_number="LIC", state="CA", valid_from=date(2020, 1, 1), valid_to=date(2030, 1, 1))]
            + (provider.credentials if provider else []),
            networks=[NetworkMembership(payer_id=PAYER, contract_id="K", effective_date=date(2020, 1, 1))]
            + (provider.networks if provider else []),
        )
    fee_keys = st.sampled_from(PROCEDURES) | st.tuples(st.sampled_from(PROCEDURES), st.sampled_from(MODIFIERS)).map(":".join)
    fees = draw(st.dictionaries(fee_keys, st.integers(0, 100_000), max_size=20))
    if likely(draw):  # most codes priced
        fees = {code: draw(st.integers(0, 100_000)) for code in PROCEDURES[:-1]} | fees
    schedule = FeeSchedule(contract_id="K", version=1, effective_date=draw(days | st.just(FIRST_DAY)), fees=fees)
    if not likely(draw):
        schedule = None
    authorizations = draw(
        st.lists(
            st.builds(
                PriorAuthorization,
                auth_id=st.sampled_from(["PA-1", "PA-2"]),
                procedure_code=st.sampled_from(PROCEDURES),
                units=st.integers(0, 6),
                valid_from=days,
                valid_to=days,
                units_used=st.integers(0, 6),
            ),
            max_size=3,
        )
    )
    earlier = [
        EarlierClaimLine(
            claim_id=draw(st.sampled_from(["OLD-1", "OLD-2", "CLM-P"])),
            provider_id=NPI,
            date_of_service=line.date_of_service,
            procedure_code=line.procedure_code,
            modifiers=list(reversed(line.modifiers)),
            units=line.units,
            voided=draw(st.booleans()),
        )
        for line in draw(st.lists(st.sampled_from(lines), max_size=2))
    ]
    facts = Facts(
        received_on=latest + timedelta(days=draw(st.integers(0, 60) if likely(draw) else st.integers(0, 400))),
        member_known=likely(draw),
        coverages=coverages,
        accumulators=accumulators,
        provider=provider,
        fee_schedule=schedule,
        prior_authorizations=authorizations,
        earlier_claim_lines=earlier,
    )
    return claim, facts


def check_invariants(claim: ClaimInput, facts: Facts, decision: Decision) -> None:
    assert_balanced(decision)
    assert [result.line_number for result in decision.lines] == sorted(line.line_number for line in claim.lines)
    statuses = {result.status for result in decision.lines}
    for result in decision.lines:
        assert all(adjustment.amount_cents >= 0 for adjustment in result.adjustments)
        if result.status != "paid":
            assert (result.allowed_cents, result.paid_cents, result.patient_responsibility_cents) == (0, 0, 0)
    if decision.outcome is Outcome.PENDED:
        assert statuses <= {"pended", "denied"} and "pended" in statuses
        assert decision.total_paid_cents == 0 and decision.accumulator_changes == []
    else:
        assert "pended" not in statuses
        assert sum(change.oop_cents for change in decision.accumulator_changes) == decision.total_patient_responsibility_cents
        deductible = sum(a.amount_cents for r in decision.lines for a in r.adjustments if (a.group, a.carc) == ("PR", "1"))
        assert sum(change.deductible_cents for change in decision.accumulator_changes) == deductible
    assert (decision.outcome is Outcome.DENIED) == (statuses == {"denied"})
    if decision.outcome is Outcome.PAID:
        assert statuses == {"paid"}
    if not facts.member_known:
        assert decision.outcome is Outcome.DENIED


@PROPERTY_SETTINGS
@given(claims_and_facts(), st.sampled_from(["2026.1", "2026.2"]))
def test_adjudication_is_total_balanced_and_never_negative(pair, version):
    claim, facts = pair
    decision = adjudicate(claim, facts, get_ruleset(version))
    check_invariants(claim, facts, decision)


@settings(PROPERTY_SETTINGS, max_examples=60)
@given(claims_and_facts())
def test_same_inputs_give_the_same_decision_also_after_a_json_round_trip(pair):
    claim, facts = pair
    ruleset = get_ruleset("2026.1")
    decision = adjudicate(claim, facts, ruleset)
    assert adjudicate(claim, facts, ruleset) == decision
    claim_again = ClaimInput.model_validate(claim.model_dump(mode="json"))
    facts_again = Facts.model_validate(facts.model_dump(mode="json"))
    assert (claim_again, facts_again) == (claim, facts)
    assert adjudicate(claim_again, facts_again, ruleset) == decision
    recorded = Decision.model_validate(decision.model_dump(mode="json"))
    assert recorded == decision
    assert recorded.model_dump_json() == decision.model_dump_json()
