"""A stored event that cannot be read is DATA_LOSS naming its ledger position, whether its payload
does not decode, lacks its event's fields, names no known event, or no longer applies: never an
internal error, and never its payload's text in the message."""

from __future__ import annotations

import pytest

from claims_service.errors import DataLossError
from tests.integration.ledger.conftest import Counter, tamper


@pytest.mark.parametrize("change, what", [
    ("state = 'not json at all'::bytea", "does not decode"),
    ("state = '{\"secret\":\"SSN-123-45-6789\"'::bytea", "does not decode"),  # cut short
    ("state = '{}'::bytea", "lacks"),
    ("state = '{\"timestamp\":{\"_type_\":\"datetime_iso\",\"_data_\":\"2026-01-01T00:00:00+00:00\"},"
     "\"by\":\"SSN-123-45-6789\"}'::bytea", "does not apply"),
    ("topic = 'nowhere:Gone'", "names no event"),
])
def test_a_damaged_event_is_data_loss_at_its_position(ledger, database_url, change, what):
    counter = Counter(name="c")
    counter.bump(by=2)
    ledger.record(counter)
    position = ledger.position_of(counter.id, 2)
    tamper(database_url, f"UPDATE ledger_events SET {change} WHERE notification_id = {position}")
    for read in (lambda: ledger.repository.get(counter.id), lambda: ledger.load_many([counter.id])):
        with pytest.raises(DataLossError) as lost:
            read()
        error = lost.value
        assert error.status == "DATA_LOSS" and error.position == position
        assert f"position {position}" in str(error) and what in str(error)
        assert "SSN" not in str(error)
    # The events before it still read.
    assert ledger.repository.get(counter.id, version=1).name == "c"
