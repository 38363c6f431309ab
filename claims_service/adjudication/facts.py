"""What the rules see of the ledger: a claim as the engine's input, and the facts gathered for it.

The facts are recorded with every decision, so they are trimmed exactly, never approximately:
earlier lines only on this claim's dates of service (a duplicate is same-day by definition; benefit
limits count from the accumulators), prices and authorisations only for this claim's procedures.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any
from uuid import UUID

from adjudicator.models import ClaimInput, Facts
from claims_service.domain.benefits import BenefitPeriod
from claims_service.domain.claim import Claim
from claims_service.domain.contract import Contract
from claims_service.domain.member import MemberCoverage
from claims_service.domain.provider import Provider
from claims_service.domain.rulesets import RuleSetSchedule

Load = Callable[[UUID], Any]
"""Aggregate id -> the aggregate, or None when there is none."""

# Used when no deployment is in force on a claim's received date (a fresh ledger, or a claim
# received before the first deployment): the first released rule set.
DEFAULT_RULESET = "2026.1"


def plan_year(day: date) -> int:
    return day.year


def ruleset_version_on(schedule: RuleSetSchedule | None, received_on: date) -> str:
    version = schedule.version_on(received_on) if schedule is not None else None
    return version or DEFAULT_RULESET


def claim_input_of(claim: Claim) -> ClaimInput:
    return claim_input_from(vars(claim))


def claim_input_from(fields: dict[str, Any]) -> ClaimInput:
    """The engine's view of a claim, from a Claim's state or its `Claim.Submitted` payload."""
    return ClaimInput.model_validate(
        {
            "claim_id": fields["claim_id"],
            "member_id": fields["member_id"],
            "provider_id": fields["provider_id"],
            "payer_id": fields["payer_id"],
            "frequency_code": fields["frequency_code"],
            "diagnosis_codes": list(fields["diagnosis_codes"]),
            "lines": [dict(line) for line in fields["lines"]],
            "place_of_service": fields["place_of_service"],
            "original_claim_id": fields.get("replaces_claim_id"),
        }
    )


def gather_facts(load: Load, claim: Claim) -> Facts:
    """Everything the rules may look at for `claim`, read through `load`, and no more."""
    codes = {line["procedure_code"] for line in claim.lines}
    days = {line["date_of_service"] for line in claim.lines}
    member = load(MemberCoverage.create_id(claim.payer_id, claim.member_id))
    coverages = []
    prior_auths: list[dict[str, Any]] = []
    if member is not None:
        coverages = member.coverage_periods()
        prior_auths = [dict(a) for a in member.prior_auths.values() if a["procedure_code"] in codes]
    years = sorted({plan_year(line["date_of_service"]) for line in claim.lines})
    accumulators = []
    earlier: list[dict[str, Any]] = []
    excluding = {claim.claim_id} | ({claim.replaces_claim_id} if claim.replaces_claim_id else set())
    for year in years:
        period = load(BenefitPeriod.create_id(claim.payer_id, claim.member_id, year))
        if period is not None:
            accumulators.append(period.accumulators())
            earlier += period.earlier_lines(excluding=excluding, on=days)
    if prior_auths:
        count_authorised_units(load, claim, prior_auths, excluding)
    provider = load(Provider.create_id(claim.provider_id))
    provider_facts = None
    fee_schedule = None
    if provider is not None:
        provider_facts = {
            "npi": provider.npi,
            "credentials": [
                {k: c[k] for k in ("licence_number", "state", "valid_from", "valid_to", "revoked_on")}
                for c in provider.credentials
            ],
            "networks": [
                {k: n[k] for k in ("payer_id", "contract_id", "effective_date", "end_date")}
                for n in provider.networks
            ],
        }
        first_day = min(line["date_of_service"] for line in claim.lines)
        for contract_id in provider.contract_ids_on(claim.payer_id, first_day):
            contract = load(Contract.create_id(contract_id))
            schedule = contract.fee_schedule_on(first_day) if contract is not None else None
            if schedule is not None:
                # Only the prices of this claim's procedures: the decision cannot depend on the
                # others, and a full schedule in every recorded decision would swamp the ledger.
                fees = {key: cents for key, cents in schedule["fees"].items() if key.split(":")[0] in codes}
                fee_schedule = {"contract_id": contract_id, **schedule, "fees": fees}
                break
    return Facts.model_validate(
        {
            "received_on": claim.received_on,
            "member_known": member is not None,
            "coverages": coverages,
            "accumulators": accumulators,
            "provider": provider_facts,
            "fee_schedule": fee_schedule,
            "prior_authorizations": [
                {k: a[k] for k in ("auth_id", "procedure_code", "units", "valid_from", "valid_to", "units_used")}
                for a in prior_auths
            ],
            "earlier_claim_lines": [
                {k: line[k] for k in ("claim_id", "provider_id", "date_of_service", "procedure_code", "modifiers", "units", "voided")}
                for line in earlier
            ],
        }
    )


def count_authorised_units(load: Load, claim: Claim, auths: list[dict[str, Any]], excluding: set[str]) -> None:
    """Set each authorisation's `units_used`: the units of the member's earlier services that
    it covered (same procedure, in its window, not voided or denied), earliest authorisation
    first — the same order in which the rule spends them."""
    for auth in auths:
        auth["units_used"] = 0
    years = {y for a in auths for y in range(a["valid_from"].year, a["valid_to"].year + 1)}
    lines = []
    for year in sorted(years):
        period = load(BenefitPeriod.create_id(claim.payer_id, claim.member_id, year))
        if period is not None:
            lines += [line for line in period.earlier_lines(excluding=excluding) if not line["voided"]]
    ordered = sorted(auths, key=lambda a: (a["valid_from"], a["auth_id"]))
    for line in sorted(lines, key=lambda line: line["date_of_service"]):
        units = line["units"]
        for auth in ordered:
            if units and auth["procedure_code"] == line["procedure_code"] \
                    and auth["valid_from"] <= line["date_of_service"] <= auth["valid_to"]:
                taken = min(units, auth["units"] - auth["units_used"])
                auth["units_used"] += taken
                units -= taken


def facts_for_redecision(load: Load, load_many: Callable[[list[UUID]], dict[UUID, Any]], claim: Claim) -> Facts:
    """The facts for deciding a claim again (a review of a pend, an overturned dispute): what was
    recorded when it was first decided, with the member's accumulators as they stand now less the
    claim's own effect, so that the new cost share counts every other claim and the out-of-pocket
    maximum holds. Recorded with the new decision, so that it replays like any other.

    "As they stand now" includes voids and replacements the adjudicator has not yet taken off the
    benefit period (it does so in ledger order, settlement.py): their claims are left out too."""
    accumulators = []
    for year in sorted({plan_year(line["date_of_service"]) for line in claim.lines}):
        period = load(BenefitPeriod.create_id(claim.payer_id, claim.member_id, year))
        if period is None:
            continue
        others = [UUID(claim_id) for claim_id, record in period.claims.items()
                  if claim_id != claim.claim_id and not record["reversed"]]
        ended = {str(aggregate.id) for aggregate in load_many(others).values()
                 if isinstance(aggregate, Claim) and aggregate.status in ("voided", "replaced")}
        accumulators.append(period.accumulators_without({claim.claim_id} | ended))
    # A claim set aside for manual review recorded no facts (the rule set could not run on it):
    # gather them now.
    facts = dict(claim.facts) if claim.facts else gather_facts(load, claim).model_dump(mode="python")
    facts["accumulators"] = accumulators
    return Facts.model_validate(facts)
