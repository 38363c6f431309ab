"""Attachments off the ledger (#16, point 6), over a real gRPC channel: a 50 MiB document streamed in
by its provider, kept encrypted in the blob store under its hash, read back whole by the claim's
payer and provider with the same hash; refused to another tenant; refused (DATA_LOSS) once its
stored bytes are tampered with; gone with the member's erasure, the ledger still verifying."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import grpc
import pytest

from claims.v1 import admin_pb2, attachment_pb2, attachment_pb2_grpc, dispute_pb2, provider_pb2
from tests import world
from tests.e2e.test_claim_flow import claim_request, set_up

MIB = 1024 * 1024


def upload_requests(claim_id: str, document: bytes, *, media_type: str = "application/pdf",
                    piece: int = MIB) -> Iterator[provider_pb2.UploadAttachmentRequest]:
    yield provider_pb2.UploadAttachmentRequest(claim_id=claim_id, media_type=media_type,
                                               sha256=hashlib.sha256(document).digest())
    view = memoryview(document)
    for start in range(0, len(document), piece):
        yield provider_pb2.UploadAttachmentRequest(chunk=bytes(view[start:start + piece]))


def attachments(parties, client) -> tuple[attachment_pb2_grpc.AttachmentServiceStub, tuple[tuple[str, str]]]:
    return attachment_pb2_grpc.AttachmentServiceStub(parties.channel), client.metadata


def read_back(parties, client, claim_id: str, attachment_id: str) -> tuple[attachment_pb2.Attachment, bytes]:
    stub, metadata = attachments(parties, client)
    stream = stub.GetAttachment(attachment_pb2.GetAttachmentRequest(claim_id=claim_id, attachment_id=attachment_id),
                                metadata=metadata, timeout=60)
    first = next(stream)
    assert first.WhichOneof("part") == "attachment"
    return first.attachment, b"".join(message.chunk for message in stream)


@pytest.fixture
def claim(parties) -> str:
    set_up(parties)
    return parties.provider.provider.SubmitClaim(claim_request("att-1")).claim_id


def test_a_50_mib_attachment_round_trips_with_its_hash(parties, claim, tmp_path):
    document = os.urandom(50 * MIB)
    digest = hashlib.sha256(document).digest()
    stored = parties.provider.provider.UploadAttachment(upload_requests(claim, document), timeout=120)
    assert (stored.sha256, stored.size_bytes, stored.media_type) == (digest, len(document), "application/pdf")
    assert not stored.already_attached and stored.receipt.position > 0
    # Off the ledger: the blob store holds it encrypted; the ledger only its size (and, sealed, its hash).
    blobs = list((tmp_path / "blobs").glob(f"*/{digest.hex()}"))
    assert len(blobs) == 1 and blobs[0].stat().st_mode & 0o777 == 0o600
    assert document[:4096] not in blobs[0].read_bytes()[:1 << 16]
    with __import__("psycopg").connect(parties.database_url) as conn:
        largest = conn.execute("SELECT max(length(state)) FROM ledger_events").fetchone()[0]
    assert largest < 64 * 1024

    for client in (parties.payer, parties.provider, parties.dispute):
        info, body = read_back(parties, client, claim, stored.attachment_id)
        assert hashlib.sha256(body).digest() == digest == info.sha256 and info.size_bytes == len(document)
    stub, metadata = attachments(parties, parties.payer)
    listed = stub.GetClaimAttachments(attachment_pb2.GetClaimAttachmentsRequest(claim_id=claim), metadata=metadata)
    assert [a.attachment_id for a in listed.attachments] == [stored.attachment_id]

    # The same document again: nothing new recorded, the first receipt back.
    again = parties.provider.provider.UploadAttachment(upload_requests(claim, document, piece=3 * MIB), timeout=120)
    assert again.already_attached and again.receipt.position == stored.receipt.position


def test_another_tenant_cannot_read_or_attach(parties, claim):
    stored = parties.provider.provider.UploadAttachment(upload_requests(claim, b"lab report " * 1000))
    for client in (parties.other_payer, parties.other_provider):
        with pytest.raises(grpc.RpcError) as refused:
            read_back(parties, client, claim, stored.attachment_id)
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        stub, metadata = attachments(parties, client)
        with pytest.raises(grpc.RpcError) as listed:
            stub.GetClaimAttachments(attachment_pb2.GetClaimAttachmentsRequest(claim_id=claim), metadata=metadata)
        assert listed.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as attached:
        parties.other_provider.provider.UploadAttachment(upload_requests(claim, b"not yours"))
    assert attached.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as admin:
        read_back(parties, parties.admin, claim, stored.attachment_id)
    assert admin.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as missing:
        read_back(parties, parties.payer, claim, "00000000-0000-0000-0000-000000000000")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_bad_uploads_store_nothing(parties, claim, tmp_path):
    cases = [
        ([provider_pb2.UploadAttachmentRequest(claim_id=claim, media_type="not a media type", chunk=b"x")],
         grpc.StatusCode.INVALID_ARGUMENT),
        ([provider_pb2.UploadAttachmentRequest(claim_id=claim, media_type="text/plain")], grpc.StatusCode.INVALID_ARGUMENT),
        ([provider_pb2.UploadAttachmentRequest(claim_id=claim, media_type="text/plain", chunk=b"abc",
                                               sha256=hashlib.sha256(b"abd").digest())], grpc.StatusCode.INVALID_ARGUMENT),
        ([provider_pb2.UploadAttachmentRequest(claim_id="not-a-claim", media_type="text/plain", chunk=b"abc")],
         grpc.StatusCode.INVALID_ARGUMENT),
        ([], grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for requests, code in cases:
        with pytest.raises(grpc.RpcError) as refused:
            parties.provider.provider.UploadAttachment(iter(requests))
        assert refused.value.code() == code, requests
    assert not [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]


def test_a_tampered_blob_is_refused_and_an_erasure_takes_the_documents_with_it(parties, claim, tmp_path):
    document = os.urandom(3 * MIB + 17)
    stored = parties.provider.provider.UploadAttachment(upload_requests(claim, document))
    other = parties.provider.provider.UploadAttachment(upload_requests(claim, b"another document " * 100))
    (blob,) = list((tmp_path / "blobs").glob(f"*/{stored.sha256.hex()}"))
    (other_blob,) = list((tmp_path / "blobs").glob(f"*/{other.sha256.hex()}"))
    original = blob.read_bytes()

    def refused() -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as error:
            read_back(parties, parties.payer, claim, stored.attachment_id)
        assert "attachment" in (error.value.details() or "")
        return error.value.code()

    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    for tampered in (bytes(flipped), original[:-1000], original[:8 + 7 + 4 + MIB + 16],
                     other_blob.read_bytes(), original + b"\x00\x00\x00\x10" + b"x" * 16):
        blob.write_bytes(tampered)
        assert refused() == grpc.StatusCode.DATA_LOSS
    blob.unlink()
    assert refused() == grpc.StatusCode.NOT_FOUND
    blob.write_bytes(original)
    assert hashlib.sha256(read_back(parties, parties.payer, claim, stored.attachment_id)[1]).digest() == stored.sha256

    erased = parties.admin.admin.EraseMember(admin_pb2.EraseMemberRequest(member_id=world.MEMBER))
    assert erased.attachments == 2 and erased.sealed_events > 0 and not erased.already_erased
    assert not blob.exists() and not other_blob.exists()
    with pytest.raises(grpc.RpcError) as gone:
        read_back(parties, parties.payer, claim, stored.attachment_id)
    assert gone.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "erased" in (gone.value.details() or "")
    verified = parties.dispute.dispute.VerifyLedger(dispute_pb2.VerifyLedgerRequest())
    assert verified.intact
    again = parties.admin.admin.EraseMember(admin_pb2.EraseMemberRequest(member_id=world.MEMBER))
    assert again.already_erased and again.receipt.position == erased.receipt.position
    with pytest.raises(grpc.RpcError) as unknown:
        parties.admin.admin.EraseMember(admin_pb2.EraseMemberRequest(member_id="M-NOBODY"))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
