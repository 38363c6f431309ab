"""LedgerService: signed checkpoints, inclusion and consistency proofs, claim bundles and the
public key — what anyone holding a receipt needs to check the ledger without trusting it.

Sizes and indexes: negative is INVALID_ARGUMENT; a tree size beyond the events the ledger holds is
OUT_OF_RANGE at once; a size the ledger holds but the tree has not reached yet is built (or waited
for) within the call's deadline, then DEADLINE_EXCEEDED (README, "Status codes")."""

from __future__ import annotations

from typing import Any

import psycopg

from claims.v1 import ledger_pb2, ledger_pb2_grpc
from claims_service.adjudication.bundles import export_claim_bundle
from claims_service.api.converters import checkpoint_pb
from claims_service.api.interceptors import principal
from claims_service.api.reads import ReadSide, wait_budget
from claims_service.commands import Commands
from claims_service.errors import NotFoundError, ValidationError
from claims_service.ledger import tree
from claims_service.ledger.checkpointer import Checkpointer, latest_checkpoint
from claims_service.ledger.note import key_id, public_key_bytes
from projections.reading import non_negative


class LedgerServicer(ledger_pb2_grpc.LedgerServiceServicer):
    def __init__(self, service: Commands, reads: ReadSide, checkpointer: Checkpointer,
                 previous_verifier_keys: list[str] | None = None) -> None:
        self.service = service
        self.reads = reads
        self.checkpointer = checkpointer
        # Retired keys that still verify old checkpoints (key rotation, docs/LEDGER.md).
        self.previous_verifier_keys = list(previous_verifier_keys or [])

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self.service.ledger.database_url, autocommit=True)

    def _tree_of(self, conn: psycopg.Connection, size: int, context: Any) -> None:
        """Return once the tree holds `size` leaves (OUT_OF_RANGE, DEADLINE_EXCEEDED otherwise)."""
        if tree.tree_size(conn) < size:
            with tree.TreeBuilder(self.service.ledger.database_url) as builder:
                builder.grow_to(size, timeout=wait_budget(context))

    def GetCheckpoint(self, request: Any, context: Any) -> Any:
        size = non_negative(request.min_tree_size, "min_tree_size")
        if size == 0:
            with self._connect() as conn:
                latest = latest_checkpoint(conn)
            if latest is None:
                raise NotFoundError("no checkpoint has been signed yet; ask for min_tree_size 1 to sign one")
        else:
            latest = self.checkpointer.checkpoint_covering(size, timeout=wait_budget(context))
        self.service.ledger.checkpoints.offer(latest)  # later receipts it covers will name it
        return ledger_pb2.GetCheckpointResponse(checkpoint=checkpoint_pb(latest))

    def GetInclusionProof(self, request: Any, context: Any) -> Any:
        leaf_index = non_negative(request.leaf_index, "leaf_index")
        size = non_negative(request.tree_size, "tree_size")
        if leaf_index >= size:
            raise ValidationError.single("tree_size", "must be greater than leaf_index")
        with self._connect() as conn:
            self._tree_of(conn, size, context)
            proof = tree.inclusion_proof(conn, leaf_index, size)
            leaf = tree.leaf_at(conn, leaf_index)
        assert leaf is not None  # the tree holds `size` > leaf_index leaves
        return ledger_pb2.GetInclusionProofResponse(
            leaf_index=leaf_index, tree_size=size, event_hash=leaf.event_hash, audit_path=proof)

    def GetConsistencyProof(self, request: Any, context: Any) -> Any:
        old_size = non_negative(request.old_size, "old_size")
        new_size = non_negative(request.new_size, "new_size")
        if old_size < 1:
            raise ValidationError.single("old_size", "must be at least 1")
        if old_size > new_size:
            raise ValidationError.single("new_size", "must be at least old_size")
        with self._connect() as conn:
            self._tree_of(conn, new_size, context)
            proof = tree.consistency_proof(conn, old_size, new_size)
        return ledger_pb2.GetConsistencyProofResponse(old_size=old_size, new_size=new_size, proof=proof)

    def ExportClaimBundle(self, request: Any, context: Any) -> Any:
        who = principal()
        claim = self.service.own_claim(request.claim_id, who.party_id if who.role == "provider" else None)
        if (who.role == "payer" and claim.payer_id != who.party_id) or (
                who.role == "member" and claim.member_id != who.party_id):
            raise NotFoundError(f"claim {request.claim_id} not found")
        bundle = export_claim_bundle(self.service.ledger.database_url, claim.id, self.checkpointer)
        self.reads.accessed([(claim.member_id, f"bundle:{claim.claim_id}")])
        return ledger_pb2.ExportClaimBundleResponse(bundle=bundle)

    def GetPublicKey(self, request: Any, context: Any) -> Any:
        name = self.checkpointer.key_name or ""
        return ledger_pb2.GetPublicKeyResponse(
            key_name=name,
            key_id=key_id(name, self.checkpointer.key).hex(),
            public_key=public_key_bytes(self.checkpointer.key),
            verifier_key=self.checkpointer.verifier_key,
            previous_verifier_keys=self.previous_verifier_keys,
        )
