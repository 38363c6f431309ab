"""DisputeService: open a dispute, read a claim's full history with hashes, replay its
adjudication (or a what-if under another rule-set version), resolve, and verify the ledger."""

from __future__ import annotations

import time
from typing import Any

from claims.v1 import dispute_pb2, dispute_pb2_grpc
from claims_service.api.converters import decision_pb, receipt_pb
from claims_service.api.interceptors import principal
from claims_service.api.reads import ReadSide
from claims_service.commands import Commands
from claims_service.errors import ValidationError
from claims_service.integrity import Integrity
from claims_service.ledger.chain import Fault
from claims_service.ledger.verify import event_hash_at, verify_ledger
from claims_service.observability.progress import record_verification

RESOLUTIONS = {
    dispute_pb2.DISPUTE_RESOLUTION_UPHELD: "upheld",
    dispute_pb2.DISPUTE_RESOLUTION_OVERTURNED: "overturned",
}
AUDIT_WAIT_SECONDS = 2.0
FAULTS = {fault: dispute_pb2.LedgerFault.Value(f"LEDGER_FAULT_{fault.name}") for fault in Fault}


class DisputeServicer(dispute_pb2_grpc.DisputeServiceServicer):
    def __init__(self, service: Commands, reads: ReadSide, integrity: Integrity | None = None) -> None:
        self.service = service
        self.reads = reads
        self.integrity = integrity

    def OpenDispute(self, request: Any, context: Any) -> Any:
        dispute_id, receipt = self.service.open_dispute(actor=principal().actor, claim_id=request.claim_id,
                                                        reason=request.reason)
        return dispute_pb2.OpenDisputeResponse(dispute_id=dispute_id, receipt=receipt_pb(receipt))

    def GetClaimHistory(self, request: Any, context: Any) -> Any:
        events = self.reads.claim_history(request.claim_id, min_position=request.min_position, context=context)
        return dispute_pb2.GetClaimHistoryResponse(events=events)

    def ReplayAdjudication(self, request: Any, context: Any) -> Any:
        replay = self.service.replay(request.claim_id, request.ruleset_version or None)
        self.reads.accessed([(replay.member_id, f"claim:{request.claim_id}")])
        return dispute_pb2.ReplayAdjudicationResponse(
            identical=replay.identical,
            differences=replay.differences,
            recorded=decision_pb(replay.recorded),
            replayed=decision_pb(replay.replayed),
            recorded_position=replay.recorded_position,
        )

    def ResolveDispute(self, request: Any, context: Any) -> Any:
        resolution = RESOLUTIONS.get(request.resolution)
        if resolution is None:
            raise ValidationError.single("resolution", "must be UPHELD or OVERTURNED")
        receipt, decision = self.service.resolve_dispute(
            actor=principal().actor, claim_id=request.claim_id, dispute_id=request.dispute_id,
            resolution=resolution, note=request.note, ruleset_version=request.ruleset_version or None,
        )
        return dispute_pb2.ResolveDisputeResponse(receipt=receipt_pb(receipt), decision=decision_pb(decision))

    def VerifyLedger(self, request: Any, context: Any) -> Any:
        expect = None
        if request.expect_head_position < 0:
            raise ValidationError.single("expect_head_position", "must not be negative")
        if request.expect_head_position:
            if len(request.expect_head_hash) != 32:
                raise ValidationError.single("expect_head_hash", "must be the 32-byte SHA-256 of the kept head")
            expect = (request.expect_head_position, bytes(request.expect_head_hash))
        elif request.expect_head_hash:
            raise ValidationError.single("expect_head_hash", "must be empty when expect_head_position is 0")
        audited = self._from_audit(expect)
        if audited is not None:
            return audited
        report = verify_ledger(self.service.ledger.database_url, expect_head=expect)
        with self.service.ledger.datastore.get_connection() as conn:  # kept for metrics and claimsctl status
            record_verification(conn, report, verified_by="DisputeService/VerifyLedger")
        response = dispute_pb2.VerifyLedgerResponse(
            intact=report.intact, events=report.events, streams=report.streams,
            head_position=report.head_position or 0, head_hash=report.head_hash or b"",
        )
        if report.problem is not None:
            response.problem.CopyFrom(dispute_pb2.LedgerProblem(
                position=report.problem.position, fault=FAULTS[report.problem.fault], detail=report.problem.detail))
        return response

    def _from_audit(self, expect: tuple[int, bytes] | None) -> dispute_pb2.VerifyLedgerResponse | None:
        """The auditor's last pass, when it is intact and covers the kept head (None: walk instead)."""
        if self.integrity is None:
            return None
        # The audit must have reached the ledger's head as of this call (it follows within a
        # moment); a head beyond it, or no audit yet, is verified by walking the chain instead.
        head = self.service.ledger.head()
        deadline = time.monotonic() + AUDIT_WAIT_SECONDS
        while True:
            audit = self.integrity.last_audit
            if self.integrity.fault is not None or (audit is not None and not audit["intact"]):
                return None
            if audit is not None and (head is None or audit["position"] >= head.position):
                break
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)
        response = dispute_pb2.VerifyLedgerResponse(
            intact=True, events=audit["events"], head_position=audit["position"],
            head_hash=bytes.fromhex(audit["head_hash"]), audited_at=audit["finished_at"])
        if expect is not None:
            if expect[0] > audit["position"]:
                return None
            found = event_hash_at(self.service.ledger.database_url, expect[0])
            if found != expect[1]:
                response.intact = False
                response.problem.CopyFrom(dispute_pb2.LedgerProblem(
                    position=expect[0], fault=FAULTS[Fault.HEAD_MISMATCH],
                    detail="the kept head is not in the ledger" if found is None else
                    f"expected hash {expect[1].hex()[:16]}…, the ledger has {found.hex()[:16]}…"))
        return response
