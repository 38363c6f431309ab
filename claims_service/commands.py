"""The ledger's commands: one method per command, each returning a receipt.

`Commands` validates (through the domain's strict models), loads and changes aggregates, and
saves them through the group committer, so concurrent requests share commits. Commands that
change an existing aggregate are re-run on a fresh copy when a concurrent write got there first
(they are deterministic on the current state, so that is safe); creating something that already
exists is ALREADY_EXISTS. The clock lives here, never in the domain or the adjudicator.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

import adjudicator
from adjudicator.codes import CARC, CodeNotInForceError
from adjudicator.models import Outcome
from adjudicator.replay import compare
from adjudicator.review import lines_to_review
from claims_service.adjudication.facts import DEFAULT_RULESET, claim_input_of, facts_for_redecision
from claims_service.adjudication.settlement import Load, current_decision, prefetching_payments, settle
from claims_service.application import LedgerApplication, Receipt
from claims_service.domain.apikey import MAX_LIFETIME as MAX_KEY_LIFETIME
from claims_service.domain.apikey import ApiKey, check_key_id, check_reason, new_key, secret_hash
from claims_service.domain.claim import Claim
from claims_service.domain.consent import MAX_LIFETIME as MAX_CONSENT_LIFETIME
from claims_service.domain.consent import Consent, check_scope
from claims_service.domain.consent import check_reason as check_revoke_reason
from claims_service.domain.formats import is_npi
from claims_service.domain.contract import Contract
from claims_service.domain.member import MemberCoverage
from claims_service.domain.payment import Payment, run_id, run_trace_number
from claims_service.domain.provider import Provider
from claims_service.domain.rulesets import RuleSetSchedule
from claims_service.domain.values import RecordVisit, SubmitClaim
from claims_service.domain.visit import Visit
from claims_service.errors import (
    AlreadyExistsError,
    ClaimNotFoundError,
    ConflictError,
    ContractNotFoundError,
    MemberNotFoundError,
    NotFoundError,
    ProviderNotFoundError,
    StateError,
    ValidationError,
    VisitNotFoundError,
)
from claims_service.keys.sealing import ErasedEvent
from claims_service.ledger import payloads
from claims_service.ledger.verify import verify_streams
from claims_service.group_commit import GroupCommitter

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRIES = 5
PAYER_SCAN_CHUNK = 1_000


def utc_today() -> date:
    return datetime.now(UTC).date()


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ClaimReceipt:
    claim_id: str
    receipt: Receipt


class Commands:
    def __init__(self, ledger: LedgerApplication, *, today: Callable[[], date] = utc_today,
                 now: Callable[[], datetime] = utc_now) -> None:
        self.ledger = ledger
        self.writer = GroupCommitter(ledger)
        self.today = today
        self.now = now
        self._known_payers: set[str] = set()  # payers never become unknown: only hits are kept
        self._known_members: set[str] = set()  # neither do members
        self._key_revoked: list[Callable[[str], None]] = []

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

    def _claim_of_request(self, request_id: UUID) -> Claim | None:
        """The claim a submission's request id made (a retry's original), None if none did. The row
        is not hash-linked, so the claim it names must show the same request in its own (linked)
        submission: a row changed behind the ledger's back never hands out another claim."""
        with self.ledger.datastore.transaction(commit=False) as curs:
            curs.execute("SELECT claim_id FROM claim_requests WHERE request_id = %s", (request_id,))
            row = curs.fetchone()
        if row is None:
            return None
        claim = self._get(row["claim_id"], ClaimNotFoundError("claim not found"))
        if not isinstance(claim, Claim) or claim.request_id != request_id:
            log.error("claim_requests names stream %s for request %s, whose submission is not that request",
                      row["claim_id"], request_id)
            return None
        return claim

    def receipt_of(self, stream_id: UUID, version: int) -> Receipt:
        with self.ledger.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT notification_id, hash, leaf_index FROM ledger_events WHERE originator_id = %s AND originator_version = %s",
                (stream_id, version),
            )
            row = curs.fetchone()
        # An earlier write's receipt (a retry, a change that changed nothing): a checkpoint may cover it by now.
        return self.ledger.with_checkpoint(Receipt(row["notification_id"], bytes(row["hash"]), row["leaf_index"]))

    # --- administration ------------------------------------------------------------------

    def enroll_member(self, *, actor: str, **fields: Any) -> Receipt:
        member = MemberCoverage.enrol(actor=actor, **fields)
        return self._create(member, f"member {member.member_id} with payer {member.payer_id}")

    def terminate_coverage(self, *, actor: str, payer_id: str, member_id: str, termination_date: date) -> Receipt:
        return self._change(
            MemberCoverage.create_id(payer_id, member_id),
            MemberNotFoundError(f"member_id: no such member enrolled with payer {payer_id}"),
            lambda m: m.terminate(actor=actor, termination_date=termination_date),
        )

    def authorize_prior(self, *, actor: str, payer_id: str, member_id: str, **fields: Any) -> Receipt:
        return self._change(
            MemberCoverage.create_id(payer_id, member_id),
            MemberNotFoundError(f"member_id: no such member enrolled with payer {payer_id}"),
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

    def deploy_ruleset(self, *, actor: str, version: str, effective_date: date) -> tuple[Receipt, str]:
        """Put a released rule set in force from `effective_date`; returns its content hash too."""
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
                return self._save(schedule), ruleset.content_hash
            except ConflictError:
                continue
        raise ConflictError("the rule-set schedule kept changing; retry")

    def create_api_key(self, *, actor: str, role: str, party_id: str, label: str,
                       expires_at: datetime | None = None) -> tuple[str, str, Receipt]:
        """Issue a key, for a party the ledger knows, optionally expiring (`key_expiry`); the full
        key is returned once and only its secret's hash is recorded."""
        key_id, secret, full_key = new_key()
        key = ApiKey.issue(actor=actor, key_id=key_id, role=role, party_id=party_id, label=label,
                           secret_sha256=secret_hash(secret), now=self.now(), expires_at=expires_at)
        self._ensure_party_exists(role, party_id)
        return full_key, key_id, self._create(key, f"API key {key_id}")

    def key_expiry(self, *, expires_at: datetime | None = None, ttl_seconds: int = 0) -> datetime | None:
        """When a new key is to expire: at `expires_at`, or `ttl_seconds` from now (not both);
        None for a key that never expires. The bounds are the domain's (`check_expiry`)."""
        if ttl_seconds and expires_at is not None:
            raise ValidationError.single("ttl_seconds", "give expires_at or ttl_seconds, not both")
        if not ttl_seconds:
            return expires_at
        now = self.now()
        if not 0 < ttl_seconds <= MAX_KEY_LIFETIME.total_seconds():
            raise ValidationError.single("ttl_seconds", f"must be between 1 and {int(MAX_KEY_LIFETIME.total_seconds())}"
                                                        f" ({MAX_KEY_LIFETIME.days} days), or 0 for no expiry")
        return now + timedelta(seconds=ttl_seconds)

    def _ensure_party_exists(self, role: str, party_id: str) -> None:
        """A provider key needs a registered provider; a payer key a payer the ledger knows: one
        with a member enrolled or a contract published. NOT_FOUND names the field, not the value."""
        if role == "provider":
            provider = self._load(Provider.create_id(party_id))
            if not isinstance(provider, Provider):
                raise ProviderNotFoundError("party_id: no provider with this NPI is registered")
        elif role == "payer" and not self._payer_known(party_id):
            raise NotFoundError("party_id: the ledger knows no payer of this id "
                                "(enrol a member with it or publish a contract with it first)")
        elif role == "member" and not self._member_known(party_id):
            raise MemberNotFoundError("party_id: no payer enrols a member of this id (enrol the member first)")

    def _member_known(self, member_id: str) -> bool:
        """Whether a member enrolment of the ledger names this member id (with any payer), by the
        same pass over the enrolments as `_payer_known`; members seen on the way are remembered."""
        return member_id in self._known_members or self._scan_parties(
            [get_topic(MemberCoverage.Enrolled)], "member_id", member_id, self._known_members)

    def _payer_known(self, payer_id: str) -> bool:
        """Whether a member enrolment or a contract of the ledger names this payer. There is no
        payer registry: the payer's first enrolment or contract is what makes it known. Those
        events are read (and opened) until one names it, in one pass over the table; an unknown
        payer costs the whole pass (key creation is rare and admin-only). Payers seen on the way
        are remembered: a payer never becomes unknown."""
        return payer_id in self._known_payers or self._scan_parties(
            [get_topic(MemberCoverage.Enrolled), get_topic(Contract.Published)], "payer_id", payer_id,
            self._known_payers)

    def _scan_parties(self, topics: list[str], field: str, wanted: str, seen: set[str]) -> bool:
        """Read the events of `topics` in position order, `PAYER_SCAN_CHUNK` at a time, adding each
        one's `field` to `seen`, until one names `wanted`. Each chunk is a statement of its own (no
        transaction stays open while a chunk is opened: the library ends one idle for seconds) and
        its members' keys are read together, not one query an event."""
        mapper = self.ledger.mapper
        keys = mapper.sealer.keys if mapper.sealer is not None else None
        after = 0
        while True:
            with self.ledger.datastore.get_connection() as conn:
                rows = conn.execute(
                    "SELECT notification_id, originator_id, originator_version, topic, state FROM ledger_events"
                    " WHERE notification_id > %s AND topic = ANY(%s) ORDER BY notification_id LIMIT %s",
                    (after, topics, PAYER_SCAN_CHUNK)).fetchall()
            if not rows:
                return False
            after = rows[-1]["notification_id"]
            if keys is not None:
                keys.prefetch(k for row in rows if (k := payloads.sealed_key_id(bytes(row["state"]))) is not None)
            for row in rows:
                stored = StoredEvent(row["originator_id"], row["originator_version"], row["topic"], bytes(row["state"]))
                event = mapper.to_domain_event(stored)
                # An erased member's enrolment keeps what was never member data (its payer) in the clear.
                value = event.plain.get(field) if isinstance(event, ErasedEvent) else getattr(event, field, None)
                if value is not None:
                    seen.add(value)
            if wanted in seen:
                return True

    def revoke_api_key(self, *, actor: str, key_id: str, reason: str) -> tuple[Receipt, bool]:
        """Revoke a key for good. Idempotent: revoking a revoked key writes nothing and returns the
        first revocation's receipt, with True for "already revoked". Listeners (`on_key_revoked`,
        this process's authenticator) hear of it at once; other processes within their cache time."""
        check_key_id(key_id)
        check_reason(reason)  # bad input is INVALID_ARGUMENT whether or not the key exists
        already: list[bool] = []

        def change(key: ApiKey) -> None:
            already[:] = [not key.revoke(actor=actor, reason=reason)]

        receipt = self._change(ApiKey.create_id(key_id), NotFoundError("key_id: no such API key"), change)
        for listener in self._key_revoked:
            listener(key_id)
        return receipt, already[0]

    def on_key_revoked(self, listener: Callable[[str], None]) -> None:
        """Call `listener(key_id)` after each revocation this process makes (cache eviction)."""
        self._key_revoked.append(listener)

    def api_keys(self, *, after_position: int = 0, limit: int = 50) -> list[tuple[int, ApiKey]]:
        """Keys in the order they were issued, after the ledger position of a key's issue, with
        that position (a page's key); revoked and expired ones too, their state on them."""
        with self.ledger.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT notification_id, originator_id FROM ledger_events"
                " WHERE notification_id > %s AND topic = %s ORDER BY notification_id LIMIT %s",
                (after_position, get_topic(ApiKey.Issued), limit),
            )
            rows = curs.fetchall()
        keys = self.ledger.load_many([row["originator_id"] for row in rows])
        return [(row["notification_id"], keys[row["originator_id"]]) for row in rows]

    # --- members -----------------------------------------------------------------------

    def consent_expiry(self, *, expires_at: datetime | None = None, ttl_seconds: int = 0) -> datetime:
        """When a new grant lapses: at `expires_at`, or `ttl_seconds` from now (one of them)."""
        if ttl_seconds and expires_at is not None:
            raise ValidationError.single("ttl_seconds", "give expires_at or ttl_seconds, not both")
        if expires_at is not None:
            return expires_at
        most = int(MAX_CONSENT_LIFETIME.total_seconds())
        if not 0 < ttl_seconds <= most:
            raise ValidationError.single("ttl_seconds", f"must be between 1 and {most} "
                                                        f"({MAX_CONSENT_LIFETIME.days} days), or give expires_at")
        return self.now() + timedelta(seconds=ttl_seconds)

    def grant_consent(self, *, actor: str, member_id: str, provider_id: str, scope: str,
                      expires_at: datetime) -> tuple[str, Receipt]:
        """The member lets a registered provider read their claim history across providers, in
        `scope`, until `expires_at` (replacing the grant in force for it); returns the grant's id."""
        check_scope(scope)
        if not is_npi(provider_id):
            raise ValidationError.single("provider_id", "must be a valid NPI (10 digits, check digit)")
        if not isinstance(self._load(Provider.create_id(provider_id)), Provider):
            raise ProviderNotFoundError("provider_id: no provider with this NPI is registered")
        grant_id = str(uuid4())
        for _ in range(RETRIES):
            consent = self._load(Consent.create_id(member_id, provider_id))
            if not isinstance(consent, Consent):
                consent = Consent.open(member_id=member_id, provider_id=provider_id)
            consent.give(actor=actor, grant_id=grant_id, scope=scope, expires_at=expires_at, now=self.now())
            try:
                return grant_id, self._save(consent)
            except ConflictError:
                continue
        raise ConflictError("the consent kept changing under this grant; retry")

    def revoke_consent(self, *, actor: str, member_id: str, provider_id: str, reason: str) -> tuple[Receipt, bool]:
        """End the grant to a provider at once. Idempotent: a revoked grant is not revoked again
        (nothing written, the first revocation's receipt, True for "already revoked")."""
        reason = check_revoke_reason(reason)
        if not is_npi(provider_id):
            raise ValidationError.single("provider_id", "must be a valid NPI (10 digits, check digit)")
        already: list[bool] = []

        def change(consent: Consent) -> None:
            already[:] = [not consent.revoke(actor=actor, reason=reason)]

        receipt = self._change(Consent.create_id(member_id, provider_id),
                               NotFoundError("provider_id: you have given this provider no consent"), change)
        return receipt, already[0]

    def consent_in_force(self, member_id: str, provider_id: str) -> dict[str, Any] | None:
        """The member's grant to the provider in force now, read from the ledger (so a revocation
        counts at once), or None."""
        consent = self._load(Consent.create_id(member_id, provider_id))
        return consent.in_force(self.now()) if isinstance(consent, Consent) else None

    # --- providers ---------------------------------------------------------------------

    def record_visit(self, *, actor: str, **fields: Any) -> Receipt:
        """Record; a retry with the same visit id and the same visit returns the original receipt
        and writes nothing, the same visit id with a different visit is ALREADY_EXISTS."""
        request = RecordVisit.checked(actor=actor, **fields)
        visit = Visit.record_request(request)
        try:
            return self._save(visit)
        except ConflictError:
            original = self._get(visit.id, VisitNotFoundError("visit_id: no such visit is recorded for this provider"))
            original.ensure_same_request(request)
            return self.receipt_of(original.id, 1)

    def submit_claim(self, *, actor: str, **fields: Any) -> ClaimReceipt:
        """Submit; a retry with the same idempotency key and body returns the original receipt."""
        request = SubmitClaim.checked(actor=actor, received_on=self.today(), **fields)
        if request.visit_id is not None:
            self._get(Visit.create_id(request.provider_id, request.visit_id),
                      VisitNotFoundError("visit_id: no such visit is recorded for this provider"))
        claim = Claim.submit_request(request)
        try:
            return ClaimReceipt(claim.claim_id, self._save(claim))
        except ConflictError:
            original = self._claim_of_request(claim.request_id)
            if original is None:
                raise
            original.ensure_same_request(request.body_hash())
            return ClaimReceipt(original.claim_id, self.receipt_of(original.id, 1))

    def submit_claims(self, *, actor: str, claims: list[dict[str, Any]]) -> list[ClaimReceipt | Exception]:
        """Several originals (an 837's) in one write, in the order given, so they are adjudicated in
        that order: each validated as `submit_claim` validates it, one that fails coming back as its
        error while the others go on. When one was submitted before (the same file again), each
        goes through `submit_claim` instead, which answers a retry with its first receipt."""
        results: list[ClaimReceipt | Exception | None] = [None] * len(claims)
        new: list[tuple[int, Claim]] = []
        for index, fields in enumerate(claims):
            try:
                request = SubmitClaim.checked(actor=actor, received_on=self.today(), **fields)
                if request.visit_id is not None:
                    self._get(Visit.create_id(request.provider_id, request.visit_id),
                              VisitNotFoundError("visit_id: no such visit is recorded for this provider"))
                new.append((index, Claim.submit_request(request)))
            except (ValidationError, NotFoundError) as error:
                results[index] = error
        if new:
            try:
                receipts = self.writer.record(*(claim for _, claim in new))
                for (index, claim), receipt in zip(new, receipts, strict=True):
                    results[index] = ClaimReceipt(claim.claim_id, receipt)
            except ConflictError:
                for index, _claim in new:
                    try:
                        results[index] = self.submit_claim(actor=actor, **claims[index])
                    except (ValidationError, NotFoundError, AlreadyExistsError) as error:
                        results[index] = error
        return [r for r in results if r is not None]

    def own_claim(self, claim_id: str, provider_id: str | None = None) -> Claim:
        """The claim, or NOT_FOUND: also when it belongs to another provider (no existence leak)."""
        missing = ClaimNotFoundError("claim_id: no such claim")
        claim = self._get(claim_stream(claim_id), missing)
        if not isinstance(claim, Claim) or (provider_id is not None and claim.provider_id != provider_id):
            raise missing
        return claim

    def correct_claim(self, *, actor: str, original_claim_id: str, **fields: Any) -> ClaimReceipt:
        """A replacement (frequency 7): the new claim, the original's supersession and the end of
        the original's payments (scheduled ones cancelled, issued ones recouped), in one commit;
        the adjudicator takes the original off the accumulators before it decides the replacement."""
        claim_stream(original_claim_id)  # a bad id is the request's claim_id (not the body's replaces_claim_id)
        request = SubmitClaim.checked(actor=actor, received_on=self.today(), frequency_code="7",
                                      replaces_claim_id=original_claim_id, **fields)
        for _ in range(RETRIES):
            original = self.own_claim(original_claim_id, request.provider_id)
            replacement = Claim.submit_request(request)
            if original.status == "replaced":  # by this request, retried?
                replacement_now = self._claim_of_request(replacement.request_id)
                if replacement_now is not None and original.replaced_by == replacement_now.claim_id:
                    replacement_now.ensure_same_request(request.body_hash())
                    return ClaimReceipt(replacement_now.claim_id, self.receipt_of(replacement_now.id, 1))
            before = current_decision(original)
            original.correct(actor=actor, replacement_claim_id=replacement.claim_id)
            money = settle(self._claim_load(original), original, before=before, after=None, actor=actor,
                           reason=f"replaced by {replacement.claim_id}", payments_only=True)
            try:
                # The replacement's own first event, as a retry of this correction returns it too.
                return ClaimReceipt(replacement.claim_id, self.writer.record(replacement, original, *money)[0])
            except ConflictError:
                continue
        raise ConflictError("the claim kept changing under this correction; retry")

    def void_claim(self, *, actor: str, provider_id: str, claim_id: str, reason: str) -> Receipt:
        """Cancel a claim (frequency 8) and its payments in one commit: no payment of it is issued
        after; the adjudicator takes it off the member's accumulators next (settlement.py)."""
        claim = self.own_claim(claim_id, provider_id)

        def change(c: Claim) -> list[Any]:
            before = current_decision(c)
            c.void(actor=actor, reason=reason)
            return settle(self._claim_load(c), c, before=before, after=None, actor=actor, reason=f"voided: {reason}",
                          payments_only=True)

        return self._change_claim(claim, claim_id, change)

    def _claim_load(self, claim: Claim) -> Load:
        """`_load` for settling the claim: its first payments read in one statement, not one each."""
        return prefetching_payments(self._load, lambda ids: self.ledger.load_many(ids, refuse_erased=True), claim.claim_id)

    def _load(self, aggregate_id: UUID) -> Any | None:
        try:
            return self.ledger.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    def _change_claim(self, loaded: Claim, shown_id: str, change: Callable[[Claim], list[Any]]) -> Receipt:
        """Change the claim (as the caller loaded it) and save it with what the change returns (its
        money), in one commit; on a concurrent write to any of them, all of it again on the claim
        read afresh. The receipt names the commit's last event, so that a read at its position sees
        all of it."""
        claim: Claim | None = loaded  # the first attempt needs no second read of what the caller read
        for _ in range(RETRIES):
            if claim is None:
                claim = self._get(loaded.id, ClaimNotFoundError(f"claim {shown_id} not found"))
            others = change(claim)
            if not claim.pending_events:
                return self.receipt_of(claim.id, claim.version)
            try:
                return self.writer.record(claim, *others)[-1]
            except ConflictError:
                claim = None
        raise ConflictError("the claim kept changing under this command; retry")

    # --- payers -----------------------------------------------------------------------

    def resolve_pended_claim(self, *, actor: str, payer_id: str, claim_id: str, note: str,
                             approve: list[dict[str, int]] | None = None,
                             deny: tuple[str, str] | None = None) -> tuple[Receipt, dict[str, Any]]:
        """Decide a pended claim as the reviewer resolves it, by the engine's own functions
        (`adjudicator.review`): the reviewer's allowed amounts (or denial) in place of pricing, then
        the plan's cost share on the member's accumulators as they stand now, capped by the
        out-of-pocket maximum, labelled by the engine's rule. The decision, its facts and the
        reviewer's resolution are recorded together with the accumulators and the payment it
        moves, in one commit."""
        claim = self.own_claim(claim_id)
        if claim.payer_id != payer_id:
            raise ClaimNotFoundError(f"claim {claim_id} not found")
        resolution = review_resolution(claim, approve=approve, deny=deny)
        decided: dict[str, Any] = {}

        def change(c: Claim) -> list[Any]:
            if c.status != "pended":
                raise StateError(f"only a pended claim can be resolved by review (this claim is {c.status})")
            facts = facts_for_redecision(self._load, self.ledger.load_many, c)
            ruleset = adjudicator.get_ruleset(c.ruleset_version)
            try:
                decision = adjudicator.review(claim_input_of(c), facts, ruleset, resolution)
            except CodeNotInForceError as error:
                raise ValidationError.single("deny.carc", str(error)) from None
            decided.update(decision.model_dump(mode="json"))
            c.resolve_review(actor=actor, decision=decided, reviewer=actor, note=note,
                             resolution=resolution.to_json(), facts=facts.model_dump(mode="json"))
            return settle(self._claim_load(c), c, before=None, after=decision, actor=actor, reason="review")

        receipt = self._change_claim(claim, claim_id, change)
        return receipt, decided

    def issue_payments(self, *, actor: str, payer_id: str, payment_ids: list[str]) -> tuple[list[Payment], Receipt | None]:
        """Issue the given payments that are still scheduled, in one batch (one commit): a payment
        run, whose payments to one provider share one trace number (the run's id and the NPI: one
        EFT, one 835; `domain.payment.run_id`). A void or a lowered decision that cancels one of
        them at the same moment wins or loses the race as a whole: the batch is read again and the
        cancelled payment left out."""
        today = self.today()
        for _ in range(RETRIES):
            issued = []
            for payment_id in payment_ids:
                payment = self._get(Payment.create_id(payment_id), NotFoundError(f"payment {payment_id} not found"))
                if payment.payer_id != payer_id or payment.status != "scheduled":
                    continue
                issued.append(payment)
            if not issued:
                return [], None
            run = run_id(self.now(), [p.payment_id for p in issued])
            for payment in issued:
                payment.issue(actor=actor, trace_number=run_trace_number(run, payment.provider_id), issued_on=today)
            try:
                return issued, self.writer.record(*issued)[-1]
            except ConflictError:
                continue
        raise ConflictError("the payments kept changing under this run; retry")

    # --- disputes ---------------------------------------------------------------------

    def open_dispute(self, *, actor: str, claim_id: str, reason: str) -> tuple[str, Receipt]:
        claim = self.own_claim(claim_id)
        dispute_id = f"D-{claim.claim_id[:8]}-{len(claim.disputes) + 1}"
        receipt = self._change(claim.id, ClaimNotFoundError(f"claim {claim_id} not found"),
                               lambda c: c.open_dispute(actor=actor, dispute_id=dispute_id, reason=reason))
        return dispute_id, receipt

    def replay(self, claim_id: str, ruleset_version: str | None = None) -> Replay:
        """Re-run the recorded rule set (or another version, as a what-if) on the recorded facts."""
        claim = self.own_claim(claim_id)
        # Evidence first: the claim's events must be the ones the ledger hashed (DATA_LOSS if not).
        verify_streams(self.ledger.database_url, [claim.id])
        if claim.facts is None or claim.ruleset_version is None:
            raise StateError("this claim has not been adjudicated yet: nothing to replay")
        version = ruleset_version or claim.ruleset_version
        try:
            ruleset = adjudicator.get_ruleset(version)
        except adjudicator.UnknownRuleSetError:
            raise ValidationError.single("ruleset_version", f"unknown rule set {version!r}") from None
        recorded = adjudicator.Decision.model_validate(claim.run_decision)
        try:
            replayed = adjudicator.adjudicate(claim_input_of(claim), adjudicator.Facts.model_validate(claim.facts), ruleset)
        except Exception as error:  # the rule set cannot decide these facts (the run was pended for review)
            return Replay(recorded=recorded.model_dump(mode="json"), replayed=recorded.model_dump(mode="json"),
                          differences=[f"rule set {ruleset.version} cannot decide this claim ({type(error).__name__})"],
                          recorded_position=self.decision_position(claim), member_id=claim.member_id)
        differences = compare(recorded, replayed)
        position = self.decision_position(claim)
        return Replay(recorded=recorded.model_dump(mode="json"), replayed=replayed.model_dump(mode="json"),
                      differences=differences, recorded_position=position, member_id=claim.member_id)

    def decision_position(self, claim: Claim) -> int:
        """The ledger position of the claim's automatic decision (Adjudicated or Pended)."""
        with self.ledger.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT notification_id FROM ledger_events WHERE originator_id = %s AND topic = ANY(%s)"
                " ORDER BY originator_version LIMIT 1",
                (claim.id, [get_topic(Claim.Adjudicated), get_topic(Claim.Pended)]),
            )
            row = curs.fetchone()
        return row["notification_id"] if row else 0

    def resolve_dispute(self, *, actor: str, claim_id: str, dispute_id: str, resolution: str, note: str,
                        ruleset_version: str | None = None) -> tuple[Receipt, dict[str, Any] | None]:
        """Upheld: the decision stands. Overturned: a new decision by the given (or the in-force)
        rule set on the recorded facts, with the member's accumulators as they stand now (less this
        claim's own effect), so the out-of-pocket maximum holds; the difference is paid, cancelled
        or recouped in the same commit."""
        claim = self.own_claim(claim_id)
        if resolution == "overturned":
            if not claim.facts:
                raise StateError("this claim has no recorded facts to decide again")
            version = ruleset_version or self.ruleset_in_force(self.today())
            try:
                ruleset = adjudicator.get_ruleset(version)
            except adjudicator.UnknownRuleSetError:
                raise ValidationError.single("ruleset_version", f"unknown rule set {version!r}") from None
        decided: list[dict[str, Any]] = []

        def change(c: Claim) -> list[Any]:
            if resolution != "overturned":
                c.resolve_dispute(actor=actor, dispute_id=dispute_id, resolution=resolution, decision=None, note=note)
                return []
            before = current_decision(c)
            facts = facts_for_redecision(self._load, self.ledger.load_many, c)
            try:
                decision = adjudicator.adjudicate(claim_input_of(c), facts, ruleset)
            except Exception as error:
                raise StateError(f"rule set {ruleset.version} cannot decide this claim ({type(error).__name__})") from None
            if decision.outcome == Outcome.PENDED:
                # A decision that pends cannot settle a dispute: the claim would stand decided with
                # a provisional decision.
                raise StateError(f"rule set {ruleset.version} pends this claim on its facts; resolve it as upheld "
                                 "or with another rule set")
            decided[:] = [decision.model_dump(mode="json")]
            c.resolve_dispute(actor=actor, dispute_id=dispute_id, resolution=resolution, decision=decided[0],
                              note=note, facts=facts.model_dump(mode="json"))
            return settle(self._claim_load(c), c, before=before, after=decision, actor=actor, reason=f"dispute {dispute_id} overturned")

        receipt = self._change_claim(claim, claim_id, change)
        return receipt, (decided[0] if decided else None)

    def ruleset_in_force(self, day: date) -> str:
        try:
            schedule = self.ledger.repository.get(RuleSetSchedule.create_id())
        except AggregateNotFoundError:
            return DEFAULT_RULESET
        return schedule.version_on(day) or DEFAULT_RULESET


