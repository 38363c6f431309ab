"""LedgerService: signed checkpoints, inclusion and consistency proofs, claim bundles and the
public key — what anyone holding a receipt needs to check the ledger without trusting it."""

from __future__ import annotations

from typing import Any

import psycopg

from claims.v1 import common_pb2, ledger_pb2, ledger_pb2_grpc
from claims_service.api.interceptors import principal
from claims_service.api.reads import ReadSide
from claims_service.commands import Commands
from claims_service.errors import NotFoundError, UnavailableError
from claims_service.ledger import tree
from claims_service.adjudication.bundles import export_claim_bundle
from claims_service.ledger.checkpointer import Checkpointer, latest_checkpoint
from claims_service.ledger.note import key_id, public_key_bytes


def checkpoint_pb(stored: Any) -> common_pb2.SignedCheckpoint:
    return common_pb2.SignedCheckpoint(note=stored.note, tree_size=stored.tree_size, root_hash=stored.root_hash)


def require_tree_size(conn: psycopg.Connection, size: int) -> None:
    """A proof against a tree the builder has not reached yet is retryable, not an error."""
    built = tree.tree_size(conn)
    if size > built:
        raise UnavailableError(f"the tree has {built} leaves so far; retry once it reaches {size}")


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

    def GetCheckpoint(self, request: Any, context: Any) -> Any:
        with self._connect() as conn:
            latest = latest_checkpoint(conn)
        if request.min_tree_size == 0 and latest is None:
            raise NotFoundError("no checkpoint has been signed yet; ask for min_tree_size 1 to sign one")
        if latest is None or latest.tree_size < request.min_tree_size:
            latest = self.checkpointer.checkpoint_now()
            if latest.tree_size < request.min_tree_size:
                raise UnavailableError(
                    f"the ledger has {latest.tree_size} events; a checkpoint of {request.min_tree_size} is not possible yet")
        return ledger_pb2.GetCheckpointResponse(checkpoint=checkpoint_pb(latest))

    def GetInclusionProof(self, request: Any, context: Any) -> Any:
        with self._connect() as conn:
            require_tree_size(conn, request.tree_size)
            proof = tree.inclusion_proof(conn, request.leaf_index, request.tree_size)
            leaf = tree.leaf_at(conn, request.leaf_index)
        return ledger_pb2.GetInclusionProofResponse(
            leaf_index=request.leaf_index, tree_size=request.tree_size, event_hash=leaf.event_hash, audit_path=proof)

    def GetConsistencyProof(self, request: Any, context: Any) -> Any:
        with self._connect() as conn:
            require_tree_size(conn, request.new_size)
            proof = tree.consistency_proof(conn, request.old_size, request.new_size)
        return ledger_pb2.GetConsistencyProofResponse(old_size=request.old_size, new_size=request.new_size, proof=proof)

    def ExportClaimBundle(self, request: Any, context: Any) -> Any:
        who = principal()
        claim = self.service.own_claim(request.claim_id, who.party_id if who.role == "provider" else None)
        if who.role == "payer" and claim.payer_id != who.party_id:
            raise NotFoundError(f"claim {request.claim_id} not found")
        bundle = export_claim_bundle(self.service.ledger.database_url, claim.id, self.checkpointer)
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
