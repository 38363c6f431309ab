"""Signed checkpoint notes: the C2SP formats byte for byte, keys, and every way a note is refused."""

from __future__ import annotations

import base64
import hashlib
import os
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from claims_service.ledger import merkle
from claims_service.ledger.note import (
    CheckpointError,
    SignatureError,
    VerifierKey,
    add_signature,
    key_id,
    parse_and_verify,
    public_key_bytes,
    sign_checkpoint,
    sign_note,
    verifier_key,
    verify_note,
)
from claims_service.ledger.signing_key import load_or_create_signing_key, parse_signing_key, signing_key_from_seed

# The example key and note of Go's golang.org/x/mod/sumdb/note, the signed-note reference implementation.
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_NOTE = GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"

ORIGIN = "claims.example/ledger"
ROOT = hashlib.sha256(b"root").digest()


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def test_the_reference_note_is_reproduced_byte_for_byte():
    skey = parse_signing_key(GO_SKEY.encode())
    assert verifier_key(skey, "PeterNeumann") == GO_VKEY
    assert key_id("PeterNeumann", skey).hex() == "c74f20a3"
    assert sign_note(GO_TEXT, skey, "PeterNeumann") == GO_NOTE  # Ed25519 is deterministic
    assert verify_note(GO_NOTE, GO_VKEY) == (GO_TEXT, ("PeterNeumann+c74f20a3",))


def test_checkpoint_note_layout(key):
    note = sign_checkpoint(key, ORIGIN, ORIGIN, 12345, ROOT)
    body, blank, sig = note.split("\n")[:3], note.split("\n")[3], note.split("\n")[4]
    assert body == [ORIGIN, "12345", base64.b64encode(ROOT).decode()]
    assert blank == ""
    assert note.endswith("\n") and note.count("\n") == 5
    dash, name, blob = sig.split(" ")
    assert dash == "\u2014" and name == ORIGIN
    raw = base64.b64decode(blob)
    assert len(raw) == 68
    expected_id = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + public_key_bytes(key)).digest()[:4]
    assert raw[:4] == expected_id
    key.public_key().verify(raw[4:], f"{ORIGIN}\n12345\n{base64.b64encode(ROOT).decode()}\n".encode())
    cp = parse_and_verify(note, verifier_key(key, ORIGIN), origin=ORIGIN)
    assert (cp.origin, cp.size, cp.root_hash, cp.note) == (ORIGIN, 12345, ROOT, note)
    assert cp.signed_by == (f"{ORIGIN}+{expected_id.hex()}",)


def test_verifier_key_round_trip_and_bad_keys(key):
    vkey = verifier_key(key, ORIGIN)
    parsed = VerifierKey.parse(vkey)
    assert str(parsed) == vkey and parsed.public_key == public_key_bytes(key)
    name, hex_id, b64 = vkey.split("+", 2)
    for bad in (f"{name}+{hex_id}", f"{name}+00000000+{b64}", f"other+{hex_id}+{b64}",
                f"{name}+{hex_id}+" + base64.b64encode(b"\x02" + public_key_bytes(key)).decode(),
                f"{name}+{hex_id}+{b64[:-4]}", f"a b+{hex_id}+{b64}"):
        with pytest.raises(CheckpointError):
            VerifierKey.parse(bad)


def test_a_forged_or_altered_note_is_rejected(key):
    note = sign_checkpoint(key, ORIGIN, ORIGIN, 10, ROOT)
    vkey = verifier_key(key, ORIGIN)
    bigger = note.replace("\n10\n", "\n11\n")
    with pytest.raises(SignatureError, match="does not verify"):
        parse_and_verify(bigger, vkey)
    other_root = note.replace(base64.b64encode(ROOT).decode(), base64.b64encode(merkle.EMPTY_ROOT).decode())
    with pytest.raises(SignatureError, match="does not verify"):
        parse_and_verify(other_root, vkey)
    line = note.split("\n")[4]
    blob = bytearray(base64.b64decode(line.split(" ")[2]))
    blob[10] ^= 1
    flipped = note.replace(line.split(" ")[2], base64.b64encode(bytes(blob)).decode())
    with pytest.raises(SignatureError, match="does not verify"):
        parse_and_verify(flipped, vkey)


