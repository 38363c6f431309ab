"""Read model "access_log": every recorded read of a member's data, the emergency accesses payers
review, and each member's latest consent per provider — its writer (``AccessLogModel``), its rows
(``AccessEntry``, ``EmergencyAccessEntry``, ``ConsentEntry`` and their pages) and its queries
(``member_access_log``, ``payer_emergency_accesses``, ``member_consents``; waiting, checks and
pages as ``reading`` describes).

Tables (migrations/0019_members.sql): ``access_log`` (one row per ``MemberAccess.Recorded``,
append-only; an access under an emergency carries the reason declared), ``emergency_accesses``
(one row per ``EmergencyAccess.Declared`` and payer told, with the claims its access record
read: the declaration and its access record are written in one commit, the declaration first)
and ``member_consents`` (one row per ``Consent`` stream: its latest grant). The consent that
allows a read is checked on the ledger's own stream (``Consent.in_force``), not here: a
revocation stops reads at once, not once this read model has caught up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from projections.events import Notification, Topics
from projections.reading import Hub, Pager, Source, Where, checked, select, wait_for_position
from projections.store import Batch, ReadModel, Table

EMERGENCY_GRANT = "emergency:"


def actor_parts(actor: str) -> tuple[str, str]:
    """("provider", "1234567893") from "provider:1234567893"; the dispute team's "dispute:team" has
    no party ("")."""
    role, _, party = actor.partition(":")
    return role, "" if role in ("dispute", "admin") else party


class AccessLogModel(ReadModel):
    name = "access_log"
    tables = ("access_log", "emergency_accesses", "member_consents")
    topics = frozenset({Topics.MEMBER_ACCESS_RECORDED, Topics.EMERGENCY_ACCESS_DECLARED, Topics.CONSENT_OPENED,
                        Topics.CONSENT_GRANTED, Topics.CONSENT_REVOKED})

    def apply(self, batch: Batch, notifications: Sequence[Notification]) -> None:
        mine = [n for n in notifications if n.topic in self.topics]
        if not mine:
            return
        log = batch.append_table("access_log")
        emergencies = batch.table("emergency_accesses", ("access_id", "payer_id"))
        consents = batch.table("member_consents", ("stream_id",))
        emergencies.prefetch("access_id", {n.payload["grant"][len(EMERGENCY_GRANT):] for n in mine
                                           if n.topic == Topics.MEMBER_ACCESS_RECORDED
                                           and n.payload["grant"].startswith(EMERGENCY_GRANT)})
        consents.prefetch("stream_id", {str(n.stream_id) for n in mine if n.topic in (Topics.CONSENT_GRANTED,
                                                                                        Topics.CONSENT_REVOKED)})
        declared: dict[str, dict[str, Any]] = {}  # this batch's declarations, by access id
        for n in mine:
            p = n.payload
            if n.topic == Topics.MEMBER_ACCESS_RECORDED:
                self._access(log, emergencies, declared, n)
            elif n.topic == Topics.EMERGENCY_ACCESS_DECLARED:
                access_id = str(n.stream_id)
                declared[access_id] = p
                for payer_id in p["payer_ids"]:
                    emergencies.put({"access_id": access_id, "payer_id": payer_id, "position": n.position,
                                     "member_id": p["member_id"], "provider_id": p["provider_id"],
                                     "key_id": p["key_id"], "reason": p["reason"], "claim_ids": [],
                                     "declared_at": p.get("timestamp")})
            else:
                self._consent(consents, n)

    @staticmethod
    def _access(log: Any, emergencies: Table, declared: dict[str, dict[str, Any]], n: Notification) -> None:
        p = n.payload
        role, party = actor_parts(p["actor"])
        reason = None
        if p["grant"].startswith(EMERGENCY_GRANT):
            access_id = p["grant"][len(EMERGENCY_GRANT):]
            rows = [row for key, row in emergencies.rows.items() if key[0] == access_id and row is not None]
            claim_ids = [r.removeprefix("claim:") for r in p["resources"] if r.startswith("claim:")]
            for row in rows:
                emergencies.put({**row, "claim_ids": sorted(set(row["claim_ids"]) | set(claim_ids))})
            source = declared.get(access_id) or (rows[0] if rows else None)
            reason = source["reason"] if source is not None else ""
        log.add({"position": n.position, "member_id": p["member_id"], "role": role, "party_id": party,
                 "key_id": p["key_id"], "method": p["method"], "resources": p["resources"],
                 "access_grant": p["grant"], "emergency_reason": reason, "accessed_at": p.get("timestamp")})

    @staticmethod
    def _consent(consents: Table, n: Notification) -> None:
        p = n.payload
        stream_id = str(n.stream_id)
        if n.topic == Topics.CONSENT_OPENED:
            consents.put({"stream_id": stream_id, "member_id": p["member_id"], "provider_id": p["provider_id"],
                          "grant_id": None, "scope": None, "granted_at": None, "expires_at": None, "revoked_at": None,
                          "revoke_reason": None, "granted_position": None, "last_position": n.position})
            return
        row = consents.get(stream_id)
        if row is None:
            return  # an Opened event always comes first, in the same commit as the first grant
        if n.topic == Topics.CONSENT_GRANTED:
            row = {**row, "grant_id": p["grant_id"], "scope": p["scope"], "granted_at": p.get("timestamp"),
                   "expires_at": p["expires_at"], "revoked_at": None, "revoke_reason": None,
                   "granted_position": n.position}
        else:
            row = {**row, "revoked_at": p.get("timestamp"), "revoke_reason": p["reason"]}
        consents.put({**row, "last_position": n.position})


# --- rows --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccessEntry:
    position: int
    member_id: str
    role: str
    party_id: str
    key_id: str
    method: str
    resources: list[str]
    access_grant: str
    emergency_reason: str | None
    accessed_at: datetime | None


@dataclass(frozen=True, slots=True)
class AccessPage:
    entries: list[AccessEntry]
    next_page_token: str


@dataclass(frozen=True, slots=True)
class EmergencyAccessEntry:
    access_id: str
    payer_id: str
    position: int
    member_id: str
    provider_id: str
    key_id: str
    reason: str
    claim_ids: list[str]
    declared_at: datetime | None


@dataclass(frozen=True, slots=True)
class EmergencyAccessPage:
    accesses: list[EmergencyAccessEntry]
    next_page_token: str


@dataclass(frozen=True, slots=True)
class ConsentEntry:
    member_id: str
    provider_id: str
    grant_id: str
    scope: str
    granted_at: datetime | None
    expires_at: datetime
    revoked_at: datetime | None
    revoke_reason: str | None
    granted_position: int
    last_position: int


@dataclass(frozen=True, slots=True)
class ConsentPage:
    consents: list[ConsentEntry]
    next_page_token: str


# --- queries -----------------------------------------------------------------------------------


@checked
def member_access_log(
    source: Source,
    member_id: str,
    *,
    emergency_only: bool = False,
    page_size: int = 50,
    page_token: str | None = None,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: Hub | None = None,
) -> AccessPage:
    """``member_access_log(source, member_id, *, emergency_only=False, page_size=50,
    page_token=None, min_position=None, timeout=None, hub=None) -> AccessPage``: every recorded
    read of the member's data, newest first."""
    pager = Pager("access_log", {"member_id": member_id, "emergency_only": emergency_only}, page_size, page_token)
    wait_for_position(source, AccessLogModel.name, min_position, timeout=timeout, hub=hub)
    where = Where("member_id = %s", member_id)
    if emergency_only:
        where.add("emergency_reason IS NOT NULL")
    if pager.key is not None:
        where.add("position < %s", int(pager.key[0]))
    found = select(source, AccessEntry, "access_log", where, order="position DESC", limit=pager.limit)
    return AccessPage(*pager.page(found, lambda entry: [entry.position]))


