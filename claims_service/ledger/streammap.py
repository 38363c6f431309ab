"""The stream map: every stream's head (latest version and its event hash) at each tree size, in a
sparse Merkle tree whose root a checkpoint commits to (an extension line). With it a bundle proves
it holds *every* event of a stream as of its checkpoint, and that a stream does not exist at all.

Hashing (docs/LEDGER.md, "The stream map"):

    key(stream)              = SHA-256(stream id, 16 bytes)           bit 0 = the first byte's top bit
    leaf(stream, version, h) = SHA-256(0x02 || stream id || int64 version || h)
    node(left, right)        = SHA-256(0x03 || left || right)
    EMPTY                    = 32 zero bytes                            (a subtree without streams)

A subtree holding no stream is EMPTY, one stream its leaf, two or more the node of its two halves
(split by the key's next bit). Hashes with no known preimage (EMPTY), leaves and nodes cannot be
confused, so a root opens one way only: a path from the root along a key ends at that key's leaf
(the stream's head), at EMPTY or at another stream's leaf (no such stream).

Storage (migrations 0018, 0023): `stream_map_nodes` holds every node and leaf ever made
(append-only: a new head makes a new leaf and new nodes up its path; the old ones stay, so every
earlier root still answers), each at (made_at, hash), made_at the tree size of the update that made
it, an inner node naming its children the same way, so that one update's rows are written together;
`stream_map_roots` the root (and where it is stored) at the tree sizes the map was brought to.
It is brought up to date incrementally, from the latest root with the heads the leaves since then
moved: by the tree builder in the same transaction as the leaves once `map_every` (5,000) leaves
are unmapped, and by the signer for the size it signs. The cost is O(changed streams × log
streams) hashes and rows per update, never a pass over all streams (but once, to map a ledger that
predates the map); updating every 5,000 leaves rather than at every small batch shares the upper
levels of the paths among more streams. A live builder writes an update's rows 1,000 a statement,
pausing after each as long as it took (`StreamMap.write_pause`), so as not to hold a core at once.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import psycopg

from claims_service.ledger import merkle

EMPTY = bytes(32)
MAX_DEPTH = 256
EXTENSION = "claims-ledger/stream-heads/v1"
"""A checkpoint's extension line: `claims-ledger/stream-heads/v1 <base64 map root>`."""

_LEAF = b"\x02"
_NODE = b"\x03"

class StreamMapError(LookupError):
    """The stored map cannot be extended: a node is missing, or a root disagrees with the tree."""


Head = tuple[int, bytes]
"""A stream's head: (latest version, that event's hash)."""


# --- hashing (pure) -----------------------------------------------------------------------------


def key_of(stream: uuid.UUID) -> bytes:
    return hashlib.sha256(stream.bytes).digest()


def leaf_hash(stream: uuid.UUID, version: int, event_hash: bytes) -> bytes:
    return hashlib.sha256(_LEAF + stream.bytes + struct.pack(">q", version) + bytes(event_hash)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE + left + right).digest()


def bit(key: bytes, depth: int) -> int:
    return (key[depth >> 3] >> (7 - (depth & 7))) & 1


def extension_line(root: bytes) -> str:
    return f"{EXTENSION} {base64.b64encode(root).decode('ascii')}"


def root_from_extensions(extensions: Sequence[str]) -> bytes | None:
    """The map root a checkpoint commits to, or None when it names none."""
    for line in extensions:
        name, _, value = line.partition(" ")
        if name == EXTENSION:
            try:
                root = base64.b64decode(value.encode("ascii"), validate=True)
            except ValueError:
                raise merkle.ProofError("the checkpoint's stream map line is not base64") from None
            if len(root) != merkle.HASH_SIZE:
                raise merkle.ProofError("the checkpoint's stream map root is not 32 bytes")
            return root
    return None


@dataclass(frozen=True)
class Leaf:
    stream: uuid.UUID
    version: int
    event_hash: bytes

    @property
    def hash(self) -> bytes:
        return leaf_hash(self.stream, self.version, self.event_hash)


@dataclass(frozen=True)
class MapProof:
    """What the map holds for `stream`: its head (`found`), or its absence shown by the path ending
    at EMPTY (`other` None) or at another stream's leaf (`other`). `siblings`: deepest first."""

    stream: uuid.UUID
    found: Leaf | None
    other: Leaf | None
    siblings: list[bytes]


