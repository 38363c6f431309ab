"""API keys: a credential maps to a principal (role + party). Only a hash of the secret is kept.

A key reads `ck_<key_id>_<secret>`. The key id names the stream; the secret (32 random bytes,
base32) is never stored: the ledger keeps SHA-256 of it, and the service compares hashes in
constant time. Issuing a key is an event like any other, so who may act is itself on the record.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from uuid import UUID

from eventsourcing.domain import Aggregate

from claims_service.domain.ids import make_id
from claims_service.errors import StateError, ValidationError

ROLES = ("provider", "payer", "dispute", "admin")


class ApiKey(Aggregate):
    class Issued(Aggregate.Created):
        actor: str
        key_id: str
        role: str
        party_id: str
        label: str
        secret_sha256: str

        def apply(self, key: ApiKey) -> None:
            key.key_id = self.key_id
            key.role = self.role
            key.party_id = self.party_id
            key.label = self.label
            key.secret_sha256 = self.secret_sha256
            key.revoked = False

    class Revoked(Aggregate.Event):
        actor: str
        reason: str

        def apply(self, key: ApiKey) -> None:
            key.revoked = True

    @staticmethod
    def create_id(key_id: str) -> UUID:
        return make_id("api-key", key_id)

    @classmethod
    def issue(cls, *, actor: str, key_id: str, role: str, party_id: str, label: str, secret_sha256: str) -> ApiKey:
        if role not in ROLES:
            raise ValidationError.single("role", f"must be one of {', '.join(ROLES)}")
        if role in ("provider", "payer") and not party_id:
            raise ValidationError.single("party_id", f"is required for a {role} key")
        if role in ("dispute", "admin") and party_id:
            raise ValidationError.single("party_id", f"must be empty for a {role} key")
        if len(label) > 200:
            raise ValidationError.single("label", "must be at most 200 characters")
        return cls._create(
            cls.Issued, id=cls.create_id(key_id), actor=actor, key_id=key_id, role=role,
            party_id=party_id, label=label, secret_sha256=secret_sha256,
        )

    def revoke(self, *, actor: str, reason: str) -> None:
        if self.revoked:
            raise StateError("this key is already revoked")
        self.trigger_event(self.Revoked, actor=actor, reason=reason)

    @property
    def principal(self) -> str:
        return f"{self.role}:{self.party_id or 'team'}"


def new_key() -> tuple[str, str, str]:
    """A fresh (key_id, secret, full key)."""
    key_id = secrets.token_hex(6)
    secret = base64.b32encode(secrets.token_bytes(32)).decode().rstrip("=")
    return key_id, secret, f"ck_{key_id}_{secret}"


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
