"""Throughput benchmark of the engine: `measure_engine(seconds)` -> claim lines per second.

The mix is generated deterministically (a fixed linear congruential sequence, no `random`): 500
claims of 1 to 8 lines over the synthetic code set, with the facts that make most lines pay and
some meet each rule (duplicates, non-covered codes, missing authorisations, bundled pairs, unit
limits, unpriced codes that pend, deductibles and out-of-pocket caps). It is adjudicated with rule
set 2026.1, round after round, on one thread, until `seconds` have passed.

This is the one module of the package that reads a clock (to time the engine); nothing imports it.
`make bench` calls `measure_engine()`; `python -m bench.engine` prints the same as JSON.
"""

from __future__ import annotations

import json
import time
from datetime import date, timedelta

from adjudicator import codeset
from adjudicator.engine import adjudicate
from adjudicator.models import (
    Accumulators,
    ClaimInput,
    ClaimLineInput,
    CostShare,
    Coverage,
    Credential,
    EarlierClaimLine,
    Facts,
    FeeSchedule,
    NetworkMembership,
    PlanTerms,
    PriorAuthorization,
    ProviderFacts,
)
from adjudicator.rulesets import get_ruleset

NPI = "1234567893"
PAYER = "PAYER-BENCH"
RULESET = "2026.1"


class _Sequence:
    """A fixed pseudo-random sequence (LCG), so every run measures the same mix."""

    def __init__(self, seed: int) -> None:
        self.state = seed

    def below(self, n: int) -> int:
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        return (self.state >> 33) % n

    def pick(self, items: list):
        return items[self.below(len(items))]


def generate_mix(claims: int = 500, seed: int = 2026) -> list[tuple[ClaimInput, Facts]]:
    """`claims` (claim, facts) pairs, the same for the same arguments."""
    sequence = _Sequence(seed)
    procedures = sorted(codeset.procedure_categories())
    fit = codeset.diagnosis_fit()
    diagnoses = sorted(codeset.diagnoses())
    # Every code is priced except the last one, which pends the claims that bill it.
    fees = {code: 1_000 + 500 * sequence.below(40) for code in procedures[:-1]}
    fees["71046:26"] = 1_200
    schedule = FeeSchedule(contract_id="K-BENCH", version=1, effective_date=date(2025, 1, 1), fees=fees)
    terms = PlanTerms(
        deductible_cents=50_000,
        oop_max_cents=400_000,
        cost_share={
            "default": CostShare(copay_cents=0, coinsurance_bp=2_000),
            "office_visit": CostShare(copay_cents=2_500, coinsurance_bp=0),
            "therapy": CostShare(copay_cents=1_500, coinsurance_bp=1_000),
        },
        timely_filing_days=180,
        in_network_only=True,
        review_threshold_cents=2_000_000,
        non_covered_procedures=["99395"],
        benefit_limits={"97110": 24, "97140": 24},
        prior_auth_required=["29881", "73721"],
    )
    provider = ProviderFacts(
        npi=NPI,
        credentials=[Credential(licence_number="L-1", state="CA", valid_from=date(2020, 1, 1), valid_to=date(2030, 12, 31))],
        networks=[NetworkMembership(payer_id=PAYER, contract_id="K-BENCH", effective_date=date(2020, 1, 1))],
    )
    mix = []
    for n in range(claims):
        member = f"M-{n % 97}"
        dos_base = date(2026, 1, 5) + timedelta(days=sequence.below(300))
        lines = []
        pointers_codes: list[str] = []
        for number in range(1, 2 + sequence.below(8)):
            code = sequence.pick(procedures)
            prefixes = fit.get(code)
            candidates = [d for d in diagnoses if prefixes is None or d.startswith(tuple(prefixes))] or diagnoses
            diagnosis = sequence.pick(candidates) if sequence.below(10) else sequence.pick(diagnoses)
            if diagnosis not in pointers_codes:
                pointers_codes.append(diagnosis)
            lines.append(
                ClaimLineInput(
                    line_number=number,
                    procedure_code=code,
                    modifiers=[sequence.pick(["59", "26", "XS", "RT"])] if sequence.below(6) == 0 else [],
                    diagnosis_pointers=[pointers_codes.index(diagnosis) + 1],
                    units=1 if sequence.below(4) else 2 + sequence.below(2),
                    billed_cents=5_000 + 250 * sequence.below(400),
                    date_of_service=dos_base + timedelta(days=sequence.below(3)),
                )
            )
        claim = ClaimInput(
            claim_id=f"C-{n}",
            member_id=member,
            provider_id=NPI,
            payer_id=PAYER,
            frequency_code="1",
            diagnosis_codes=pointers_codes,
            lines=lines,
            place_of_service="11",
        )
        earlier = [
            EarlierClaimLine(
                claim_id=f"E-{n}",
                provider_id=NPI,
                date_of_service=line.date_of_service,
                procedure_code=line.procedure_code,
                modifiers=line.modifiers,
                units=line.units,
                voided=sequence.below(2) == 0,
            )
            for line in lines
            if sequence.below(12) == 0
        ]
        facts = Facts(
            received_on=dos_base + timedelta(days=5 + sequence.below(190)),
            member_known=sequence.below(50) != 0,
            coverages=[
                Coverage(member_id=member, payer_id=PAYER, plan_id="PLAN-B", effective_date=date(2025, 1, 1), terms=terms)
            ],
            accumulators=[
                Accumulators(
                    plan_year=2026,
                    deductible_met_cents=1_000 * sequence.below(60),
                    oop_met_cents=10_000 * sequence.below(40),
                    benefit_units={"97110": sequence.below(26)},
                )
            ],
            provider=provider,
            fee_schedule=schedule,
            prior_authorizations=[
                PriorAuthorization(
                    auth_id=f"A-{n}",
                    procedure_code="29881",
                    units=1,
                    valid_from=dos_base - timedelta(days=30),
                    valid_to=dos_base + timedelta(days=30),
                )
            ]
            if sequence.below(2)
            else [],
            earlier_claim_lines=earlier,
        )
        mix.append((claim, facts))
    return mix


def measure_engine(seconds: float = 3.0) -> dict:
    """Adjudicate the generated mix for about `seconds` on one thread; return the rates."""
    ruleset = get_ruleset(RULESET)
    mix = generate_mix()
    lines_per_round = sum(len(claim.lines) for claim, _ in mix)
    claims = lines = 0
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < seconds or claims == 0:
        for claim, facts in mix:
            adjudicate(claim, facts, ruleset)
        claims += len(mix)
        lines += lines_per_round
        elapsed = time.perf_counter() - start
    return {
        "ruleset_version": RULESET,
        "claims": claims,
        "lines": lines,
        "seconds": round(elapsed, 3),
        "claims_per_second": round(claims / elapsed, 1),
        "lines_per_second": round(lines / elapsed, 1),
    }


if __name__ == "__main__":
    print(json.dumps(measure_engine(), indent=2))
