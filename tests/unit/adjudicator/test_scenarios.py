"""Written-out adjudication scenarios: every rule alone, then the rules together.

Each case states the claim and facts that differ from the defaults (kit.py: office visit 99213
billed $150.00, fee $90.00, in network, no cost share), and the expected result of every line as
(line, status, allowed, paid, patient responsibility, "GROUP-CARC:cents ...", "RARC ..."), the
claim outcome, and where it matters the accumulator changes as (plan year, deductible, oop, units).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pytest

from adjudicator import ClaimInput, Decision, Facts

from .kit import (
    DOS,
    KNEE,
    OTHER_NPI,
    accumulators,
    assert_balanced,
    authorization,
    claim,
    coverage,
    credential,
    day,
    earlier,
    facts,
    fee_schedule,
    line,
    network,
    provider_facts,
    run,
    share,
    summary,
)


@dataclass(frozen=True)
class Case:
    name: str
    claim: ClaimInput
    facts: Facts
    lines: list[tuple]
    outcome: str
    changes: list[tuple] | None = None
    version: str = "2026.1"


def paid(number: int, allowed: int, paid_: int | None = None, adjustments: str = "", remarks: str = "") -> tuple:
    member = 0 if paid_ is None else allowed - paid_
    return (number, "paid", allowed, allowed - member, member, adjustments, remarks)


def denied(number: int, adjustments: str, remarks: str = "") -> tuple:
    return (number, "denied", 0, 0, 0, adjustments, remarks)


def pended(number: int, billed: int) -> tuple:
    return (number, "pended", 0, 0, 0, f"OA-133:{billed}", "")


def visit(number: int = 1) -> tuple:
    """The default office visit, paid at the fee schedule."""
    return paid(number, 9_000, adjustments="CO-45:6000")


KNEE_SCOPE = dict(code="29881", billed=80_000, pointers=KNEE)
EXERCISE = dict(code="97110", pointers=KNEE)  # fee $30.00 a unit, 4 units a day in 2026.1
COINSURANCE_20 = {"default": share(0, 2_000)}

CASES = [
    # --- 1. eligibility --------------------------------------------------------------------
    Case("pays_office_visit_at_fee_schedule_amount", claim(), facts(), [visit()], "PAID"),
    Case(
        "denies_every_line_when_member_is_unknown",
        claim(line(1), line(2, "80053", billed=3_000)),
        facts(member_known=False),
        [denied(1, "CO-31:15000"), denied(2, "CO-31:3000")],
        "DENIED",
    ),
    Case(
        "denies_member_without_coverage_with_this_payer",
        claim(),
        facts(coverages=[]),
        [denied(1, "CO-31:15000")],
        "DENIED",
    ),
    Case(
        "ignores_coverage_held_with_another_payer",
        claim(),
        facts(coverages=[coverage(payer="PAYER-B")]),
        [denied(1, "CO-31:15000")],
        "DENIED",
    ),
    Case(
        "denies_service_after_coverage_ends",
        claim(),
        facts(coverages=[coverage(end=day(-1))]),
        [denied(1, "CO-27:15000")],
        "DENIED",
    ),
    Case("pays_service_on_the_termination_date", claim(), facts(coverages=[coverage(end=DOS)]), [visit()], "PAID"),
    Case(
        "denies_service_before_coverage_starts",
        claim(),
        facts(coverages=[coverage(start=day(1))]),
        [denied(1, "CO-26:15000")],
        "DENIED",
    ),
    Case("pays_service_on_the_effective_date", claim(), facts(coverages=[coverage(start=DOS)]), [visit()], "PAID"),
    Case(
        "denies_service_in_a_gap_between_coverage_periods_as_after_coverage",
        claim(),
        facts(coverages=[coverage(end=date(2026, 2, 28)), coverage(start=date(2026, 4, 1))]),
        [denied(1, "CO-27:15000")],
        "DENIED",
    ),
    Case(
        "judges_each_line_by_the_coverage_on_its_own_date",
        claim(line(1, dos=date(2026, 2, 27)), line(2)),
        facts(coverages=[coverage(end=date(2026, 2, 28))]),
        [visit(1), denied(2, "CO-27:15000")],
        "PARTIALLY_PAID",
    ),
    # --- 2. provider -----------------------------------------------------------------------
    Case("denies_when_there_are_no_provider_facts", claim(), facts(provider=None), [denied(1, "CO-B7:15000")], "DENIED"),
    Case(
        "denies_when_provider_facts_are_for_another_npi",
        claim(),
        facts(provider=provider_facts(npi=OTHER_NPI)),
        [denied(1, "CO-B7:15000")],
        "DENIED",
    ),
    Case(
        "pays_when_the_credential_expires_on_the_date_of_service",
        claim(),
        facts(provider=provider_facts([credential(valid_to=DOS)])),
        [visit()],
        "PAID",
    ),
    Case(
        "denies_when_the_credential_expired_the_day_before",
        claim(),
        facts(provider=provider_facts([credential(valid_to=day(-1))])),
        [denied(1, "CO-B7:15000")],
        "DENIED",
    ),
    Case(
        "denies_when_the_credential_is_not_yet_valid",
        claim(),
        facts(provider=provider_facts([credential(valid_from=day(1))])),
        [denied(1, "CO-B7:15000")],
        "DENIED",
    ),
    Case(
        "denies_when_the_credential_was_revoked_on_the_date_of_service",
        claim(),
        facts(provider=provider_facts([credential(revoked_on=DOS)])),
        [denied(1, "CO-B7:15000")],
        "DENIED",
    ),
    Case(
        "pays_when_the_credential_was_revoked_after_the_date_of_service",
        claim(),
        facts(provider=provider_facts([credential(revoked_on=day(1))])),
        [visit()],
        "PAID",
    ),
    Case(
        "pays_with_one_valid_credential_among_expired_ones",
        claim(),
        facts(provider=provider_facts([credential(valid_to=day(-100)), credential(valid_from=day(-99))])),
        [visit()],
        "PAID",
    ),
    Case(
        "denies_out_of_network_provider_when_plan_is_in_network_only",
        claim(),
        facts(provider=provider_facts(networks=[])),
        [denied(1, "CO-242:15000")],
        "DENIED",
    ),
    Case(
        "pays_out_of_network_provider_when_plan_allows_it",
        claim(),
        facts(provider=provider_facts(networks=[]), in_network_only=False),
        [visit()],
        "PAID",
    ),
    Case(
        "denies_when_network_membership_ended_before_the_date_of_service",
        claim(),
        facts(provider=provider_facts(networks=[network(end=day(-1))])),
        [denied(1, "CO-242:15000")],
        "DENIED",
    ),
    Case(
        "denies_when_the_network_is_another_payers",
        claim(),
        facts(provider=provider_facts(networks=[network(payer="PAYER-B")])),
        [denied(1, "CO-242:15000")],
        "DENIED",
    ),
    Case(
        "checks_the_licence_before_the_network",
        claim(),
        facts(provider=provider_facts([credential(valid_to=day(-1))], networks=[])),
        [denied(1, "CO-B7:15000")],
        "DENIED",
    ),
    # --- 3. timely filing ------------------------------------------------------------------
    Case(
        "denies_claim_received_after_the_filing_limit",
        claim(),
        facts(received=day(91)),
        [denied(1, "CO-29:15000")],
        "DENIED",
    ),
    Case("pays_claim_received_on_the_last_filing_day", claim(), facts(received=day(90)), [visit()], "PAID"),
    Case(
        "takes_the_filing_limit_from_the_plan",
        claim(),
        facts(received=day(200), timely_filing_days=365),
        [visit()],
        "PAID",
    ),
    Case(
        "denies_only_the_late_line",
        claim(line(1, dos=date(2025, 12, 1)), line(2)),
        facts(),
        [denied(1, "CO-29:15000"), visit(2)],
        "PARTIALLY_PAID",
    ),
    # --- 4. duplicates ---------------------------------------------------------------------
    Case(
        "denies_exact_duplicate_of_an_earlier_claim_line",
        claim(),
        facts(earlier_lines=[earlier()]),
        [denied(1, "OA-18:15000")],
        "DENIED",
    ),
    Case(
        "duplicate_of_a_voided_claim_line_is_not_a_duplicate",
        claim(),
        facts(earlier_lines=[earlier(voided=True)]),
        [visit()],
        "PAID",
    ),
    Case(
        "line_with_other_units_is_not_a_duplicate",
        claim(),
        facts(earlier_lines=[earlier(units=2)]),
        [visit()],
        "PAID",
    ),
    Case(
        "same_modifiers_in_another_order_are_a_duplicate",
        claim(line(modifiers=("25", "GT"))),
        facts(earlier_lines=[earlier(modifiers=("GT", "25"))]),
        [denied(1, "OA-18:15000")],
        "DENIED",
    ),
    Case(
        "line_with_other_modifiers_is_not_a_duplicate",
        claim(),
        facts(earlier_lines=[earlier(modifiers=("25",))]),
        [visit()],
        "PAID",
    ),
    Case(
        "line_of_another_provider_is_not_a_duplicate",
        claim(),
        facts(earlier_lines=[earlier(provider=OTHER_NPI)]),
        [visit()],
        "PAID",
    ),
    Case(
        "line_on_another_date_is_not_a_duplicate",
        claim(),
        facts(earlier_lines=[earlier(dos=day(-7))]),
        [visit()],
        "PAID",
    ),
    Case(
        "denies_the_second_identical_line_of_a_claim",
        claim(line(1), line(2)),
        facts(),
        [visit(1), denied(2, "OA-18:15000")],
        "PARTIALLY_PAID",
    ),
    Case(
        "replacement_does_not_duplicate_the_claim_it_replaces",
        claim(frequency="7", original="OLD-1"),
        facts(earlier_lines=[earlier(claim_id="OLD-1")]),
        [visit()],
        "PAID",
    ),
    Case(
        "original_claim_ignores_a_replacement_reference",
        claim(frequency="1", original="OLD-1"),
        facts(earlier_lines=[earlier(claim_id="OLD-1")]),
        [denied(1, "OA-18:15000")],
        "DENIED",
    ),
    Case(
        "rerun_of_the_same_claim_does_not_duplicate_itself",
        claim(),
        facts(earlier_lines=[earlier(claim_id="CLM-1")]),
        [visit()],
        "PAID",
    ),
    # --- 5. coverage -----------------------------------------------------------------------
    Case(
        "denies_non_covered_procedure_with_remark_n130",
        claim(),
        facts(non_covered_procedures=["99213"]),
        [denied(1, "CO-96:15000", "N130")],
        "DENIED",
    ),
    Case(
        "denies_when_the_yearly_benefit_limit_is_already_reached",
        claim(line(**EXERCISE, billed=4_000)),
        facts(benefit_limits={"97110": 12}, accumulators=[accumulators(**{"97110": 12})]),
        [denied(1, "CO-119:4000")],
        "DENIED",
        changes=[],
    ),
    Case(
        "cuts_units_beyond_the_yearly_benefit_limit",
        claim(line(**EXERCISE, units=4, billed=16_000)),
        facts(benefit_limits={"97110": 12}, accumulators=[accumulators(**{"97110": 10})]),
        [paid(1, 6_000, adjustments="CO-119:8000 CO-45:2000")],
        "PARTIALLY_PAID",
        changes=[(2026, 0, 0, {"97110": 2})],
    ),
    Case(
        "counts_earlier_lines_of_the_claim_toward_the_benefit_limit",
        claim(line(1, **EXERCISE, units=3, billed=12_000), line(2, **EXERCISE, units=3, billed=12_000, dos=day(1))),
        facts(benefit_limits={"97110": 12}, accumulators=[accumulators(**{"97110": 8})]),
        [paid(1, 9_000, adjustments="CO-45:3000"), paid(2, 3_000, adjustments="CO-119:8000 CO-45:1000")],
        "PARTIALLY_PAID",
        changes=[(2026, 0, 0, {"97110": 4})],
    ),
    Case(
        "benefit_limit_starts_again_in_a_new_plan_year",
        claim(line(**EXERCISE, billed=4_000)),
        facts(benefit_limits={"97110": 12}, accumulators=[accumulators(2025, **{"97110": 12})]),
        [paid(1, 3_000, adjustments="CO-45:1000")],
        "PAID",
        changes=[(2026, 0, 0, {"97110": 1})],
    ),
    # --- 6. diagnosis fit ------------------------------------------------------------------
    Case(
        "denies_procedure_its_diagnosis_does_not_support",
        claim(line(code="20610", billed=10_000)),
        facts(),
        [denied(1, "CO-11:10000")],
        "DENIED",
    ),
    Case(
        "pays_when_any_pointed_diagnosis_supports_the_procedure",
        claim(line(code="20610", billed=10_000, pointers=(1, 3))),
        facts(),
        [paid(1, 7_000, adjustments="CO-45:3000")],
        "PAID",
    ),
    Case(
        "supporting_diagnosis_the_line_does_not_point_to_does_not_count",
        claim(line(code="20610", billed=10_000, pointers=(1, 2))),
        facts(),
        [denied(1, "CO-11:10000")],
        "DENIED",
    ),
    Case(
        "denies_listed_procedure_without_diagnosis_pointers",
        claim(line(code="20610", billed=10_000, pointers=())),
        facts(),
        [denied(1, "CO-11:10000")],
        "DENIED",
    ),
    Case(
        "procedure_outside_the_fit_table_fits_any_diagnosis",
        claim(line(pointers=(6,))),
        facts(),
        [visit()],
        "PAID",
    ),
    # --- 7. prior authorisation ------------------------------------------------------------
    Case(
        "denies_procedure_that_needs_authorisation_without_one",
        claim(line(**KNEE_SCOPE)),
        facts(prior_auth_required=["29881"]),
        [denied(1, "CO-197:80000")],
        "DENIED",
    ),
    Case(
        "pays_procedure_with_a_valid_authorisation",
        claim(line(**KNEE_SCOPE)),
        facts(prior_auth_required=["29881"], authorizations=[authorization("29881", 1)]),
        [paid(1, 60_000, adjustments="CO-45:20000")],
        "PAID",
    ),
    Case(
        "denies_when_the_authorisation_expired_before_the_date_of_service",
        claim(line(**KNEE_SCOPE)),
        facts(prior_auth_required=["29881"], authorizations=[authorization("29881", 1, valid_to=day(-1))]),
        [denied(1, "CO-197:80000")],
        "DENIED",
    ),
    Case(
        "authorisation_ending_on_the_date_of_service_counts",
        claim(line(**KNEE_SCOPE)),
        facts(prior_auth_required=["29881"], authorizations=[authorization("29881", 1, valid_to=DOS)]),
        [paid(1, 60_000, adjustments="CO-45:20000")],
        "PAID",
    ),
    Case(
        "authorisation_for_another_procedure_does_not_count",
        claim(line(**KNEE_SCOPE)),
        facts(prior_auth_required=["29881"], authorizations=[authorization("73721", 1)]),
        [denied(1, "CO-197:80000")],
        "DENIED",
    ),
    Case(
        "cuts_units_beyond_the_authorisation",
        claim(line(**EXERCISE, units=3, billed=12_000)),
        facts(prior_auth_required=["97110"], authorizations=[authorization("97110", 2)]),
        [paid(1, 6_000, adjustments="CO-198:4000 CO-45:2000")],
        "PARTIALLY_PAID",
    ),
    Case(
        "units_used_by_earlier_claims_reduce_the_authorisation",
        claim(line(**EXERCISE, units=2, billed=8_000)),
        facts(prior_auth_required=["97110"], authorizations=[authorization("97110", 4, used=3)]),
        [paid(1, 3_000, adjustments="CO-198:4000 CO-45:1000")],
        "PARTIALLY_PAID",
    ),
    Case(
        "lines_of_a_claim_share_one_authorisation",
        claim(line(1, **EXERCISE, units=2, billed=8_000), line(2, **EXERCISE, units=2, billed=8_000, dos=day(1))),
        facts(prior_auth_required=["97110"], authorizations=[authorization("97110", 3)]),
        [paid(1, 6_000, adjustments="CO-45:2000"), paid(2, 3_000, adjustments="CO-198:4000 CO-45:1000")],
        "PARTIALLY_PAID",
    ),
    Case(
        "denies_line_when_the_authorisation_is_used_up",
        claim(line(**EXERCISE, billed=4_000)),
        facts(prior_auth_required=["97110"], authorizations=[authorization("97110", 2, used=2)]),
        [denied(1, "CO-198:4000")],
        "DENIED",
    ),
    # --- 8. bundling -----------------------------------------------------------------------
    Case(
        "denies_column2_code_billed_with_its_column1_code",
        claim(line(1, **KNEE_SCOPE), line(2, "20610", billed=10_000, pointers=KNEE)),
        facts(),
        [paid(1, 60_000, adjustments="CO-45:20000"), denied(2, "CO-97:10000")],
        "PARTIALLY_PAID",
    ),
    Case(
        "denies_column2_code_listed_before_its_column1_code",
        claim(line(1, "20610", billed=10_000, pointers=KNEE), line(2, **KNEE_SCOPE)),
        facts(),
        [denied(1, "CO-97:10000"), paid(2, 60_000, adjustments="CO-45:20000")],
        "PARTIALLY_PAID",
    ),
    Case(
        "modifier_59_unbundles_a_pair_that_allows_it",
        claim(line(1, **KNEE_SCOPE), line(2, "20610", billed=10_000, pointers=KNEE, modifiers=("59",))),
        facts(),
        [paid(1, 60_000, adjustments="CO-45:20000"), paid(2, 7_000, adjustments="CO-45:3000")],
        "PAID",
    ),
    Case(
        "modifier_cannot_unbundle_a_pair_that_allows_no_bypass",
        claim(line(1, "80053", billed=3_000), line(2, "80048", billed=2_500, modifiers=("59",))),
        facts(),
        [paid(1, 1_500, adjustments="CO-45:1500"), denied(2, "CO-97:2500")],
        "PARTIALLY_PAID",
    ),
    Case(
        "pair_on_different_dates_is_not_bundled",
        claim(line(1, **KNEE_SCOPE), line(2, "20610", billed=10_000, pointers=KNEE, dos=day(1))),
        facts(),
        [paid(1, 60_000, adjustments="CO-45:20000"), paid(2, 7_000, adjustments="CO-45:3000")],
        "PAID",
    ),
    Case(
        "column1_line_denied_earlier_bundles_nothing",
        claim(line(1, **KNEE_SCOPE), line(2, "20610", billed=10_000, pointers=KNEE)),
        facts(prior_auth_required=["29881"]),
        [denied(1, "CO-197:80000"), paid(2, 7_000, adjustments="CO-45:3000")],
        "PARTIALLY_PAID",
    ),
    Case(
        "under_2026_2_modifier_59_no_longer_unbundles",
        claim(line(1, **KNEE_SCOPE), line(2, "20610", billed=10_000, pointers=KNEE, modifiers=("59",))),
        facts(),
        [paid(1, 60_000, adjustments="CO-45:20000"), denied(2, "CO-97:10000")],
        "PARTIALLY_PAID",
        version="2026.2",
    ),
    Case(
        "under_2026_2_modifier_xs_unbundles",
        claim(line(1, **KNEE_SCOPE), line(2, "20610", billed=10_000, pointers=KNEE, modifiers=("XS",))),
        facts(),
        [paid(1, 60_000, adjustments="CO-45:20000"), paid(2, 7_000, adjustments="CO-45:3000")],
        "PAID",
        version="2026.2",
    ),
    # --- 9. units per day ------------------------------------------------------------------
    Case(
        "cuts_units_above_the_daily_limit_with_remark_n362",
        claim(line(**EXERCISE, units=6, billed=24_000)),
        facts(),
        [paid(1, 12_000, adjustments="CO-151:8000 CO-45:4000", remarks="N362")],
        "PARTIALLY_PAID",
    ),
    Case(
        "counts_units_across_lines_toward_the_daily_limit",
        claim(line(1, **EXERCISE, units=3, billed=12_000), line(2, **EXERCISE, units=2, billed=8_000, modifiers=("GP",))),
        facts(),
        [paid(1, 9_000, adjustments="CO-45:3000"), paid(2, 3_000, adjustments="CO-151:4000 CO-45:1000", remarks="N362")],
        "PARTIALLY_PAID",
    ),
    Case(
        "denies_line_once_the_daily_limit_is_used_up",
        claim(line(1, **EXERCISE, units=4, billed=16_000), line(2, **EXERCISE, units=2, billed=8_000, modifiers=("GP",))),
        facts(),
        [paid(1, 12_000, adjustments="CO-45:4000"), denied(2, "CO-151:8000", "N362")],
        "PARTIALLY_PAID",
    ),
    Case(
        "applies_the_daily_limit_per_date_of_service",
        claim(line(1, **EXERCISE, units=4, billed=16_000), line(2, **EXERCISE, units=4, billed=16_000, dos=day(1))),
        facts(),
        [paid(1, 12_000, adjustments="CO-45:4000"), paid(2, 12_000, adjustments="CO-45:4000")],
        "PAID",
    ),
    Case(
        "rounds_the_share_of_refused_units_half_up",
        claim(line(**EXERCISE, units=6, billed=10_001)),
        facts(),
        [paid(1, 6_667, adjustments="CO-151:3334", remarks="N362")],
        "PARTIALLY_PAID",
    ),
    Case(
        "under_2026_2_six_units_of_97110_a_day_are_allowed",
        claim(line(**EXERCISE, units=6, billed=24_000)),
        facts(),
        [paid(1, 18_000, adjustments="CO-45:6000")],
        "PAID",
        version="2026.2",
    ),
    # --- 10. pricing -----------------------------------------------------------------------
    Case(
        "allowed_amount_never_exceeds_the_billed_amount",
        claim(line(billed=8_000)),
        facts(),
        [paid(1, 8_000)],
        "PAID",
    ),
    Case("fee_equal_to_billed_leaves_no_adjustment", claim(line(billed=9_000)), facts(), [paid(1, 9_000)], "PAID"),
    Case(
        "modifier_specific_price_wins_over_the_plain_code",
        claim(line(code="71046", billed=3_000, pointers=(5,), modifiers=("26",))),
        facts(),
        [paid(1, 1_200, adjustments="CO-45:1800")],
        "PAID",
    ),
    Case(
        "prices_per_unit",
        claim(line(code="J1100", units=10, billed=2_500, pointers=KNEE)),
        facts(),
        [paid(1, 1_000, adjustments="CO-45:1500")],
        "PAID",
    ),
    Case("zero_billed_line_is_paid_nothing_and_balances", claim(line(billed=0)), facts(), [paid(1, 0)], "PAID"),
    Case(
        "pends_the_claim_when_a_line_has_no_fee_schedule_price",
        claim(line(1), line(2, "99215", billed=20_000)),
        facts(),
        [pended(1, 15_000), pended(2, 20_000)],
        "PENDED",
        changes=[],
    ),
    Case(
        "pends_the_claim_when_there_is_no_fee_schedule",
        claim(),
        facts(schedule=None),
        [pended(1, 15_000)],
        "PENDED",
    ),
    Case(
        "pends_when_the_fee_schedule_is_not_yet_effective_on_the_date_of_service",
        claim(),
        facts(schedule=fee_schedule(effective=day(1))),
        [pended(1, 15_000)],
        "PENDED",
    ),
    # --- 11. member cost share -------------------------------------------------------------
    Case(
        "charges_the_office_visit_copay",
        claim(),
        facts(cost_share={"default": share(0, 2_000), "office_visit": share(2_500)}),
        [paid(1, 9_000, 6_500, "CO-45:6000 PR-3:2500")],
        "PAID",
        changes=[(2026, 0, 2_500, {})],
    ),
    Case(
        "applies_the_rest_of_a_partly_met_deductible_then_coinsurance",
        claim(line(**KNEE_SCOPE)),
        facts(deductible_cents=50_000, cost_share=COINSURANCE_20, accumulators=[accumulators(deductible=45_000)]),
        [paid(1, 60_000, 44_000, "CO-45:20000 PR-1:5000 PR-2:11000")],
        "PAID",
        changes=[(2026, 5_000, 16_000, {})],
    ),
    Case(
        "applies_copay_deductible_and_coinsurance_on_one_line",
        claim(line(**KNEE_SCOPE)),
        facts(deductible_cents=10_000, cost_share={"surgery": share(5_000, 2_000)}),
        [paid(1, 60_000, 36_000, "CO-45:20000 PR-3:5000 PR-1:10000 PR-2:9000")],
        "PAID",
        changes=[(2026, 10_000, 24_000, {})],
    ),
    Case(
        "stops_member_cost_share_when_the_out_of_pocket_maximum_is_reached_mid_claim",
        claim(line(1, **KNEE_SCOPE), line(2)),
        facts(
            deductible_cents=50_000,
            oop_max_cents=300_000,
            cost_share=COINSURANCE_20,
            accumulators=[accumulators(deductible=50_000, oop=290_000)],
        ),
        [paid(1, 60_000, 50_000, "CO-45:20000 PR-2:10000"), paid(2, 9_000, adjustments="CO-45:6000")],
        "PAID",
        changes=[(2026, 0, 10_000, {})],
    ),
    Case(
        "carries_the_deductible_from_line_to_line_in_line_order",
        claim(line(2, "99214", billed=20_000), line(1)),
        facts(deductible_cents=10_000),
        [paid(1, 9_000, 0, "CO-45:6000 PR-1:9000"), paid(2, 13_000, 12_000, "CO-45:7000 PR-1:1000")],
        "PAID",
        changes=[(2026, 10_000, 10_000, {})],
    ),
    Case(
        "keeps_separate_accumulators_for_a_claim_spanning_two_plan_years",
        claim(line(1, dos=date(2025, 12, 30)), line(2, dos=date(2026, 1, 2))),
        facts(
            received=date(2026, 1, 10),
            deductible_cents=10_000,
            cost_share={"default": share(0, 1_000)},
            accumulators=[accumulators(2025, deductible=10_000, oop=10_000)],
        ),
        [paid(1, 9_000, 8_100, "CO-45:6000 PR-2:900"), paid(2, 9_000, 0, "CO-45:6000 PR-1:9000")],
        "PAID",
        changes=[(2025, 0, 900, {}), (2026, 9_000, 9_000, {})],
    ),
    Case(
        "rounds_coinsurance_half_up_to_the_cent",
        claim(line(billed=1_001)),
        facts(cost_share={"default": share(0, 5_000)}),
        [paid(1, 1_001, 500, "PR-2:501")],
        "PAID",
    ),
    Case(
        "rounds_coinsurance_below_half_a_cent_down",
        claim(line(billed=1_003)),
        facts(cost_share={"default": share(0, 1_500)}),
        [paid(1, 1_003, 853, "PR-2:150")],
        "PAID",
    ),
    Case(
        "caps_the_copay_at_the_allowed_amount",
        claim(line(billed=2_000)),
        facts(cost_share={"office_visit": share(2_500)}),
        [paid(1, 2_000, 0, "PR-3:2000")],
        "PAID",
    ),
    Case(
        "uses_the_default_cost_share_for_a_category_the_plan_does_not_list",
        claim(line(code="80053", billed=3_000)),
        facts(cost_share={"default": share(0, 2_000), "office_visit": share(2_500)}),
        [paid(1, 1_500, 1_200, "CO-45:1500 PR-2:300")],
        "PAID",
    ),
    Case(
        "plan_without_cost_share_entries_charges_the_member_nothing",
        claim(),
        facts(cost_share={}),
        [visit()],
        "PAID",
        changes=[],
    ),
    Case(
        "member_pays_nothing_once_the_out_of_pocket_maximum_is_met",
        claim(),
        facts(
            deductible_cents=50_000,
            oop_max_cents=300_000,
            cost_share=COINSURANCE_20,
            accumulators=[accumulators(oop=300_000)],
        ),
        [visit()],
        "PAID",
        changes=[],
    ),
    Case(
        "counts_the_deductible_toward_the_out_of_pocket_maximum",
        claim(line(**KNEE_SCOPE)),
        facts(deductible_cents=50_000, oop_max_cents=20_000, cost_share=COINSURANCE_20),
        [paid(1, 60_000, 40_000, "CO-45:20000 PR-1:20000")],
        "PAID",
        changes=[(2026, 20_000, 20_000, {})],
    ),
    # --- 12. pend for review ---------------------------------------------------------------
    Case(
        "pends_claim_billed_above_the_review_threshold_keeping_denials",
        claim(line(1, **KNEE_SCOPE), line(2), line(3, "80053", billed=10_000)),
        facts(review_threshold_cents=100_000, non_covered_procedures=["80053"]),
        [pended(1, 80_000), pended(2, 15_000), denied(3, "CO-96:10000", "N130")],
        "PENDED",
        changes=[],
    ),
    Case(
        "claim_billed_exactly_at_the_review_threshold_is_not_pended",
        claim(),
        facts(review_threshold_cents=15_000),
        [visit()],
        "PAID",
    ),
    Case(
        "pended_claim_moves_no_accumulators",
        claim(line(1), line(2, "99215", billed=20_000)),
        facts(deductible_cents=50_000, cost_share=COINSURANCE_20),
        [pended(1, 15_000), pended(2, 20_000)],
        "PENDED",
        changes=[],
    ),
    Case(
        "denied_claim_is_not_pended_even_above_the_threshold",
        claim(),
        facts(member_known=False, review_threshold_cents=1_000),
        [denied(1, "CO-31:15000")],
        "DENIED",
    ),
    # --- rules together --------------------------------------------------------------------
    Case(
        "first_denial_stops_the_later_rules_for_the_line",
        claim(line(**{**KNEE_SCOPE, "pointers": (1,)})),
        facts(non_covered_procedures=["29881"], prior_auth_required=["29881"]),
        [denied(1, "CO-96:80000", "N130")],
        "DENIED",
    ),
    Case(
        "late_duplicate_is_denied_as_late",
        claim(),
        facts(received=day(120), earlier_lines=[earlier()]),
        [denied(1, "CO-29:15000")],
        "DENIED",
    ),
    Case(
        "cuts_units_by_authorisation_then_by_daily_limit",
        claim(line(**EXERCISE, units=6, billed=24_000)),
        facts(prior_auth_required=["97110"], authorizations=[authorization("97110", 5)]),
        [paid(1, 12_000, adjustments="CO-198:4000 CO-151:4000 CO-45:4000", remarks="N362")],
        "PARTIALLY_PAID",
    ),
    Case(
        "denies_claim_whose_lines_all_fail_different_rules",
        claim(line(1, "20610", billed=10_000), line(2, dos=date(2025, 11, 1)), line(3, "99395", billed=25_000, pointers=(4,))),
        facts(non_covered_procedures=["99395"]),
        [denied(1, "CO-11:10000"), denied(2, "CO-29:15000"), denied(3, "CO-96:25000", "N130")],
        "DENIED",
    ),
    Case(
        "partial_payment_with_cost_share_and_a_bundled_line",
        claim(line(1, **KNEE_SCOPE), line(2, "20610", billed=10_000, pointers=KNEE), line(3)),
        facts(
            deductible_cents=20_000,
            cost_share={"default": share(0, 2_000), "office_visit": share(2_500)},
            accumulators=[accumulators(deductible=15_000, oop=15_000)],
        ),
        [
            paid(1, 60_000, 44_000, "CO-45:20000 PR-1:5000 PR-2:11000"),
            denied(2, "CO-97:10000"),
            paid(3, 9_000, 6_500, "CO-45:6000 PR-3:2500"),
        ],
        "PARTIALLY_PAID",
        changes=[(2026, 5_000, 18_500, {})],
    ),
]


def test_has_at_least_sixty_cases_with_unique_names():
    names = [case.name for case in CASES]
    assert len(names) >= 60
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_scenario(case: Case):
    decision: Decision = run(case.claim, case.facts, case.version)
    assert [summary(result) for result in decision.lines] == case.lines
    assert decision.outcome.value == case.outcome
    assert_balanced(decision)
    if case.changes is not None:
        assert [
            (change.plan_year, change.deductible_cents, change.oop_cents, change.benefit_units)
            for change in decision.accumulator_changes
        ] == case.changes
