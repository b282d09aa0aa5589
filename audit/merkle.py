"""RFC 6962 / RFC 9162 Merkle tree hashing, tlog storage layout and proofs.

Every complete subtree hash is stored once at a dense "stored hash index" (the layout of Go's
golang.org/x/mod/sumdb/tlog): appending leaf n writes its leaf hash and then the hashes of the
subtrees it completes, starting at stored_hash_index(0, n). A proof is computed in two phases
because the database reads asynchronously: `*_indexes` says which stored hashes are needed,
the caller fetches them in that order, and `*_from` builds the result out of them. Every proof
reads O(log n) hashes: complete subtrees are one hash each, and at most one incomplete subtree
(along the right edge of the tree) is rebuilt from the hashes of its complete parts.

A "leaf" argument is always a leaf hash (see leaf_hash), never the entry itself.
"""

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

Range = tuple[int, int]


class ProofError(ValueError):
    """A proof does not verify; the message says why."""


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def stored_hash_index(level: int, n: int) -> int:
    """Where hash number n at `level` (covering leaves n*2**level ...) is stored."""
    _natural(level=level, n=n)
    # Appending the subtree's last leaf stores that leaf's hash, then one hash per level the
    # leaf completes: this one lands `level` places after the leaf's own.
    last = ((n + 1) << level) - 1
    return stored_hash_count(last) + level


def stored_hash_count(size: int) -> int:
    """How many hashes a tree of `size` leaves stores: one per complete subtree."""
    _natural(size=size)
    return 2 * size - size.bit_count()


def append_indexes(n: int) -> list[int]:
    """Stored hashes to read before appending leaf n: the left siblings it completes."""
    _natural(n=n)
    indexes = []
    level = 0
    while (n >> level) & 1:
        indexes.append(stored_hash_index(level, (n >> level) - 1))
        level += 1
    return indexes


def append_hashes(n: int, leaf: bytes, read: Sequence[bytes]) -> list[bytes]:
    """Hashes to store for leaf n at stored_hash_index(0, n), +1, ...; `read` per append_indexes."""
    _expect_count(read, len(append_indexes(n)))
    _expect_hash("leaf", leaf)
    hashes = [leaf]
    for left in read:
        hashes.append(node_hash(left, hashes[-1]))
    return hashes


def root_indexes(size: int) -> list[int]:
    _natural(size=size)
    return _range_indexes((0, size))


def root_from(size: int, read: Sequence[bytes]) -> bytes:
    _expect_count(read, len(root_indexes(size)))
    return _fold(read) if size else EMPTY_ROOT


def inclusion_indexes(index: int, size: int) -> list[int]:
    return [i for span in _inclusion_ranges(index, size) for i in _range_indexes(span)]


def inclusion_from(index: int, size: int, read: Sequence[bytes]) -> list[bytes]:
    """The RFC 9162 inclusion path of leaf `index` in the tree of `size` leaves."""
    return _hashes_of(_inclusion_ranges(index, size), read)


def consistency_indexes(size1: int, size2: int) -> list[int]:
    return [i for span in _consistency_ranges(size1, size2) for i in _range_indexes(span)]


def consistency_from(size1: int, size2: int, read: Sequence[bytes]) -> list[bytes]:
    """The RFC 9162 consistency proof from the tree of size1 leaves to that of size2."""
    return _hashes_of(_consistency_ranges(size1, size2), read)


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 section 2.1.3.2; raises ProofError unless `leaf` is leaf `index` under `root`."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    _check_hashes(leaf=leaf, root=root, proof=proof)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    if r != root:
        raise ProofError("inclusion proof does not lead to the root")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """RFC 9162 section 2.1.4.2; raises ProofError unless (size2, root2) extends (size1, root1).

    Equal sizes need an empty proof and equal roots (of any length: the vectors accept that);
    size 0 has a known root, EMPTY_ROOT, and is extended by any tree with an empty proof.
    """
    if not 0 <= size1 <= size2:
        raise ProofError(f"sizes {size1} and {size2} are not 0 <= size1 <= size2")
    if size1 in {0, size2}:
        _verify_trivial_consistency(size1, size2, proof, root1, root2)
        return
    _check_hashes(root1=root1, root2=root2, proof=proof)
    if not proof:
        raise ProofError("consistency proof is empty")
    # A power-of-two first tree is a complete subtree the proof leaves out: it starts the path.
    path = [root1, *proof] if size1 & (size1 - 1) == 0 else list(proof)
    fr, sr = _consistency_roots(size1, size2, path)
    if fr != root1:
        raise ProofError("consistency proof does not lead to root1")
    if sr != root2:
        raise ProofError("consistency proof does not lead to root2")


def _consistency_roots(size1: int, size2: int, path: Sequence[bytes]) -> tuple[bytes, bytes]:
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    return fr, sr


