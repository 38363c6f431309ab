"""Merkle hashing and proofs against a naive RFC 6962 implementation and the RFC 6962 test vectors."""

from __future__ import annotations

import hashlib
import random
from functools import lru_cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claims_service.ledger import merkle
from claims_service.ledger.merkle import (
    EMPTY_ROOT,
    Frontier,
    MemoryTree,
    ProofError,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

# --- the naive reference: RFC 9162 §2.1.1, §2.1.3.1, §2.1.4.1 written out, full recompute ---------

LEAVES = [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(2100)]  # 32-byte "event hashes"
LEAF_HASHES = [leaf_hash(d) for d in LEAVES]


@lru_cache(maxsize=None)
def mth(begin: int, end: int) -> bytes:
    n = end - begin
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + LEAVES[begin]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + mth(begin, begin + k) + mth(begin + k, end)).digest()


def naive_path(m: int, begin: int, end: int) -> list[bytes]:
    n = end - begin
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return naive_path(m, begin, begin + k) + [mth(begin + k, end)]
    return naive_path(m - k, begin + k, end) + [mth(begin, begin + k)]


def naive_subproof(m: int, begin: int, end: int, whole: bool) -> list[bytes]:
    n = end - begin
    if m == n:
        return [] if whole else [mth(begin, end)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return naive_subproof(m, begin, begin + k, whole) + [mth(begin + k, end)]
    return naive_subproof(m - k, begin + k, end, False) + [mth(begin, begin + k)]


def naive_consistency(m: int, n: int) -> list[bytes]:
    return naive_subproof(m, 0, n, True) if 0 < m < n else []


@pytest.fixture(scope="module")
def tree() -> MemoryTree:
    return MemoryTree(LEAF_HASHES)


def test_hashing_basics():
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert merkle.root([]) == EMPTY_ROOT
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()


def test_roots_of_every_size_up_to_300_match_the_naive_tree(tree):
    frontier = Frontier()
    for n in range(1, 301):
        frontier.append(LEAF_HASHES[n - 1])
        assert frontier.root() == mth(0, n) == tree.root(n), n
        assert merkle.root(LEAVES[:n]) == mth(0, n)


def test_a_frontier_restored_from_its_hashes_continues_the_same_tree():
    for n in (0, 1, 5, 64, 77):
        frontier = Frontier(n, [mth(a << lvl, (a + 1) << lvl) for lvl, a in merkle.range_nodes(0, n)])
        for h in LEAF_HASHES[n:n + 40]:
            frontier.append(h)
        assert frontier.root() == mth(0, n + 40)


def test_inclusion_proofs_for_every_leaf_of_every_size_up_to_300(tree):
    for n in range(1, 301):
        root = mth(0, n)
        for i in range(n):
            proof = tree.inclusion_proof(i, n)
            assert proof == naive_path(i, 0, n), (i, n)
            assert verify_inclusion(LEAF_HASHES[i], i, n, proof, root)


def test_consistency_proofs_for_every_pair_of_sizes_up_to_300(tree):
    for n in range(1, 301):
        new_root = mth(0, n)
        for m in range(0, n + 1):
            proof = tree.consistency_proof(m, n)
            assert proof == naive_consistency(m, n), (m, n)
            assert verify_consistency(m, n, mth(0, m), new_root, proof)


def test_random_larger_trees(tree):
    rng = random.Random(6962)
    for _ in range(300):
        n = rng.randint(301, len(LEAVES))
        i = rng.randrange(n)
        m = rng.randint(1, n)
        proof = tree.inclusion_proof(i, n)
        assert proof == naive_path(i, 0, n)
        assert verify_inclusion(LEAF_HASHES[i], i, n, proof, mth(0, n))
        proof = tree.consistency_proof(m, n)
        assert proof == naive_consistency(m, n)
        assert verify_consistency(m, n, mth(0, m), mth(0, n), proof)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_single_bit_flip_or_wrong_parameter_fails(tree, data):
    n = data.draw(st.integers(2, 700))
    i = data.draw(st.integers(0, n - 1))
    m = data.draw(st.integers(1, n - 1))
    proof = tree.inclusion_proof(i, n)
    cproof = tree.consistency_proof(m, n)
    root_n, root_m = mth(0, n), mth(0, m)
    if proof:
        j = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        bad = list(proof)
        bad[j] = bytes(b ^ (1 << (bit % 8)) if k == bit // 8 else b for k, b in enumerate(bad[j]))
        with pytest.raises(ProofError):
            verify_inclusion(LEAF_HASHES[i], i, n, bad, root_n)
    with pytest.raises(ProofError):
        verify_inclusion(LEAF_HASHES[i], i, n, proof + [root_n], root_n)
    with pytest.raises(ProofError):
        verify_inclusion(LEAF_HASHES[(i + 1) % n], i, n, proof, root_n)
    with pytest.raises(ProofError):
        verify_consistency(m, n, root_m, root_n, cproof[:-1])
    with pytest.raises(ProofError):
        verify_consistency(m, n, root_n, root_m, cproof)
    with pytest.raises(ProofError):
        verify_consistency(m, n, root_m, root_n, [root_m] + cproof)
    j = data.draw(st.integers(0, len(cproof) - 1))
    bad = list(cproof)
    bad[j] = bytes([bad[j][0] ^ 16]) + bad[j][1:]
    with pytest.raises(ProofError):
        verify_consistency(m, n, root_m, root_n, bad)


# --- RFC 6962 test vectors (as published with transparency-dev/merkle's proof package tests) -------

def h(hexstr: str) -> bytes:
    return bytes.fromhex(hexstr)


VECTOR_LEAVES = [h(""), h("00"), h("10"), h("2021"), h("3031"), h("40414243"), h("5051525354555657"),
                 h("606162636465666768696a6b6c6d6e6f")]
VECTOR_ROOTS = [h(x) for x in (
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]
# (1-based leaf number, tree size, proof)
VECTOR_INCLUSION = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (2, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
VECTOR_CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]


def test_rfc6962_vector_roots():
    for size in range(1, 9):
        assert merkle.root(VECTOR_LEAVES[:size]) == VECTOR_ROOTS[size - 1], size


@pytest.mark.parametrize("leaf, size, proof", VECTOR_INCLUSION)
def test_rfc6962_vector_inclusion_proofs(leaf, size, proof):
    tree = MemoryTree.from_data(VECTOR_LEAVES)
    expected = [h(p) for p in proof]
    assert tree.inclusion_proof(leaf - 1, size) == expected
    assert verify_inclusion(leaf_hash(VECTOR_LEAVES[leaf - 1]), leaf - 1, size, expected, VECTOR_ROOTS[size - 1])
    for index, tree_size in ((leaf, size), (leaf - 1, size * 2), (leaf - 1, size // 2)):
        with pytest.raises(ProofError):
            verify_inclusion(leaf_hash(VECTOR_LEAVES[leaf - 1]), index, tree_size, expected, VECTOR_ROOTS[size - 1])


@pytest.mark.parametrize("old, new, proof", VECTOR_CONSISTENCY)
def test_rfc6962_vector_consistency_proofs(old, new, proof):
    tree = MemoryTree.from_data(VECTOR_LEAVES)
    expected = [h(p) for p in proof]
    assert tree.consistency_proof(old, new) == expected
    assert verify_consistency(old, new, VECTOR_ROOTS[old - 1], VECTOR_ROOTS[new - 1], expected)
    if expected:
        for bad in ((old, new, VECTOR_ROOTS[new - 1], VECTOR_ROOTS[old - 1], expected),
                    (old, new * 2, VECTOR_ROOTS[old - 1], VECTOR_ROOTS[new - 1], expected),
                    (old, new, VECTOR_ROOTS[old - 1], VECTOR_ROOTS[new - 1], expected + [b"\0" * 32]),
                    (old, new, VECTOR_ROOTS[old - 1], VECTOR_ROOTS[new - 1], [expected[0]] + expected)):
            with pytest.raises(ProofError):
                verify_consistency(*bad)


def test_edge_cases_and_malformed_inputs():
    some = hashlib.sha256(b"some").digest()
    with pytest.raises(ProofError):
        verify_inclusion(some, 0, 0, [], EMPTY_ROOT)
    with pytest.raises(ProofError):
        verify_inclusion(some, 2, 1, [], some)
    assert verify_inclusion(some, 0, 1, [], some)
    with pytest.raises(ProofError, match="32-byte"):
        verify_inclusion(b"", 0, 1, [], some)
    with pytest.raises(ProofError, match="32-byte"):
        verify_inclusion(some, 0, 2, [b""], some)
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 5, EMPTY_ROOT, some, [])
    assert verify_consistency(3, 3, some, some, [])
    with pytest.raises(ProofError):
        verify_consistency(0, 5, some, some, [])  # a size-0 tree has the empty root
    with pytest.raises(ProofError):
        verify_consistency(0, 1, EMPTY_ROOT, some, [EMPTY_ROOT])
    with pytest.raises(ProofError):
        verify_consistency(3, 3, some, EMPTY_ROOT, [])
    with pytest.raises(ProofError, match="never shrinks"):
        verify_consistency(2, 1, some, some, [some])
    with pytest.raises(ProofError, match="empty consistency proof"):
        verify_consistency(1, 2, some, some, [])
    with pytest.raises(ValueError):
        merkle.inclusion_plan(5, 5)
    with pytest.raises(LookupError, match="not stored"):
        MemoryTree(LEAF_HASHES[:4]).inclusion_proof(0, 9)
