"""Fixtures for the integration tests: the commands over a ledger with the shared world set up."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest

from claims_service.application import LedgerApplication
from claims_service.commands import Commands
from tests import world


@pytest.fixture
def service(database_url: str) -> Iterator[Commands]:
    ledger = LedgerApplication(database_url)
    service = Commands(ledger, today=lambda: date(2026, 11, 2))
    world.set_up(service)
    yield service
    service.close()
    ledger.close()