def verify(root: bytes, proof: MapProof) -> Head | None:
    """The stream's head under `root`, or None when the map shows it has no event; ProofError
    naming what failed otherwise."""
    key = key_of(proof.stream)
    depth = len(proof.siblings)
    if depth > MAX_DEPTH:
        raise merkle.ProofError("a stream map proof has at most 256 siblings")
    for i, sibling in enumerate(proof.siblings):
        if len(sibling) != merkle.HASH_SIZE:
            raise merkle.ProofError(f"stream map proof element {i} is not a 32-byte hash")
    if proof.found is not None:
        if proof.found.stream != proof.stream or proof.other is not None:
            raise merkle.ProofError("a stream map proof of a head names that stream's leaf only")
        if proof.found.version < 1 or len(proof.found.event_hash) != merkle.HASH_SIZE:
            raise merkle.ProofError("a stream head is a version from 1 and a 32-byte hash")
        node = proof.found.hash
    elif proof.other is not None:
        other_key = key_of(proof.other.stream)
        if other_key == key:
            raise merkle.ProofError("a proof of absence ends at another stream's leaf, not this stream's")
        if any(bit(other_key, d) != bit(key, d) for d in range(depth)):
            raise merkle.ProofError("the other stream's leaf is not on this stream's path")
        node = proof.other.hash
    else:
        node = EMPTY
    for i, sibling in enumerate(proof.siblings):
        d = depth - 1 - i
        node = node_hash(bytes(sibling), node) if bit(key, d) else node_hash(node, bytes(sibling))
    if node != bytes(root):
        raise merkle.ProofError(f"the stream map proof of {proof.stream} does not lead to the checkpoint's map root")
    return (proof.found.version, proof.found.event_hash) if proof.found is not None else None


# --- building and updating (pure over a node store) -----------------------------------------------

Node = tuple[bytes, bytes] | Leaf
"""An inner node (left, right) or a leaf."""


class _Builder:
    """Applies new heads to a map whose nodes are in `nodes`; collects the nodes it makes."""

    def __init__(self, nodes: Mapping[bytes, Node]) -> None:
        self.nodes = nodes
        self.made: dict[bytes, Node] = {}
        self.superseded: set[bytes] = set()  # nodes of the old map that the new one no longer holds

    def apply(self, h: bytes, depth: int, items: list[tuple[bytes, Leaf | bytes]]) -> bytes:
        """`items`: (key, new Leaf) sorted by key, all under this subtree; an existing leaf's hash
        may stand in for its Leaf (it is kept, not made again)."""
        if not items:
            return h
        if h == EMPTY:
            return self.build(depth, items)
        node = self.nodes[h]
        if isinstance(node, Leaf):
            existing = key_of(node.stream)
            if not any(k == existing for k, _ in items):  # moved down beside the new ones, still held
                return self.build(depth, sorted([*items, (existing, h)], key=lambda item: item[0]))
            made = self.build(depth, items)
        else:
            split = _split(items, depth)
            left = self.apply(node[0], depth + 1, items[:split])
            right = self.apply(node[1], depth + 1, items[split:])
            made = self.node(left, right)
        if made != h and h not in self.made:
            self.superseded.add(h)
        return made

    def build(self, depth: int, items: Sequence[tuple[bytes, Leaf | bytes]]) -> bytes:
        if not items:
            return EMPTY
        if len(items) == 1:
            value = items[0][1]
            if isinstance(value, bytes):
                return value  # an existing leaf, moved down unchanged
            h = value.hash
            self.made[h] = value
            return h
        if depth >= MAX_DEPTH:
            raise ValueError("two streams with one key")
        split = _split(items, depth)
        return self.node(self.build(depth + 1, items[:split]), self.build(depth + 1, items[split:]))

    def node(self, left: bytes, right: bytes) -> bytes:
        if left == EMPTY and right == EMPTY:
            return EMPTY
        h = node_hash(left, right)
        self.made[h] = (left, right)
        return h


def _split(items: Sequence[tuple[bytes, object]], depth: int) -> int:
    """The index of the first item whose key has bit `depth` set (items sorted by key)."""
    for i, (key, _) in enumerate(items):
        if bit(key, depth):
            return i
    return len(items)


def _items(heads: Mapping[uuid.UUID, Head]) -> list[tuple[bytes, Leaf | bytes]]:
    return sorted(((key_of(s), Leaf(s, v, bytes(h))) for s, (v, h) in heads.items()), key=lambda item: item[0])


def build_root(heads: Mapping[uuid.UUID, Head]) -> bytes:
    """The map root of these heads, from nothing (tests, audits)."""
    return _Builder({}).build(0, _items(heads))


