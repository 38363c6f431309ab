"""Authentication and authorisation: bearer API keys → principals → allowed services.

Trust boundary: everything a client sends is untrusted until a key checks out. A key is looked up
by its id and its secret's SHA-256 is compared in constant time (`hmac.compare_digest`). Lookups
are cached briefly so a busy client does not cost a database read per call. A key revoked through
this process's commands is forgotten at once (`forget`, called by `Commands.revoke_api_key`); one
revoked by another process (another server, `claimsctl keys revoke`) stops working within
CACHE_SECONDS. Expiry is checked against the clock at every call, cached or not.
"""

from __future__ import annotations

import hmac
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from eventsourcing.application import AggregateNotFoundError

from claims_service.application import LedgerApplication
from claims_service.domain.apikey import ApiKey, secret_hash
from claims_service.errors import PermissionDeniedError, UnauthenticatedError

CACHE_SECONDS = 2.0
CACHE_ENTRIES = 10_000  # ids looked up lately, known or not: bounded, whatever ids clients make up
KEY_FORMAT = re.compile(r"^ck_([a-z0-9]{12})_([A-Z2-7]{52})$")

# Which role may call which service. The ledger's proofs are public to any authenticated caller
# (a member exports only their own claims' bundles); health and reflection need no credential
# (probes and tooling).
SERVICE_ROLES = {
    "claims.v1.ProviderService": {"provider"},
    "claims.v1.PayerService": {"payer"},
    "claims.v1.DisputeService": {"dispute"},
    "claims.v1.AdminService": {"admin"},
    "claims.v1.AttachmentService": {"provider", "payer", "dispute"},  # tenancy per claim: api/attachment.py
    "claims.v1.MemberService": {"member"},
    "claims.v1.LedgerService": {"provider", "payer", "dispute", "admin", "member"},
}
PUBLIC_SERVICES = {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection"}


@dataclass(frozen=True)
class Principal:
    role: str
    party_id: str
    key_id: str

    @property
    def actor(self) -> str:
        """How events record who caused them: "provider:1234567893", "admin:team"."""
        return f"{self.role}:{self.party_id or 'team'}"


class Authenticator:
    def __init__(self, ledger: LedgerApplication, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._ledger = ledger
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, ApiKey | None]] = OrderedDict()
        self._forgotten = 0  # counts `forget` calls: a lookup that overlapped one is not cached
        self._lock = threading.Lock()

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise UnauthenticatedError("missing credential: send 'authorization: Bearer <api key>'")
        scheme, _, token = authorization.partition(" ")
        match = KEY_FORMAT.match(token.strip()) if scheme.lower() == "bearer" else None
        if not match:
            raise UnauthenticatedError("malformed credential: expected 'Bearer ck_<id>_<secret>'")
        key_id, secret = match.groups()
        key = self._lookup(key_id)
        # Compare even when the key is unknown, so timing does not tell known ids from unknown ones.
        expected = key.secret_sha256 if key is not None else "0" * 64
        if not hmac.compare_digest(expected, secret_hash(secret)) or key is None or not key.usable(self._clock()):
            raise UnauthenticatedError("invalid, expired or revoked API key")
        return Principal(role=key.role, party_id=key.party_id, key_id=key.key_id)

    def forget(self, key_id: str) -> None:
        """Drop what is cached of a key (it was just revoked): its next call reads the ledger."""
        with self._lock:
            self._cache.pop(key_id, None)
            self._forgotten += 1

    def _lookup(self, key_id: str) -> ApiKey | None:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key_id)
            forgotten = self._forgotten
        if cached and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        try:
            key: ApiKey | None = self._ledger.repository.get(ApiKey.create_id(key_id))
        except AggregateNotFoundError:
            key = None
        with self._lock:
            # A key forgotten while it was being read may have been read before its revocation.
            if self._forgotten == forgotten:
                self._cache[key_id] = (now, key)
                self._cache.move_to_end(key_id)
                while len(self._cache) > CACHE_ENTRIES:
                    self._cache.popitem(last=False)
        return key


def authorize(principal: Principal, service: str) -> None:
    allowed = SERVICE_ROLES.get(service)
    if allowed is None or principal.role not in allowed:
        raise PermissionDeniedError(f"role {principal.role} may not call {service}")
