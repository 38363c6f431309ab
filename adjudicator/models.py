"""The plain data the engine reads and writes: a claim, the facts gathered for it, and the decision.

The service records `Facts` and `Decision` inside ledger events and replays them years later, so every
model here is frozen and round-trips through JSON (`model_dump(mode="json")` then `model_validate`)
to an equal value. A released field never changes meaning; new fields are added with defaults.

Strictness: integers are strict (a float or a bool is never money or a count), strings are strict,
and dates accept a `date` or the ISO text that `model_dump(mode="json")` writes, nothing else.
Money is integer cents everywhere; coinsurance is integer basis points (2000 = 20 %).

Imports: the standard library and pydantic only.
"""

from __future__ import annotations

from datetime import date
from enum import Enum
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, model_validator


def _iso_date(value: object) -> object:
    # JSON carries dates as ISO text; anything else goes on to the strict date check unchanged.
    if isinstance(value, str):
        return date.fromisoformat(value)
    return value


Day = Annotated[date, Strict(), BeforeValidator(_iso_date)]
Cents = Annotated[int, Strict(), Field(ge=0)]
Count = Annotated[int, Strict(), Field(ge=0)]
BasisPoints = Annotated[int, Strict(), Field(ge=0, le=10_000)]
PlanYear = Annotated[int, Strict(), Field(ge=1900, le=9999)]
Text = Annotated[str, Strict(), Field(min_length=1, max_length=80)]
ProcedureCode = Annotated[str, Strict(), Field(pattern=r"^[A-Z0-9]{5}$")]
Modifier = Annotated[str, Strict(), Field(pattern=r"^[A-Z0-9]{2}$")]
# ICD-10-CM without the dot (FIELD-NOTES "Health-care data").
DiagnosisCode = Annotated[str, Strict(), Field(pattern=r"^[A-Z][0-9A][0-9AB][0-9A-Z]{0,4}$")]
FeeKey = Annotated[str, Strict(), Field(pattern=r"^[A-Z0-9]{5}(:[A-Z0-9]{2})?$")]
GroupCode = Literal["CO", "PR", "OA", "PI"]
ReasonCode = Annotated[str, Strict(), Field(pattern=r"^[A-Z0-9]{1,3}$")]
RemarkCode = Annotated[str, Strict(), Field(pattern=r"^[A-Z0-9]{2,5}$")]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- the claim -------------------------------------------------------------------------------


class ClaimLineInput(_Model):
    """One service line as the provider billed it."""

    line_number: Annotated[int, Strict(), Field(ge=1, le=50)]
    procedure_code: ProcedureCode
    modifiers: list[Modifier] = Field(default_factory=list, max_length=4)
    diagnosis_pointers: list[Annotated[int, Strict(), Field(ge=1)]] = Field(default_factory=list)
    """1-based positions in the claim's `diagnosis_codes`."""
    units: Annotated[int, Strict(), Field(ge=1)]
    billed_cents: Cents
    date_of_service: Day


class ClaimInput(_Model):
    """A submitted claim: who, by whom, for what, and which payer is asked to pay."""

    claim_id: Text
    member_id: Text
    provider_id: Text
    """The billing provider's NPI."""
    payer_id: Text
    frequency_code: Literal["1", "7", "8"]
    """"1" original, "7" replacement of `original_claim_id`, "8" void of it."""
    diagnosis_codes: list[DiagnosisCode]
    lines: list[ClaimLineInput] = Field(min_length=1, max_length=50)
    place_of_service: Annotated[str, Strict(), Field(pattern=r"^[0-9]{2}$")]
    original_claim_id: Text | None = None
    """Added: the claim a replacement ("7") or void ("8") refers to. Its lines are not duplicates."""

    @model_validator(mode="after")
    def _lines_and_pointers_are_consistent(self) -> ClaimInput:
        numbers = [line.line_number for line in self.lines]
        if len(set(numbers)) != len(numbers):
            raise ValueError("line numbers must be unique within a claim")
        count = len(self.diagnosis_codes)
        for line in self.lines:
            if any(pointer > count for pointer in line.diagnosis_pointers):
                raise ValueError(
                    f"line {line.line_number}: a diagnosis pointer is beyond the {count} diagnosis codes"
                )
        return self


# --- the facts -------------------------------------------------------------------------------


class CostShare(_Model):
    copay_cents: Cents
    coinsurance_bp: BasisPoints


class PlanTerms(_Model):
    """The benefit terms of one plan, as enrolled by the administrator."""

    deductible_cents: Cents
    oop_max_cents: Cents
    cost_share: dict[Text, CostShare] = Field(default_factory=dict)
    """Keyed by service category; "default" applies to categories not listed; no entry at all = none."""
    timely_filing_days: Count
    in_network_only: Annotated[bool, Strict()]
    review_threshold_cents: Cents
    non_covered_procedures: list[ProcedureCode] = Field(default_factory=list)
    benefit_limits: dict[ProcedureCode, Count] = Field(default_factory=dict)
    """Procedure code -> most units per plan year."""
    prior_auth_required: list[ProcedureCode] = Field(default_factory=list)


class Coverage(_Model):
    """One coverage period of the member with a payer; both ends inclusive, no end = open."""

    member_id: Text
    payer_id: Text
    plan_id: Text
    effective_date: Day
    termination_date: Day | None = None
    terms: PlanTerms