class MemoryMap:
    """A stream map in a dict: proofs without a database (tests, other implementations' checks)."""

    def __init__(self) -> None:
        self.nodes: dict[bytes, Node] = {}
        self.root = EMPTY

    def update(self, heads: Mapping[uuid.UUID, Head]) -> bytes:
        builder = _Builder(self.nodes)
        self.root = builder.apply(self.root, 0, _items(heads))
        self.nodes.update(builder.made)
        return self.root

    def prove(self, stream: uuid.UUID, root: bytes | None = None) -> MapProof:
        return _walk(stream, self.root if root is None else root, lambda h: self.nodes[h])


def _walk(stream: uuid.UUID, root: bytes, get) -> MapProof:  # noqa: ANN001 - a node lookup
    key = key_of(stream)
    siblings: list[bytes] = []
    h, depth = root, 0
    while True:
        if h == EMPTY:
            return MapProof(stream, None, None, siblings[::-1])
        node = get(h)
        if isinstance(node, Leaf):
            if node.stream == stream:
                return MapProof(stream, node, None, siblings[::-1])
            return MapProof(stream, None, node, siblings[::-1])
        left, right = node
        if bit(key, depth):
            siblings.append(left)
            h = right
        else:
            siblings.append(right)
            h = left
        depth += 1


# --- storage ------------------------------------------------------------------------------------
#
# A node is stored at (made_at, hash): made_at is the tree size of the update that made it, and an
# inner node names each child by both, so that an update's rows are written together at the right
# edge of the index rather than at random pages of an index keyed by hash (migration 0023).

_NODE_COLUMNS = "n.made_at, n.hash, n.left_at, n.left_hash, n.right_at, n.right_hash, n.stream_id, n.version, n.event_hash"
# psycopg dumps a list element by element in Python, which cost the tree process more than
# making the nodes: so hashes travel as one bytea (32 bytes a node, cut apart by the server) and
# places as bigint[] literals, in the reads as in the writes.
_SELECT_NODES = (f"SELECT {_NODE_COLUMNS} FROM unnest(%(made_at)s::bigint[]) WITH ORDINALITY AS w(made_at, i)"
                 " JOIN stream_map_nodes n ON n.made_at = w.made_at"
                 " AND n.hash = substring(%(hashes)s::bytea FROM w.i::int * 32 - 31 FOR 32)")
# An update's rows, inner nodes and leaves each in a statement of their own (inner nodes are nine
# in ten of them).
_INSERT_INNER = (
    "INSERT INTO stream_map_nodes (made_at, hash, left_at, left_hash, right_at, right_hash)"
    " SELECT %(made_at)s::bigint, substring(%(hashes)s::bytea FROM w.i::int * 32 - 31 FOR 32), w.left_at,"
    " substring(%(lefts)s::bytea FROM w.i::int * 32 - 31 FOR 32), w.right_at,"
    " substring(%(rights)s::bytea FROM w.i::int * 32 - 31 FOR 32)"
    " FROM unnest(%(left_at)s::bigint[], %(right_at)s::bigint[]) WITH ORDINALITY AS w(left_at, right_at, i)"
    " ORDER BY w.i"
    " ON CONFLICT (made_at, hash) DO NOTHING"
)
_INSERT_LEAVES = (
    "INSERT INTO stream_map_nodes (made_at, hash, stream_id, version, event_hash)"
    " SELECT %b::bigint, * FROM unnest(%b::bytea[], %b::uuid[], %b::bigint[], %b::bytea[])"
    " ON CONFLICT (made_at, hash) DO NOTHING"
)
# The path of one key from a root, one statement: each step picks the child the key's bit names.
# PostgreSQL's get_bit numbers a byte's bits from its least significant one, hence 7 - depth % 8.
_SELECT_PATH = (
    "WITH RECURSIVE walk(depth, made_at, hash) AS ("
    " SELECT 0, %(root_at)s::bigint, %(root)s::bytea"
    " UNION ALL"
    " SELECT w.depth + 1, CASE WHEN b.goes_right THEN n.right_at ELSE n.left_at END,"
    "                     CASE WHEN b.goes_right THEN n.right_hash ELSE n.left_hash END"
    " FROM walk w JOIN stream_map_nodes n ON n.made_at = w.made_at AND n.hash = w.hash"
    " CROSS JOIN LATERAL (SELECT get_bit(%(key)s::bytea, (w.depth / 8) * 8 + 7 - w.depth %% 8) = 1) AS b(goes_right)"
    " WHERE n.left_hash IS NOT NULL AND w.depth < 256)"
    f" SELECT w.depth, {_NODE_COLUMNS}, w.hash"
    " FROM walk w LEFT JOIN stream_map_nodes n ON n.made_at = w.made_at AND n.hash = w.hash ORDER BY w.depth"
)


