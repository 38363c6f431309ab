"""The ledger's orjson encoder writes exactly the bytes the library's json encoder would: stored
events are hashed as stored, so the encoding may not drift."""

from __future__ import annotations

from datetime import date

from eventsourcing.persistence import JSONTranscoder

from claims_service.adjudication import AdjudicationFollower
from claims_service.application import LedgerApplication, LedgerTranscoder
from claims_service.commands import Commands
from tests import world


def test_every_stored_event_of_a_realistic_history_encodes_identically(database_url):
    ledger = LedgerApplication(database_url)
    service = Commands(ledger, today=lambda: date(2026, 11, 2))
    try:
        world.set_up(service)
        for n in range(8):
            service.submit_claim(actor="provider:" + world.NPI, **world.claim_body(
                f"t{n}", lines=[world.line(1, "99213", 12_000 + n, day=date(2026, 5, 1 + n)), world.line(2, "80053", 2_000)]))
        follower = AdjudicationFollower(ledger)
        while follower.process_available():
            pass
        library = JSONTranscoder()
        ledger.register_transcodings(library)
        ours = ledger.mapper.transcoder
        assert isinstance(ours, LedgerTranscoder)
        notifications = ledger.recorder.select_notifications(start=1, limit=10_000)
        assert len(notifications) > 30
        for notification in notifications:
            payload = library.decode(notification.state)
            assert ours.encode(payload) == library.encode(payload) == notification.state
    finally:
        service.close()
        ledger.close()
