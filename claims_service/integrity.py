"""The server's view of the ledger's integrity: the first fault anyone found (the signer refusing
to sign, the auditor) and the auditor's last report.

A fault halts the service: health turns NOT_SERVING, the signer signs nothing more, and every call
but the ones an investigator needs (DisputeService, LedgerService: history, replay, bundles,
proofs, verification) answers DATA_LOSS naming the fault. A ledger that no longer matches what the
service signed must not take new events chained onto it nor serve read models built from it, until
an operator has looked (and restarted the service).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, ClassVar

from claims_service.errors import ClaimsError

# Still answered after a fault: what it takes to find out what happened.
INVESTIGATION_SERVICES = frozenset({"claims.v1.DisputeService", "claims.v1.LedgerService"})


class LedgerHaltedError(ClaimsError):
    """The ledger failed verification; the service answers nothing that depends on it."""

    status: ClassVar[str] = "DATA_LOSS"


class Integrity:
    """``report_fault(reason)`` (first one wins; listeners told once), ``record_audit(status)``,
    ``fault``, ``last_audit``, ``check(service)``; ``on_fault(callback)``."""

    def __init__(self) -> None:
        self.fault: str | None = None
        self.last_audit: dict[str, Any] | None = None
        self._listeners: list[Callable[[str], None]] = []
        self._lock = threading.Lock()

    def on_fault(self, callback: Callable[[str], None]) -> None:
        self._listeners.append(callback)

    def report_fault(self, reason: str) -> None:
        with self._lock:
            if self.fault is not None:
                return
            self.fault = reason
        for callback in self._listeners:
            callback(reason)

    def record_audit(self, status: dict[str, Any]) -> None:
        self.last_audit = status

    def check(self, service: str) -> None:
        """DATA_LOSS for every service but the investigators' once a fault was found."""
        if self.fault is not None and service not in INVESTIGATION_SERVICES:
            raise LedgerHaltedError(f"the ledger failed verification and the service is halted: {self.fault}."
                                    " Investigate with VerifyLedger, GetClaimHistory and the proofs; restart after"
                                    " the ledger is restored")