class _Stored:
    """Nodes read from the table or made by an update, by hash, with where each is stored."""

    def __init__(self) -> None:
        self.nodes: dict[bytes, Node] = {}
        self.at: dict[bytes, int] = {}  # hash -> made_at of a stored copy (children learnt from parents)

    def __len__(self) -> int:
        return len(self.nodes)

    def add_row(self, row: tuple) -> None:
        made_at, h, left_at, left, right_at, right, stream, version, event_hash = row
        h = bytes(h)
        self.at[h] = made_at
        if left is not None:
            self.nodes[h] = (bytes(left), bytes(right))
            self.at[bytes(left)] = left_at  # a stored row names where they are: trust it over the cache
            self.at[bytes(right)] = right_at
        else:
            self.nodes[h] = Leaf(stream, int(version), bytes(event_hash))

    def clear(self) -> None:
        self.nodes.clear()
        self.at.clear()


def root_at(conn: psycopg.Connection, tree_size: int) -> bytes | None:
    """The map root at `tree_size` (EMPTY for 0), None when the builder never stopped at that size."""
    if tree_size == 0:
        return EMPTY
    row = conn.execute("SELECT root FROM stream_map_roots WHERE tree_size = %s", (tree_size,)).fetchone()
    return bytes(row[0]) if row else None


def prove(conn: psycopg.Connection, root: bytes, stream: uuid.UUID) -> MapProof:
    """What the map with `root` holds for `stream`, with its proof (one statement)."""
    if bytes(root) == EMPTY:
        return MapProof(stream, None, None, [])
    found = conn.execute("SELECT root_at FROM stream_map_roots WHERE root = %s LIMIT 1", (root,)).fetchone()
    if found is None:
        raise StreamMapError(f"stream map root {bytes(root).hex()[:16]}… is not stored")
    rows = conn.execute(_SELECT_PATH, {"root": root, "root_at": found[0], "key": key_of(stream)}).fetchall()
    path = _Stored()
    for row in rows:
        h = bytes(row[-1])
        if h == EMPTY:
            continue
        if row[2] is None:
            raise StreamMapError(f"stream map node {h.hex()[:16]}… is not stored")
        path.add_row(row[1:-1])
    return _walk(stream, root, path.nodes.__getitem__)


def checkpoint_extensions(conn: psycopg.Connection, tree_size: int, stream_map: StreamMap | None = None) -> list[str]:
    """A checkpoint's extension lines: the stream map's root at `tree_size` (brought up to that size
    now when the tree builder has not: from the latest map before it, with the leaves since), with
    `stream_map`'s cache when given (the tree builder's, in the signer that runs beside it)."""
    return [extension_line((stream_map or StreamMap()).catch_up(conn, tree_size))]


def mapped_size(conn: psycopg.Connection) -> int:
    """The largest tree size the map has a root for (0 when none)."""
    return conn.execute("SELECT coalesce(max(tree_size), 0) FROM stream_map_roots").fetchone()[0]


