"""One hash, two spellings: claimsctl prints hex and takes a hash as hex or as the base64 the
API's bytes fields have in JSON and grpcurl (standard or URL-safe, padded or not)."""

from __future__ import annotations

import argparse
import base64
import hashlib

import pytest

from claims_service.cli.ledger import _parse_head, parse_hash

DIGEST = hashlib.sha256(b"a ledger event").digest()


@pytest.mark.parametrize("spelling", [
    DIGEST.hex(), DIGEST.hex().upper(), base64.b64encode(DIGEST).decode(),
    base64.b64encode(DIGEST).decode().rstrip("="), base64.urlsafe_b64encode(DIGEST).decode(),
    f"  {DIGEST.hex()}\n",
])
def test_every_spelling_of_a_hash_reads_as_the_same_bytes(spelling):
    assert parse_hash(spelling) == DIGEST


@pytest.mark.parametrize("bad", ["", "zz" * 32, DIGEST.hex()[:-2], base64.b64encode(DIGEST[:31]).decode(),
                                 "not a hash at all", base64.b64encode(DIGEST + b"x").decode()])
def test_anything_else_is_refused_with_a_clear_message(bad):
    with pytest.raises(argparse.ArgumentTypeError, match="64 hex digits or the base64 of 32 bytes"):
        parse_hash(bad)


def test_a_head_is_a_position_and_a_hash_in_either_spelling():
    assert _parse_head(f"42:{DIGEST.hex()}") == (42, DIGEST)
    assert _parse_head(f"42:{base64.b64encode(DIGEST).decode()}") == (42, DIGEST)
    for bad in (DIGEST.hex(), f"-1:{DIGEST.hex()}", f"x:{DIGEST.hex()}"):
        with pytest.raises(argparse.ArgumentTypeError):
            _parse_head(bad)
