"""Which fields of the events are member data (PHI), sealed under the member's own data key.

A stream belongs to a member when its first event names one (a ``member_id`` field): claims,
coverage, benefit periods, visits, and whatever later aggregate records a member's data the same
way. Every event of such a stream is stored with its member data encrypted under that member's
data key (``claims_service.keys``), so that destroying the key erases the data while the stored
bytes, and every hash and proof over them, stay as they are (docs/LEDGER.md, "Member data keys").

What stays readable is listed here, event by event (``PLAIN``): what reconciliation and the
payers' books need after an erasure (amounts, the decision's lines and adjustment codes, plan
years, plan terms, claim and payment ids), who acted (``actor``: a provider's NPI, a payer, a
system), and the parties (provider NPI, payer id). Everything else of a member's event is sealed:
the member id, diagnoses, procedures, dates of service and of coverage, places of service, free
text (reasons, notes), recorded facts, idempotency keys and body hashes. An event of a member's
stream that is not listed here (one added later) is sealed whole but for ``actor`` and the
library's own fields: a new event is private until someone decides otherwise.

``SEALED_WITHIN`` takes member data out of a readable field: the procedures a decision's
accumulator changes count (``benefit_units``), which the money does not need.

Changing what an event seals changes only the events written afterwards (each stored payload says
what it sealed); the classification is a privacy decision, recorded here in one place.
"""

from __future__ import annotations

from claims_service.domain.benefits import BenefitPeriod
from claims_service.domain.claim import Claim
from claims_service.domain.member import MemberCoverage
from claims_service.domain.visit import Visit

MEMBER_FIELD = "member_id"
"""A stream whose first event has this field belongs to the member it names."""

LIBRARY_FIELDS = frozenset({"timestamp", "originator_topic", "class_version"})
"""The eventsourcing library's own fields of a stored event: never member data."""

ALWAYS_PLAIN = LIBRARY_FIELDS | {"actor"}

PLAIN: dict[type, frozenset[str]] = {
    # A claim: its parties, its frequency and the claim it replaces; not the member, the visit,
    # the diagnoses, the lines (procedures, dates of service) nor the received date.
    Claim.Submitted: frozenset({"claim_id", "provider_id", "payer_id", "frequency_code", "replaces_claim_id"}),
    # Decisions: the decision (money per line, adjustment and remark codes, accumulator changes)
    # and the rule set; not the recorded facts (coverage, history, prior authorisations).
    Claim.Adjudicated: frozenset({"decision", "ruleset_version", "ruleset_hash"}),
    Claim.Pended: frozenset({"decision", "ruleset_version", "ruleset_hash", "pend_reasons"}),
    Claim.ReviewResolved: frozenset({"decision", "reviewer"}),
    Claim.DisputeResolved: frozenset({"dispute_id", "resolution", "decision"}),
    Claim.DisputeOpened: frozenset({"dispute_id", "opened_by"}),
    Claim.Corrected: frozenset({"replacement_claim_id", "frequency_code"}),
    Claim.Voided: frozenset({"frequency_code"}),
    # An attachment: its id, size and media type; its hash (which could confirm a guess of the
    # document) is sealed.
    Claim.AttachmentAdded: frozenset({"attachment_id", "size_bytes", "media_type"}),
    # Coverage: the payer, the plan and its terms (deductible, out-of-pocket maximum, cost
    # shares: the plan's, not the member's); not the member id nor the coverage dates.
    MemberCoverage.Enrolled: frozenset({"payer_id", "plan_id", "terms"}),
    MemberCoverage.Changed: frozenset({"plan_id", "terms"}),
    MemberCoverage.Terminated: frozenset(),
    MemberCoverage.PriorAuthorized: frozenset({"auth_id"}),
    # Accumulators: the money of each claim on the period; not the procedures it counts.
    BenefitPeriod.Opened: frozenset({"payer_id", "plan_year"}),
    BenefitPeriod.ClaimApplied: frozenset({"claim_id", "deductible_cents", "oop_cents"}),
    BenefitPeriod.ClaimReversed: frozenset({"claim_id", "reason"}),
    # A visit: the parties only.
    Visit.Recorded: frozenset({"provider_id", "payer_id"}),
}

# Events of the members' own records (domain/access.py, domain/consent.py), by topic: the API key
# and parties that acted, the payers to notify, what was read (ids) and under which grant, the
# consent's grant, scope and expiry stay readable; the member, reasons and notes are sealed.
PLAIN_BY_TOPIC: dict[str, frozenset[str]] = {
    "claims_service.domain.access:MemberAccess.Recorded": frozenset({"key_id", "method", "resources", "grant"}),
    "claims_service.domain.access:EmergencyAccess.Declared": frozenset({"key_id", "provider_id", "payer_ids"}),
    "claims_service.domain.consent:Consent.Opened": frozenset({"provider_id"}),
    "claims_service.domain.consent:Consent.Granted": frozenset({"grant_id", "scope", "expires_at"}),
    "claims_service.domain.consent:Consent.Revoked": frozenset({"grant_id"}),
}

MEMBER_ACTOR = "member:"
"""An ``actor`` naming a member (the member acting themself) is sealed with the rest."""

_DECISION = ("decision/accumulator_changes/*/benefit_units",)
SEALED_WITHIN: dict[type, tuple[str, ...]] = {
    Claim.Adjudicated: _DECISION,
    Claim.Pended: _DECISION,
    Claim.ReviewResolved: _DECISION,
    Claim.DisputeResolved: _DECISION,
}


def plain_fields(event_class: type, topic: str = "") -> frozenset[str]:
    """The fields of an event of a member's stream that stay readable (``actor`` too, unless it
    names a member: the caller checks `MEMBER_ACTOR`)."""
    return ALWAYS_PLAIN | PLAIN.get(event_class, PLAIN_BY_TOPIC.get(topic, frozenset()))
