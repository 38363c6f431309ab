"""The rows behind the FHIR resources, and who may read them.

Who reads what (the same tenancy as gRPC; docs/FHIR.md):

- a **payer** key: the claims of its members (the claim's payer is the key's party);
- a **provider** key: its own claims (the claim's billing NPI is the key's party);
- a **dispute** key: every claim, as `DisputeService` reads every claim's history;
- a **member** key: the member's own claims (the claim's member id is the key's party); a search
  for another member id finds nothing;
- an **admin** key: none (PERMISSION_DENIED): administrators manage keys, parties and rule sets,
  and have no business reading members' claims.

Another party's claim is NOT_FOUND exactly like a missing one (the queries filter by party, so
both take the same path); so is an id that is no claim id at all.

Every resource served is recorded in its member's access log before it is (``api.access``), as
the gRPC reads are: the interaction ("fhir ExplanationOfBenefit", "fhir ClaimResponse") and the
claims, under the reader's grant. ``unrestricted`` (the operator's ``claimsctl fhir``, reading the
database itself) records nothing.

Each resource needs three reads of the read models, batched for a page: the claim's
`explanation_of_benefits` row (which the tenancy filters), its `claim_status` row (diagnoses,
place of service, related claims) and the time of its latest change (the payers' notices).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from claims_service.api.access import AccessLog
from claims_service.api.auth import Principal
from claims_service.errors import ClaimNotFoundError, PermissionDeniedError
from claims_service.fhir.resources import ClaimRecord
from projections.benefits import Eob, explanation_of_benefits, patient_eobs
from projections.claims import change_times, claims_by_id
from projections.reading import Source

READERS = ("payer", "provider", "dispute", "member")


def visibility(principal: Principal) -> dict[str, str | None]:
    """The party filter of a principal's reads; PERMISSION_DENIED for a role that reads none."""
    if principal.role == "payer":
        return {"payer_id": principal.party_id, "provider_id": None}
    if principal.role == "provider":
        return {"payer_id": None, "provider_id": principal.party_id}
    if principal.role == "dispute":
        return {"payer_id": None, "provider_id": None}
    if principal.role == "member":
        return {"payer_id": None, "provider_id": None, "member_id": principal.party_id}
    raise PermissionDeniedError(f"role {principal.role} may not read claims; the FHIR endpoint serves "
                                f"{', '.join(READERS)} keys")


def canonical_claim_id(resource_id: str) -> str:
    """The claim id a resource id names; NOT_FOUND unless it is a claim id exactly as the service
    spells them (FHIR ids are case-sensitive: an upper-case spelling names no resource)."""
    try:
        claim_id = str(UUID(resource_id))
    except (ValueError, TypeError, AttributeError):
        claim_id = None
    if claim_id != resource_id:
        raise ClaimNotFoundError("no such claim")
    return claim_id


@dataclass(frozen=True, slots=True)
class RecordPage:
    records: list[ClaimRecord]
    next_page_token: str  # "" on the last page


class Records:
    """Reads claim records for a principal from the read models (a pool or a connection), each
    recorded in its member's access log through ``access`` (None: recorded nowhere)."""

    def __init__(self, source: Source, access: AccessLog | None = None) -> None:
        self.source = source
        self.access = access

    def claim(self, resource_id: str, principal: Principal, kind: str = "ExplanationOfBenefit") -> ClaimRecord:
        party = visibility(principal)
        eob = explanation_of_benefits(self.source, canonical_claim_id(resource_id), **party)
        records = self.records([eob])
        self._accessed(principal, f"fhir {kind}", [eob], "eob" if kind == "ExplanationOfBenefit" else "claim")
        return records[0]

    def patient(self, member_id: str, principal: Principal, *, page_size: int, page_token: str | None) -> RecordPage:
        party = visibility(principal)
        own = party.pop("member_id", None)
        if own is not None and member_id != own:
            member_id = ""  # another member's id: nothing found, as for a member id nobody has
        page = patient_eobs(self.source, member_id, **party, page_size=page_size, page_token=page_token)
        records = self.records(page.eobs)
        self._accessed(principal, "fhir ExplanationOfBenefit", page.eobs, "eob")
        return RecordPage(records, page.next_page_token)

    def _accessed(self, principal: Principal, interaction: str, eobs: Sequence[Eob], kind: str) -> None:
        if self.access is not None:
            self.access.record(principal, interaction, [(eob.member_id, f"{kind}:{eob.claim_id}") for eob in eobs])

    def records(self, eobs: Sequence[Eob]) -> list[ClaimRecord]:
        """The EOB rows with their claims and change times (two reads for any number of rows)."""
        if not eobs:
            return []
        claims = claims_by_id(self.source, [eob.claim_id for eob in eobs])
        times = change_times(self.source, [eob.last_position for eob in eobs])
        return [ClaimRecord(eob, claims.get(eob.claim_id), times.get(eob.last_position)) for eob in eobs]


def unrestricted(source: Source, claim_id: str) -> ClaimRecord:
    """One claim's record with no party filter: for the operator's `claimsctl fhir`, who reads the
    database itself."""
    eob = explanation_of_benefits(source, canonical_claim_id(claim_id))
    return Records(source).records([eob])[0]
