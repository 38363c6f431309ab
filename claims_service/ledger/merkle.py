"""RFC 6962 / RFC 9162 Merkle tree hashing, proof generation and proof verification. Pure.

The ledger's Merkle tree has one leaf per event, in position order; a leaf's data is the event's
32-byte `hash` (docs/LEDGER.md, "Merkle tree and checkpoints"):

    leaf_hash(d)   = SHA-256(0x00 || d)
    node_hash(l,r) = SHA-256(0x01 || l || r)
    MTH({})        = SHA-256("")

Proofs are generated from *perfect* subtrees, named `(level, index)`: the subtree of 2**level
leaves starting at leaf `index * 2**level`. Every hash a proof needs is the right fold of a few
such subtrees (the ones covering a range `[begin, end)`), so a store that keeps every perfect
subtree can answer any root or proof with O(log n) point reads. Generation is split into a *plan*
(which subtrees, no I/O) and `resolve` (one batched read), so a database answers in one round trip.

Verification follows RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency) step by step.
The functions return True or raise `ProofError` naming what failed, never return False.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
_LEAF = b"\x00"
_NODE = b"\x01"

Node = tuple[int, int]
"""A perfect subtree: (level, index) covers leaves [index * 2**level, (index + 1) * 2**level)."""

NodeReader = Callable[[Sequence[Node]], Mapping[Node, bytes]]
"""Given perfect subtrees, return their hashes (all of them, or raise)."""

Plan = list[list[Node]]
"""One entry per proof element: the perfect subtrees whose right fold is that element."""


class ProofError(ValueError):
    """A proof did not verify, or its inputs are malformed; the message says which."""


# --- hashing -------------------------------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    """The hash of one leaf. `data` is an event's 32-byte hash in the ledger, any bytes in general."""
    return hashlib.sha256(_LEAF + bytes(data)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE + left + right).digest()


def fold(hashes: Sequence[bytes]) -> bytes:
    """The hash of adjacent subtrees, largest first, as RFC 6962 joins them: h0 . (h1 . (h2 . …))."""
    if not hashes:
        raise ValueError("nothing to fold")
    result = hashes[-1]
    for h in reversed(hashes[:-1]):
        result = node_hash(h, result)
    return result


def root(leaves: Iterable[bytes]) -> bytes:
    """MTH of raw leaf data (event hashes, or the RFC test vectors' inputs). O(n) time, O(log n) memory."""
    frontier = Frontier()
    for data in leaves:
        frontier.append(leaf_hash(data))
    return frontier.root()


class Frontier:
    """The perfect subtrees covering leaves [0, size), largest first: a compact range.

    O(log n) hashes are enough to append further leaves and to compute the root. `append` returns
    every perfect subtree the new leaf completes (the leaf itself at level 0 first), which is what
    an incremental store writes.
    """

    __slots__ = ("size", "_stack")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        nodes = range_nodes(0, size)
        if len(nodes) != len(hashes):
            raise ValueError(f"a frontier of size {size} has {len(nodes)} subtrees, got {len(hashes)} hashes")
        self.size = size
        self._stack: list[tuple[int, bytes]] = [(level, bytes(h)) for (level, _), h in zip(nodes, hashes)]

    def append(self, leaf: bytes) -> list[tuple[Node, bytes]]:
        index = self.size
        level, current = 0, leaf
        completed: list[tuple[Node, bytes]] = [((0, index), leaf)]
        stack = self._stack
        while stack and stack[-1][0] == level:
            _, left = stack.pop()
            current = node_hash(left, current)
            level += 1
            completed.append(((level, index >> level), current))
        stack.append((level, current))
        self.size = index + 1
        return completed

    def hashes(self) -> list[bytes]:
        return [h for _, h in self._stack]

    def root(self) -> bytes:
        return fold(self.hashes()) if self._stack else EMPTY_ROOT


# --- which subtrees a root or a proof needs (no I/O) ----------------------------------------------


def _split(n: int) -> int:
    """RFC 6962's k: the largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def range_nodes(begin: int, end: int) -> list[Node]:
    """The aligned perfect subtrees that exactly cover leaves [begin, end), left to right.

    For every range RFC 6962's recursion produces (begin a multiple of a power of two that is at
    least end - begin), their right fold is MTH(D[begin:end]).
    """
    if not 0 <= begin <= end:
        raise ValueError(f"bad range [{begin}, {end})")
    nodes: list[Node] = []
    while begin < end:
        level = (end - begin).bit_length() - 1
        if begin:
            level = min(level, (begin & -begin).bit_length() - 1)
        nodes.append((level, begin >> level))
        begin += 1 << level
    return nodes


def root_plan(size: int) -> list[Node]:
    return range_nodes(0, size)


def inclusion_plan(index: int, size: int) -> Plan:
    """PATH(index, D[0:size]) of RFC 9162 §2.1.3.1, as subtrees; the leaf's sibling first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    plan: Plan = []
    begin, end = 0, size
    while end - begin > 1:
        mid = begin + _split(end - begin)
        if index < mid:
            plan.append(range_nodes(mid, end))
            end = mid
        else:
            plan.append(range_nodes(begin, mid))
            begin = mid
    plan.reverse()
    return plan


