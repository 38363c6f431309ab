"""The one reader of stored event payloads, for everyone who reads them without the domain's
classes: the projections, reconciliation, bundle replays.

A payload is the JSON the ledger's transcoder wrote (plain data, with the eventsourcing library's
``{"_type_": ..., "_data_": ...}`` markers for dates and timestamps, which `decode_json` turns into
their ISO text), or, when the ledger encrypts or compresses payloads, that JSON sealed with the
library's AES-GCM cipher (12-byte nonce, 16-byte tag, ciphertext) and/or zlib. Opening a sealed
payload takes the key the library is configured with (``CIPHER_TOPIC``, ``CIPHER_KEY``,
``COMPRESSOR_TOPIC``: the library's own settings, read here as the library reads them); hashes and
proofs never need it, because they cover the stored bytes.

**Member-sealed payloads** (docs/LEDGER.md, "Member data keys"): an event of a member's stream is
stored as JSON whose first member is an envelope, then the fields that are not member data::

    {"_sealed_":{"k":"<key id>","n":"<nonce>","c":"<ciphertext>"[,"z":1]},"actor":...,...}

``c`` is AES-256-GCM under the member's data key (``k``, a random UUID: the member's pseudonymous
reference) of the transcoder's JSON of the sealed fields (zlib-compressed first when ``z`` is 1),
with the associated data ``claims-ledger/sealed/v1\n<key id>\n<z>``. The sealed fields are named
by paths: a top-level field (``facts``), or one inside a plain field (``decision/accumulator_changes/0/
benefit_units``). Opening it takes that member's data key (a `MemberKeys`); once the key is
destroyed (the member erased) the payload decodes to its plain fields and ``"_erased_": true``,
never to an error. The hashes cover the envelope as stored, so erasure changes no proof.

Imports: the standard library, cryptography and claims_service.errors only.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import zlib
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from claims_service.errors import ClaimsError

LEDGER_APPLICATION = "Ledger"  # the eventsourcing application's name (claims_service.application)
AES_CIPHER_TOPIC = "eventsourcing.cryptography:AESCipher"
ZLIB_COMPRESSOR_TOPIC = "eventsourcing.compressor:ZlibCompressor"


class UndecodablePayloadError(ClaimsError):
    """A stored payload is sealed (encrypted or compressed) and cannot be opened here."""

    status: ClassVar[str] = "FAILED_PRECONDITION"


# --- member-sealed payloads ------------------------------------------------------------------

SEALED = "_sealed_"
ERASED = "_erased_"
SEALED_PREFIX = b'{"_sealed_":{"k":"'
_KEY_END = len(SEALED_PREFIX) + 36  # a key id is a UUID in its 36-character form
SEALED_AAD = b"claims-ledger/sealed/v1\n"
COMPRESS_ABOVE = 1024  # sealed JSON longer than this is zlib-compressed first (ciphertext does not compress)


class MemberKeys(Protocol):
    """Member data keys by key id, as the payload reader needs them."""

    def cipher(self, key_id: str) -> AESGCM | None:
        """The member's data key; None once it was destroyed (the member erased). Raises
        `UndecodablePayloadError` for a key it cannot tell about (unknown here, or unreachable)."""
        ...


def sealed_key_id(state: bytes | None) -> str | None:
    """The key id of a member-sealed payload, read from its first bytes; None for any other."""
    if state is None or not state.startswith(SEALED_PREFIX) or state[_KEY_END:_KEY_END + 1] != b'"':
        return None
    return state[len(SEALED_PREFIX):_KEY_END].decode("ascii")


def _aad(key_id: str, compressed: bool) -> bytes:
    return SEALED_AAD + key_id.encode("ascii") + (b"\n1" if compressed else b"\n0")


def seal(key_id: str, cipher: AESGCM, sealed_json: bytes) -> dict[str, Any]:
    """The envelope of ``sealed_json`` (the transcoder's JSON of the sealed fields) under the
    member's data key: the value of the payload's ``_sealed_`` member, which must come first."""
    compressed = len(sealed_json) > COMPRESS_ABOVE
    data = zlib.compress(sealed_json, 1) if compressed else sealed_json
    nonce = os.urandom(12)
    envelope: dict[str, Any] = {
        "k": key_id,
        "n": base64.b64encode(nonce).decode("ascii"),
        "c": base64.b64encode(cipher.encrypt(nonce, data, _aad(key_id, compressed))).decode("ascii"),
    }
    if compressed:
        envelope["z"] = 1
    return envelope


def open_envelope(envelope: Mapping[str, Any], keys: MemberKeys | None) -> bytes | None:
    """The sealed fields' JSON, as the transcoder wrote it; None when the member's key was
    destroyed. `UndecodablePayloadError` when it cannot be opened (no keys here, an unknown key, a
    ciphertext that does not authenticate)."""
    keys = keys if keys is not None else default_member_keys()
    if keys is None:
        raise UndecodablePayloadError("a ledger payload is sealed under a member's data key, and no member keys "
                                      "are available here (the service's database and its key-encryption keys)")
    key_id = str(envelope.get("k", ""))
    cipher = keys.cipher(key_id)
    if cipher is None:
        return None
    compressed = envelope.get("z") == 1
    try:
        data = cipher.decrypt(base64.b64decode(envelope["n"]), base64.b64decode(envelope["c"]), _aad(key_id, compressed))
    except (InvalidTag, ValueError, KeyError, TypeError):
        raise UndecodablePayloadError("a ledger payload does not open with its member's data key") from None
    return zlib.decompress(data) if compressed else data


def split_sealed(state: dict[str, Any], plain: frozenset[str] | set[str], within: tuple[str, ...] = ()
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plain fields, sealed fields by path) of an event's state: every top-level field not in
    ``plain`` is sealed whole, and each of ``within`` (``field/*/key``: ``*`` for every item of
    a list) is taken out of a plain field. ``state`` is not changed (plain values that lose a
    part are copied on the way down)."""
    kept: dict[str, Any] = {}
    sealed: dict[str, Any] = {}
    for name, value in state.items():
        if name in plain:
            kept[name] = value
        else:
            sealed[name] = value
    for pattern in within:
        head, _, rest = pattern.partition("/")
        if head in kept and rest:
            kept[head] = _take(kept[head], rest.split("/"), head, sealed)
    return kept, sealed


def _take(value: Any, parts: list[str], path: str, sealed: dict[str, Any]) -> Any:
    part, rest = parts[0], parts[1:]
    if part == "*":
        if not isinstance(value, list) or not rest:
            return value
        return [_take(item, rest, f"{path}/{i}", sealed) for i, item in enumerate(value)]
    if not isinstance(value, dict) or part not in value:
        return value
    copy = dict(value)
    if rest:
        copy[part] = _take(copy[part], rest, f"{path}/{part}", sealed)
    else:
        sealed[f"{path}/{part}"] = copy.pop(part)
    return copy


def merge_sealed(plain: dict[str, Any], sealed: Mapping[str, Any]) -> dict[str, Any]:
    """The event's state again: ``plain`` (changed in place) with each sealed path put back."""
    for path, value in sealed.items():
        if "/" not in path:
            plain[path] = value
            continue
        parts = path.split("/")
        node: Any = plain
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[parts[-1]] = value
    return plain


def unseal(outer: dict[str, Any], keys: MemberKeys | None, decode: Any) -> dict[str, Any]:
    """A decoded member-sealed payload (its ``_sealed_`` envelope and plain fields) as the event's
    state: the sealed fields decoded with ``decode`` and put back, or, once the member's key was
    destroyed, the plain fields with ``"_erased_": true``."""
    envelope = outer.pop(SEALED)
    opened = open_envelope(envelope, keys)
    if opened is None:
        outer[ERASED] = True
        return outer
    return merge_sealed(outer, decode(opened))


_default_keys: MemberKeys | None = None


def set_default_member_keys(keys: MemberKeys | None) -> None:
    """The member keys of this process's ledger, for readers that name none (set by the ledger
    application when it starts)."""
    global _default_keys
    _default_keys = keys


def default_member_keys() -> MemberKeys | None:
    return _default_keys


def _plain_markers(obj: dict[str, Any]) -> Any:
    # The transcodings the ledger uses (date_iso, datetime_iso, uuid_hex, ...) encode to plain
    # text, which is what a SQL row or a JSON column wants anyway.
    if len(obj) == 2 and "_type_" in obj and "_data_" in obj:
        return obj["_data_"]
    return obj


_DECODER = json.JSONDecoder(object_hook=_plain_markers)  # one instance: json.loads builds one per call

# A marker as the ledger's transcoder writes it (compact, "_type_" first) with a text "_data_".
# The pattern cannot match inside a JSON string, where every quote is escaped.
_MARKER = re.compile(rb'\{"_type_":"[A-Za-z0-9_]+","_data_":("(?:[^"\\]|\\.)*")\}')
_TYPE_KEY = b'"_type_"'


def decode_json(data: bytes | str) -> dict[str, Any]:
    """The payload as plain data, markers replaced by their text.

    Every payload is decoded by the projections, so this is their hottest path: orjson parses,
    and the markers are found in the bytes rather than by a walk over every object. Most events
    carry one marker, their timestamp. Anything unusual (a marker with non-text data, a key named
    "_type_" in the data, bytes orjson refuses) takes the plain ``json`` route, which gives the
    same result. (orjson would read an integer beyond 64 bits as a float; the ledger holds none,
    because its transcoder, orjson too, refuses to write one.)
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        markers = raw.count(_TYPE_KEY)
        if markers == 0:
            result = orjson.loads(raw)
        elif markers == 1 and type(result := orjson.loads(raw)) is dict and _is_marker(result.get("timestamp")):
            result["timestamp"] = result["timestamp"]["_data_"]
        else:
            plain = _MARKER.sub(rb"\1", raw)
            result = orjson.loads(plain) if _TYPE_KEY not in plain else _DECODER.decode(raw.decode("utf-8"))
    except orjson.JSONDecodeError:
        result = _DECODER.decode(raw.decode("utf-8"))
    if not isinstance(result, dict):
        raise ValueError("an event payload is a JSON object")
    return result


def _is_marker(value: Any) -> bool:
    return type(value) is dict and len(value) == 2 and "_type_" in value and type(value.get("_data_")) is str


class PayloadOpener:
    """Opens sealed payloads as the eventsourcing library sealed them: AES-GCM, then zlib."""

    def __init__(self, cipher_key: bytes | None = None, *, compressed: bool = False) -> None:
        self._cipher = AESGCM(cipher_key) if cipher_key else None
        self._compressed = compressed

    @classmethod
    def from_library_settings(cls, environ: Mapping[str, str] | None = None) -> PayloadOpener:
        """As the library configures the ledger application ("Ledger"): ``LEDGER_<NAME>`` first,
        then ``<NAME>``."""
        env = os.environ if environ is None else environ

        def setting(name: str) -> str:
            return env.get(f"{LEDGER_APPLICATION.upper()}_{name}") or env.get(name) or ""

        cipher_topic, compressor_topic = setting("CIPHER_TOPIC"), setting("COMPRESSOR_TOPIC")
        if cipher_topic not in ("", AES_CIPHER_TOPIC) or compressor_topic not in ("", ZLIB_COMPRESSOR_TOPIC):
            raise UndecodablePayloadError(f"payloads sealed with {cipher_topic or compressor_topic} cannot be opened here")
        key = base64.b64decode(setting("CIPHER_KEY")) if cipher_topic else None
        return cls(key, compressed=bool(compressor_topic))

    def open(self, state: bytes) -> bytes:
        if self._cipher is None and not self._compressed:
            raise UndecodablePayloadError(
                "a ledger payload is encrypted or compressed, and no cipher or compressor is configured "
                "(CIPHER_TOPIC and CIPHER_KEY, COMPRESSOR_TOPIC)"
            )
        if self._cipher is not None:
            nonce, tag, sealed = state[:12], state[12:28], state[28:]
            try:
                state = self._cipher.decrypt(nonce, sealed + tag, None)
            except (InvalidTag, ValueError):
                raise UndecodablePayloadError("a ledger payload does not open with the configured CIPHER_KEY") from None
        if self._compressed:
            state = zlib.decompress(state)
        return state


_default: PayloadOpener | None = None
_default_lock = threading.Lock()


def default_opener() -> PayloadOpener:
    """The opener for this process's ledger settings, made on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = PayloadOpener.from_library_settings()
        return _default


def open_payload(state: bytes, opener: PayloadOpener | None = None, keys: MemberKeys | None = None) -> bytes:
    """A stored payload as JSON bytes: as it is when it is JSON, otherwise opened
    (``UndecodablePayloadError`` when it cannot be). A member-sealed payload comes back as the
    event's whole JSON (its sealed fields put back; the transcoder's markers kept), or its plain
    fields with ``"_erased_": true``."""
    if state[:1] == b"{":
        if sealed_key_id(state) is not None:
            return orjson.dumps(unseal(orjson.loads(state), keys, orjson.loads))
        try:
            orjson.loads(state)
            return state
        except orjson.JSONDecodeError:
            pass
    return (opener or default_opener()).open(state)


def decode_state(state: bytes, opener: PayloadOpener | None = None, keys: MemberKeys | None = None) -> dict[str, Any]:
    """A stored payload as plain data (see `decode_json`), opened first when sealed; a
    member-sealed payload whose member was erased as its plain fields and ``"_erased_": true``."""
    if state[:1] == b"{":
        if sealed_key_id(state) is not None:
            return unseal(decode_json(state), keys, decode_json)
        try:
            return decode_json(state)
        except ValueError:
            pass
    return decode_json((opener or default_opener()).open(state))


def is_erased(payload: Mapping[str, Any]) -> bool:
    """A decoded payload whose member data was erased (only its plain fields are left)."""
    return payload.get(ERASED) is True
