"""The ledger's commands: one method per command, each returning a receipt.

`ClaimsLedger` validates (through the domain's strict models), loads and changes aggregates, and
saves them through the group committer, so concurrent requests share commits. Commands that
change an existing aggregate are re-run on a fresh copy when a concurrent write got there first
(they are deterministic on the current state, so that is safe); creating something that already
exists is ALREADY_EXISTS. The clock lives here, never in the domain or the adjudicator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

import adjudicator
from claims_service.application import Ledger, Receipt
from claims_service.domain.claim import Claim
from claims_service.domain.contract import Contract
from claims_service.domain.member import MemberCoverage
from claims_service.domain.payment import Payment
from claims_service.domain.provider import Provider
from claims_service.domain.rulesets import RuleSetSchedule
from claims_service.domain.values import SubmitClaim
from claims_service.domain.visit import Visit
from claims_service.errors import (
    AlreadyExistsError,
    ClaimNotFoundError,
    ConflictError,
    ContractNotFoundError,
    MemberNotFoundError,
    NotFoundError,
    ProviderNotFoundError,
    ValidationError,
    VisitNotFoundError,
)
from claims_service.group_commit import GroupCommitter

T = TypeVar("T")
RETRIES = 5


def utc_today() -> date:
    return datetime.now(UTC).date()


@dataclass(frozen=True)
class ClaimReceipt:
    claim_id: str
    receipt: Receipt


class ClaimsLedger:
    def __init__(self, ledger: Ledger, *, today: Callable[[], date] = utc_today) -> None:
        self.ledger = ledger
        self.writer = GroupCommitter(ledger)
        self.today = today

    def close(self) -> None:
        self.writer.close()

    # --- plumbing ------------------------------------------------------------------------

    def _save(self, *aggregates: Any) -> Receipt:
        return self.writer.record(*aggregates)[-1]

    def _create(self, aggregate: Any, what: str) -> Receipt:
        try:
            return self._save(aggregate)
        except ConflictError:
            raise AlreadyExistsError(f"{what} already exists") from None

    def _get(self, aggregate_id: UUID, missing: NotFoundError) -> Any:
        try:
            return self.ledger.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise missing from None

    def _change(self, aggregate_id: UUID, missing: NotFoundError, change: Callable[[Any], None]) -> Receipt:
        """Load, change, save; on a concurrent write, do it again on the fresh state."""
        for _ in range(RETRIES):
            aggregate = self._get(aggregate_id, missing)
            change(aggregate)
            if not aggregate.pending_events:
                return self.receipt_of(aggregate.id, aggregate.version)
            try:
                return self._save(aggregate)
            except ConflictError:
                continue
        raise ConflictError("the record kept changing under this command; retry")

    def receipt_of(self, stream_id: UUID, version: int) -> Receipt:
        with self.ledger.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT notification_id, hash FROM ledger_events WHERE originator_id = %s AND originator_version = %s",
                (stream_id, version),
            )
            row = curs.fetchone()
        return Receipt(row["notification_id"], bytes(row["hash"]))

    # --- administration ------------------------------------------------------------------

    def enroll_member(self, *, actor: str, **fields: Any) -> Receipt:
        member = MemberCoverage.enrol(actor=actor, **fields)
        return self._create(member, f"member {member.member_id} with payer {member.payer_id}")

    def terminate_coverage(self, *, actor: str, payer_id: str, member_id: str, termination_date: date) -> Receipt:
        return self._change(
            MemberCoverage.create_id(payer_id, member_id),
            MemberNotFoundError(f"member {member_id} is not enrolled with payer {payer_id}"),
            lambda m: m.terminate(actor=actor, termination_date=termination_date),
        )

    def authorize_prior(self, *, actor: str, payer_id: str, member_id: str, **fields: Any) -> Receipt:
        return self._change(
            MemberCoverage.create_id(payer_id, member_id),
            MemberNotFoundError(f"member {member_id} is not enrolled with payer {payer_id}"),
            lambda m: m.authorize(actor=actor, **fields),
        )

    def register_provider(self, *, actor: str, npi: str, name: str, taxonomy: str) -> Receipt:
        provider = Provider.register(actor=actor, npi=npi, name=name, taxonomy=taxonomy)
        return self._create(provider, f"provider {npi}")

    def _provider_change(self, npi: str, change: Callable[[Provider], None]) -> Receipt:
        try:
            provider_id = Provider.create_id(npi)
        except TypeError:
            raise ValidationError.single("npi", "is required") from None
        return self._change(provider_id, ProviderNotFoundError(f"provider {npi} is not registered"), change)

    def record_credential(self, *, actor: str, npi: str, licence_number: str, state: str,
                          valid_from: date, valid_to: date, revoked_on: date | None = None) -> Receipt:
        def change(provider: Provider) -> None:
            if revoked_on is not None:
                provider.revoke_credential(actor=actor, licence_number=licence_number, revoked_on=revoked_on)
            else:
                provider.verify_credential(actor=actor, licence_number=licence_number, state=state,
                                           valid_from=valid_from, valid_to=valid_to)
        return self._provider_change(npi, change)

    def join_network(self, *, actor: str, npi: str, **fields: Any) -> Receipt:
        return self._provider_change(npi, lambda p: p.join_network(actor=actor, **fields))

    def publish_fee_schedule(self, *, actor: str, contract_id: str, payer_id: str, version: int,
                             effective_date: date, fees: dict[str, int]) -> Receipt:
        try:
            existing = self.ledger.repository.get(Contract.create_id(contract_id))
        except AggregateNotFoundError:
            contract = Contract.publish(actor=actor, contract_id=contract_id, payer_id=payer_id, version=version,
                                        effective_date=effective_date, fees=fees)
            return self._create(contract, f"contract {contract_id}")
        if existing.payer_id != payer_id:
            raise ValidationError.single("payer_id", f"contract {contract_id} belongs to another payer")
        return self._change(
            existing.id,
            ContractNotFoundError(f"contract {contract_id} not found"),
            lambda c: c.publish_fee_schedule(actor=actor, version=version, effective_date=effective_date, fees=fees),
        )

    def deploy_ruleset(self, *, actor: str, version: str, effective_date: date) -> Receipt:
        if version not in adjudicator.RULESETS:
            known = ", ".join(sorted(adjudicator.RULESETS))
            raise ValidationError.single("version", f"unknown rule set {version!r} (released: {known})")
        ruleset = adjudicator.get_ruleset(version)
        for _ in range(RETRIES):
            try:
                schedule = self.ledger.repository.get(RuleSetSchedule.create_id())
            except AggregateNotFoundError:
                schedule = RuleSetSchedule.start()
            schedule.deploy(actor=actor, version=version, content_hash=ruleset.content_hash,
                            effective_date=effective_date)
            try:
                return self._save(schedule)
            except ConflictError:
                continue
        raise ConflictError("the rule-set schedule kept changing; retry")

    # --- providers ---------------------------------------------------------------------

    def record_visit(self, *, actor: str, **fields: Any) -> Receipt:
        visit = Visit.record(actor=actor, **fields)
        return self._create(visit, f"visit {visit.visit_id}")

    def submit_claim(self, *, actor: str, **fields: Any) -> ClaimReceipt:
        """Submit; a retry with the same idempotency key and body returns the original receipt."""
        request = SubmitClaim.checked(actor=actor, received_on=self.today(), **fields)
        if request.visit_id is not None:
            self._get(Visit.create_id(request.provider_id, request.visit_id),
                      VisitNotFoundError(f"visit {request.visit_id} is not recorded"))
        claim = Claim.submit_request(request)
        try:
            return ClaimReceipt(claim.claim_id, self._save(claim))
        except ConflictError:
            original = self._get(claim.id, ClaimNotFoundError("claim not found"))
            original.ensure_same_request(request.body_hash())
            return ClaimReceipt(original.claim_id, self.receipt_of(original.id, 1))

    def own_claim(self, claim_id: str, provider_id: str | None = None) -> Claim:
        """The claim, or NOT_FOUND: also when it belongs to another provider (no existence leak)."""
        missing = ClaimNotFoundError(f"claim {claim_id} not found")
        try:
            stream_id = UUID(claim_id)
        except (ValueError, TypeError, AttributeError):
            raise ValidationError.single("claim_id", "must be a claim id (UUID)") from None
        claim = self._get(stream_id, missing)
        if not isinstance(claim, Claim) or (provider_id is not None and claim.provider_id != provider_id):
            raise missing
        return claim

    def correct_claim(self, *, actor: str, original_claim_id: str, **fields: Any) -> ClaimReceipt:
        """A replacement (frequency 7): the new claim and the original's supersession, one commit."""
        request = SubmitClaim.checked(actor=actor, received_on=self.today(), frequency_code="7",
                                      replaces_claim_id=original_claim_id, **fields)
        for _ in range(RETRIES):
            original = self.own_claim(original_claim_id, request.provider_id)
            replacement = Claim.submit_request(request)
            if original.status == "replaced" and original.replaced_by == replacement.claim_id:
                replacement_now = self._get(replacement.id, ClaimNotFoundError("claim not found"))
                replacement_now.ensure_same_request(request.body_hash())
                return ClaimReceipt(replacement.claim_id, self.receipt_of(replacement.id, 1))
            original.correct(actor=actor, replacement_claim_id=replacement.claim_id)
            try:
                return ClaimReceipt(replacement.claim_id, self.writer.record(replacement, original)[0])
            except ConflictError:
                continue
        raise ConflictError("the claim kept changing under this correction; retry")

    def void_claim(self, *, actor: str, provider_id: str, claim_id: str, reason: str) -> Receipt:
        claim = self.own_claim(claim_id, provider_id)
        return self._change(claim.id, ClaimNotFoundError(f"claim {claim_id} not found"),
                            lambda c: c.void(actor=actor, reason=reason))