@dataclass(frozen=True)
class Replay:
    recorded: dict[str, Any]
    replayed: dict[str, Any]
    differences: list[str]
    recorded_position: int
    member_id: str = ""  # whose claim it is (the dispute team's read is recorded in their access log)

    @property
    def identical(self) -> bool:
        return not self.differences


def claim_stream(claim_id: str) -> UUID:
    """The stream of the claim `claim_id` names; INVALID_ARGUMENT on `claim_id` unless it is a claim
    id as issued (one spelling only, as the API says: the lower-case hyphenated UUID)."""
    try:
        stream_id = UUID(claim_id)
    except (ValueError, TypeError, AttributeError):
        raise ValidationError.single("claim_id", "must be a claim id (UUID)") from None
    if str(stream_id) != claim_id:
        raise ValidationError.single("claim_id", "must be a claim id as issued (a lower-case UUID)")
    return stream_id


def review_resolution(claim: Claim, *, approve: list[dict[str, int]] | None,
                      deny: tuple[str, str] | None) -> adjudicator.Resolution:
    """The reviewer's resolution, checked against the claim: a denial's codes, or an allowed
    amount (0 up to the billed amount) for every line the pend held, each line once."""
    if deny is not None:
        group, carc = deny
        if group not in ("CO", "OA", "PI", "PR"):
            raise ValidationError.single("deny.group", "must be CO, OA, PI or PR")
        if not carc or len(carc) > 5 or not carc.isalnum():
            raise ValidationError.single("deny.carc", "must be a claim adjustment reason code")
        entry = CARC.get(carc)
        if entry is not None and entry.needs_remark:
            # An 835 must carry a remark code with this CARC, and a reviewer's denial has none.
            raise ValidationError.single("deny.carc", f"CARC {carc} needs a remark code; deny with a more specific CARC")
        return adjudicator.Resolution(deny_group=group, deny_carc=carc)
    billed = {line["line_number"]: line["billed_cents"] for line in claim.lines}
    given: dict[int, int] = {}
    for i, entry in enumerate(approve or []):
        number = entry["line_number"]
        where = f"approve.lines[{i}]"
        if number not in billed:
            raise ValidationError.single(f"{where}.line_number", "is not a line of this claim")
        if number in given:
            raise ValidationError.single(f"{where}.line_number", "is listed twice")
        if not 0 <= entry["allowed_cents"] <= billed[number]:
            raise ValidationError.single(f"{where}.allowed_cents", "must be between 0 and the line's billed amount")
        given[number] = entry["allowed_cents"]
    held = lines_to_review(adjudicator.Decision.model_validate(claim.decision)) if claim.decision else list(billed)
    missing = sorted(set(held) - set(given))
    if missing:
        raise ValidationError.single("approve.lines", f"every line held for review needs an amount; missing line(s) {missing}")
    return adjudicator.Resolution(allowed=given)
