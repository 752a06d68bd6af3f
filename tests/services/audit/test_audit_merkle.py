"""The audit Merkle log against RFC 9162, checked by an implementation that shares no code with it.

The reference below is written from the RFC's text: MTH, PATH and PROOF by their recursive
definitions (§2.1.1, §2.1.3.1, §2.1.4.1) over the full list of leaves, and the verification
algorithms of §2.1.3.2 and §2.1.4.2. It hashes with hashlib directly.
"""

from __future__ import annotations

import hashlib
import random

import pytest

from services.audit.merkle import (
    MemoryNodeStore,
    MerkleLog,
    NodeConflictError,
    ProofRangeError,
)

# --- Independent reference (RFC 9162) ----------------------------------------------------------


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def ref_leaf(data: bytes) -> bytes:
    return sha256(b"\x00" + data)


def ref_node(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


def largest_power_of_two_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class ReferenceTree:
    """MTH, PATH and PROOF straight from the definitions, over all leaf hashes in memory."""

    def __init__(self, leaf_hashes: list[bytes]) -> None:
        self.leaves = leaf_hashes
        self._mth: dict[tuple[int, int], bytes] = {}

    def mth(self, lo: int, hi: int) -> bytes:
        if (lo, hi) not in self._mth:
            n = hi - lo
            if n == 0:
                value = sha256(b"")
            elif n == 1:
                value = self.leaves[lo]
            else:
                k = largest_power_of_two_below(n)
                value = ref_node(self.mth(lo, lo + k), self.mth(lo + k, hi))
            self._mth[(lo, hi)] = value
        return self._mth[(lo, hi)]

    def path(self, m: int, lo: int, hi: int) -> list[bytes]:
        n = hi - lo
        if n == 1:
            return []
        k = largest_power_of_two_below(n)
        if m < k:
            return self.path(m, lo, lo + k) + [self.mth(lo + k, hi)]
        return self.path(m - k, lo + k, hi) + [self.mth(lo, lo + k)]

    def subproof(self, m: int, lo: int, hi: int, b: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if b else [self.mth(lo, hi)]
        k = largest_power_of_two_below(n)
        if m <= k:
            return self.subproof(m, lo, lo + k, b) + [self.mth(lo + k, hi)]
        return self.subproof(m - k, lo + k, hi, False) + [self.mth(lo, lo + k)]

    def proof(self, m: int, n: int) -> list[bytes]:
        return self.subproof(m, 0, n, True)


def verify_inclusion(index: int, size: int, leaf: bytes, path: list[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2, step by step."""
    if index >= size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = ref_node(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn //= 2
                    sn //= 2
        else:
            r = ref_node(r, p)
        fn //= 2
        sn //= 2
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, first_hash: bytes, second_hash: bytes,
                       path: list[bytes]) -> bool:
    """RFC 9162 §2.1.4.2, step by step (first == second: equal roots, empty proof)."""
    if first == second:
        return first_hash == second_hash and path == []
    if not path or not 0 < first < second:
        return False
    if first & (first - 1) == 0:
        path = [first_hash] + path
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn //= 2
        sn //= 2
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr = ref_node(c, fr)
            sr = ref_node(c, sr)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn //= 2
                    sn //= 2
        else:
            sr = ref_node(sr, c)
        fn //= 2
        sn //= 2
    return fr == first_hash and sr == second_hash and sn == 0


def leaf_data(i: int) -> bytes:
    return f'{{"seq":{i},"type":"vn.gov.lienthong.test"}}'.encode()


async def build_log(n: int, batches: list[int] | None = None) -> tuple[MerkleLog, MemoryNodeStore]:
    store = MemoryNodeStore()
    log = MerkleLog(store)
    done = 0
    for size in batches or [n]:
        size = min(size, n - done)
        if size <= 0:
            break
        first = await log.append_many([leaf_data(i) for i in range(done, done + size)])
        assert first == done
        done += size
    if done < n:
        await log.append_many([leaf_data(i) for i in range(done, n)])
    return log, store


# --- Known answers: the RFC 6962 / Certificate Transparency test vectors -----------------------

CT_LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f")]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = {
    (0, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (5, 8): ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
}
CT_CONSISTENCY = {
    (2, 8): ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (6, 8): ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
    (2, 5): ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"],
}


async def test_log_reproduces_the_published_rfc6962_vectors() -> None:
    log = MerkleLog(MemoryNodeStore())
    assert (await log.root(0)).hex() == CT_ROOTS[0]
    for size, data in enumerate(CT_LEAVES, start=1):
        await log.append_many([data])
        assert (await log.root(size)).hex() == CT_ROOTS[size], f"root at size {size}"
    for (index, size), want in CT_INCLUSION.items():
        assert [h.hex() for h in await log.inclusion_proof(index, size)] == want
    for (old, new), want in CT_CONSISTENCY.items():
        assert [h.hex() for h in await log.consistency_proof(old, new)] == want
    # …and the independent verifiers accept them, so they are not just echoing the log.
    root8 = bytes.fromhex(CT_ROOTS[8])
    for (index, size), want in CT_INCLUSION.items():
        proof = [bytes.fromhex(h) for h in want]
        assert verify_inclusion(index, size, ref_leaf(CT_LEAVES[index]), proof, root8)
    for (old, new), want in CT_CONSISTENCY.items():
        assert verify_consistency(old, new, bytes.fromhex(CT_ROOTS[old]),
                                  bytes.fromhex(CT_ROOTS[new]), [bytes.fromhex(h) for h in want])


# --- Every tree size 1..200 ---------------------------------------------------------------------

N_SMALL = 200


@pytest.fixture(scope="module")
def reference_small() -> ReferenceTree:
    return ReferenceTree([ref_leaf(leaf_data(i)) for i in range(N_SMALL)])


async def test_every_root_inclusion_proof_for_every_size_up_to_200(
        reference_small: ReferenceTree) -> None:
    # Irregular batches so frontier carries happen at every batch boundary shape.
    log, _ = await build_log(N_SMALL, [1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 7])
    for size in range(1, N_SMALL + 1):
        root = await log.root(size)
        assert root == reference_small.mth(0, size), f"root at size {size}"
        proofs = await log.inclusion_proofs(list(range(size)), size)
        for index, proof in enumerate(proofs):
            assert proof == reference_small.path(index, 0, size), (index, size)
            assert verify_inclusion(index, size, reference_small.leaves[index], proof, root)
    # Single-proof entry point agrees with the batched one.
    assert await log.inclusion_proof(77, 131) == reference_small.path(77, 0, 131)


async def test_every_consistency_proof_for_every_pair_up_to_200(
        reference_small: ReferenceTree) -> None:
    log, _ = await build_log(N_SMALL, [64, 1, 100, 35])
    roots = [reference_small.mth(0, n) for n in range(N_SMALL + 1)]
    for new in range(1, N_SMALL + 1):
        for old in range(1, new + 1):
            proof = await log.consistency_proof(old, new)
            assert proof == reference_small.proof(old, new), (old, new)
            assert verify_consistency(old, new, roots[old], roots[new], proof), (old, new)


async def test_reference_verifiers_reject_wrong_proofs(reference_small: ReferenceTree) -> None:
    """The checks above mean something only if these verifiers can say no."""
    log, _ = await build_log(N_SMALL)
    rng = random.Random(9162)
    for _ in range(300):
        size = rng.randint(2, N_SMALL)
        index = rng.randrange(size)
        root = await log.root(size)
        proof = await log.inclusion_proof(index, size)
        leaf = reference_small.leaves[index]
        flipped = list(proof)
        flipped[rng.randrange(len(proof))] = sha256(b"forged")
        assert not verify_inclusion(index, size, leaf, flipped, root)
        assert not verify_inclusion(index, size, reference_small.leaves[(index + 1) % size],
                                    proof, root)
        assert not verify_inclusion(index, size, leaf, proof[:-1], root)
        assert not verify_inclusion(index, size, leaf, proof + [sha256(b"x")], root)
        old = rng.randint(1, size - 1)
        cproof = await log.consistency_proof(old, size)
        old_root = await log.root(old)
        assert not verify_consistency(old, size, old_root, root, cproof[:-1])
        assert not verify_consistency(old, size, sha256(b"fork"), root, cproof)
        bad = list(cproof)
        bad[rng.randrange(len(cproof))] = sha256(b"forged")
        assert not verify_consistency(old, size, old_root, root, bad)


async def test_batching_does_not_change_the_tree() -> None:
    one_by_one, store_a = await build_log(150, [1] * 150)
    in_bulk, store_b = await build_log(150, [150])
    uneven, store_c = await build_log(150, [3, 60, 1, 1, 85])
    keys = [(level, idx) for level in range(8) for idx in range(150 >> level)]
    nodes_a = await store_a.get_many(keys)
    assert len(nodes_a) == len(keys)  # every complete subtree is stored…
    assert await store_b.get_many(keys) == nodes_a == await store_c.get_many(keys)
    assert await store_a.get_many([(0, 150), (1, 75), (7, 1), (8, 0)]) == {}  # …and no other
    assert await store_a.size() == await store_b.size() == await store_c.size() == 150


# --- Large trees: still correct, and the reads stay logarithmic --------------------------------


@pytest.mark.parametrize("n", [10_000, 65_537])
async def test_large_tree_roots_and_proofs_with_logarithmic_reads(n: int) -> None:
    log, store = await build_log(n, [4096, 1, 2, 1000] * 20)
    ref = ReferenceTree([ref_leaf(leaf_data(i)) for i in range(n)])
    root = await log.root(n)
    assert root == ref.mth(0, n)
    rng = random.Random(n)
    bound = 2 * n.bit_length() + 1
    special = [0, 1, n // 2, n - 2, n - 1] + [(1 << b) - 1 for b in range(1, n.bit_length())]
    for index in special + [rng.randrange(n) for _ in range(60)]:
        before = store.nodes_read
        proof = await log.inclusion_proof(index, n)
        assert store.nodes_read - before <= bound, f"leaf {index}: too many node reads"
        assert verify_inclusion(index, n, ref.leaves[index], proof, root)
        assert proof == ref.path(index, 0, n)
    for _ in range(40):
        new = rng.randint(2, n)
        old = rng.randint(1, new - 1)
        before = store.nodes_read
        proof = await log.consistency_proof(old, new)
        assert store.nodes_read - before <= bound, f"{old}->{new}: too many node reads"
        assert verify_consistency(old, new, ref.mth(0, old), ref.mth(0, new), proof)
        assert proof == ref.proof(old, new)
        before = store.nodes_read
        assert await log.root(old) == ref.mth(0, old)
        assert store.nodes_read - before <= n.bit_length()


async def test_an_append_reads_only_the_frontier_and_writes_few_nodes() -> None:
    log, store = await build_log(10_000, [10_000])
    before_reads, before_calls = store.nodes_read, store.read_calls
    await log.append_many([leaf_data(10_000)])
    assert store.read_calls - before_calls == 1
    assert store.nodes_read - before_reads == bin(10_000).count("1")
    written = await store.get_many([(level, (10_001 >> level) - 1) for level in range(14)])
    assert (0, 10_000) in written and await store.size() == 10_001


# --- Edges and misuse --------------------------------------------------------------------------


async def test_requests_outside_the_log_raise_proof_range_error() -> None:
    log, _ = await build_log(10)
    for call in (log.root(11), log.root(-1), log.inclusion_proof(10, 10),
                 log.inclusion_proof(-1, 5), log.inclusion_proof(0, 11),
                 log.inclusion_proofs([0, 5, 5], 5), log.consistency_proof(0, 5),
                 log.consistency_proof(6, 5), log.consistency_proof(3, 11)):
        with pytest.raises(ProofRangeError):
            await call
    assert issubclass(ProofRangeError, ValueError)
    assert await log.consistency_proof(7, 7) == []
    assert await log.inclusion_proof(0, 1) == []
    empty = MerkleLog(MemoryNodeStore())
    assert await empty.root(0) == sha256(b"")
    assert await empty.head() == (0, sha256(b""))
    assert await empty.append_many([]) == 0


async def test_a_second_writer_from_a_stale_size_is_refused_whole() -> None:
    store = MemoryNodeStore()
    log = MerkleLog(store)
    await log.append_many([leaf_data(i) for i in range(5)])
    # Another process computed nodes from size 4 and now tries to write leaf 4 again.
    with pytest.raises(NodeConflictError):
        await store.put_many([((0, 5), sha256(b"new")), ((0, 4), sha256(b"stale"))])
    assert await store.get_many([(0, 5)]) == {}
    assert await store.size() == 5
    assert await log.root(5) == ReferenceTree([ref_leaf(leaf_data(i)) for i in range(5)]).mth(0, 5)
