"""Sổ nhật ký kiểm toán: an append-only RFC 9162 Merkle tree whose proofs read O(log n) stored nodes.

Storage model
-------------
The log keeps, for leaves 0..n-1, the hash of every *complete* subtree: node ``(level, idx)``
is MTH(D[idx·2^level : (idx+1)·2^level]); level 0 holds the leaf hashes. A node is written once,
the moment its last leaf is appended, and never changes. Every subtree that RFC 9162's recursion
visits for any earlier tree size is either such a node or the right fold of at most log n of them,
so ``root``, ``inclusion_proof`` and ``consistency_proof`` for *any* size up to the current one
read O(log n) nodes and never scan the log.

The log reads and writes nodes through a ``NodeStore``: ``MemoryNodeStore`` here, the
service's table in ``store.SqlNodeStore`` (which also says how appenders are serialised). An
append of b leaves writes about 2b nodes and needs only the head: the size and the at most
log n frontier hashes (``frontier_keys``), which the SQL store keeps in one row beside the nodes
so an append reads no node at all; batch appends, since on PostgreSQL the round trips and the
commit, not the hashing, are what an append costs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Protocol

from services.audit.canonical import EMPTY_ROOT, HASH_SIZE, leaf_hash, node_hash

NodeKey = tuple[int, int]
"""(level, idx): the complete subtree over leaves idx·2^level … (idx+1)·2^level − 1."""


class ProofRangeError(ValueError):
    """A root or proof was asked for a size or index the log does not (yet) have."""


class NodeConflictError(RuntimeError):
    """A node being written already exists: another writer appended from the same size."""


class CorruptLogError(RuntimeError):
    """A node that must exist for the requested size is missing from the store."""


class NodeStore(Protocol):
    """Where the log's complete-subtree hashes live (memory here; a SQL table in the service)."""

    async def get_many(self, keys: list[NodeKey]) -> dict[NodeKey, bytes]:
        """The hashes of those keys that exist (missing keys are simply absent)."""
        ...

    async def size(self) -> int:
        """Number of leaves stored (1 + highest level-0 index, 0 when empty)."""
        ...

    async def frontier(self) -> tuple[int, list[bytes]]:
        """The head an appender starts from: the size, and the hashes of the complete subtrees
        that make it up (``frontier_keys(size)``, left to right). A store shared by several
        writers holds it for the caller until the caller's transaction ends."""
        ...

    async def extend(self, items: list[tuple[NodeKey, bytes]], size: int, frontier: list[bytes]) -> None:
        """Insert new nodes, all or none, and make (size, frontier) the head; raise
        ``NodeConflictError`` if any key exists."""
        ...


class MemoryNodeStore:
    """A ``NodeStore`` in a dict, for tests and tools; counts node reads so proofs can be costed."""

    def __init__(self) -> None:
        self._nodes: dict[NodeKey, bytes] = {}
        self._size = 0
        self.nodes_read = 0
        self.read_calls = 0

    async def get_many(self, keys: list[NodeKey]) -> dict[NodeKey, bytes]:
        self.read_calls += 1
        self.nodes_read += len(keys)
        nodes = self._nodes
        return {key: nodes[key] for key in keys if key in nodes}

    async def put_many(self, items: list[tuple[NodeKey, bytes]]) -> None:
        nodes = self._nodes
        if any(key in nodes for key, _ in items):
            raise NodeConflictError("a node in this batch already exists")
        new_size = self._size
        for key, value in items:
            nodes[key] = value
            if key[0] == 0 and key[1] >= new_size:
                new_size = key[1] + 1
        self._size = new_size

    async def size(self) -> int:
        return self._size

    async def frontier(self) -> tuple[int, list[bytes]]:
        size = self._size
        found = await self.get_many(frontier_keys(size))
        return size, [found[key] for key in frontier_keys(size)]

    async def extend(self, items: list[tuple[NodeKey, bytes]], size: int, frontier: list[bytes]) -> None:
        await self.put_many(items)


def _split(size: int) -> int:
    """The largest power of two strictly smaller than ``size`` (RFC 9162 §2.1.1's k), size ≥ 2."""
    return 1 << ((size - 1).bit_length() - 1)


def _subtree_keys(lo: int, hi: int) -> list[NodeKey]:
    """Complete subtrees, left to right, whose right fold is MTH(D[lo:hi]).

    Valid for the ranges RFC 9162's recursion produces, whose start is aligned to the largest
    power of two not exceeding their length, so the greedy split matches the MTH split.
    """
    keys: list[NodeKey] = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        if lo & ((1 << level) - 1):
            raise AssertionError(f"range [{lo}, {hi}) is not aligned as an RFC 9162 subtree")
        keys.append((level, lo >> level))
        lo += 1 << level
    return keys


def frontier_keys(size: int) -> list[NodeKey]:
    """The complete subtrees a tree of ``size`` leaves is made of, left to right: one per set bit
    of ``size``. Their right fold is the root, and an append needs no other node."""
    return _subtree_keys(0, size)


