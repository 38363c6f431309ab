"""A member's consent to one provider reading their claim history across providers.

One stream per (member, provider): ``Opened`` once, then ``Granted`` and ``Revoked`` as the member
decides. One grant is in force at a time: a new grant replaces the one before (its scope and
expiry); a revocation ends it for good (a later grant is a new grant, with a new id). A grant
always expires (``expires_at``, at most MAX_LIFETIME after it is given): consent that nobody
renews lapses. The clock is the command's (``now``), never the domain's.

Scopes: ``claim_history`` (the claims: dates, places, diagnoses, services, status) and
``claim_history_with_decisions`` (also what was decided and paid). A provider reads another
provider's claims for the member only under a grant in force (``in_force``); the access is then
recorded naming the grant (``domain.access``).

Payloads are plain fields (member id, provider NPI, grant id, scope, expiry), so that the member's
data in them can be encrypted as any other member data.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from claims_service.domain.ids import make_id
from claims_service.errors import ValidationError

SCOPES = ("claim_history", "claim_history_with_decisions")
MAX_LIFETIME = timedelta(days=366)
MAX_REASON_LENGTH = 500


class Consent(Aggregate):
    """Id from (member_id, provider_id).

    State: ``member_id``, ``provider_id``, ``grant`` (the latest grant: ``{grant_id, scope,
    expires_at, granted_at, revoked, revoked_at, revoke_reason}``, or None before the first).
    """

    class Opened(Aggregate.Created):
        member_id: str
        provider_id: str

        def apply(self, consent: Consent) -> None:
            consent.member_id = self.member_id
            consent.provider_id = self.provider_id
            consent.grant = None

    class Granted(Aggregate.Event):
        actor: str
        grant_id: str
        scope: str
        expires_at: datetime

        def apply(self, consent: Consent) -> None:
            consent.grant = {"grant_id": self.grant_id, "scope": self.scope, "expires_at": self.expires_at,
                             "granted_at": self.timestamp, "revoked": False, "revoked_at": None,
                             "revoke_reason": ""}

    class Revoked(Aggregate.Event):
        actor: str
        grant_id: str
        reason: str

        def apply(self, consent: Consent) -> None:
            consent.grant = {**consent.grant, "revoked": True, "revoked_at": self.timestamp,
                             "revoke_reason": self.reason}

    @staticmethod
    def create_id(member_id: str, provider_id: str) -> UUID:
        return make_id("consent", member_id, provider_id)

    @classmethod
    def open(cls, *, member_id: str, provider_id: str) -> Consent:
        return cls._create(cls.Opened, id=cls.create_id(member_id, provider_id), member_id=member_id,
                           provider_id=provider_id)

    def give(self, *, actor: str, grant_id: str, scope: str, expires_at: datetime, now: datetime) -> None:
        """Grant (or replace the grant in force with) this scope until ``expires_at``."""
        check_scope(scope)
        check_expiry(expires_at, now)
        self.trigger_event(self.Granted, actor=actor, grant_id=grant_id, scope=scope,
                           expires_at=expires_at.astimezone(UTC))

    def revoke(self, *, actor: str, reason: str) -> bool:
        """End the latest grant; False (and no event) when it is revoked already."""
        reason = check_reason(reason)
        if self.grant is None or self.grant["revoked"]:
            return False
        self.trigger_event(self.Revoked, actor=actor, grant_id=self.grant["grant_id"], reason=reason)
        return True

    def in_force(self, now: datetime) -> dict[str, Any] | None:
        """The grant in force at ``now`` (a copy), or None: never granted, revoked or expired."""
        grant = self.grant
        if grant is None or grant["revoked"] or now >= grant["expires_at"]:
            return None
        return dict(grant)


# --- checks (messages never repeat the value) ------------------------------------------------


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise ValidationError.single("scope", f"must be one of {', '.join(SCOPES)}")
    return scope


def check_expiry(expires_at: datetime, now: datetime, field: str = "expires_at") -> None:
    if expires_at.tzinfo is None or expires_at.utcoffset() is None:
        raise ValidationError.single(field, "must be an instant with its UTC offset")
    if expires_at <= now:
        raise ValidationError.single(field, "must be in the future")
    if expires_at - now > MAX_LIFETIME:
        raise ValidationError.single(field, f"must be at most {MAX_LIFETIME.days} days ahead")


def check_reason(reason: str, field: str = "reason", *, required: bool = False) -> str:
    """Stripped; printable; at most MAX_REASON_LENGTH characters."""
    if not isinstance(reason, str):
        raise ValidationError.single(field, "must be a string")
    reason = reason.strip()
    if required and not reason:
        raise ValidationError.single(field, "is required")
    if len(reason) > MAX_REASON_LENGTH:
        raise ValidationError.single(field, f"must be at most {MAX_REASON_LENGTH} characters")
    if not reason.isprintable():
        raise ValidationError.single(field, "must contain printable characters only (no control characters)")
    return reason