def test_a_note_re_signed_by_another_key_is_rejected_even_under_the_same_name(key):
    attacker = Ed25519PrivateKey.generate()
    forged = sign_checkpoint(attacker, ORIGIN, ORIGIN, 10, ROOT)
    with pytest.raises(SignatureError, match="no signature by a trusted key"):
        parse_and_verify(forged, verifier_key(key, ORIGIN))
    # A line that claims the trusted key's id but carries the attacker's signature.
    honest_id = key_id(ORIGIN, key)
    body = forged.split("\n\n")[0] + "\n"
    blob = base64.b64encode(honest_id + attacker.sign(body.encode())).decode()
    with pytest.raises(SignatureError, match="does not verify"):
        parse_and_verify(f"{body}\n\u2014 {ORIGIN} {blob}\n", verifier_key(key, ORIGIN))


def test_malformed_notes_are_rejected_with_a_reason(key):
    vkey = verifier_key(key, ORIGIN)
    good = sign_checkpoint(key, ORIGIN, ORIGIN, 10, ROOT)
    body = f"{ORIGIN}\n10\n{base64.b64encode(ROOT).decode()}\n"
    cases = {
        "no trailing newline": good[:-1],
        "no blank line": good.replace("\n\n", "\n"),
        "no signatures": body + "\n",
        "carriage return": good.replace("\n10\n", "\r\n10\n"),
        "bad dash": good.replace("\u2014", "-"),
        "bad base64": good[:-3] + "!\n",
        "not utf-8": b"\xff" + good.encode(),
    }
    for what, note in cases.items():
        with pytest.raises(CheckpointError):
            parse_and_verify(note, vkey)
        assert what
    for bad_body in (f"{ORIGIN}\n010\n{base64.b64encode(ROOT).decode()}\n",
                     f"{ORIGIN}\n-1\n{base64.b64encode(ROOT).decode()}\n",
                     f"{ORIGIN}\n10\n{base64.b64encode(ROOT[:31]).decode()}\n",
                     f"{ORIGIN}\n10\n",
                     f"\n10\n{base64.b64encode(ROOT).decode()}\n"):
        with pytest.raises(CheckpointError, match="malformed checkpoint"):
            parse_and_verify(sign_note(bad_body, key, ORIGIN), vkey)
    with pytest.raises(CheckpointError, match="origin"):
        parse_and_verify(good, vkey, origin="another.example/log")


def test_rotation_old_notes_stay_verifiable_and_cosigned_notes_satisfy_either_key(key):
    new_key = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
    old_note = sign_checkpoint(key, ORIGIN, ORIGIN, 10, ROOT)
    overlap = add_signature(sign_checkpoint(key, ORIGIN, ORIGIN, 20, ROOT), new_key, ORIGIN)
    new_note = sign_checkpoint(new_key, ORIGIN, ORIGIN, 30, ROOT)
    old_v, new_v = verifier_key(key, ORIGIN), verifier_key(new_key, ORIGIN)
    assert old_v != new_v and old_v.split("+")[0] == new_v.split("+")[0]  # same name, new key id
    assert parse_and_verify(old_note, old_v).size == 10
    assert parse_and_verify(overlap, old_v).size == 20
    assert parse_and_verify(overlap, new_v).size == 20
    assert len(parse_and_verify(overlap, [old_v, new_v]).signed_by) == 2
    assert parse_and_verify(new_note, [old_v, new_v]).size == 30
    with pytest.raises(SignatureError):
        parse_and_verify(new_note, old_v)


def test_signing_key_file_is_created_once_with_mode_600(tmp_path):
    path = tmp_path / "keys" / "signing-key.pem"
    key = load_or_create_signing_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    again = load_or_create_signing_key(path)
    assert public_key_bytes(again) == public_key_bytes(key)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_signing_key_formats(tmp_path):
    seed = bytes(range(32))
    expected = public_key_bytes(Ed25519PrivateKey.from_private_bytes(seed))
    raw = tmp_path / "raw.key"
    raw.write_bytes(seed)
    assert public_key_bytes(load_or_create_signing_key(raw)) == expected
    assert public_key_bytes(parse_signing_key(base64.b64encode(seed) + b"\n")) == expected
    env_key = signing_key_from_seed(base64.b64encode(seed).decode())
    assert public_key_bytes(env_key) == expected
    with pytest.raises(CheckpointError, match="CLAIMS_SIGNING_KEY"):
        signing_key_from_seed(base64.b64encode(seed[:31]).decode())
    with pytest.raises(CheckpointError):
        parse_signing_key(b"-----BEGIN PRIVATE KEY-----\nnonsense\n-----END PRIVATE KEY-----\n")
    with pytest.raises(CheckpointError, match="key id"):
        parse_signing_key(GO_SKEY.replace("c74f20a3", "c74f20a4").encode())