def extend(
    start: int, frontier: Sequence[bytes], hashes: Sequence[bytes]
) -> tuple[list[tuple[NodeKey, bytes]], list[bytes]]:
    """Append leaf hashes to the tree whose head is (``start``, ``frontier``), in memory.

    Returns the nodes to write (every complete subtree the new leaves complete) and the new
    head's frontier; nothing else of the tree is needed, so the caller reads no node.
    """
    keys = frontier_keys(start)
    if len(frontier) != len(keys):
        raise CorruptLogError(f"a head of size {start} has {len(keys)} frontier hashes, not {len(frontier)}")
    known = dict(zip(keys, frontier, strict=True))
    items: list[tuple[NodeKey, bytes]] = [((0, start + i), h) for i, h in enumerate(hashes)]
    level, row = 0, list(hashes)  # row = new nodes (level, start>>level …)
    while True:
        first = start >> level
        if first & 1:
            row = [known[(level, first - 1)], *row]
        parents = [node_hash(row[i], row[i + 1]) for i in range(0, len(row) - 1, 2)]
        if not parents:
            break
        level += 1
        parent_first = first >> 1
        items.extend(((level, parent_first + i), h) for i, h in enumerate(parents))
        row = parents
    # Each subtree of the new head either was in the old head or has just been completed.
    known.update(items)
    return items, [known[key] for key in frontier_keys(start + len(hashes))]


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The sibling subtrees of PATH(index, D[0:size]) (RFC 9162 §2.1.3.1), leaf side first."""
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    ranges.reverse()
    return ranges


def _consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The subtrees of PROOF(old_size, D[0:new_size]) (RFC 9162 §2.1.4.1), innermost first."""
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, new_size
    old_is_whole_subtree = True  # SUBPROOF's b flag
    while old_size - lo != hi - lo:
        k = _split(hi - lo)
        if old_size - lo <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
            old_is_whole_subtree = False
    if not old_is_whole_subtree:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


class MerkleLog:
    """The append-only audit log's tree: appends in batches, roots and proofs for any past size."""

    def __init__(self, store: NodeStore) -> None:
        self._store = store
        # Serialises appends sharing this object; across processes the SQL lock does it.
        self._append_lock = asyncio.Lock()

    async def size(self) -> int:
        return await self._store.size()

    async def append_many(self, leaf_datas: Sequence[bytes]) -> int:
        """Append leaves (their canonical bytes); return the index of the first one appended."""
        return await self.append_leaf_hashes([leaf_hash(data) for data in leaf_datas])

    async def append_leaf_hashes(self, hashes: Sequence[bytes]) -> int:
        """Append already-hashed leaves (``leaf_hash`` of each record); return the first index."""
        if any(len(h) != HASH_SIZE for h in hashes):
            raise ValueError("a leaf hash is 32 bytes")
        async with self._append_lock:
            start, frontier = await self._store.frontier()
            if not hashes:
                return start
            items, new_frontier = extend(start, frontier, hashes)
            await self._store.extend(items, start + len(hashes), new_frontier)
            return start

    async def head(self) -> tuple[int, bytes]:
        """The current size and its root (a consistent pair even while others append)."""
        size = await self._store.size()
        return size, await self.root(size)

    async def root(self, size: int) -> bytes:
        """MTH(D[0:size]) for any size up to the current one; SHA-256("") for size 0."""
        await self._check_size(size)
        if size == 0:
            return EMPTY_ROOT
        nodes = await self._get_all(_subtree_keys(0, size))
        return self._fold(_subtree_keys(0, size), nodes)

    async def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 §2.1.3.1 inclusion proof (audit path) of leaf ``index`` in the tree of ``size``."""
        return (await self.inclusion_proofs([index], size))[0]

    async def inclusion_proofs(self, indices: Sequence[int], size: int) -> list[list[bytes]]:
        """Inclusion proofs of several leaves in the tree of ``size``, from one batched read.

        Neighbouring leaves share most siblings, so a contiguous run of r leaves costs
        O(r + log n) node reads rather than r·log n; exports use this in chunks.
        """
        await self._check_size(size)
        bad = [i for i in indices if not 0 <= i < size]
        if bad:
            raise ProofRangeError(f"leaf {bad[0]} is not in a tree of size {size}")
        return await self._resolve([_inclusion_ranges(i, size) for i in indices])

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 §2.1.4.1 proof that the tree of ``old_size`` is a prefix of ``new_size``'s.

        Empty when the sizes are equal; an empty old tree has nothing to prove and is refused.
        """
        await self._check_size(new_size)
        if not 0 < old_size <= new_size:
            raise ProofRangeError(f"no consistency proof from size {old_size} to {new_size}")
        return (await self._resolve([_consistency_ranges(old_size, new_size)]))[0]

    async def _check_size(self, size: int) -> None:
        if size < 0:
            raise ProofRangeError(f"tree size {size} is negative")
        current = await self._store.size()
        if size > current:
            raise ProofRangeError(f"tree size {size} is beyond the log's {current} entries")

    async def _resolve(self, proofs: list[list[tuple[int, int]]]) -> list[list[bytes]]:
        """Turn subtree ranges into hashes: one read for every node any of them needs."""
        keys_of = {rng: _subtree_keys(*rng) for ranges in proofs for rng in ranges}
        nodes = await self._get_all(list({key for keys in keys_of.values() for key in keys}))
        hash_of = {rng: self._fold(keys, nodes) for rng, keys in keys_of.items()}
        return [[hash_of[rng] for rng in ranges] for ranges in proofs]

    @staticmethod
    def _fold(keys: list[NodeKey], nodes: dict[NodeKey, bytes]) -> bytes:
        """MTH of adjacent complete subtrees: the right-most pairs first, as RFC 9162 splits."""
        acc = nodes[keys[-1]]
        for key in reversed(keys[:-1]):
            acc = node_hash(nodes[key], acc)
        return acc

    async def _get_all(self, keys: Iterable[NodeKey]) -> dict[NodeKey, bytes]:
        keys = list(keys)
        if not keys:
            return {}
        found = await self._store.get_many(keys)
        missing = [key for key in keys if key not in found]
        if missing:
            raise CorruptLogError(f"the store lacks nodes {missing[:5]} (of {len(missing)})")
        return found