@checked
def payer_emergency_accesses(
    source: Source,
    payer_id: str,
    *,
    member_id: str | None = None,
    page_size: int = 50,
    page_token: str | None = None,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: Hub | None = None,
) -> EmergencyAccessPage:
    """``payer_emergency_accesses(source, payer_id, *, member_id=None, page_size=50,
    page_token=None, min_position=None, timeout=None, hub=None) -> EmergencyAccessPage``: the
    emergency accesses told to this payer (one member's, or all), newest first."""
    pager = Pager("emergency_accesses", {"payer_id": payer_id, "member_id": member_id}, page_size, page_token)
    wait_for_position(source, AccessLogModel.name, min_position, timeout=timeout, hub=hub)
    where = Where("payer_id = %s", payer_id).given("member_id = %s", member_id)
    if pager.key is not None:
        where.add("position < %s", int(pager.key[0]))
    found = select(source, EmergencyAccessEntry, "emergency_accesses", where, order="position DESC",
                   limit=pager.limit)
    return EmergencyAccessPage(*pager.page(found, lambda entry: [entry.position]))


@checked
def member_consents(
    source: Source,
    member_id: str,
    *,
    page_size: int = 50,
    page_token: str | None = None,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: Hub | None = None,
) -> ConsentPage:
    """``member_consents(source, member_id, *, page_size=50, page_token=None, min_position=None,
    timeout=None, hub=None) -> ConsentPage``: the member's latest grant to each provider, the
    latest given first."""
    pager = Pager("consents", {"member_id": member_id}, page_size, page_token)
    wait_for_position(source, AccessLogModel.name, min_position, timeout=timeout, hub=hub)
    where = Where("member_id = %s AND grant_id IS NOT NULL", member_id)
    if pager.key is not None:
        where.add("granted_position < %s", int(pager.key[0]))
    found = select(source, ConsentEntry, "member_consents", where, order="granted_position DESC", limit=pager.limit)
    return ConsentPage(*pager.page(found, lambda entry: [entry.granted_position]))