class StreamMap:
    """The stored map. Keeps the current map's nodes it read or made (content addressed, so never
    stale), up to `cache_limit` of them, and lets go of those an update replaced: a map of up to
    half that many streams is then read from the table once, not after every few updates, and a
    larger one keeps its upper levels, so that an update reads only the levels below them."""

    def __init__(self, cache_limit: int = 500_000, *, write_chunk: int = 1_000, write_pause: float = 0.0) -> None:
        self.cache_limit = cache_limit
        # An update on a long history writes 5,000-10,000 rows: in one statement, its backend took
        # a core for 50-160 ms, and on two cores every submission in flight waited behind it (the
        # paced tail's bursts). Nobody waits on the map, so a live builder writes it a chunk a
        # statement and, after each, pauses `write_pause` times as long as the chunk took.
        self.write_chunk = write_chunk
        self.write_pause = write_pause
        self._cache = _Stored()

    def warm(self, conn: psycopg.Connection) -> int:
        """Read the latest map's levels nearest the root into the cache, a level per statement, up
        to three quarters of its limit: what a builder started on a long ledger would otherwise read
        a few thousand nodes at a time in its first updates. Returns how many nodes it read."""
        row = conn.execute("SELECT root, root_at FROM stream_map_roots ORDER BY tree_size DESC LIMIT 1").fetchone()
        if row is None or bytes(row[0]) == EMPTY:
            return 0
        cache, root, read = self._cache, bytes(row[0]), 0
        cache.at.setdefault(root, row[1])
        level = [root]
        while level and len(cache.nodes) + len(level) <= self.cache_limit * 3 // 4:
            wanted = [h for h in level if h not in cache.nodes]
            if wanted:
                self._read(conn, wanted)
                read += len(wanted)
            level = [child for h in level if isinstance(node := cache.nodes.get(h), tuple)
                     for child in node if child != EMPTY]
        return read

    def forget(self) -> None:
        """Empty the cache: after a transaction that made nodes did not commit, they are not stored."""
        self._cache.clear()

    def catch_up(self, conn: psycopg.Connection, tree_size: int) -> bytes:
        """The map root at `tree_size`, recorded: the latest map before that size with the heads the
        leaves since then moved (incrementally: only the streams they touch). A ledger older than
        the map is mapped from its first leaf, once. Runs in the caller's transaction."""
        root = root_at(conn, tree_size)
        if root is not None:
            return root
        row = conn.execute("SELECT tree_size, root, root_at FROM stream_map_roots WHERE tree_size < %s"
                           " ORDER BY tree_size DESC LIMIT 1", (tree_size,)).fetchone()
        since, root, at = (row[0], bytes(row[1]), row[2]) if row else (0, EMPTY, 0)
        heads: dict[uuid.UUID, Head] = {}
        with conn.cursor(name="stream_map_leaves") as cur:
            cur.itersize = 50_000
            cur.execute("SELECT e.originator_id, e.originator_version, l.event_hash FROM ledger_leaves l"
                        " JOIN ledger_events e ON e.notification_id = l.position"
                        " WHERE l.leaf_index >= %s AND l.leaf_index < %s ORDER BY l.leaf_index", (since, tree_size))
            count = 0
            for stream, version, event_hash in cur:
                heads[stream] = (version, bytes(event_hash))
                count += 1
        if count != tree_size - since:
            raise StreamMapError(f"the tree's leaves {since}..{tree_size - 1} do not all name an event of the ledger")
        return self.update(conn, root, tree_size, heads, root_made_at=at)

    def update(self, conn: psycopg.Connection, root: bytes, new_size: int, heads: Mapping[uuid.UUID, Head], *,
               root_made_at: int = 0) -> bytes:
        """Record the map at `new_size`: the map `root` (stored as made at `root_made_at`) with `heads`
        applied; the nodes it makes are stored as made at `new_size`."""
        items = _items(heads)
        if root == EMPTY and len(items) > 1000:
            builder = _Builder({})  # from nothing (a first map): no path to read
            new_root = builder.build(0, items)
        else:
            self._cache.at[root] = root_made_at  # the root's row says where it is
            self._load_paths(conn, root, items)
            builder = _Builder(self._cache.nodes)
            new_root = builder.apply(root, 0, items)
        self._write(conn, new_size, builder.made)
        self._retire(builder.superseded, new_root)
        new_root_at = new_size if new_root in builder.made else self._cache.at.get(new_root, root_made_at)
        stored = conn.execute("INSERT INTO stream_map_roots (tree_size, root, root_at) VALUES (%s, %s, %s)"
                              " ON CONFLICT DO NOTHING RETURNING root", (new_size, new_root, new_root_at)).fetchone()
        if stored is None and root_at(conn, new_size) != new_root:
            raise StreamMapError(f"the stream map already has another root for tree size {new_size}: the tree was"
                                 " rebuilt over a different history")
        return new_root

    def _read(self, conn: psycopg.Connection, wanted: list[bytes]) -> None:
        """Read these nodes into the cache (one statement), each where its parent's row or the root's
        says it is stored; a node not found is simply not added."""
        located = [self._cache.at.get(h) for h in wanted]
        if None in located:
            raise StreamMapError(f"stream map node {wanted[located.index(None)].hex()[:16]}… is not stored")
        for row in conn.execute(_SELECT_NODES, {"made_at": _bigint_array(located), "hashes": b"".join(wanted)}).fetchall():
            self._cache.add_row(row)

    def _load_paths(self, conn: psycopg.Connection, root: bytes, items: list[tuple[bytes, Leaf | bytes]]) -> None:
        """Bring every node the update descends through into the cache, a level per statement."""
        cache = self._cache
        level = [(root, 0, items)] if items else []
        while level:
            wanted = [h for h, _, _ in level if h != EMPTY and h not in cache.nodes]
            if wanted:
                self._read(conn, wanted)
                absent = [h for h in wanted if h not in cache.nodes]
                if absent:
                    raise StreamMapError(f"stream map node {absent[0].hex()[:16]}… is not stored")
            below = []
            for h, depth, its in level:
                if h == EMPTY:
                    continue
                node = cache.nodes[h]
                if isinstance(node, Leaf):
                    continue
                split = _split(its, depth)
                if split:
                    below.append((node[0], depth + 1, its[:split]))
                if split < len(its):
                    below.append((node[1], depth + 1, its[split:]))
            level = below

    def _write(self, conn: psycopg.Connection, made_at: int, made: Mapping[bytes, Node]) -> None:
        if not made:
            return
        at = self._cache.at
        inner: list[tuple[bytes, int, bytes, int, bytes]] = []
        leaves: list[tuple[bytes, Leaf]] = []
        # In hash order, inner nodes first: two transactions writing the same new nodes (the builder
        # and a signer bringing the map to the same size) then wait for each other instead of
        # deadlocking. Each node's children are where this update made them or where the cache
        # says (EMPTY, no row, at 0).
        for h in sorted(made):
            node = made[h]
            if type(node) is tuple:
                left, right = node
                inner.append((h, made_at if left in made else at.get(left, 0), left,
                              made_at if right in made else at.get(right, 0), right))
            else:
                leaves.append((h, node))
        chunk = self.write_chunk
        for start in range(0, len(inner), chunk):
            hashes, left_at, lefts, right_at, rights = zip(*inner[start:start + chunk])
            self._paced(conn, _INSERT_INNER, {
                "made_at": made_at, "hashes": b"".join(hashes), "lefts": b"".join(lefts), "rights": b"".join(rights),
                "left_at": _bigint_array(left_at), "right_at": _bigint_array(right_at)})
        for start in range(0, len(leaves), chunk):
            part = leaves[start:start + chunk]
            self._paced(conn, _INSERT_LEAVES, (made_at, [h for h, _ in part], [n.stream for _, n in part],
                                               [n.version for _, n in part], [n.event_hash for _, n in part]))
        # What the next update needs of these nodes, as if their rows had been read: each node and
        # where it is. Where their children are is known already: made here, or read with the row
        # that named them (those places are what the rows above were written with).
        self._cache.nodes.update(made)
        at.update(dict.fromkeys(made, made_at))

    def _paced(self, conn: psycopg.Connection, statement: str, params: Mapping[str, object] | tuple) -> None:
        began = time.monotonic()
        conn.execute(statement, params)
        if self.write_pause:
            time.sleep((time.monotonic() - began) * self.write_pause)

    def _retire(self, superseded: Iterable[bytes], root: bytes) -> None:
        """Let go of the nodes the new map no longer holds; past the limit, keep the levels nearest
        the root that fill three quarters of it (with where their children are stored)."""
        nodes = self._cache.nodes
        for h in superseded:
            nodes.pop(h, None)  # where it is stored stays in `at` until a trim (smaller than a node)
        if len(nodes) <= self.cache_limit and len(self._cache.at) <= 2 * self.cache_limit:
            return
        at = self._cache.at
        kept = _Stored()
        level = [root] if root in nodes else []
        while level and len(kept.nodes) + len(level) <= self.cache_limit * 3 // 4:
            below = []
            for h in level:
                node = nodes.get(h)
                if node is None:
                    continue
                kept.nodes[h] = node
                kept.at[h] = at[h]
                if not isinstance(node, Leaf):
                    for child in node:
                        if child != EMPTY:
                            kept.at[child] = at[child]
                            below.append(child)
            level = below
        self._cache = kept


def _bigint_array(values: Iterable[int]) -> str:
    """A bigint[] literal (text: one join, where a list is dumped element by element)."""
    return "{" + ",".join(map(str, values)) + "}"


def heads_of(rows: Iterable[tuple[uuid.UUID, int, bytes]]) -> dict[uuid.UUID, Head]:
    """The newest (version, hash) per stream among rows in position order."""
    heads: dict[uuid.UUID, Head] = {}
    for stream, version, event_hash in rows:
        heads[stream] = (version, bytes(event_hash))
    return heads
