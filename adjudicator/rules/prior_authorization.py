"""Prior authorisation: a procedure the plan lists in `prior_auth_required` needs an authorisation.

No authorisation for the procedure valid on the date of service (valid_from and valid_to inclusive):
the line is denied `absent` (CO-197). Otherwise its units are drawn from the valid authorisations,
earliest first, each holding `units - units_used` (units used by earlier claims) less what earlier
lines of this claim drew; units beyond that are cut `exceeded` (CO-198), and a line with no units left
to draw is denied by that cut.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..findings import Finding, Reason, reasons_reader
from ..models import ClaimInput, Facts
from ..ruleset import Rule
from ..state import ClaimState


@dataclass(frozen=True, slots=True)
class PriorAuthorizationParams:
    absent: Reason
    exceeded: Reason


def prior_authorization(
    claim: ClaimInput, facts: Facts, params: PriorAuthorizationParams, state: ClaimState
) -> list[Finding]:
    left: dict[int, int] = {}
    findings = []
    for line in state.open_lines():
        terms = line.terms
        if terms is None or line.procedure not in terms.prior_auth_required:
            continue
        valid = [
            (position, auth)
            for position, auth in state.authorizations(line.procedure)
            if auth.valid_from <= line.dos <= auth.valid_to
        ]
        if not valid:
            findings.append(Finding.deny(line.number, params.absent))
            continue
        needed = line.units
        for position, auth in valid:
            available = left.get(position, max(0, auth.units - auth.units_used))
            drawn = min(available, needed)
            left[position] = available - drawn
            needed -= drawn
        if needed:
            findings.append(Finding.cut(line.number, needed, params.exceeded))
    return findings


RULE = Rule("prior_authorization", prior_authorization, reasons_reader(PriorAuthorizationParams))
