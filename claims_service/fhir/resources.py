"""FHIR R4 resources built from read-model rows: pure functions, no database, no HTTP.

`explanation_of_benefit` shapes one claim as the CARIN Blue Button (2.2.0) professional /
non-clinician ExplanationOfBenefit; `claim_response` as the payer's ClaimResponse to the provider.
Both take a `ClaimRecord`: the claim's `explanation_of_benefits` row (amounts per line, with the
decision's adjustments and remarks), its `claim_status` row (diagnoses, place of service, related
claims) and when it last changed. docs/FHIR.md has the mapping table; in short, per line:

    submitted   billed                     eligible  allowed          benefit  paid
    deductible  PR-1 adjustments           coinsurance  PR-2          copay    PR-3
    noncovered  every CO / OA / PI adjustment but CO-45 (the fee-schedule reduction), i.e. what
                denials and cuts took off
    memberliability  patient responsibility (all PR)

and each adjustment again as an `adjustmentreason` adjudication: its CARC in the X12 CARC code
system, its group code in the text, its amount; each remark (RARC) likewise, without an amount.
A line not yet decided (submitted, or held for review) carries only `submitted` and its reasons.

Money is integer cents in the service and a FHIR decimal here: `money` makes an exact `Decimal`
with two places (never a float), and `dumps` writes it as a JSON number digit for digit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import orjson

from projections.benefits import Eob
from projections.claims import ClaimStatus

FHIR_VERSION = "4.0.1"
JSON_MEDIA_TYPE = "application/fhir+json; fhirVersion=4.0"
CURRENCY = "USD"
CAPABILITIES_DATE = "2026-06-01"  # when what the endpoint serves last changed

CARIN_EOB_PROFILE = ("http://hl7.org/fhir/us/carin-bb/StructureDefinition/"
                     "C4BB-ExplanationOfBenefit-Professional-NonClinician|2.2.0")

# Code systems (CARIN BB 2.2.0's aliases; HL7 terminology; X12; CMS).
HL7_ADJUDICATION = "http://terminology.hl7.org/CodeSystem/adjudication"
C4BB_ADJUDICATION = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBAdjudication"
C4BB_DISCRIMINATOR = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBAdjudicationDiscriminator"
C4BB_PAYER_STATUS = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBPayerAdjudicationStatus"
C4BB_IDENTIFIER_TYPE = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBIdentifierType"
C4BB_SUPPORTING_INFO = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBSupportingInfoType"
C4BB_DIAGNOSIS_TYPE = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBClaimDiagnosisType"
C4BB_RELATED_CLAIM = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBRelatedClaimRelationshipCodes"
HL7_RELATED_CLAIM = "http://terminology.hl7.org/CodeSystem/ex-relatedclaimrelationship"
HL7_DIAGNOSIS_TYPE = "http://terminology.hl7.org/CodeSystem/ex-diagnosistype"
HL7_CLAIM_TYPE = "http://terminology.hl7.org/CodeSystem/claim-type"
HL7_PAYEE_TYPE = "http://terminology.hl7.org/CodeSystem/payeetype"
HL7_PAYMENT_TYPE = "http://terminology.hl7.org/CodeSystem/ex-paymenttype"
X12_CARC = "https://x12.org/codes/claim-adjustment-reason-codes"
X12_RARC = "https://x12.org/codes/remittance-advice-remark-codes"
ICD_10_CM = "http://hl7.org/fhir/sid/icd-10-cm"
CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
PLACE_OF_SERVICE = "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"
US_NPI = "http://hl7.org/fhir/sid/us-npi"

# This service's own identifier namespaces (docs/FHIR.md).
IDENTIFIERS = "https://claims-ledger.local/fhir/sid"
CLAIM_ID_SYSTEM = f"{IDENTIFIERS}/claim-id"
PAYER_ID_SYSTEM = f"{IDENTIFIERS}/payer-id"

# The amount categories of a decided line, in the order they are listed (code system, code, label).
AMOUNTS = {
    "submitted": (HL7_ADJUDICATION, "Submitted Amount"),
    "eligible": (HL7_ADJUDICATION, "Eligible Amount"),
    "deductible": (HL7_ADJUDICATION, "Deductible"),
    "coinsurance": (C4BB_ADJUDICATION, "Co-insurance"),
    "copay": (HL7_ADJUDICATION, "CoPay"),
    "noncovered": (C4BB_ADJUDICATION, "Noncovered"),
    "benefit": (HL7_ADJUDICATION, "Benefit Amount"),
    "memberliability": (C4BB_ADJUDICATION, "Member liability"),
}
COST_SHARES = {"1": "deductible", "2": "coinsurance", "3": "copay"}  # PR-<CARC>
FEE_SCHEDULE_REDUCTION = ("CO", "45")
DECIDED_LINES = frozenset({"paid", "denied"})
PAYMENT_STATUS = {"PAID": "paid", "PARTIALLY_PAID": "partiallypaid", "DENIED": "denied"}


@dataclass(frozen=True, slots=True)
class ClaimRecord:
    """What one claim's resources are built from."""

    eob: Eob
    claim: ClaimStatus | None
    """None while the claim_status read model has not reached the claim (diagnoses, place of
    service and related claims are then left out)."""
    updated: datetime | None
    """When the claim last changed; None before its first decision."""


