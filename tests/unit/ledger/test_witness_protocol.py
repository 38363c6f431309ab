"""The witness's add-checkpoint rules (C2SP tlog-witness), answer by answer, without HTTP: what it
cosigns, what it refuses with which status, what it remembers and the evidence it keeps."""

from __future__ import annotations

import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from claims_service.ledger import merkle
from claims_service.ledger.cosignature import CosignerKey, verify_cosignatures
from claims_service.ledger.note import VerifierKey, sign_checkpoint
from claims_service.ledger.witness import (
    SIZE_CONTENT_TYPE,
    Witness,
    WitnessError,
    WitnessState,
    add_checkpoint_request,
    check_evidence,
    origin_hash,
)

LOG = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
ORIGIN = "claims.example/ledger"
LOG_VKEY = VerifierKey.of(LOG, ORIGIN)
TREE = merkle.MemoryTree.from_data(hashlib.sha256(str(i).encode()).digest() for i in range(40))


def checkpoint(size: int, root: bytes | None = None, key: Ed25519PrivateKey = LOG) -> str:
    return sign_checkpoint(key, ORIGIN, ORIGIN, size, TREE.root(size) if root is None else root)


@pytest.fixture
def witness(tmp_path):
    return Witness(Ed25519PrivateKey.generate(), "witness.example/w1", {ORIGIN: [LOG_VKEY]},
                   WitnessState(tmp_path / "state.json"), tmp_path / "evidence", clock=lambda: 1_700_000_000)


def add(witness: Witness, old: int, size: int, *, proof: list[bytes] | None = None, note: str | None = None):
    if proof is None:
        proof = TREE.consistency_proof(old, size) if 0 < old < size else []
    return witness.add_checkpoint(add_checkpoint_request(old, proof, note or checkpoint(size)))


def test_it_cosigns_consistent_extensions_and_remembers_the_last(witness, tmp_path):
    first = add(witness, 0, 10)
    assert first.status == 200
    cosigned = checkpoint(10) + first.body
    assert [c.timestamp for c in verify_cosignatures(cosigned, [witness.cosigner])] == [1_700_000_000]
    assert add(witness, 10, 25).status == 200
    assert add(witness, 25, 25).status == 200  # the same checkpoint again: cosigned again
    state = json.loads((tmp_path / "state.json").read_text())
    kept = state["logs"][ORIGIN]
    assert kept.startswith(checkpoint(25)) and verify_cosignatures(kept, [witness.cosigner])
    assert oct((tmp_path / "state.json").stat().st_mode & 0o777) == "0o600"
    # The monitoring endpoint serves it by the origin's hash.
    assert witness.latest(origin_hash(ORIGIN)).body == kept
    assert witness.latest("0" * 64).status == 404


def test_a_wrong_old_size_is_409_with_the_witness_size(witness):
    assert add(witness, 0, 10).status == 200
    answer = add(witness, 0, 20)
    assert (answer.status, answer.body, answer.content_type) == (409, "10\n", SIZE_CONTENT_TYPE)
    assert add(witness, 12, 20).status == 409
    assert add(witness, 10, 20).status == 200


def test_a_split_view_is_refused_and_kept_as_evidence(witness, tmp_path):
    assert add(witness, 0, 10).status == 200
    forged_root = hashlib.sha256(b"another history").digest()
    answer = add(witness, 10, 10, note=checkpoint(10, forged_root))
    assert answer.status == 422 and "split view" in answer.body
    [evidence] = (tmp_path / "evidence").iterdir()
    record = json.loads(evidence.read_text())
    assert record["submitted_note"] == checkpoint(10, forged_root)
    verdict = check_evidence(record, [LOG_VKEY])
    assert verdict.proven and "two different roots for tree size 10" in verdict.summary
    # The witness's state is unchanged: it still cosigns the honest history only.
    assert add(witness, 10, 20).status == 200


def test_an_extension_without_a_valid_consistency_proof_is_refused(witness, tmp_path):
    assert add(witness, 0, 10).status == 200
    other = merkle.MemoryTree.from_data(hashlib.sha256(str(i).encode()).digest() for i in [99, *range(1, 40)])
    forged = sign_checkpoint(LOG, ORIGIN, ORIGIN, 20, other.root(20))
    answer = add(witness, 10, 20, proof=other.consistency_proof(10, 20), note=forged)
    assert answer.status == 422 and "not shown to extend" in answer.body
    verdict = check_evidence(json.loads(next((tmp_path / "evidence").iterdir()).read_text()), [LOG_VKEY])
    assert not verdict.proven and "ask the log for a consistency proof from 10 to 20" in verdict.summary


@pytest.mark.parametrize(("body", "status"), [
    (b"old 1\n\nnot a note", 400),
    (b"no old line\n\n", 400),
    (b"old 01\n\n" + checkpoint(3).encode(), 400),
])
def test_malformed_requests_are_400(witness, body, status):
    assert witness.add_checkpoint(body).status == status


def test_unknown_origin_404_bad_signature_403_old_beyond_size_400_and_the_empty_tree(witness):
    stranger = Ed25519PrivateKey.generate()
    other_origin = sign_checkpoint(LOG, "elsewhere.example/log", "elsewhere.example/log", 3, TREE.root(3))
    assert witness.add_checkpoint(add_checkpoint_request(0, [], other_origin)).status == 404
    assert witness.add_checkpoint(add_checkpoint_request(0, [], checkpoint(3, key=stranger))).status == 403
    tampered = checkpoint(3).replace("\n3\n", "\n4\n", 1)  # the log's signature no longer verifies
    assert witness.add_checkpoint(add_checkpoint_request(0, [], tampered)).status == 403
    assert add(witness, 5, 3).status == 400
    assert add(witness, 0, 0, note=checkpoint(0, hashlib.sha256(b"x").digest())).status == 422
    assert add(witness, 0, 3, proof=[bytes(32)]).status == 422  # no proof from size 0
    assert add(witness, 0, 0, note=checkpoint(0, merkle.EMPTY_ROOT)).status == 200


def test_a_state_file_this_witness_did_not_write_is_refused(witness, tmp_path):
    assert add(witness, 0, 10).status == 200
    state = tmp_path / "state.json"
    data = json.loads(state.read_text())
    data["logs"][ORIGIN] = checkpoint(3) + "\u2014 witness.example/w1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
    state.write_text(json.dumps(data))
    with pytest.raises(WitnessError, match="did not cosign"):
        Witness(witness.key, witness.name, {ORIGIN: [LOG_VKEY]}, WitnessState(state), tmp_path / "evidence")
    assert isinstance(witness.cosigner, CosignerKey)