class Accumulators(_Model):
    """What the member has used in one plan year (a calendar year) before this claim."""

    plan_year: PlanYear
    deductible_met_cents: Cents
    oop_met_cents: Cents
    benefit_units: dict[ProcedureCode, Count] = Field(default_factory=dict)


class Credential(_Model):
    """A licence; valid from `valid_from` to `valid_to` inclusive, unless revoked on or before a date."""

    licence_number: Text
    state: Text
    valid_from: Day
    valid_to: Day
    revoked_on: Day | None = None


class NetworkMembership(_Model):
    """The provider is in `payer_id`'s network from `effective_date` to `end_date` inclusive."""

    payer_id: Text
    contract_id: Text
    effective_date: Day
    end_date: Day | None = None


class ProviderFacts(_Model):
    npi: Text
    credentials: list[Credential] = Field(default_factory=list)
    networks: list[NetworkMembership] = Field(default_factory=list)


class FeeSchedule(_Model):
    """Allowed cents per unit; a "CODE:MODIFIER" price wins over the plain "CODE" price."""

    contract_id: Text
    version: Annotated[int, Strict(), Field(ge=1)]
    effective_date: Day
    fees: dict[FeeKey, Cents]


class PriorAuthorization(_Model):
    auth_id: Text
    procedure_code: ProcedureCode
    units: Count
    valid_from: Day
    valid_to: Day
    units_used: Count = 0
    """Added: units of this authorisation already consumed by earlier claims."""


class EarlierClaimLine(_Model):
    """A line of an earlier claim of the same member (for duplicate detection)."""

    claim_id: Text
    provider_id: Text
    date_of_service: Day
    procedure_code: ProcedureCode
    modifiers: list[Modifier] = Field(default_factory=list)
    units: Annotated[int, Strict(), Field(ge=1)]
    voided: Annotated[bool, Strict()] = False


class Facts(_Model):
    """Everything the service knew when it adjudicated, recorded with the decision."""

    received_on: Day
    member_known: Annotated[bool, Strict()]
    coverages: list[Coverage] = Field(default_factory=list)
    accumulators: list[Accumulators] = Field(default_factory=list)
    """One per plan year, as they stood BEFORE this claim; a missing year means zeros."""
    provider: ProviderFacts | None = None
    fee_schedule: FeeSchedule | None = None
    prior_authorizations: list[PriorAuthorization] = Field(default_factory=list)
    earlier_claim_lines: list[EarlierClaimLine] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_accumulator_per_year(self) -> Facts:
        years = [accumulator.plan_year for accumulator in self.accumulators]
        if len(set(years)) != len(years):
            raise ValueError("accumulators must hold at most one entry per plan year")
        return self


# --- the decision ----------------------------------------------------------------------------


class Adjustment(_Model):
    """A CAS-style adjustment: group code, claim adjustment reason code, amount."""

    group: GroupCode
    carc: ReasonCode
    amount_cents: Cents


class LineResult(_Model):
    """One line's outcome. Balance: billed = paid + patient responsibility + other adjustments."""

    line_number: Annotated[int, Strict(), Field(ge=1, le=50)]
    billed_cents: Cents
    allowed_cents: Cents
    paid_cents: Cents
    patient_responsibility_cents: Cents
    adjustments: list[Adjustment]
    remarks: list[RemarkCode]
    """Remittance advice remark codes (RARC)."""
    status: Literal["paid", "denied", "pended"]

    @model_validator(mode="after")
    def _balances(self) -> LineResult:
        member = sum(a.amount_cents for a in self.adjustments if a.group == "PR")
        other = sum(a.amount_cents for a in self.adjustments if a.group != "PR")
        if member != self.patient_responsibility_cents:
            raise ValueError(f"line {self.line_number}: patient responsibility != sum of PR adjustments")
        if self.billed_cents != self.paid_cents + member + other:
            raise ValueError(f"line {self.line_number}: billed != paid + adjustments")
        return self


class AccumulatorChange(_Model):
    """How much this decision adds to one plan year's accumulators."""

    plan_year: PlanYear
    deductible_cents: Cents
    oop_cents: Cents
    benefit_units: dict[ProcedureCode, Count] = Field(default_factory=dict)


class Outcome(str, Enum):
    PAID = "PAID"
    PARTIALLY_PAID = "PARTIALLY_PAID"
    DENIED = "DENIED"
    PENDED = "PENDED"


class Decision(_Model):
    """The engine's answer for one claim, with the rule set that produced it."""

    claim_id: Text
    outcome: Outcome
    lines: list[LineResult]
    total_billed_cents: Cents
    total_allowed_cents: Cents
    total_paid_cents: Cents
    total_patient_responsibility_cents: Cents
    accumulator_changes: list[AccumulatorChange]
    ruleset_version: Text
    ruleset_hash: Annotated[str, Strict(), Field(pattern=r"^[0-9a-f]{64}$")]

    @model_validator(mode="after")
    def _totals_are_sums_of_lines(self) -> Decision:
        sums = (
            sum(line.billed_cents for line in self.lines),
            sum(line.allowed_cents for line in self.lines),
            sum(line.paid_cents for line in self.lines),
            sum(line.patient_responsibility_cents for line in self.lines),
        )
        totals = (
            self.total_billed_cents,
            self.total_allowed_cents,
            self.total_paid_cents,
            self.total_patient_responsibility_cents,
        )
        if sums != totals:
            raise ValueError("claim totals must be the sums of the line amounts")
        return self
