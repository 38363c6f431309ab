"""Attachments over the API: ProviderService.UploadAttachment (a client stream, on the event loop,
its blocking steps on the unary pool) and AttachmentService (GetClaimAttachments; GetAttachment, a
server stream), for the claim's provider, its payer and the dispute team."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from claims.v1 import attachment_pb2, attachment_pb2_grpc, provider_pb2
from claims_service.api.converters import receipt_pb
from claims_service.api.interceptors import blocking, principal
from claims_service.attachments import AttachmentInfo, Attachments
from claims_service.errors import UnavailableError, ValidationError


def attachment_pb(info: AttachmentInfo) -> attachment_pb2.Attachment:
    return attachment_pb2.Attachment(claim_id=info.claim_id, attachment_id=info.attachment_id,
                                     sha256=bytes.fromhex(info.sha256), size_bytes=info.size_bytes,
                                     media_type=info.media_type)


def _available(attachments: Attachments | None) -> Attachments:
    if attachments is None:
        raise UnavailableError("attachments are not served by this server")
    return attachments


async def upload(attachments: Attachments | None, requests: AsyncIterator[Any]) -> provider_pb2.UploadAttachmentResponse:
    """ProviderService.UploadAttachment: the first message names the claim and the media type."""
    service = _available(attachments)
    who = principal()
    iterator = aiter(requests)
    try:
        first = await anext(iterator)
    except StopAsyncIteration:
        raise ValidationError.single("claim_id", "is required: the first message names the claim") from None
    pending = await blocking(lambda: service.begin(provider_id=who.party_id, claim_id=first.claim_id,
                                                   media_type=first.media_type))
    expected = b""
    try:
        request = first
        while True:
            if request.sha256:
                expected = request.sha256
            if request.chunk:
                await blocking(pending.write, request.chunk)
            try:
                request = await anext(iterator)
            except StopAsyncIteration:
                break
        if expected and (len(expected) != 32 or pending.sealer.digest.digest() != expected):
            raise ValidationError.single("sha256", "the bytes received do not hash to it (32 bytes of SHA-256); "
                                         "nothing was stored")
        stored = await blocking(lambda: service.finish(pending, actor=who.actor))
    except BaseException:
        pending.abort()
        raise
    info = stored.info
    return provider_pb2.UploadAttachmentResponse(attachment_id=info.attachment_id, sha256=bytes.fromhex(info.sha256),
                                                 size_bytes=info.size_bytes, media_type=info.media_type,
                                                 receipt=receipt_pb(stored.receipt), already_attached=stored.already_attached)


def _party() -> dict[str, str]:
    """Whose claims the caller reads: a provider its own, a payer its members', the dispute team all."""
    who = principal()
    if who.role == "provider":
        return {"provider_id": who.party_id}
    if who.role == "payer":
        return {"payer_id": who.party_id}
    return {}


class AttachmentServicer(attachment_pb2_grpc.AttachmentServiceServicer):
    def __init__(self, attachments: Attachments | None) -> None:
        self.attachments = attachments

    def GetClaimAttachments(self, request: Any, context: Any) -> Any:
        found = _available(self.attachments).list(request.claim_id, **_party())
        return attachment_pb2.GetClaimAttachmentsResponse(attachments=[attachment_pb(info) for info in found])

    async def GetAttachment(self, request: Any, context: Any) -> Any:
        service = _available(self.attachments)
        party = _party()
        info, document = await blocking(lambda: service.open(request.claim_id, request.attachment_id, **party))
        yield attachment_pb2.GetAttachmentResponse(attachment=attachment_pb(info))
        chunks = document()
        while (chunk := await blocking(next, chunks, None)) is not None:
            yield attachment_pb2.GetAttachmentResponse(chunk=chunk)
