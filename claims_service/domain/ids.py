"""Aggregate ids.

Most aggregate ids are a ``uuid5`` of their business key under one project
namespace, so that the same request always addresses the same stream: enrolling
a member twice collides instead of forking. The namespace must never change once
events exist.

A claim is the exception: its id is a UUIDv7 (`time_ordered_id`), so that claims
arrive at the right edge of every index keyed by claim id (the ledger's stream
ids, the read models) instead of on a random page of each, which after every
checkpoint logs the whole page (README, "Scale"). The uuid5 of its provider and
idempotency key is kept as its *request id*, which finds it again on a retry
(`claim_requests`, migration 0027); claims submitted before that migration have
their request id as their claim id. What is derived from such a claim (its
payments) takes an id beside it (`ordered_id`): deterministic, and in the same
order.
"""

from __future__ import annotations

import functools
import json
import uuid

import uuid6

NAMESPACE = uuid.UUID("e290a70c-ef41-557c-85b3-9b66b265524b")
"""Project namespace for every aggregate id (uuid5 of a fixed project URL)."""


# Ids are asked for far more often than there are aggregates (every claim names its member,
# provider, contract and benefit period): remember the recent ones.
@functools.lru_cache(maxsize=65_536)
def make_id(kind: str, *parts: str) -> uuid.UUID:
    """uuid5 of ``kind`` and the key parts.

    The name is the JSON array ``[kind, *parts]``: unambiguous even when a
    part contains a separator, so ("a:b", "c") and ("a", "b:c") differ.
    """
    for part in parts:
        if not isinstance(part, str):
            msg = f"id parts must be str, got {type(part).__name__}"
            raise TypeError(msg)
    name = json.dumps([kind, *parts], ensure_ascii=False, separators=(",", ":"))
    return uuid.uuid5(NAMESPACE, name)


def time_ordered_id() -> uuid.UUID:
    """A new UUIDv7: 48 bits of Unix milliseconds, then random bits; ids made later sort after
    (within a process, also those made in the same millisecond)."""
    return uuid.UUID(int=uuid6.uuid7().int)


_TIME_BITS = 48
_REST = (1 << (128 - _TIME_BITS)) - 1
_VERSION_MASK = 0xF << 76
_VARIANT_MASK = 0x3 << 62


def ordered_id(beside: uuid.UUID, kind: str, *parts: str) -> uuid.UUID:
    """A deterministic id that sorts with ``beside`` (a UUIDv7): its 48 bits of milliseconds, then
    the bits of the uuid5 of ``kind`` and ``parts``, as a version 8 UUID (RFC 9562's layout for
    custom ids). Two ids collide only if their uuid5s agree in their 74 bits."""
    value = (beside.int & ~_REST) | (make_id(kind, *parts).int & _REST)
    value = (value & ~_VERSION_MASK) | (8 << 76)
    return uuid.UUID(int=(value & ~_VARIANT_MASK) | (0x2 << 62))
