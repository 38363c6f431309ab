"""Provider: the billing provider must be licensed, and in network when the plan requires it.

No credential valid on the date of service (valid_from <= DOS <= valid_to, and not revoked on or
before the DOS), or no provider facts for the claim's NPI: `no_valid_licence` (CO-B7).
The plan is `in_network_only` and the provider is in no network of this payer on the DOS (effective
and end dates inclusive): `out_of_network` (CO-242).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from ..findings import Finding, Reason, reasons_reader
from ..models import ClaimInput, Credential, Facts, NetworkMembership
from ..ruleset import Rule
from ..state import ClaimState


@dataclass(frozen=True, slots=True)
class ProviderParams:
    no_valid_licence: Reason
    out_of_network: Reason


def licensed_on(credential: Credential, day: date) -> bool:
    if credential.revoked_on is not None and credential.revoked_on <= day:
        return False
    return credential.valid_from <= day <= credential.valid_to


def in_network_on(membership: NetworkMembership, payer_id: str, day: date) -> bool:
    return (
        membership.payer_id == payer_id
        and membership.effective_date <= day
        and (membership.end_date is None or day <= membership.end_date)
    )


def provider(claim: ClaimInput, facts: Facts, params: ProviderParams, state: ClaimState) -> list[Finding]:
    known = facts.provider if facts.provider is not None and facts.provider.npi == claim.provider_id else None
    findings = []
    for line in state.open_lines():
        if known is None or not any(licensed_on(credential, line.dos) for credential in known.credentials):
            findings.append(Finding.deny(line.number, params.no_valid_licence))
            continue
        terms = line.terms
        if (
            terms is not None
            and terms.in_network_only
            and not any(in_network_on(membership, claim.payer_id, line.dos) for membership in known.networks)
        ):
            findings.append(Finding.deny(line.number, params.out_of_network))
    return findings


RULE = Rule("provider", provider, reasons_reader(ProviderParams))