def _verify_trivial_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Sizes equal, or size1 == 0: nothing to prove, so the proof must be empty."""
    if proof:
        raise ProofError(f"a proof from size {size1} to {size2} must be empty")
    if size1 == 0 and root1 != EMPTY_ROOT:
        raise ProofError("root1 is not the root of the empty tree")
    if size1 == size2:
        if root1 != root2:
            raise ProofError("equal sizes but different roots")
    else:
        _check_hashes(root2=root2)


class MemoryTree:
    """The stored hashes of a whole log in a list: for tests and tools."""

    def __init__(self) -> None:
        self._hashes: list[bytes] = []
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    def append(self, entry: bytes) -> int:
        n = self._size
        self._hashes += append_hashes(n, leaf_hash(entry), self._read(append_indexes(n)))
        self._size += 1
        return n

    def root(self, size: int | None = None) -> bytes:
        size = self._size if size is None else size
        self._within(size)
        return root_from(size, self._read(root_indexes(size)))

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        self._within(size)
        return inclusion_from(index, size, self._read(inclusion_indexes(index, size)))

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        self._within(size2)
        return consistency_from(size1, size2, self._read(consistency_indexes(size1, size2)))

    def _read(self, indexes: Sequence[int]) -> list[bytes]:
        return [self._hashes[i] for i in indexes]

    def _within(self, size: int) -> None:
        if not 0 <= size <= self._size:
            raise ValueError(f"size {size} is outside a tree of {self._size} leaves")


class RootBuilder:
    """Streaming roots in O(log n) memory: the hashes of the complete subtrees so far.

    It resumes a tree of `size` leaves from its right edge, the stored hashes at
    root_indexes(size); `append` returns the hashes that adding the leaf stores, so the
    integrator grows the stored tree without any index arithmetic per leaf.
    """

    def __init__(self, size: int = 0, edge: Sequence[bytes] = ()) -> None:
        _natural(size=size)
        _expect_count(edge, size.bit_count())
        for h in edge:
            _expect_hash("edge", h)
        self._stack: list[bytes] = list(edge)
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    def add(self, leaf: bytes) -> None:
        _expect_hash("leaf", leaf)
        h, n = leaf, self._size
        while n & 1:
            h = node_hash(self._stack.pop(), h)
            n >>= 1
        self._stack.append(h)
        self._size += 1

    def append(self, leaf: bytes) -> list[bytes]:
        """Add `leaf`; the stored hashes it creates: itself, then each subtree it completes."""
        _expect_hash("leaf", leaf)
        h, n = leaf, self._size
        stored = [h]
        while n & 1:
            h = node_hash(self._stack.pop(), h)
            stored.append(h)
            n >>= 1
        self._stack.append(h)
        self._size += 1
        return stored

    def root(self) -> bytes:
        return _fold(self._stack) if self._stack else EMPTY_ROOT


def _split(n: int) -> int:
    """The largest power of two below n (n > 1): where RFC 6962 splits a tree of n leaves."""
    return 1 << ((n - 1).bit_length() - 1)


def _inclusion_ranges(index: int, size: int) -> list[Range]:
    """Leaf ranges whose subtree hashes form the inclusion path, deepest first."""
    _natural(index=index, size=size)
    if index >= size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    ranges = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    return ranges[::-1]


def _consistency_ranges(size1: int, size2: int) -> list[Range]:
    """Leaf ranges whose subtree hashes form RFC 9162 SUBPROOF(size1, D[0:size2], true)."""
    _natural(size1=size1, size2=size2)
    if size1 > size2:
        raise ValueError(f"size1 {size1} is larger than size2 {size2}")
    if size1 in {0, size2}:
        return []
    ranges = []
    lo, hi, whole = 0, size2, True
    while size1 < hi:
        k = _split(hi - lo)
        if size1 - lo <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
            whole = False
    if not whole:
        ranges.append((lo, hi))
    return ranges[::-1]


def _range_indexes(span: Range) -> list[int]:
    """Stored hashes of the complete subtrees making up an RFC 6962 subtree, left to right.

    The range starts at a multiple of a power of two at least its length, so each largest
    power-of-two chunk is a complete, aligned subtree.
    """
    lo, hi = span
    indexes = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        indexes.append(stored_hash_index(level, lo >> level))
        lo += 1 << level
    return indexes


def _hashes_of(ranges: Sequence[Range], read: Sequence[bytes]) -> list[bytes]:
    _expect_count(read, sum((hi - lo).bit_count() for lo, hi in ranges))
    hashes, start = [], 0
    for lo, hi in ranges:
        end = start + (hi - lo).bit_count()
        hashes.append(_fold(read[start:end]))
        start = end
    return hashes


def _fold(hashes: Sequence[bytes]) -> bytes:
    """The root over complete subtrees given left to right (RFC 6962 MTH of their range)."""
    for h in hashes:
        _expect_hash("stored hash", h)
    root = hashes[-1]
    for left in reversed(hashes[:-1]):
        root = node_hash(left, root)
    return root


def _natural(**values: int) -> None:
    for name, value in values.items():
        if value < 0:
            raise ValueError(f"{name} must not be negative, got {value}")


def _expect_count(read: Sequence[bytes], want: int) -> None:
    if len(read) != want:
        raise ValueError(f"expected {want} stored hashes, got {len(read)}")


def _expect_hash(what: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ValueError(f"{what} must be {HASH_SIZE} bytes, got {len(value)}")


def _check_hashes(proof: Sequence[bytes] = (), **named: bytes) -> None:
    for name, value in named.items():
        if len(value) != HASH_SIZE:
            raise ProofError(f"{name} is {len(value)} bytes, not {HASH_SIZE}")
    for i, p in enumerate(proof):
        if len(p) != HASH_SIZE:
            raise ProofError(f"proof hash {i} is {len(p)} bytes, not {HASH_SIZE}")
