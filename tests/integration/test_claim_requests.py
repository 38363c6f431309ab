"""Claim ids in the order claims arrive, and retries that still find their claim (migration 0027):
a new claim's id is a UUIDv7; the uuid5 of its provider and idempotency key, its request id, is
recorded beside it in the same transaction, and a retry finds the claim by it."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import psycopg
import pytest

from claims_service.adjudication import AdjudicationFollower
from claims_service.domain import claim as claim_module
from claims_service.domain.claim import Claim
from claims_service.errors import ConflictError, DuplicateRequestError
from claims_service.migrate import migrate
from claims_service.reconcile import reconcile
from tests import world
from tests.migrations import migrate_before

PROVIDER = "provider:" + world.NPI


def requests_of(database_url: str) -> dict[uuid.UUID, uuid.UUID]:
    with psycopg.connect(database_url) as conn:
        return dict(conn.execute("SELECT request_id, claim_id FROM claim_requests").fetchall())


def heads(database_url: str) -> tuple[int, int]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT (SELECT count(*) FROM ledger_events), (SELECT count(*) FROM claim_requests)").fetchone()


def test_new_claims_get_ids_in_the_order_they_arrive_and_their_request_ids_beside_them(service, database_url):
    receipts = [service.submit_claim(actor=PROVIDER, **world.claim_body(f"order-{n}")) for n in range(5)]
    ids = [uuid.UUID(r.claim_id) for r in receipts]
    assert all(i.version == 7 for i in ids)
    assert ids == sorted(ids) and [str(i) for i in ids] == sorted(str(i) for i in ids)
    assert requests_of(database_url) == {Claim.request_id_of(world.NPI, f"order-{n}"): ids[n] for n in range(5)}


def test_a_retry_gets_the_first_claim_and_receipt_and_writes_nothing(service, database_url):
    first = service.submit_claim(actor=PROVIDER, **world.claim_body("retried"))
    before = heads(database_url)
    again = service.submit_claim(actor=PROVIDER, **world.claim_body("retried"))
    assert (again.claim_id, again.receipt) == (first.claim_id, first.receipt)
    with pytest.raises(DuplicateRequestError):
        service.submit_claim(actor=PROVIDER, **world.claim_body("retried", place_of_service="22"))
    assert heads(database_url) == before
    # The same key from another provider is another request.
    other = service.submit_claim(actor=PROVIDER, **world.claim_body("retried", provider_id=world.OTHER_NPI))
    assert other.claim_id != first.claim_id


def test_concurrent_retries_of_one_request_make_one_claim(service, database_url):
    answers: list[str] = []

    def send() -> None:
        answers.append(service.submit_claim(actor=PROVIDER, **world.claim_body("raced")).claim_id)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 8 and len(set(answers)) == 1
    with psycopg.connect(database_url) as conn:
        (claims,) = conn.execute("SELECT count(*) FROM ledger_events WHERE topic = %s AND originator_version = 1",
                                 ("claims_service.domain.claim:Claim.Submitted",)).fetchone()
    requests = requests_of(database_url)
    assert claims == len(requests) == 1 and requests[Claim.request_id_of(world.NPI, "raced")] == uuid.UUID(answers[0])


def test_a_retried_correction_gets_the_same_replacement(service, database_url):
    follower = AdjudicationFollower(service.ledger)
    original = service.submit_claim(actor=PROVIDER, **world.claim_body("to-correct"))
    while follower.process_available():
        pass
    body = world.claim_body("the-correction", lines=[world.line(1, "99214", 15_000)])
    first = service.correct_claim(actor=PROVIDER, original_claim_id=original.claim_id, **body)
    before = heads(database_url)
    again = service.correct_claim(actor=PROVIDER, original_claim_id=original.claim_id, **body)
    assert (again.claim_id, again.receipt) == (first.claim_id, first.receipt) and first.claim_id != original.claim_id
    assert heads(database_url) == before
    assert service.own_claim(original.claim_id).replaced_by == first.claim_id
    while follower.process_available():
        pass
    assert reconcile(database_url, wait_seconds=0).clean


def test_a_claim_whose_id_is_its_request_id_is_found_by_a_retry(service, database_url, monkeypatch):
    """Claims submitted before migration 0027 have their request id as their id (the backfill below
    gives each such a row): a retry still lands on them."""
    legacy_id = Claim.request_id_of(world.NPI, "legacy")
    with monkeypatch.context() as patch:
        patch.setattr(claim_module, "time_ordered_id", lambda: legacy_id)
        first = service.submit_claim(actor=PROVIDER, **world.claim_body("legacy"))
    assert first.claim_id == str(legacy_id)
    again = service.submit_claim(actor=PROVIDER, **world.claim_body("legacy"))
    assert (again.claim_id, again.receipt) == (first.claim_id, first.receipt)


def test_the_migration_gives_every_earlier_claim_its_id_as_request_id(blank_database_url, tmp_path: Path):
    migrate_before(blank_database_url, "0027", tmp_path / "migrations")
    claims = [uuid.uuid4(), uuid.uuid4()]
    other = uuid.uuid4()
    with psycopg.connect(blank_database_url, autocommit=True) as conn:
        rows = [(c, 1, "claims_service.domain.claim:Claim.Submitted") for c in claims]
        rows += [(claims[0], 2, "claims_service.domain.claim:Claim.Adjudicated"),
                 (other, 1, "claims_service.domain.visit:Visit.Recorded")]
        conn.execute("SELECT * FROM ledger_append(NULL, NULL, '5s', %s, %s, %s, %s, NULL)",
                      ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [b"{}"] * len(rows)))
    assert migrate(blank_database_url)[0] == "0027_claim_requests.sql"
    assert requests_of(blank_database_url) == {c: c for c in claims}
    with psycopg.connect(blank_database_url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("DELETE FROM claim_requests")


def test_a_request_row_changed_behind_the_ledgers_back_never_hands_out_another_claim(service, owner_database_url):
    """claim_requests is not hash-linked: a retry takes the claim it names only if that claim's own
    submission is the same request."""
    mine = service.submit_claim(actor=PROVIDER, **world.claim_body("mine"))
    other = service.submit_claim(actor=PROVIDER, **world.claim_body("other"))
    with psycopg.connect(owner_database_url, autocommit=True) as conn:  # as the owner, the guard switched off
        conn.execute("ALTER TABLE claim_requests DISABLE TRIGGER claim_requests_guard")
        conn.execute("UPDATE claim_requests SET claim_id = %s WHERE request_id = %s",
                     (uuid.UUID(other.claim_id), Claim.request_id_of(world.NPI, "mine")))
    with pytest.raises(ConflictError):
        service.submit_claim(actor=PROVIDER, **world.claim_body("mine"))
    assert service.own_claim(mine.claim_id).claim_id == mine.claim_id


def test_reconcile_holds_every_claim_to_its_own_request_row(service, database_url, owner_database_url):
    """`claimsctl reconcile` checks what a retry relies on: each claim has one row, under its own
    submission's request id, and no row names a claim the ledger does not have."""
    mine = service.submit_claim(actor=PROVIDER, **world.claim_body("mine"))
    other = service.submit_claim(actor=PROVIDER, **world.claim_body("other"))
    assert reconcile(database_url, wait_seconds=0).clean
    stranger = uuid.uuid4()
    with psycopg.connect(owner_database_url, autocommit=True) as conn:  # as the owner, the guard switched off
        conn.execute("ALTER TABLE claim_requests DISABLE TRIGGER claim_requests_guard")
        conn.execute("UPDATE claim_requests SET claim_id = %s WHERE request_id = %s",
                     (uuid.UUID(other.claim_id), Claim.request_id_of(world.NPI, "mine")))
        conn.execute("INSERT INTO claim_requests (request_id, claim_id) VALUES (%s, %s)", (uuid.uuid4(), stranger))
    found = {(d.subject, d.detail) for d in reconcile(database_url, wait_seconds=0).differences
             if d.kind == "claim request"}
    mine_request, other_request = Claim.request_id_of(world.NPI, "mine"), Claim.request_id_of(world.NPI, "other")
    assert (mine.claim_id, "no request row") in found
    assert (other.claim_id, "2 request rows") in found
    assert (other.claim_id, f"recorded under request {mine_request}; its submission's provider and idempotency "
                            f"key make {other_request}") in found
    assert any(detail == f"names claim {stranger}, which the ledger does not have" for _, detail in found)
    assert len(found) == 4
