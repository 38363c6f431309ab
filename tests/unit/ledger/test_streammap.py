"""The stream map: roots recomputed from the definition, incremental updates equal to building
from scratch, and proofs of a head or of an absence that verify, while altered ones do not."""

from __future__ import annotations

import hashlib
import random
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claims_service.ledger import merkle, streammap
from claims_service.ledger.streammap import EMPTY, MapProof, MemoryMap, build_root, verify


def h(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def reference_root(heads: dict[uuid.UUID, tuple[int, bytes]], depth: int = 0) -> bytes:
    """The definition in docs/LEDGER.md, written out without the module's code."""
    if not heads:
        return bytes(32)
    if len(heads) == 1:
        [(stream, (version, event_hash))] = heads.items()
        return hashlib.sha256(b"\x02" + stream.bytes + version.to_bytes(8, "big") + event_hash).digest()
    halves: list[dict] = [{}, {}]
    for stream, head in heads.items():
        key = hashlib.sha256(stream.bytes).digest()
        halves[(key[depth // 8] >> (7 - depth % 8)) & 1][stream] = head
    return hashlib.sha256(b"\x03" + reference_root(halves[0], depth + 1) + reference_root(halves[1], depth + 1)).digest()


def streams(n: int, seed: int = 7) -> list[uuid.UUID]:
    rng = random.Random(seed)
    return [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(n)]


def test_roots_follow_the_definition():
    a, b, c = streams(3)
    assert build_root({}) == EMPTY == bytes(32)
    assert build_root({a: (1, h("a1"))}) == reference_root({a: (1, h("a1"))})
    heads = {a: (3, h("a3")), b: (1, h("b1")), c: (7, h("c7"))}
    assert build_root(heads) == reference_root(heads)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(0, 59), min_size=1, max_size=8), min_size=1, max_size=12))
def test_incremental_updates_equal_a_build_from_scratch(batches):
    ids = streams(60)
    memory, heads = MemoryMap(), {}
    for batch in batches:
        changed = {}
        for i in batch:
            version = heads.get(ids[i], (0, b""))[0] + 1
            changed[ids[i]] = heads[ids[i]] = (version, h(f"{i}/{version}"))
        assert memory.update(changed) == reference_root(heads)


def test_every_stream_proves_its_head_or_its_absence_at_every_root():
    ids = streams(200)
    memory, heads, history = MemoryMap(), {}, []
    rng = random.Random(1)
    for round_ in range(30):
        changed = {}
        for i in rng.sample(range(0, 6 * (round_ + 1)), 5):
            version = heads.get(ids[i], (0, b""))[0] + 1
            changed[ids[i]] = heads[ids[i]] = (version, h(f"{i}/{version}"))
        history.append((memory.update(changed), dict(heads)))
    absent_kinds = set()
    for root, then in history[::5]:
        for stream in ids:
            proof = memory.prove(stream, root)
            assert verify(root, proof) == then.get(stream)
            if stream not in then:
                absent_kinds.add("other leaf" if proof.other else "empty")
    assert absent_kinds == {"other leaf", "empty"}  # both kinds of absence were proved


def test_altered_proofs_fail():
    ids = streams(50)
    memory = MemoryMap()
    memory.update({s: (1, h(str(s))) for s in ids[:40]})
    root = memory.root
    present = memory.prove(ids[3])
    absent = memory.prove(ids[45])
    # A head that is not the map's: another version, another hash.
    for found in (streammap.Leaf(ids[3], 2, h(str(ids[3]))), streammap.Leaf(ids[3], 1, h("x"))):
        with pytest.raises(merkle.ProofError):
            verify(root, MapProof(ids[3], found, None, present.siblings))
    # Claiming the present stream is absent: its path does not end at EMPTY.
    with pytest.raises(merkle.ProofError):
        verify(root, MapProof(ids[3], None, None, present.siblings))
    # Claiming the absent stream exists.
    with pytest.raises(merkle.ProofError):
        verify(root, MapProof(ids[45], streammap.Leaf(ids[45], 1, h("y")), None, absent.siblings))
    # A shorter or altered path.
    with pytest.raises(merkle.ProofError):
        verify(root, MapProof(ids[3], present.found, None, present.siblings[1:]))
    with pytest.raises(merkle.ProofError):
        verify(root, MapProof(ids[3], present.found, None, [bytes(32)] + present.siblings[1:]))
    # The other leaf of an absence must lie on the stream's path, and be another stream.
    if absent.other is not None:
        with pytest.raises(merkle.ProofError, match="not this stream"):
            verify(root, MapProof(ids[45], None, streammap.Leaf(ids[45], 1, h("z")), absent.siblings))


def test_the_extension_line_round_trips():
    root = h("map")
    line = streammap.extension_line(root)
    assert line.startswith("claims-ledger/stream-heads/v1 ")
    assert streammap.root_from_extensions(["other ext", line]) == root
    assert streammap.root_from_extensions(["other ext"]) is None
    with pytest.raises(merkle.ProofError):
        streammap.root_from_extensions(["claims-ledger/stream-heads/v1 AAAA"])


def test_the_example_in_docs_ledger_md():
    a = uuid.UUID("00000000-0000-4000-8000-000000000001")
    b = uuid.UUID("00000000-0000-4000-8000-000000000002")
    heads = {a: (2, h("event a2")), b: (1, h("event b1"))}
    assert (streammap.key_of(a).hex()[:8], streammap.key_of(b).hex()[:8]) == ("86a42775", "62207b48")
    root = build_root(heads)
    assert root.hex() == "71c7c74bf5ede360d6b2ee9bab6db55f715124ffefe2739acb0aea9f8b5c8d67"
    assert streammap.extension_line(root) == "claims-ledger/stream-heads/v1 ccfHS/Xt42DWsu6bq221X3FRJP/v4nOaywrqn4tcjWc="
    # A third stream's path ends at the second's leaf: its absence, proved.
    memory = MemoryMap()
    memory.update(heads)
    c = uuid.UUID("00000000-0000-4000-8000-000000000003")
    proof = memory.prove(c)
    assert proof.other is not None and proof.other.stream == b and verify(root, proof) is None


def test_a_claims_payment_stream_id_is_the_documented_uuid5():
    from claims_service.adjudication.bundles import claim_completeness

    claim = uuid.UUID("5f0c2b7e-0000-4000-8000-000000000000")
    payment, label = claim_completeness(claim).family(1)
    name = f'["payment","{claim}/1"]'
    assert payment == uuid.uuid5(uuid.UUID("e290a70c-ef41-557c-85b3-9b66b265524b"), name)
    assert label == f"payment 1 ({claim}/1)"
