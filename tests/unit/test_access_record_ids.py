"""Each access record is a stream of its own: its id is time-ordered (a UUIDv7), so that records
arrive at the right edge of the ledger's stream index rather than on a random page of it."""

from __future__ import annotations

from claims_service.api.access import AccessLog
from claims_service.api.auth import Principal


def test_access_records_take_uuid7_ids_in_the_order_they_are_made():
    log = AccessLog(writer=None)  # type: ignore[arg-type] - making the records needs no writer
    who = Principal(role="payer", party_id="PAYER-1", key_id="k1")
    first = log._aggregates(who, "WatchAdjudications", [("M-1", "claim:a"), ("M-2", "claim:b")], None)
    second = log._aggregates(who, "WatchAdjudications", [("M-3", "claim:c")], None)
    ids = [record.id for record in [*first, *second]]
    assert all(i.version == 7 for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert [r.member_id for r in first] == ["M-1", "M-2"] and first[0].grant == "payer"
