"""A claim from submission to its final decision, corrections, voids and disputes.

State machine (``status``)::

    submitted --adjudicate--> adjudicated --correct--> replaced
        |                         ^   |
        +--pend--> pended --------+   +--void--> voided
                     (resolve_review)

* ``adjudicated`` covers a decision by the engine and one by a reviewer.
* Only a decided (``adjudicated``) claim can be corrected, voided or disputed;
  ``replaced`` and ``voided`` are final.
* At most one dispute is open at a time; while it is open the claim cannot be
  corrected or voided (the dispute would lose its subject). An overturned
  dispute replaces the decision.

Corrections and voids never edit the submission: they are new events
(frequency 7 / 8), and the replacement is a new claim that names this one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from claims_service.domain.ids import make_id, time_ordered_id
from claims_service.domain.values import (
    copy_plain,
    CorrectClaim,
    Decide,
    OpenDispute,
    ResolveDispute,
    ResolveReview,
    SubmitClaim,
    VoidClaim,
)
from claims_service.errors import (
    AlreadyExistsError,
    DuplicateRequestError,
    StateError,
    ValidationError,
)

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# RFC 6838 type/subtype names (restricted-name: 1 to 127 characters), no parameters.
MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")

SUBMITTED = "submitted"
ADJUDICATED = "adjudicated"
PENDED = "pended"
VOIDED = "voided"
REPLACED = "replaced"


class Claim(Aggregate):
    """Id: a UUIDv7, in the order claims arrive (`ids.time_ordered_id`). A retry lands on the same
    claim by its request id, the uuid5 of (provider_id, idempotency_key): the ledger's writer
    records it beside the submission, in the same transaction (`claim_requests`).

    State: the submission's fields (``claim_id``, ``provider_id``,
    ``member_id``, ``payer_id``, ``visit_id``, ``frequency_code``,
    ``replaces_claim_id``, ``diagnosis_codes``, ``place_of_service``,
    ``lines``, ``received_on``, ``idempotency_key``, ``body_hash``), then
    ``status``, ``decision`` (the engine's or reviewer's decision dict; for a
    pended claim the provisional one), ``facts``, ``ruleset_version``,
    ``ruleset_hash`` (of the latest engine run), ``review``,
    ``replaced_by``, ``void_reason``, ``disputes`` (dispute_id -> record),
    ``open_dispute_id`` and ``attachments`` (attachment_id -> {attachment_id, sha256, size_bytes,
    media_type}).
    """

    # --- events ----------------------------------------------------------------

    class Submitted(Aggregate.Created):
        actor: str
        claim_id: str
        provider_id: str
        member_id: str
        payer_id: str
        visit_id: str | None
        frequency_code: str
        replaces_claim_id: str | None
        diagnosis_codes: list[str]
        place_of_service: str
        lines: list[dict[str, Any]]
        received_on: date
        idempotency_key: str
        body_hash: str

        def apply(self, claim: Claim) -> None:
            claim.claim_id = self.claim_id
            claim.provider_id = self.provider_id
            claim.member_id = self.member_id
            claim.payer_id = self.payer_id
            claim.visit_id = self.visit_id
            claim.frequency_code = self.frequency_code
            claim.replaces_claim_id = self.replaces_claim_id
            claim.diagnosis_codes = list(self.diagnosis_codes)
            claim.place_of_service = self.place_of_service
            claim.lines = copy_plain(self.lines)
            claim.received_on = self.received_on
            claim.idempotency_key = self.idempotency_key
            claim.body_hash = self.body_hash
            claim.status = SUBMITTED
            claim.decision = None
            claim.run_decision = None  # the automatic decision, kept when a review or dispute settles another
            claim.facts = None
            claim.ruleset_version = None
            claim.ruleset_hash = None
            claim.review = None
            claim.replaced_by = None
            claim.void_reason = None
            claim.disputes = {}
            claim.open_dispute_id = None
            claim.pend_reasons = []
            claim.attachments = {}

    class Adjudicated(Aggregate.Event):
        actor: str
        decision: dict[str, Any]
        facts: dict[str, Any]
        ruleset_version: str
        ruleset_hash: str

        def apply(self, claim: Claim) -> None:
            claim._record_run(self)
            claim.status = ADJUDICATED

    class Pended(Aggregate.Event):
        actor: str
        decision: dict[str, Any]
        facts: dict[str, Any]
        ruleset_version: str
        ruleset_hash: str
        # Why the claim waits for a reviewer, as remark codes (adjudicator.PEND_REASONS); absent
        # from claims pended before reasons were recorded.
        pend_reasons: list[str] | None = None

        def apply(self, claim: Claim) -> None:
            claim._record_run(self)
            claim.pend_reasons = list(self.pend_reasons or [])
            claim.status = PENDED

    class ReviewResolved(Aggregate.Event):
        """A reviewer's decision on a pended claim. Since reviews are decided by the engine, the
        event also records the reviewer's resolution and the facts it was decided on, so that it
        replays (``adjudicator.review``); reviews recorded before that carry neither."""

        actor: str
        decision: dict[str, Any]
        reviewer: str
        note: str
        resolution: dict[str, Any] | None = None
        facts: dict[str, Any] | None = None

        def apply(self, claim: Claim) -> None:
            claim.decision = copy_plain(self.decision)
            claim.review = {"reviewer": self.reviewer, "note": self.note,
                            "resolution": copy_plain(self.resolution), "facts": self.facts}
            claim.status = ADJUDICATED

    class Corrected(Aggregate.Event):
        """Superseded by the replacement claim ``replacement_claim_id``."""

        actor: str
        replacement_claim_id: str
        frequency_code: str  # always "7"

        def apply(self, claim: Claim) -> None:
            claim.replaced_by = self.replacement_claim_id
            claim.status = REPLACED

    class Voided(Aggregate.Event):
        actor: str
        reason: str
        frequency_code: str  # always "8"

        def apply(self, claim: Claim) -> None:
            claim.void_reason = self.reason
            claim.status = VOIDED

    class DisputeOpened(Aggregate.Event):
        actor: str
        dispute_id: str
        reason: str
        opened_by: str

        def apply(self, claim: Claim) -> None:
            claim.disputes[self.dispute_id] = {
                "dispute_id": self.dispute_id,
                "reason": self.reason,
                "opened_by": self.opened_by,
                "resolution": None,
                "note": None,
            }
            claim.open_dispute_id = self.dispute_id

    class DisputeResolved(Aggregate.Event):
        actor: str
        dispute_id: str
        resolution: str  # "upheld" | "overturned"
        decision: dict[str, Any] | None
        note: str
        # The facts an overturning decision was made on (recorded facts, accumulators as they
        # stood); absent from resolutions recorded before they were kept.
        facts: dict[str, Any] | None = None

        def apply(self, claim: Claim) -> None:
            record = claim.disputes[self.dispute_id]
            record["resolution"] = self.resolution
            record["note"] = self.note
            record["facts"] = self.facts
            claim.open_dispute_id = None
            if self.decision is not None:
                claim.decision = copy_plain(self.decision)

    class AttachmentAdded(Aggregate.Event):
        """A document attached to the claim (a PWK attachment: records, images, reports). The
        document itself is kept off the ledger, in the blob store, under its SHA-256; the event
        records its hash, size and media type (``attachment_id`` is derived from the claim and the
        hash, so the same document attached again writes nothing)."""

        actor: str
        attachment_id: str
        sha256: str  # 64 lower-case hex digits, of the document as uploaded
        size_bytes: int
        media_type: str

        def apply(self, claim: Claim) -> None:
            claim.attachments[self.attachment_id] = {
                "attachment_id": self.attachment_id,
                "sha256": self.sha256,
                "size_bytes": self.size_bytes,
                "media_type": self.media_type,
            }

    def _record_run(self, event: Claim.Adjudicated | Claim.Pended) -> None:
        # The claim keeps the event's own (already copied) data: nothing mutates a decision or
        # facts in place, and copying the facts again costs more than adjudicating the claim.
        self.decision = event.decision
        self.run_decision = event.decision
        self.facts = event.facts
        self.ruleset_version = event.ruleset_version
        self.ruleset_hash = event.ruleset_hash

    # --- ids ---------------------------------------------------------------------

    @staticmethod
    def request_id_of(provider_id: str, idempotency_key: str) -> UUID:
        """The submission's request id: the same for every retry of it. (Before migration 0027 it
        was the claim's id too, so such a claim's request id is its id.)"""
        return make_id("claim", provider_id, idempotency_key)

    @property
    def request_id(self) -> UUID:
        return self.request_id_of(self.provider_id, self.idempotency_key)

    # --- commands ------------------------------------------------------------------

    @classmethod
    def submit(
        cls,
        *,
        actor: str,
        provider_id: str,
        member_id: str,
        payer_id: str,
        idempotency_key: str,
        received_on: date,
        diagnosis_codes: list[str],
        place_of_service: str,
        lines: list[dict[str, Any]],
        visit_id: str | None = None,
        frequency_code: str = "1",
        replaces_claim_id: str | None = None,
    ) -> Claim:
        """Validate and submit; ``received_on`` is the service's date, not the caller's."""
        request = SubmitClaim.checked(
            actor=actor,
            provider_id=provider_id,
            member_id=member_id,
            payer_id=payer_id,
            idempotency_key=idempotency_key,
            received_on=received_on,
            diagnosis_codes=diagnosis_codes,
            place_of_service=place_of_service,
            lines=lines,
            visit_id=visit_id,
            frequency_code=frequency_code,
            replaces_claim_id=replaces_claim_id,
        )
        return cls.submit_request(request)

    @classmethod
    def submit_request(cls, request: SubmitClaim) -> Claim:
        """Submit an already validated request (``SubmitClaim.checked(...)``).

        Lets the application validate once, derive the id and body hash, and
        look for an earlier claim with the same key before creating one.
        """
        claim_id = time_ordered_id()
        body = request.model_dump(mode="python")
        return cls._create(
            cls.Submitted,
            id=claim_id,
            actor=request.actor,
            claim_id=str(claim_id),
            provider_id=request.provider_id,
            member_id=request.member_id,
            payer_id=request.payer_id,
            visit_id=request.visit_id,
            frequency_code=request.frequency_code,
            replaces_claim_id=request.replaces_claim_id,
            diagnosis_codes=body["diagnosis_codes"],
            place_of_service=request.place_of_service,
            lines=body["lines"],
            received_on=request.received_on,
            idempotency_key=request.idempotency_key,
            body_hash=request.body_hash(),
        )

    def ensure_same_request(self, body_hash: str) -> None:
        """For a retry with this claim's idempotency key: refuse a different body."""
        if body_hash != self.body_hash:
            msg = "this idempotency key was already used with a different request"
            raise DuplicateRequestError(msg)

    def adjudicate(
        self,
        *,
        actor: str,
        decision: dict[str, Any],
        facts: dict[str, Any],
        ruleset_version: str,
        ruleset_hash: str,
    ) -> None:
        self._decide(self.Adjudicated, actor, decision, facts, ruleset_version, ruleset_hash)

    def pend(
        self,
        *,
        actor: str,
        decision: dict[str, Any],
        facts: dict[str, Any],
        ruleset_version: str,
        ruleset_hash: str,
        pend_reasons: list[str] | None = None,
    ) -> None:
        """Hold for human review (high dollar, missing price ...) with the provisional decision."""
        self._decide(self.Pended, actor, decision, facts, ruleset_version, ruleset_hash,
                     pend_reasons=list(pend_reasons or []))

    def _decide(
        self,
        event_class: type[Claim.Adjudicated] | type[Claim.Pended],
        actor: str,
        decision: dict[str, Any],
        facts: dict[str, Any],
        ruleset_version: str,
        ruleset_hash: str,
        **extra: Any,
    ) -> None:
        cmd = Decide.checked(
            actor=actor,
            decision=decision,
            facts=facts,
            ruleset_version=ruleset_version,
            ruleset_hash=ruleset_hash,
        )
        self._require_status(SUBMITTED, "only a submitted claim can be adjudicated or pended")
        self.trigger_event(
            event_class,
            actor=cmd.actor,
            decision=copy_plain(cmd.decision),
            facts=copy_plain(cmd.facts),
            ruleset_version=cmd.ruleset_version,
            ruleset_hash=cmd.ruleset_hash,
            **extra,
        )

    def resolve_review(
        self,
        *,
        actor: str,
        decision: dict[str, Any],
        reviewer: str,
        note: str = "",
        resolution: dict[str, Any],
        facts: dict[str, Any],
    ) -> None:
        cmd = ResolveReview.checked(actor=actor, decision=decision, reviewer=reviewer, note=note,
                                    resolution=resolution, facts=facts)
        self._require_status(PENDED, "only a pended claim can be resolved by review")
        self.trigger_event(
            self.ReviewResolved,
            actor=cmd.actor,
            decision=copy_plain(cmd.decision),
            reviewer=cmd.reviewer,
            note=cmd.note,
            resolution=copy_plain(cmd.resolution),
            facts=copy_plain(cmd.facts),
        )

    def correct(self, *, actor: str, replacement_claim_id: str) -> None:
        """Mark this claim as replaced by ``replacement_claim_id`` (frequency 7)."""
        cmd = CorrectClaim.checked(actor=actor, replacement_claim_id=replacement_claim_id)
        if cmd.replacement_claim_id == self.claim_id:
            raise ValidationError.single("replacement_claim_id", "a claim cannot replace itself")
        self._require_changeable("corrected")
        self.trigger_event(
            self.Corrected,
            actor=cmd.actor,
            replacement_claim_id=cmd.replacement_claim_id,
            frequency_code="7",
        )

    def void(self, *, actor: str, reason: str) -> None:
        """Cancel this claim (frequency 8)."""
        cmd = VoidClaim.checked(actor=actor, reason=reason)
        self._require_changeable("voided")
        self.trigger_event(self.Voided, actor=cmd.actor, reason=cmd.reason, frequency_code="8")

    def open_dispute(self, *, actor: str, dispute_id: str, reason: str) -> None:
        cmd = OpenDispute.checked(actor=actor, dispute_id=dispute_id, reason=reason)
        if cmd.dispute_id in self.disputes:
            msg = "a dispute with this dispute_id already exists on this claim"
            raise AlreadyExistsError(msg)
        self._require_status(ADJUDICATED, "only a decided claim can be disputed")
        if self.open_dispute_id is not None:
            msg = "this claim already has an open dispute"
            raise StateError(msg)
        self.trigger_event(
            self.DisputeOpened,
            actor=cmd.actor,
            dispute_id=cmd.dispute_id,
            reason=cmd.reason,
            opened_by=cmd.actor,
        )

    def resolve_dispute(
        self,
        *,
        actor: str,
        dispute_id: str,
        resolution: str,
        decision: dict[str, Any] | None = None,
        note: str = "",
        facts: dict[str, Any] | None = None,
    ) -> None:
        """Close the open dispute; "overturned" carries the new decision and its facts."""
        cmd = ResolveDispute.checked(
            actor=actor, dispute_id=dispute_id, resolution=resolution, decision=decision, note=note, facts=facts
        )
        if self.open_dispute_id is None:
            msg = "this claim has no open dispute"
            raise StateError(msg)
        if cmd.dispute_id != self.open_dispute_id:
            msg = "dispute_id is not the open dispute of this claim"
            raise StateError(msg)
        self.trigger_event(
            self.DisputeResolved,
            actor=cmd.actor,
            dispute_id=cmd.dispute_id,
            resolution=cmd.resolution,
            decision=copy_plain(cmd.decision),
            note=cmd.note,
            facts=copy_plain(cmd.facts),
        )

    def add_attachment(self, *, actor: str, sha256: str, size_bytes: int, media_type: str) -> str:
        """Attach a stored document (any status: a payer may ask for records after a decision);
        returns its attachment id. Attaching the same document again records nothing."""
        if not isinstance(sha256, str) or not SHA256_HEX.fullmatch(sha256):
            raise ValidationError.single("sha256", "must be 64 lower-case hex digits")
        if not isinstance(size_bytes, int) or isinstance(size_bytes, bool) or size_bytes < 1:
            raise ValidationError.single("size_bytes", "must be at least 1")
        if not isinstance(media_type, str) or not MEDIA_TYPE.fullmatch(media_type):
            raise ValidationError.single("media_type", "must be a media type such as application/pdf (RFC 6838)")
        attachment_id = str(make_id("attachment", self.claim_id, sha256))
        if attachment_id not in self.attachments:
            self.trigger_event(self.AttachmentAdded, actor=actor, attachment_id=attachment_id, sha256=sha256,
                               size_bytes=size_bytes, media_type=media_type.lower())
        return attachment_id

    # --- guards and queries -------------------------------------------------------------

    def _require_status(self, status: str, message: str) -> None:
        if self.status != status:
            msg = f"{message} (this claim is {self.status})"
            raise StateError(msg)

    def _require_changeable(self, verb: str) -> None:
        if self.status in (VOIDED, REPLACED):
            msg = f"a {self.status} claim cannot be {verb}"
            raise StateError(msg)
        self._require_status(ADJUDICATED, f"only a decided claim can be {verb}")
        if self.open_dispute_id is not None:
            msg = f"a claim under dispute cannot be {verb}"
            raise StateError(msg)

    @property
    def decided(self) -> bool:
        return self.status == ADJUDICATED

    @property
    def billed_cents(self) -> int:
        return sum(line["billed_cents"] for line in self.lines)


def claim_requests(events: Iterable[Any]) -> dict[UUID, UUID]:
    """Each new claim's id among `events` -> its request id (`Claim.request_id_of`), for the writer
    to record in the same transaction (migration 0027)."""
    return {e.originator_id: Claim.request_id_of(e.provider_id, e.idempotency_key)
            for e in events if isinstance(e, Claim.Submitted)}
