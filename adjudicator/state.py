"""The engine's working view of one claim while its rules run.

Lives here: `LineState` (one line's open units, the part of its billed amount not yet explained,
its allowed amount and adjustments so far) and `ClaimState` (the lines in line-number order plus the
facts indexed once per claim, so that rules do dictionary look-ups rather than scans).
Rules read this state and never change it; only the engine applies findings (engine.py).

Imports: the standard library and this package's models only.
"""

from __future__ import annotations

from datetime import date

from .models import Accumulators, ClaimInput, ClaimLineInput, Coverage, Facts, PlanTerms, PriorAuthorization

OPEN = "open"
DENIED = "denied"
PENDED = "pended"

DuplicateKey = tuple[str, date, str, tuple[str, ...], int]


class LineState:
    """One line during adjudication. `billed_open` is the billed amount no adjustment explains yet."""

    __slots__ = (
        "line",
        "number",
        "procedure",
        "modifiers",
        "dos",
        "plan_year",
        "coverage",
        "units",
        "billed_open",
        "allowed",
        "status",
        "adjustments",
        "remarks",
        "member_share",
        "deductible",
        "was_cut",
        "pend_reason",
    )

    def __init__(self, line: ClaimLineInput, coverage: Coverage | None) -> None:
        self.line = line
        self.number = line.line_number
        self.procedure = line.procedure_code
        self.modifiers = tuple(line.modifiers)
        self.dos = line.date_of_service
        # The plan year is the calendar year of the date of service.
        self.plan_year = line.date_of_service.year
        self.coverage = coverage
        self.units = line.units
        self.billed_open = line.billed_cents
        self.allowed: int | None = None
        self.status = OPEN
        self.adjustments: list[tuple[str, str, int]] = []
        self.remarks: list[str] = []
        self.member_share = 0
        self.deductible = 0
        self.was_cut = False
        self.pend_reason = None

    @property
    def terms(self) -> PlanTerms | None:
        return None if self.coverage is None else self.coverage.terms

    def duplicate_key(self, provider_id: str) -> DuplicateKey:
        return (provider_id, self.dos, self.procedure, tuple(sorted(self.modifiers)), self.line.units)


class ClaimState:
    """A claim's lines (in line-number order) and its facts, indexed for the rules."""

    __slots__ = (
        "claim",
        "facts",
        "lines",
        "by_number",
        "total_billed",
        "coverages",
        "_accumulators",
        "_earlier_keys",
        "_authorizations",
    )

    def __init__(self, claim: ClaimInput, facts: Facts) -> None:
        self.claim = claim
        self.facts = facts
        # Facts may carry periods of other members or payers; only this member's, with this payer, count.
        self.coverages = tuple(
            sorted(
                (
                    coverage
                    for coverage in facts.coverages
                    if coverage.payer_id == claim.payer_id and coverage.member_id == claim.member_id
                ),
                key=lambda coverage: (coverage.effective_date, coverage.plan_id),
            )
        )
        self.lines = [
            LineState(line, self._coverage_on(line.date_of_service))
            for line in sorted(claim.lines, key=lambda line: line.line_number)
        ]
        self.by_number = {line.number: line for line in self.lines}
        self.total_billed = sum(line.billed_cents for line in claim.lines)
        self._accumulators: dict[int, Accumulators] | None = None
        self._earlier_keys: frozenset[DuplicateKey] | None = None
        self._authorizations: dict[str, list[tuple[int, PriorAuthorization]]] | None = None

    def _coverage_on(self, day: date) -> Coverage | None:
        found = None
        # Overlapping periods: the one that began last wins (sorted, so the last match).
        for coverage in self.coverages:
            if coverage.effective_date <= day and (
                coverage.termination_date is None or day <= coverage.termination_date
            ):
                found = coverage
        return found

    def open_lines(self) -> list[LineState]:
        return [line for line in self.lines if line.status is OPEN]

    # The indexes below are built on first use: most claims never need some of them.

    def accumulators(self, plan_year: int) -> tuple[int, int]:
        """(deductible met, out-of-pocket met) before this claim; a missing year is zeros."""
        entry = self._accumulator_index().get(plan_year)
        return (0, 0) if entry is None else (entry.deductible_met_cents, entry.oop_met_cents)

    def benefit_units_used(self, plan_year: int, procedure: str) -> int:
        entry = self._accumulator_index().get(plan_year)
        return 0 if entry is None else entry.benefit_units.get(procedure, 0)

    def _accumulator_index(self) -> dict[int, Accumulators]:
        if self._accumulators is None:
            self._accumulators = {entry.plan_year: entry for entry in self.facts.accumulators}
        return self._accumulators

    def earlier_line_keys(self) -> frozenset[DuplicateKey]:
        """Keys of earlier claim lines a line of this claim would duplicate.

        Voided lines do not count; nor do lines of this same claim (a re-run after a pend) or, for a
        replacement, of the claim it replaces.
        """
        if self._earlier_keys is None:
            excluded = {self.claim.claim_id}
            if self.claim.frequency_code == "7" and self.claim.original_claim_id is not None:
                excluded.add(self.claim.original_claim_id)
            self._earlier_keys = frozenset(
                (
                    earlier.provider_id,
                    earlier.date_of_service,
                    earlier.procedure_code,
                    tuple(sorted(earlier.modifiers)),
                    earlier.units,
                )
                for earlier in self.facts.earlier_claim_lines
                if not earlier.voided and earlier.claim_id not in excluded
            )
        return self._earlier_keys

    def authorizations(self, procedure: str) -> list[tuple[int, PriorAuthorization]]:
        """(position in the facts, authorisation) for `procedure`, earliest first."""
        if self._authorizations is None:
            index: dict[str, list[tuple[int, PriorAuthorization]]] = {}
            for position, auth in enumerate(self.facts.prior_authorizations):
                index.setdefault(auth.procedure_code, []).append((position, auth))
            for entries in index.values():
                entries.sort(key=lambda entry: (entry[1].valid_from, entry[1].auth_id, entry[0]))
            self._authorizations = index
        return self._authorizations.get(procedure, [])
