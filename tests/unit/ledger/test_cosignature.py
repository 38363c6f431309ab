"""Cosignatures (C2SP tlog-cosignature, cosignature/v1): the bytes, recomputed here from the spec's
text with hashlib and the Ed25519 primitive alone, and what a verifier accepts and refuses."""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from claims_service.ledger.cosignature import CosignerKey, cosign, verify_cosignatures
from claims_service.ledger.note import CheckpointError, SignatureError, parse_and_verify, sign_checkpoint, verifier_key

LOG_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
WITNESS_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
ORIGIN = "claims.example/ledger"
WITNESS = "witness.example/w1"
ROOT = hashlib.sha256(b"root").digest()


def note() -> str:
    return sign_checkpoint(LOG_KEY, ORIGIN, ORIGIN, 3, ROOT, ["claims-ledger/stream-heads/v1 " + "A" * 43 + "="])


def test_the_cosignature_line_is_the_specs_bytes():
    text = note()
    body = text[: text.index("\n\n") + 1]
    line = cosign(WITNESS_KEY, WITNESS, body, 1_679_315_147)
    # Independently: key id = SHA-256(name || 0x0A || 0x04 || public key)[:4]; the signature is
    # over "cosignature/v1\ntime <t>\n" || body; the blob is key id || u64 timestamp || signature.
    public = CosignerKey.of(WITNESS_KEY, WITNESS).public_key
    key_id = hashlib.sha256(WITNESS.encode() + b"\n\x04" + public).digest()[:4]
    message = b"cosignature/v1\ntime 1679315147\n" + body.encode()
    blob = key_id + struct.pack(">Q", 1_679_315_147) + WITNESS_KEY.sign(message)  # Ed25519 is deterministic
    assert line == f"\u2014 {WITNESS} {base64.b64encode(blob).decode()}\n"


def test_a_cosigned_note_verifies_for_the_log_and_for_the_witness():
    text = note()
    body = text[: text.index("\n\n") + 1]
    cosigned = text + cosign(WITNESS_KEY, WITNESS, body, 1_700_000_000)
    witness = CosignerKey.of(WITNESS_KEY, WITNESS)
    assert [(c.witness, c.timestamp) for c in verify_cosignatures(cosigned, [witness])] == [(witness.label, 1_700_000_000)]
    # The log's verifier ignores the cosignature line (another key id: type 0x04, not 0x01).
    assert parse_and_verify(cosigned, verifier_key(LOG_KEY, ORIGIN)).size == 3
    # A verifier key with type 0x01 is not a witness key, and the reverse.
    with pytest.raises(CheckpointError, match="not a witness key"):
        CosignerKey.parse(verifier_key(WITNESS_KEY, WITNESS))
    with pytest.raises(SignatureError):
        parse_and_verify(body + "\n" + cosign(WITNESS_KEY, WITNESS, body, 1), verifier_key(WITNESS_KEY, WITNESS))


def test_the_witness_key_round_trips():
    witness = CosignerKey.of(WITNESS_KEY, WITNESS)
    assert CosignerKey.parse(str(witness)) == witness
    name, key_id, encoded = str(witness).split("+", 2)
    assert (name, key_id) == (WITNESS, witness.key_id.hex())
    assert base64.b64decode(encoded)[0] == 0x04 and len(base64.b64decode(encoded)) == 33
    with pytest.raises(CheckpointError, match="does not match"):
        CosignerKey.parse(str(witness).replace(witness.key_id.hex(), "00000000"))


def test_an_altered_checkpoint_or_timestamp_fails_and_unknown_cosigners_are_ignored():
    text = note()
    body = text[: text.index("\n\n") + 1]
    line = cosign(WITNESS_KEY, WITNESS, body, 1_700_000_000)
    witness = CosignerKey.of(WITNESS_KEY, WITNESS)
    other = CosignerKey.of(Ed25519PrivateKey.generate(), "witness.example/w2")
    assert verify_cosignatures(text + line, [other]) == []
    altered = text.replace("\n3\n", "\n4\n", 1) + line
    with pytest.raises(SignatureError, match="does not verify"):
        verify_cosignatures(altered, [witness])
    blob = bytearray(base64.b64decode(line.split(" ")[2]))
    blob[11] ^= 1  # the timestamp's last byte
    forged = f"\u2014 {WITNESS} {base64.b64encode(bytes(blob)).decode()}\n"
    with pytest.raises(SignatureError, match="does not verify"):
        verify_cosignatures(text + forged, [witness])
    with pytest.raises(CheckpointError):
        cosign(WITNESS_KEY, WITNESS, body, 0)  # the spec forbids a zero timestamp


def test_the_example_in_docs_ledger_md():
    from claims_service.ledger import merkle

    tree_root = merkle.root([hashlib.sha256(f"e{i}".encode()).digest() for i in range(3)])
    text = sign_checkpoint(LOG_KEY, ORIGIN, ORIGIN, 3, tree_root,
                           ["claims-ledger/stream-heads/v1 ccfHS/Xt42DWsu6bq221X3FRJP/v4nOaywrqn4tcjWc="])
    body = text[: text.index("\n\n") + 1]
    cosigned = text + cosign(WITNESS_KEY, WITNESS, body, 1_700_000_000)
    assert str(CosignerKey.of(WITNESS_KEY, WITNESS)) == "witness.example/w1+20324abe+BCmsuuFBvMrwsi4alNNNC8c2HlJtC/4SyJeUvJMilm3X"
    assert cosigned == (
        "claims.example/ledger\n3\n/uh40sb00pgBxoBgKjiFLwmjepG296cYPmkZG9usg10=\n"
        "claims-ledger/stream-heads/v1 ccfHS/Xt42DWsu6bq221X3FRJP/v4nOaywrqn4tcjWc=\n\n"
        "\u2014 claims.example/ledger XqxqUqp/3UkwiKzgkrCWbYodd5BcfILUFWBr5S4++b1z4XlOLq9ZEvORkoUZkshARcoYFQSQ0+Ad64Eu0pCkGPigsQo=\n"
        "\u2014 witness.example/w1 IDJKvgAAAABlU/EALBDvR1qZ4fJoft39jtqfxVtqB1IkJUtQMwS6Fmpew2IsX14CiW3JxxRvDqsrorXZOsEEq1uzwmJH48pJkZDUCw==\n")