# --- data types ----------------------------------------------------------------------------------


def money(cents: int) -> dict[str, Any]:
    """FHIR Money for integer cents: an exact two-place Decimal, never a float."""
    return {"value": Decimal(cents).scaleb(-2), "currency": CURRENCY}


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    found = {"system": system, "code": code}
    if display:
        found["display"] = display
    return found


def concept(system: str, code: str, text: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"coding": [coding(system, code)]}
    if text:
        found["text"] = text
    return found


def member_system(payer_id: str) -> str:
    """Member ids are unique within their payer: each payer's are a namespace of their own."""
    return f"{IDENTIFIERS}/payer/{quote(payer_id, safe='')}/member-id"


def is_fhir_id(value: str) -> bool:
    return 1 <= len(value) <= 64 and all(c.isascii() and (c.isalnum() or c in "-.") for c in value)


def patient_reference(payer_id: str, member_id: str) -> dict[str, Any]:
    """The member: by its Patient id (the member id, where it is a valid FHIR id: what
    ``ExplanationOfBenefit?patient=`` searches by) and always by identifier."""
    reference: dict[str, Any] = {}
    if is_fhir_id(member_id):
        reference["reference"] = f"Patient/{member_id}"
    reference["identifier"] = {"system": member_system(payer_id), "value": member_id}
    return reference


def insurer_reference(payer_id: str) -> dict[str, Any]:
    return {"identifier": {"system": PAYER_ID_SYSTEM, "value": payer_id}, "display": payer_id}


def provider_reference(npi: str) -> dict[str, Any]:
    return {"identifier": {"system": US_NPI, "value": npi}}


def icd_10_cm(code: str) -> str:
    """ICD-10-CM as FHIR writes it, with the dot after the category (the service stores it without)."""
    return code if len(code) <= 3 else f"{code[:3]}.{code[3:]}"


def procedure_system(code: str) -> str:
    """CPT (five digits, or four and F, T or U) or HCPCS Level II (a letter and four digits)."""
    return HCPCS if code[:1].isalpha() else CPT


def modifier_system(modifier: str) -> str:
    return CPT if modifier.isdigit() else HCPCS