def consistency_plan(old_size: int, new_size: int) -> Plan:
    """PROOF(old_size, D[0:new_size]) of RFC 9162 §2.1.4.1, as subtrees; empty when old is 0 or new."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    plan: Plan = []
    if old_size == 0 or old_size == new_size:
        return plan
    m, begin, end, whole = old_size, 0, new_size, True
    # SUBPROOF(m, D[begin:end], whole); each step's own element comes after the recursive part.
    while True:
        n = end - begin
        if m == n:
            if not whole:
                plan.append(range_nodes(begin, end))
            break
        k = _split(n)
        if m <= k:
            plan.append(range_nodes(begin + k, end))
            end = begin + k
        else:
            plan.append(range_nodes(begin, begin + k))
            m, begin, whole = m - k, begin + k, False
    plan.reverse()
    return plan


def resolve(plan: Plan, read: NodeReader) -> list[bytes]:
    """Fetch every subtree the plan names with one call to `read`, and fold each element."""
    needed = sorted({node for element in plan for node in element})
    hashes = read(needed) if needed else {}
    try:
        return [fold([hashes[node] for node in element]) for element in plan]
    except KeyError as missing:
        raise LookupError(f"subtree {missing.args[0]} is not stored") from None


def tree_root(size: int, read: NodeReader) -> bytes:
    return resolve([root_plan(size)], read)[0] if size else EMPTY_ROOT


def inclusion_proof(index: int, size: int, read: NodeReader) -> list[bytes]:
    return resolve(inclusion_plan(index, size), read)


def consistency_proof(old_size: int, new_size: int, read: NodeReader) -> list[bytes]:
    return resolve(consistency_plan(old_size, new_size), read)


class MemoryTree:
    """Every perfect subtree of a list of leaves, in a dict: proofs without a database."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self.frontier = Frontier()
        self.nodes: dict[Node, bytes] = {}
        for h in leaf_hashes:
            self.append(h)

    @classmethod
    def from_data(cls, leaves: Iterable[bytes]) -> MemoryTree:
        return cls(leaf_hash(d) for d in leaves)

    @property
    def size(self) -> int:
        return self.frontier.size

    def append(self, leaf: bytes) -> None:
        self.nodes.update(self.frontier.append(leaf))

    def read(self, nodes: Sequence[Node]) -> dict[Node, bytes]:
        missing = [n for n in nodes if n not in self.nodes]
        if missing:
            raise LookupError(f"subtree {missing[0]} is not stored (the tree has {self.size} leaves)")
        return {n: self.nodes[n] for n in nodes}

    def root(self, size: int | None = None) -> bytes:
        return tree_root(self.size if size is None else size, self.read)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return inclusion_proof(index, self.size if size is None else size, self.read)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        return consistency_proof(old_size, self.size if new_size is None else new_size, self.read)


# --- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) ------------------------------------------------


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, (bytes, bytearray, memoryview)) or len(value) != HASH_SIZE:
        raise ProofError(f"{what} is not a {HASH_SIZE}-byte hash")


def _check_proof(proof: Sequence[bytes]) -> list[bytes]:
    for i, element in enumerate(proof):
        _check_hash(element, f"proof element {i}")
    return [bytes(p) for p in proof]


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """True if `proof` shows the leaf with hash `leaf_hash` at `index` in the tree `root` of `size`."""
    _check_hash(leaf_hash, "leaf hash")
    _check_hash(root, "root hash")
    path = _check_proof(proof)
    if not 0 <= index < size:  # step 1
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    fn, sn = index, size - 1  # step 2
    r = bytes(leaf_hash)  # step 3
    for p in path:  # step 4
        if sn == 0:
            raise ProofError(f"inclusion proof too long for leaf {index} in a tree of size {size}")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # step 5
        raise ProofError(f"inclusion proof too short for leaf {index} in a tree of size {size}")
    if r != bytes(root):
        raise ProofError(f"inclusion proof for leaf {index} does not lead to the root of the tree of size {size}")
    return True


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """True if `proof` shows the tree (`new_size`, `new_root`) extends the tree (`old_size`, `old_root`).

    Beyond RFC 9162 (which defines 0 < old < new): equal sizes need an empty proof and equal roots;
    old size 0 needs an empty proof and the empty tree's root.
    """
    _check_hash(old_root, "old root hash")
    _check_hash(new_root, "new root hash")
    path = _check_proof(proof)
    if not 0 <= old_size <= new_size:
        raise ProofError(f"tree size went from {old_size} to {new_size}: a tree never shrinks")
    if old_size == new_size:
        if path:
            raise ProofError("equal tree sizes need an empty consistency proof")
        if bytes(old_root) != bytes(new_root):
            raise ProofError(f"two different roots for the same tree size {old_size}")
        return True
    if old_size == 0:
        if path:
            raise ProofError("a consistency proof from the empty tree is empty")
        if bytes(old_root) != EMPTY_ROOT:
            raise ProofError("the root of an empty tree is SHA-256 of nothing")
        return True
    if not path:  # step 1
        raise ProofError(f"empty consistency proof from size {old_size} to {new_size}")
    if old_size & (old_size - 1) == 0:  # step 2: old_size is an exact power of 2
        path.insert(0, bytes(old_root))
    fn, sn = old_size - 1, new_size - 1  # step 3
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:
            raise ProofError(f"consistency proof too long from size {old_size} to {new_size}")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # step 7
    if sn != 0:
        raise ProofError(f"consistency proof too short from size {old_size} to {new_size}")
    if fr != bytes(old_root):
        raise ProofError(f"consistency proof does not lead to the old root of size {old_size}"
                         " (the first leaves changed, or the proof is wrong)")
    if sr != bytes(new_root):
        raise ProofError(f"consistency proof does not lead to the new root of size {new_size}")
    return True
