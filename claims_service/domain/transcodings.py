"""Transcodings the domain's events need beyond the library's defaults.

Events carry ``datetime.date`` values (dates of service, effective dates). The
``JSONTranscoder`` looks transcodings up by exact type, so this one never
captures a ``datetime`` (which keeps the library's ``DatetimeAsISO``).

An application registers them by overriding ``register_transcodings``::

    class LedgerApplication(Application):
        def register_transcodings(self, transcoder: JSONTranscoder) -> None:
            super().register_transcodings(transcoder)
            register_domain_transcodings(transcoder)

The name ``"date_iso"`` is written into every stored event that holds a date:
it is part of the stored format and must never change.
"""

from __future__ import annotations

from datetime import date

from eventsourcing.persistence import JSONTranscoder, Transcoding


class DateAsISO(Transcoding):
    """``datetime.date`` as an ISO 8601 calendar date string (``"2025-03-01"``)."""

    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        assert isinstance(data, str)
        return date.fromisoformat(data)


def register_domain_transcodings(transcoder: JSONTranscoder) -> None:
    """Register every transcoding the domain events need."""
    transcoder.register(DateAsISO())
