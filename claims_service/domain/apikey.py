"""API keys: a credential maps to a principal (role + party). Only a hash of the secret is kept.

A key reads `ck_<key_id>_<secret>`. The key id names the stream; the secret (32 random bytes,
base32) is never stored: the ledger keeps SHA-256 of it, and the service compares hashes in
constant time. Issuing a key is an event like any other, so who may act is itself on the record.

Lifecycle: a key may be issued with an expiry (`expires_at`, at most MAX_LIFETIME ahead of its
issue) and revoked at any time; either ends it for good. `expires_at` was added to `Issued` after
the first keys were issued: their events do not carry it and read as never expiring (the
attribute's class default), so the bytes already hashed into the ledger never change. Revoking a
revoked key writes nothing: the first revocation stands.

A key acts for a party: a provider by NPI, a payer by payer id, a member by member id (the member
reads their own claims, grants consent and reads who read their data). The party id is checked as it is
given (no trimming): a control character or surrounding whitespace would make a principal that
no claim, member or contract ever names. Whether the party exists is a question of the ledger,
for the command (`Commands.create_api_key`).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta
from uuid import UUID

from eventsourcing.domain import Aggregate

from claims_service.domain.formats import MAX_IDENTIFIER_LENGTH, is_npi
from claims_service.domain.ids import make_id
from claims_service.errors import ValidationError

ROLES = ("provider", "payer", "dispute", "admin", "member")
MAX_LIFETIME = timedelta(days=400)
"""The furthest ahead a key may expire: a year's rotation and some slack. (A key issued without
an expiry never expires; one with an expiry further out is more likely a typo than a plan.)"""
MAX_LABEL_LENGTH = 500
MAX_REASON_LENGTH = 500
KEY_ID_RE = re.compile(r"^[a-z0-9]{12}$")


class ApiKey(Aggregate):
    """Id from ``key_id``.

    State: ``key_id``, ``issued_by``, ``role``, ``party_id``, ``label``, ``secret_sha256``, ``expires_at``
    (an aware UTC datetime, or None: never), ``revoked``, ``revoked_at``, ``revoke_reason``.
    """

    class Issued(Aggregate.Created):
        actor: str
        key_id: str
        role: str
        party_id: str
        label: str
        secret_sha256: str
        expires_at: datetime | None = None  # absent from keys issued before expiry existed

        def apply(self, key: ApiKey) -> None:
            key.key_id = self.key_id
            key.issued_by = self.actor
            key.role = self.role
            key.party_id = self.party_id
            key.label = self.label
            key.secret_sha256 = self.secret_sha256
            key.expires_at = self.expires_at
            key.revoked = False
            key.revoked_at = None
            key.revoke_reason = ""

    class Revoked(Aggregate.Event):
        actor: str
        reason: str

        def apply(self, key: ApiKey) -> None:
            key.revoked = True
            key.revoked_at = self.timestamp
            key.revoke_reason = self.reason

    @staticmethod
    def create_id(key_id: str) -> UUID:
        return make_id("api-key", key_id)

    @classmethod
    def issue(cls, *, actor: str, key_id: str, role: str, party_id: str, label: str, secret_sha256: str,
              now: datetime, expires_at: datetime | None = None) -> ApiKey:
        """A new key; `now` is the issuing command's clock (the domain reads none)."""
        if role not in ROLES:
            raise ValidationError.single("role", f"must be one of {', '.join(ROLES)}")
        check_party_id(role, party_id)
        label = check_text(label, "label", MAX_LABEL_LENGTH, required=False)
        if expires_at is not None:
            check_expiry(expires_at, now)
            expires_at = expires_at.astimezone(UTC)
        return cls._create(
            cls.Issued, id=cls.create_id(key_id), actor=actor, key_id=key_id, role=role,
            party_id=party_id, label=label, secret_sha256=secret_sha256, expires_at=expires_at,
        )

    def revoke(self, *, actor: str, reason: str) -> bool:
        """Revoke; False (and no event) when the key is revoked already: the first revocation stands."""
        reason = check_reason(reason)
        if self.revoked:
            return False
        self.trigger_event(self.Revoked, actor=actor, reason=reason)
        return True

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def usable(self, now: datetime) -> bool:
        """Neither revoked nor expired at `now`."""
        return not self.revoked and not self.expired(now)

    @property
    def principal(self) -> str:
        return f"{self.role}:{self.party_id or 'team'}"


# --- checks (messages never repeat the value: it goes back to the caller and to the log) -------------


def check_party_id(role: str, party_id: str) -> None:
    """The party's id as the key will carry it: an NPI for a provider, a printable payer id or
    member id without surrounding whitespace for a payer or a member, nothing for the dispute team
    and admins."""
    field = "party_id"
    if not isinstance(party_id, str):
        raise ValidationError.single(field, "must be a string")
    if role in ("dispute", "admin"):
        if party_id:
            raise ValidationError.single(field, f"must be empty for a {role} key")
        return
    if not party_id:
        raise ValidationError.single(field, f"is required for a {role} key")
    if len(party_id) > MAX_IDENTIFIER_LENGTH:
        raise ValidationError.single(field, f"must be at most {MAX_IDENTIFIER_LENGTH} characters")
    if not party_id.isprintable():
        raise ValidationError.single(field, "must contain printable characters only (no control characters)")
    if party_id != party_id.strip():
        raise ValidationError.single(field, "must not begin or end with whitespace")
    if role == "provider" and not is_npi(party_id):
        raise ValidationError.single(field, "must be the provider's NPI (10 digits with a valid check digit)")


def check_key_id(key_id: str) -> str:
    if not isinstance(key_id, str) or not key_id:
        raise ValidationError.single("key_id", "is required")
    if not KEY_ID_RE.match(key_id):
        raise ValidationError.single("key_id", "must be a key id as issued (12 lower-case letters or digits)")
    return key_id


def check_reason(reason: str) -> str:
    return check_text(reason, "reason", MAX_REASON_LENGTH, required=True)


def check_text(value: str, field: str, max_length: int, *, required: bool) -> str:
    """Stripped; no control characters; at most `max_length` characters."""
    if not isinstance(value, str):
        raise ValidationError.single(field, "must be a string")
    value = value.strip()
    if required and not value:
        raise ValidationError.single(field, "is required")
    if len(value) > max_length:
        raise ValidationError.single(field, f"must be at most {max_length} characters")
    if not value.isprintable():
        raise ValidationError.single(field, "must contain printable characters only (no control characters)")
    return value


def check_expiry(expires_at: datetime, now: datetime, field: str = "expires_at") -> None:
    if expires_at.tzinfo is None or expires_at.utcoffset() is None:
        raise ValidationError.single(field, "must be an instant with its UTC offset")
    if expires_at <= now:
        raise ValidationError.single(field, "must be in the future")
    if expires_at - now > MAX_LIFETIME:
        raise ValidationError.single(field, f"must be at most {MAX_LIFETIME.days} days ahead")


def new_key() -> tuple[str, str, str]:
    """A fresh (key_id, secret, full key)."""
    key_id = secrets.token_hex(6)
    secret = base64.b32encode(secrets.token_bytes(32)).decode().rstrip("=")
    return key_id, secret, f"ck_{key_id}_{secret}"


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
