"""Deterministic aggregate ids.

Every aggregate id is a ``uuid5`` of its business key under one project
namespace, so that the same request always addresses the same stream: a retried
``SubmitClaim`` finds the claim it created, and enrolling a member twice
collides instead of forking. The namespace must never change once events exist.
"""

from __future__ import annotations

import functools
import json
import uuid

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