def instant(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


# --- adjudication -----------------------------------------------------------------------------------


def amounts(line: dict[str, Any]) -> dict[str, int]:
    """A line's amounts by category (cents): `submitted` always; the rest once it is decided."""
    found = {"submitted": line["billed_cents"]}
    if line.get("status") not in DECIDED_LINES:
        return found
    shares = dict.fromkeys(COST_SHARES.values(), 0)
    noncovered = 0
    for adjustment in line.get("adjustments", []):
        group, carc, cents = adjustment["group"], adjustment["carc"], adjustment["amount_cents"]
        if group == "PR":
            if carc in COST_SHARES:
                shares[COST_SHARES[carc]] += cents
        elif (group, carc) != FEE_SCHEDULE_REDUCTION:
            noncovered += cents
    found.update(
        eligible=line["allowed_cents"] or 0,
        **shares,
        noncovered=noncovered,
        benefit=line["paid_cents"] or 0,
        memberliability=line["you_owe_cents"] or 0,
    )
    return {category: found[category] for category in AMOUNTS if category in found}


def amount_adjudication(category: str, cents: int) -> dict[str, Any]:
    system, label = AMOUNTS[category]
    return {"category": concept(system, category, label), "amount": money(cents)}


def reason_adjudications(line: dict[str, Any], pend_reasons: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Each adjustment's CARC (with its group code and amount) and each remark's RARC; a line held
    for review also carries why the claim pends (its pend reasons, remark codes too)."""
    category = concept(C4BB_DISCRIMINATOR, "adjustmentreason", "Adjustment Reason")
    found = [
        {
            "category": category,
            "reason": {"coding": [coding(X12_CARC, a["carc"])], "text": f"{a['group']}-{a['carc']}"},
            "amount": money(a["amount_cents"]),
        }
        for a in line.get("adjustments", [])
    ]
    remarks = list(line.get("remarks", []))
    if line.get("status") == "pended":
        remarks += [reason for reason in pend_reasons if reason not in remarks]
    found += [{"category": category, "reason": {"coding": [coding(X12_RARC, remark)], "text": remark}}
              for remark in remarks]
    return found


def item_adjudication(line: dict[str, Any], claim: ClaimStatus | None, *, carin: bool) -> list[dict[str, Any]]:
    found = [amount_adjudication(category, cents) for category, cents in amounts(line).items()]
    found += reason_adjudications(line, claim.pend_reasons if claim is not None else ())
    if carin:
        # Required by CARIN BB; the read models do not keep the provider's network status.
        found.append({"category": concept(C4BB_DISCRIMINATOR, "benefitpaymentstatus", "Benefit Payment Status"),
                      "reason": concept(C4BB_PAYER_STATUS, "other", "Other")})
    return found


def totals(lines: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The claim's totals per category: the sum over the lines that carry it."""
    summed: dict[str, int] = {}
    for line in lines:
        for category, cents in amounts(line).items():
            summed[category] = summed.get(category, 0) + cents
    return [amount_adjudication(category, summed[category]) for category in AMOUNTS if category in summed]


def outcome(eob: Eob) -> str:
    """queued: nothing decided yet; partial: some lines decided, others held for review (a pended
    claim with denied lines); complete: every line decided."""
    decided = [line.get("status") in DECIDED_LINES for line in eob.lines]
    if all(decided):
        return "complete"
    return "partial" if any(decided) else "queued"


def disposition(eob: Eob) -> str:
    if eob.claim_status == "voided":
        return "Voided by the provider"
    if eob.claim_status == "replaced":
        return "Replaced by a corrected claim"
    return {"PAID": "Paid", "PARTIALLY_PAID": "Partially paid", "DENIED": "Denied",
            "PENDED": "Pended for review"}.get(eob.outcome or "", "Received, not yet adjudicated")


def status(eob: Eob) -> str:
    """A voided or replaced claim's resources are cancelled; every other one is active."""
    return "cancelled" if eob.claim_status in ("voided", "replaced") else "active"


# --- resources ---------------------------------------------------------------------------------


def explanation_of_benefit(record: ClaimRecord) -> dict[str, Any]:
    """The claim's ExplanationOfBenefit, CARIN BB professional / non-clinician (2.2.0)."""
    eob, claim = record.eob, record.claim
    pointers = _pointers(claim)
    resource: dict[str, Any] = {
        "resourceType": "ExplanationOfBenefit",
        "id": eob.claim_id,
        "meta": _meta(record, CARIN_EOB_PROFILE),
        "identifier": [{"type": concept(C4BB_IDENTIFIER_TYPE, "uc", "Unique Claim ID"),
                        "system": CLAIM_ID_SYSTEM, "value": eob.claim_id}],
        "status": status(eob),
        "type": concept(HL7_CLAIM_TYPE, "professional", "Professional"),
        "use": "claim",
        "patient": patient_reference(eob.payer_id, eob.member_id),
        "billablePeriod": _billable_period(eob),
        "created": _created(record),
        "insurer": insurer_reference(eob.payer_id),
        "provider": provider_reference(eob.provider_id),
        "related": _related(claim),
        "payee": {"type": concept(HL7_PAYEE_TYPE, "provider", "Provider"),
                  "party": provider_reference(eob.provider_id)},
        "outcome": outcome(eob),
        "disposition": disposition(eob),
        "supportingInfo": [{"sequence": 1,
                            "category": concept(C4BB_SUPPORTING_INFO, "clmrecvddate", "Claim Received Date"),
                            "timingDate": eob.received_on.isoformat()}],
        "diagnosis": _diagnoses(claim),
        "insurance": [{"focal": True, "coverage": {
            "identifier": {"system": member_system(eob.payer_id), "value": eob.member_id},
            "display": f"coverage with {eob.payer_id}"}}],
        "item": [_item(line, pointers, claim, carin=True) for line in eob.lines],
        "total": totals(eob.lines),
    }
    if eob.outcome in PAYMENT_STATUS:
        resource["payment"] = {"type": concept(C4BB_PAYER_STATUS, PAYMENT_STATUS[eob.outcome]),
                               "amount": money(eob.total_paid_cents or 0)}
    return _without_empty(resource)


def claim_response(record: ClaimRecord) -> dict[str, Any]:
    """The payer's ClaimResponse to the provider for the claim."""
    eob = record.eob
    resource: dict[str, Any] = {
        "resourceType": "ClaimResponse",
        "id": eob.claim_id,
        "meta": _meta(record, None),
        "identifier": [{"system": CLAIM_ID_SYSTEM, "value": eob.claim_id}],
        "status": status(eob),
        "type": concept(HL7_CLAIM_TYPE, "professional", "Professional"),
        "use": "claim",
        "patient": patient_reference(eob.payer_id, eob.member_id),
        "created": _created(record),
        "insurer": insurer_reference(eob.payer_id),
        "requestor": provider_reference(eob.provider_id),
        "request": {"identifier": {"system": CLAIM_ID_SYSTEM, "value": eob.claim_id}},
        "outcome": outcome(eob),
        "disposition": disposition(eob),
        "payeeType": concept(HL7_PAYEE_TYPE, "provider", "Provider"),
        "item": [{"itemSequence": line["line_number"],
                  "adjudication": item_adjudication(line, record.claim, carin=False)} for line in eob.lines],
        "total": totals(eob.lines),
    }
    if eob.outcome in PAYMENT_STATUS:
        whole = all(line.get("status") == "paid" for line in eob.lines)
        resource["payment"] = {"type": concept(HL7_PAYMENT_TYPE, "complete" if whole else "partial"),
                               "amount": money(eob.total_paid_cents or 0)}
    return _without_empty(resource)


# --- parts -------------------------------------------------------------------------------------


def _meta(record: ClaimRecord, profile: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"versionId": str(record.eob.last_position)}
    if record.updated is not None:
        meta["lastUpdated"] = instant(record.updated)
    if profile:
        meta["profile"] = [profile]
    return meta


def _created(record: ClaimRecord) -> str:
    """When the claim was last decided (or voided, or replaced); before that, its received date."""
    return instant(record.updated) if record.updated is not None else record.eob.received_on.isoformat()


def _billable_period(eob: Eob) -> dict[str, str]:
    days = [_day(line["date_of_service"]) for line in eob.lines]
    return {"start": min(days).isoformat(), "end": max(days).isoformat()}


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def _related(claim: ClaimStatus | None) -> list[dict[str, Any]]:
    if claim is None:
        return []
    found = []
    if claim.replaces_claim_id:
        found.append({"relationship": concept(HL7_RELATED_CLAIM, "prior", "Prior Claim"),
                      "reference": {"system": CLAIM_ID_SYSTEM, "value": claim.replaces_claim_id}})
    if claim.replaced_by:
        found.append({"relationship": concept(C4BB_RELATED_CLAIM, "replacedby", "Replaced by"),
                      "reference": {"system": CLAIM_ID_SYSTEM, "value": claim.replaced_by}})
    return found


def _diagnoses(claim: ClaimStatus | None) -> list[dict[str, Any]]:
    if claim is None:
        return []
    return [
        {
            "sequence": number,
            "diagnosisCodeableConcept": {"coding": [coding(ICD_10_CM, icd_10_cm(code))]},
            "type": [concept(HL7_DIAGNOSIS_TYPE, "principal", "Principal Diagnosis") if number == 1
                     else concept(C4BB_DIAGNOSIS_TYPE, "secondary", "Secondary")],
        }
        for number, code in enumerate(claim.diagnosis_codes, start=1)
    ]


def _pointers(claim: ClaimStatus | None) -> dict[int, list[int]]:
    if claim is None:
        return {}
    return {line["line_number"]: list(line.get("diagnosis_pointers") or []) for line in claim.lines}


def _item(line: dict[str, Any], pointers: dict[int, list[int]], claim: ClaimStatus | None, *,
          carin: bool) -> dict[str, Any]:
    code = line["procedure_code"]
    item: dict[str, Any] = {
        "sequence": line["line_number"],
        "diagnosisSequence": pointers.get(line["line_number"], []),
        "productOrService": {"coding": [coding(procedure_system(code), code)]},
        "modifier": [{"coding": [coding(modifier_system(m), m)]} for m in line.get("modifiers", [])],
        "servicedDate": _day(line["date_of_service"]).isoformat(),
        "quantity": {"value": line["units"]},
        "adjudication": item_adjudication(line, claim, carin=carin),
    }
    if claim is not None:
        item["locationCodeableConcept"] = concept(PLACE_OF_SERVICE, claim.place_of_service)
    return item


def _without_empty(resource: dict[str, Any]) -> dict[str, Any]:
    """FHIR forbids empty arrays and objects: drop the top-level ones (and empty item lists)."""
    for item in resource.get("item", []):
        for key in [k for k, v in item.items() if v in ([], {})]:
            del item[key]
    return {key: value for key, value in resource.items() if value not in ([], {}, None)}


# --- other resources ---------------------------------------------------------------------------


def operation_outcome(severity: str, code: str, diagnostics: str, expression: Sequence[str] = ()) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = list(expression)
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def searchset(entries: Sequence[tuple[str, dict[str, Any]]], links: dict[str, str], *,
              total: int | None = None) -> dict[str, Any]:
    """A searchset Bundle of (full URL, resource) entries with its paging links (self, next);
    ``total`` when the caller knows it (a first page with no next one)."""
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        bundle["total"] = total
    bundle["link"] = [{"relation": relation, "url": url} for relation, url in links.items()]
    if entries:
        bundle["entry"] = [{"fullUrl": url, "resource": resource, "search": {"mode": "match"}}
                           for url, resource in entries]
    return bundle


def capability_statement(base_url: str, software_version: str, *, page_size: int, most: int) -> dict[str, Any]:
    """What the endpoint serves: read-only ExplanationOfBenefit and ClaimResponse, JSON, bearer
    API keys (``read`` and ``search-type`` by ``patient`` with ``_count``)."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": CAPABILITIES_DATE,
        "publisher": "claims ledger",
        "kind": "instance",
        "software": {"name": "claims-ledger", "version": software_version},
        "implementation": {"description": "Read-only FHIR R4 explanation of benefits of the claims ledger",
                           "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["json"],
        "implementationGuide": ["http://hl7.org/fhir/us/carin-bb/ImplementationGuide/hl7.fhir.us.carin-bb|2.2.0"],
        "rest": [{
            "mode": "server",
            "documentation": (f"Every request but this one carries 'Authorization: Bearer <api key>'. Search "
                              f"pages hold {page_size} resources unless _count asks for another number (at most "
                              f"{most}); the next page is the 'next' link."),
            "security": {
                "cors": False,
                "description": "Bearer API keys (claimsctl keys create): a payer reads its members' claims, a "
                               "provider its own claims, a dispute team every claim; an admin key none.",
            },
            "resource": [
                {
                    "type": "ExplanationOfBenefit",
                    "supportedProfile": [CARIN_EOB_PROFILE],
                    "interaction": [{"code": "read"}, {"code": "search-type"}],
                    "versioning": "versioned",
                    "readHistory": False,
                    "searchParam": [
                        {"name": "patient", "type": "reference",
                         "definition": "http://hl7.org/fhir/SearchParameter/ExplanationOfBenefit-patient",
                         "documentation": "The member id (Patient/<member id> or the bare id); required"},
                        {"name": "_count", "type": "number",
                         "documentation": f"Resources per page, 1 or more (at most {most} are returned)"},
                    ],
                },
                {"type": "ClaimResponse", "interaction": [{"code": "read"}], "versioning": "versioned",
                 "readHistory": False},
            ],
        }],
    }


def dumps(resource: dict[str, Any], *, indent: bool = False) -> bytes:
    """JSON, with every Decimal written as the number it is, digit for digit (no float on the way)."""
    return orjson.dumps(resource, default=_exact, option=orjson.OPT_INDENT_2 if indent else 0)


def _exact(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value).encode())
    raise TypeError(f"{type(value).__name__} is not JSON")
