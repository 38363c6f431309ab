"""The one reader of stored event payloads, for everyone who reads them without the domain's
classes: the projections, reconciliation, bundle replays.

A payload is the JSON the ledger's transcoder wrote (plain data, with the eventsourcing library's
``{"_type_": ..., "_data_": ...}`` markers for dates and timestamps, which `decode_json` turns into
their ISO text), or, when the ledger encrypts or compresses payloads, that JSON sealed with the
library's AES-GCM cipher (12-byte nonce, 16-byte tag, ciphertext) and/or zlib. Opening a sealed
payload takes the key the library is configured with (``CIPHER_TOPIC``, ``CIPHER_KEY``,
``COMPRESSOR_TOPIC``: the library's own settings, read here as the library reads them); hashes and
proofs never need it, because they cover the stored bytes.

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
from typing import Any, ClassVar

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


def open_payload(state: bytes, opener: PayloadOpener | None = None) -> bytes:
    """A stored payload as JSON bytes: as it is when it is JSON, otherwise opened
    (``UndecodablePayloadError`` when it cannot be)."""
    if state[:1] == b"{":
        try:
            orjson.loads(state)
            return state
        except orjson.JSONDecodeError:
            pass
    return (opener or default_opener()).open(state)


def decode_state(state: bytes, opener: PayloadOpener | None = None) -> dict[str, Any]:
    """A stored payload as plain data (see `decode_json`), opened first when sealed."""
    if state[:1] == b"{":
        try:
            return decode_json(state)
        except ValueError:
            pass
    return decode_json((opener or default_opener()).open(state))
