"""Rebuild while serving: built from position 0 under concurrent writes, swapped in atomically,
equal to the incrementally maintained tables; readers keep answering throughout."""

from __future__ import annotations

import threading
import time
from datetime import date

import psycopg
import pytest

from bench.projections import generate_history
from claims_service.adjudication import AdjudicationFollower
from claims_service.commands import Commands
from projections import catalog
from projections.claims import get_claim, list_claims
from projections.errors import RebuildInProgressError
from projections.rebuild import rebuild, status
from projections.runner import ProjectionSupervisor
from projections.timeline import claim_timeline
from tests import world
from tests.integration.projections.helpers import assert_equals_from_scratch, differences, head, tracked

PROVIDER = "provider:" + world.NPI


class Writers:
    """Providers submitting and voiding claims, and the adjudicator deciding them, until paused."""

    def __init__(self, service: Commands) -> None:
        self.service = service
        self.follower = AdjudicationFollower(service.ledger)
        self.running = threading.Event()
        self.running.set()
        self.idle = threading.Event()
        self.done = threading.Event()
        self.errors: list[BaseException] = []
        self.n = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.done.is_set():
                if not self.running.is_set():
                    self.idle.set()
                    time.sleep(0.005)
                    continue
                self.idle.clear()
                self.n += 1
                day = date(2026, 1, 1 + self.n % 28)
                receipt = self.service.submit_claim(
                    actor=PROVIDER, **world.claim_body(f"w{self.n}", lines=[world.line(1, "99213", 12_000, day=day)])
                )
                while self.follower.process_available():
                    pass
                if self.n % 5 == 0:
                    self.service.void_claim(actor=PROVIDER, provider_id=world.NPI, claim_id=receipt.claim_id, reason="test")
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.errors.append(error)
            self.idle.set()

    def pause(self) -> None:
        self.running.clear()
        self.idle.wait(10)
        while self.follower.process_available():
            pass

    def resume(self) -> None:
        self.running.set()

    def stop(self) -> None:
        self.done.set()
        self.thread.join(10)


def test_a_rebuild_under_concurrent_writes_ends_equal_to_the_incremental_tables(service, database_url):
    # 1. A history to rebuild, and the live projections following it.
    generate_history(database_url, 1_500, seed=5, members=30)
    first = service.submit_claim(actor=PROVIDER, **world.claim_body("first"))
    supervisor = ProjectionSupervisor(database_url, batch_size=100, idle_wait=0.2)
    supervisor.start()
    writers = Writers(service)
    reads: list[int] = []
    read_errors: list[BaseException] = []
    stop_reading = threading.Event()

    # 2. A reader keeps asking while tables are rebuilt and swapped.
    def read() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            while not stop_reading.is_set():
                try:
                    get_claim(conn, first.claim_id, provider_id=world.NPI,
                                      min_position=first.receipt.position, timeout=20)
                    list_claims(conn, world.NPI, page_size=5)
                    claim_timeline(conn, first.claim_id)
                    reads.append(1)
                except BaseException as error:  # noqa: BLE001 - reported below
                    read_errors.append(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        for name in catalog.NAMES:
            started_at = head(database_url)

            def before_swap(name: str = name, started_at: int = started_at) -> None:
                # 3. Writes went on during the bulk of the rebuild; now let the live runner
                # catch up, so that both sides stand at the same position when compared.
                writers.pause()
                assert not writers.errors, writers.errors
                assert head(database_url) > started_at, "no write happened during the rebuild"
                assert supervisor.wait_for(head(database_url), timeout=20)
                with pytest.raises(RebuildInProgressError):
                    rebuild(database_url, name)  # one rebuild at a time

            report = rebuild(database_url, name, batch_size=100, keep_previous=True, before_swap=before_swap)

            # 4. The rebuilt tables (now live) equal the incrementally maintained ones (kept).
            assert report.swapped and report.position == head(database_url) == tracked(database_url, name)
            for table in catalog.MODELS[name].tables:
                assert differences(database_url, table, table + "_previous") == 0, table
            writers.resume()
            time.sleep(0.2)

        # 5. After the swaps the live runners carry on over the new tables.
        writers.pause()
        assert supervisor.wait_for(head(database_url), timeout=20)
        assert {s.lag for s in status(database_url)} == {0}
        assert supervisor.restarts == dict.fromkeys(catalog.NAMES, 0)
        with psycopg.connect(database_url, autocommit=True) as conn:
            assert get_claim(conn, first.claim_id).status == "adjudicated"
        # 6. ... and what they wrote into the swapped-in tables is what a fresh build gives.
        assert_equals_from_scratch(database_url)
    finally:
        stop_reading.set()
        reader.join(10)
        writers.stop()
        supervisor.stop()
    assert not writers.errors
    assert not read_errors, read_errors[:3]
    assert len(reads) > 10


def test_a_rebuild_keeps_its_tables_storage_parameters(database_url):
    """The rebuilt tables keep the room left on each page for in-place updates (migration 0028):
    `LIKE ... INCLUDING ALL` alone copies no fillfactor."""
    generate_history(database_url, 300, seed=28, members=3)

    def options() -> dict[str, list[str] | None]:
        with psycopg.connect(database_url) as conn:
            return dict(conn.execute("SELECT relname, reloptions FROM pg_class WHERE relname IN"
                                     " ('explanation_of_benefits', 'remittance_claims', 'payments', 'benefit_claims')"
                                     ).fetchall())

    before = options()
    assert before == {"explanation_of_benefits": ["fillfactor=70"], "remittance_claims": ["fillfactor=70"],
                      "payments": ["fillfactor=80"], "benefit_claims": None}
    for name in ("benefits", "payments"):
        rebuild(database_url, name)
    assert options() == before
    assert_equals_from_scratch(database_url, ("benefits", "payments"))
