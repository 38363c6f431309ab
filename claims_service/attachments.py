"""Claim attachments: documents uploaded by a claim's provider, kept off the ledger.

An upload streams into the blob store (``claims_service.blobs``), sealed chunk by chunk under the
claim's member's data key while its SHA-256 and size are counted, then stored under
``<member key id>/<sha256>`` in one atomic step, and only then recorded on the claim
(``Claim.AttachmentAdded``: hash, size, media type); an upload that fails or goes over
``max_bytes`` leaves nothing. A read checks the whole stored document against what the claim
recorded (every chunk authentic, in order, complete; the hash and size) before a byte of it is
handed out, then opens it again to hand it out, checking again as it goes (`TamperedBlobError`:
DATA_LOSS).

Who may: a claim's provider uploads; its provider, its payer and the dispute team read (another
party's claim is NOT_FOUND, as everywhere). A claim whose member was erased has no attachments
left: their documents were deleted and their key destroyed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from eventsourcing.utils import get_topic

from claims_service.application import LedgerApplication, Receipt
from claims_service.blobs.sealed import BlobSealer, open_blob
from claims_service.blobs.store import BlobStore, BlobWriter
from claims_service.commands import Commands, claim_stream
from claims_service.domain.claim import MEDIA_TYPE, Claim
from claims_service.errors import ClaimNotFoundError, ClaimsError, ValidationError

DEFAULT_MAX_BYTES = 100 * 1024 * 1024


class AttachmentTooLargeError(ClaimsError):
    """An upload went over CLAIMS_MAX_ATTACHMENT_BYTES: nothing was stored."""

    status: ClassVar[str] = "RESOURCE_EXHAUSTED"


class AttachmentNotFoundError(ClaimNotFoundError):
    """No such attachment on the claim (or the claim is another party's)."""


@dataclass(frozen=True)
class AttachmentInfo:
    claim_id: str
    attachment_id: str
    sha256: str
    size_bytes: int
    media_type: str


@dataclass(frozen=True)
class Stored:
    info: AttachmentInfo
    receipt: Receipt
    already_attached: bool


class Upload:
    """One upload in progress: ``write`` the document's pieces, then `Attachments.finish`."""

    def __init__(self, claim_id: str, media_type: str, writer: BlobWriter, sealer: BlobSealer, max_bytes: int) -> None:
        self.claim_id = claim_id
        self.media_type = media_type
        self.writer = writer
        self.sealer = sealer
        self.max_bytes = max_bytes
        self.closed = False

    def write(self, data: bytes) -> None:
        if self.sealer.size + len(data) > self.max_bytes:
            self.abort()
            raise AttachmentTooLargeError(f"an attachment is at most {self.max_bytes} bytes (CLAIMS_MAX_ATTACHMENT_BYTES); "
                                          "nothing was stored")
        self.sealer.write(data)

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer.abort()


class Attachments:
    """``Attachments(commands, store, *, max_bytes)``: uploads and reads of claim attachments."""

    def __init__(self, commands: Commands, store: BlobStore, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.commands = commands
        self.ledger: LedgerApplication = commands.ledger
        self.store = store
        self.max_bytes = max_bytes

    # --- uploads --------------------------------------------------------------------------

    def begin(self, *, provider_id: str, claim_id: str, media_type: str) -> Upload:
        """Check the claim is the provider's and the media type is one; open the blob."""
        if not isinstance(media_type, str) or not MEDIA_TYPE.fullmatch(media_type):
            raise ValidationError.single("media_type", "must be a media type such as application/pdf (RFC 6838)")
        claim = self.commands.own_claim(claim_id, provider_id)
        key_id, cipher = self.ledger.member_keys.key_of_member(claim.member_id)
        writer = self.store.writer(key_id)
        return Upload(claim.claim_id, media_type.lower(), writer, BlobSealer(writer, key_id, cipher), self.max_bytes)

    def finish(self, upload: Upload, *, actor: str) -> Stored:
        """Seal the last chunk, store the blob under its hash, record it on the claim."""
        try:
            sha256, size = upload.sealer.finish()
            if size == 0:
                raise ValidationError.single("chunk", "an attachment has at least one byte")
            upload.writer.commit(sha256)
            upload.closed = True
        except BaseException:
            upload.abort()
            raise
        found: dict[str, str] = {}

        def attach(claim: Claim) -> None:
            found["id"] = claim.add_attachment(actor=actor, sha256=sha256, size_bytes=size, media_type=upload.media_type)
            found["new"] = "yes" if claim.pending_events else ""

        receipt = self.commands._change(claim_stream(upload.claim_id),
                                        ClaimNotFoundError(f"claim {upload.claim_id} not found"), attach)
        info = AttachmentInfo(upload.claim_id, found["id"], sha256, size, upload.media_type)
        if not found["new"]:
            receipt = self._receipt_of(upload.claim_id, found["id"]) or receipt
        return Stored(info, receipt, already_attached=not found["new"])

    def _receipt_of(self, claim_id: str, attachment_id: str) -> Receipt | None:
        """The receipt of the event that attached it first."""
        with self.ledger.datastore.transaction(commit=False) as curs:
            curs.execute("SELECT originator_version FROM ledger_events WHERE originator_id = %s AND topic = %s"
                         " AND position(%s::bytea in state) > 0 ORDER BY originator_version LIMIT 1",
                         (claim_stream(claim_id), get_topic(Claim.AttachmentAdded),
                          f'"attachment_id":"{attachment_id}"'.encode()))
            row = curs.fetchone()
        return self.commands.receipt_of(claim_stream(claim_id), row["originator_version"]) if row else None

    # --- reads ------------------------------------------------------------------------------

    def _claim(self, claim_id: str, provider_id: str | None, payer_id: str | None) -> Claim:
        claim = self.commands.own_claim(claim_id, provider_id)
        if payer_id is not None and claim.payer_id != payer_id:
            raise ClaimNotFoundError("claim_id: no such claim")
        return claim

    def list(self, claim_id: str, *, provider_id: str | None = None, payer_id: str | None = None) -> list[AttachmentInfo]:
        claim = self._claim(claim_id, provider_id, payer_id)
        return [AttachmentInfo(claim.claim_id, a["attachment_id"], a["sha256"], a["size_bytes"], a["media_type"])
                for a in claim.attachments.values()]

    def open(self, claim_id: str, attachment_id: str, *, provider_id: str | None = None,
             payer_id: str | None = None) -> tuple[AttachmentInfo, Callable[[], Iterator[bytes]]]:
        """The attachment's facts and its document's bytes (a function giving them, checked
        again as they go), once the whole stored document checked out (`TamperedBlobError`)."""
        claim = self._claim(claim_id, provider_id, payer_id)
        attachment: dict[str, Any] | None = claim.attachments.get(attachment_id)
        if attachment is None:
            raise AttachmentNotFoundError("attachment_id: no such attachment on this claim")
        info = AttachmentInfo(claim.claim_id, attachment["attachment_id"], attachment["sha256"], attachment["size_bytes"],
                              attachment["media_type"])
        key_id, cipher = self.ledger.member_keys.key_of_member(claim.member_id, create=False)
        key = f"{key_id}/{info.sha256}"

        def document() -> Iterator[bytes]:
            return open_blob(self.store.read(key), key_id, cipher, sha256=info.sha256, size=info.size_bytes)

        for _ in document():  # the whole document checks out before any of it is handed out
            pass
        return info, document
