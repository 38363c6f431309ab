"""The authenticator's cache against a key's lifecycle, with a stand-in ledger and clocks: a key
revoked elsewhere stops working within CACHE_SECONDS, one revoked in this process at once, an
expired one at its instant whether cached or not; the cache stays bounded."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from eventsourcing.application import AggregateNotFoundError

from claims_service.api import auth
from claims_service.domain.apikey import ApiKey, new_key, secret_hash
from claims_service.errors import UnauthenticatedError

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


class Ledger:
    """Serves copies of the keys it holds, as a repository would (a revocation elsewhere is not
    seen by an object already loaded); counts the reads."""

    def __init__(self) -> None:
        self.keys: dict[Any, ApiKey] = {}
        self.reads = 0
        self.repository = SimpleNamespace(get=self.get)

    def get(self, aggregate_id: Any) -> ApiKey:
        self.reads += 1
        if aggregate_id not in self.keys:
            raise AggregateNotFoundError(aggregate_id)
        stored = self.keys[aggregate_id]
        copy = object.__new__(ApiKey)
        copy.__dict__.update(stored.__dict__)
        return copy

    def issue(self, expires_at: datetime | None = None) -> tuple[str, ApiKey]:
        key_id, secret, full = new_key()
        key = ApiKey.issue(actor="admin:test", key_id=key_id, role="payer", party_id="PAYER-ACME", label="",
                           secret_sha256=secret_hash(secret), now=NOW, expires_at=expires_at)
        self.keys[key.id] = key
        return full, key


@pytest.fixture
def clocks(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    clocks = SimpleNamespace(monotonic=1000.0, wall=NOW)
    monkeypatch.setattr(auth.time, "monotonic", lambda: clocks.monotonic)
    return clocks


def authenticator(ledger: Ledger, clocks: SimpleNamespace) -> auth.Authenticator:
    return auth.Authenticator(ledger, clock=lambda: clocks.wall)  # type: ignore[arg-type]


def refused(authn: auth.Authenticator, full: str) -> bool:
    try:
        authn.authenticate(f"Bearer {full}")
    except UnauthenticatedError:
        return True
    return False


def test_a_key_revoked_elsewhere_stops_working_within_the_cache_time(clocks):
    ledger = Ledger()
    full, key = ledger.issue()
    authn = authenticator(ledger, clocks)
    assert authn.authenticate(f"Bearer {full}").party_id == "PAYER-ACME"
    key.revoke(actor="admin:test", reason="leaked")  # another process's revocation: no forget() here
    clocks.monotonic += auth.CACHE_SECONDS - 0.1
    assert not refused(authn, full)  # still cached: the bound, not better
    clocks.monotonic += 0.2
    assert refused(authn, full)
    assert auth.CACHE_SECONDS <= 5


def test_a_key_revoked_in_this_process_stops_working_at_once(clocks):
    ledger = Ledger()
    full, key = ledger.issue()
    authn = authenticator(ledger, clocks)
    authn.authenticate(f"Bearer {full}")
    key.revoke(actor="admin:test", reason="leaked")
    authn.forget(key.key_id)
    assert refused(authn, full)


def test_a_lookup_that_overlaps_a_revocation_is_not_cached(clocks):
    """A read that began before the revocation may hold the key as it was: it is used once, not kept."""
    ledger = Ledger()
    full, key = ledger.issue()
    authn = authenticator(ledger, clocks)
    reading, revoked = threading.Event(), threading.Event()
    real_get = ledger.get

    def slow_get(aggregate_id: Any) -> ApiKey:
        found = real_get(aggregate_id)  # as it was before the revocation
        reading.set()
        revoked.wait(5)
        return found

    ledger.repository.get = slow_get
    first = threading.Thread(target=authn.authenticate, args=(f"Bearer {full}",))
    first.start()
    reading.wait(5)
    key.revoke(actor="admin:test", reason="leaked")
    authn.forget(key.key_id)
    revoked.set()
    first.join(5)
    ledger.repository.get = real_get
    assert refused(authn, full)


def test_an_expired_key_is_refused_at_its_instant_even_from_the_cache(clocks):
    ledger = Ledger()
    full, _ = ledger.issue(expires_at=NOW + timedelta(seconds=30))
    authn = authenticator(ledger, clocks)
    assert not refused(authn, full)
    reads = ledger.reads
    clocks.wall = NOW + timedelta(seconds=30)
    assert refused(authn, full)
    assert ledger.reads == reads  # refused from the cached key, by the clock


def test_the_message_does_not_say_which_check_failed(clocks):
    ledger = Ledger()
    full, key = ledger.issue()
    wrong = full[:-4] + ("AAAA" if not full.endswith("AAAA") else "BBBB")
    messages = set()
    for token in (wrong, f"ck_{'0' * 12}_{full.rsplit('_', 1)[1]}"):
        with pytest.raises(UnauthenticatedError) as info:
            authenticator(ledger, clocks).authenticate(f"Bearer {token}")
        messages.add(str(info.value))
    key.revoke(actor="admin:test", reason="x")
    with pytest.raises(UnauthenticatedError) as info:
        authenticator(ledger, clocks).authenticate(f"Bearer {full}")
    messages.add(str(info.value))
    assert len(messages) == 1


def test_the_cache_is_bounded_whatever_ids_clients_make_up(clocks, monkeypatch):
    monkeypatch.setattr(auth, "CACHE_ENTRIES", 50)
    ledger = Ledger()
    authn = authenticator(ledger, clocks)
    for n in range(200):
        assert refused(authn, f"ck_{n:012d}_{'A' * 52}")
    assert len(authn._cache) == 50
