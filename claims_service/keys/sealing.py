"""The ledger application's side of member data keys: sealing a member's events as they are
stored, opening them (or reading "erased") as they are read.

A stream belongs to the member its first event names (``domain.phi.MEMBER_FIELD``): the first
event's key is the member's, and every later event of the stream is sealed under the same key,
found from the stream's first event (remembered per stream; read from the ledger when this process
has not seen the stream: a sealed first event names its key id in its first bytes, an older one
names the member). Events of other streams (payments, providers, contracts, rule sets, API keys,
erasures) name no member and are stored as before.

An event whose member was erased reads as an `ErasedEvent`: its plain fields and topic, no member
data; applying it to an aggregate raises `MemberDataErasedError` (a command on an erased member's
record is refused, FAILED_PRECONDITION), never DATA_LOSS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from claims_service.domain import phi
from claims_service.keys.store import MemberDataErasedError, MemberKeyStore
from claims_service.ledger.payloads import (
    SEALED,
    merge_sealed,
    open_envelope,
    seal,
    sealed_key_id,
    split_sealed,
)

FirstEvent = Callable[[Any], "StoredEvent | None"]
"""stream id -> its first stored event (None when the stream has none yet)."""
DecodeLegacy = Callable[[StoredEvent], "dict[str, Any]"]
"""A stored event that is not member-sealed -> its state (opened with the ledger's old cipher)."""


class ErasedEvent:
    """A stored event of an erased member, as the ledger reads it: ``topic``, ``plain`` (what was
    never member data) and the stream coordinates. ``mutate`` refuses: an erased record cannot be
    rebuilt."""

    erased = True

    def __init__(self, originator_id: Any, originator_version: int, topic: str, plain: dict[str, Any]) -> None:
        self.originator_id = originator_id
        self.originator_version = originator_version
        self.topic = topic
        self.plain = plain
        self.timestamp = plain.get("timestamp")

    def mutate(self, aggregate: Any) -> Any:
        raise MemberDataErasedError(f"the record {self.originator_id} was erased at its member's request: its member "
                                    "data key is destroyed and its events read as erased")

    def __repr__(self) -> str:
        return f"ErasedEvent({self.topic.rsplit(':', 1)[-1]}, {self.originator_id}@{self.originator_version})"


class Sealer:
    """Seals and opens one database's member events (see the module docstring)."""

    def __init__(self, keys: MemberKeyStore, transcoder: Any, first_event: FirstEvent, decode_legacy: DecodeLegacy) -> None:
        self.keys = keys
        self.transcoder = transcoder
        self._first_event = first_event
        self._decode_legacy = decode_legacy
        self._specs: dict[type, tuple[frozenset[str], tuple[str, ...]]] = {}

    def _spec(self, cls: type) -> tuple[frozenset[str], tuple[str, ...]]:
        spec = self._specs.get(cls)
        if spec is None:
            spec = self._specs[cls] = (phi.plain_fields(cls, get_topic(cls)), phi.SEALED_WITHIN.get(cls, ()))
        return spec

    # --- writing ----------------------------------------------------------------------------

    def to_stored_event(self, event: Any) -> StoredEvent | None:
        """The event sealed under its member's key; None for an event of no member's stream."""
        state = dict(vars(event))
        stream = state.pop("originator_id")
        version = state.pop("originator_version")
        key = self._member_key(stream, version, state)
        if key is None:
            return None
        key_id, cipher = key
        cls = type(event)
        class_version = getattr(cls, "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        plain_names, within = self._spec(cls)
        actor = state.get("actor")
        if isinstance(actor, str) and actor.startswith(phi.MEMBER_ACTOR):
            plain_names = plain_names - {"actor"}  # the member acting themself: their id is member data
        plain, sealed = split_sealed(state, plain_names, within)
        envelope = seal(key_id, cipher, self.transcoder.encode(sealed))
        stored = self.transcoder.encode({SEALED: envelope, **plain})
        return StoredEvent(originator_id=stream, originator_version=version, topic=get_topic(cls), state=stored)

    def _member_key(self, stream: Any, version: int, state: dict[str, Any]) -> tuple[str, AESGCM] | None:
        if version == 1:
            member = state.get(phi.MEMBER_FIELD)
            if not isinstance(member, str):
                self.keys.note_stream(stream, "")
                return None
            key_id, cipher = self.keys.key_of_member(member)
            self.keys.note_stream(stream, key_id)
            return key_id, cipher
        key_id = self.keys.stream_key(stream)
        if key_id is None:
            key_id = self._key_from_first_event(stream)
            self.keys.note_stream(stream, key_id)
        if not key_id:
            return None
        cipher = self.keys.cipher(key_id)
        if cipher is None:
            raise MemberDataErasedError("this record's member was erased: nothing more is recorded for them")
        return key_id, cipher

    def _key_from_first_event(self, stream: Any) -> str:
        first = self._first_event(stream)
        if first is None:
            return ""
        found = sealed_key_id(first.state)
        if found is not None:
            return found
        member = self._decode_legacy(first).get(phi.MEMBER_FIELD)
        if not isinstance(member, str):
            return ""
        return self.keys.key_of_member(member)[0]

    # --- reading ----------------------------------------------------------------------------

    def open(self, stored: StoredEvent) -> dict[str, Any] | ErasedEvent | None:
        """A member-sealed stored event's state (dates and markers decoded by the transcoder), or
        an `ErasedEvent`; None when the stored event is not member-sealed."""
        key_id = sealed_key_id(stored.state)
        if key_id is None:
            return None
        self.keys.note_stream(stored.originator_id, key_id)
        outer = self.transcoder.decode(stored.state)
        envelope = outer.pop(SEALED)
        opened = open_envelope(envelope, self.keys)
        if opened is None:
            return ErasedEvent(stored.originator_id, stored.originator_version, stored.topic, outer)
        return merge_sealed(outer, self.transcoder.decode(opened))

