import base64
import json
import math
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import merkle
from audit.merkle import (
    EMPTY_ROOT,
    MemoryTree,
    ProofError,
    RootBuilder,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parent.parent / "data" / "rfc6962"
INCLUSION_CASES = 98
CONSISTENCY_CASES = 98
BIG = 2000


def _cases(kind: str) -> list[Path]:
    return sorted((VECTORS / kind).rglob("*.json"))


def _load(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = json.loads(path.read_text())
    return case


def _hashes(values: Sequence[str] | None) -> list[bytes]:
    return [base64.b64decode(v) for v in values or []]


def _entry(i: int) -> bytes:
    return f"entry {i}".encode()


def _mth(entries: Sequence[bytes]) -> bytes:
    """RFC 6962 section 2.1 MTH, written out recursively as the spec states it."""
    if not entries:
        return EMPTY_ROOT
    if len(entries) == 1:
        return leaf_hash(entries[0])
    k = 1
    while k * 2 < len(entries):
        k *= 2
    return node_hash(_mth(entries[:k]), _mth(entries[k:]))


@cache
def _tree(size: int) -> MemoryTree:
    tree = MemoryTree()
    for i in range(size):
        tree.append(_entry(i))
    return tree


def _flip(value: bytes, bit: int) -> bytes:
    flipped = bytearray(value)
    flipped[bit // 8 % len(value)] ^= 1 << (bit % 8)
    return bytes(flipped)


def test_every_vector_file_is_read() -> None:
    assert len(_cases("inclusion")) == INCLUSION_CASES
    assert len(_cases("consistency")) == CONSISTENCY_CASES
    assert (VECTORS / "LICENSE").is_file()


@pytest.mark.parametrize("path", _cases("inclusion"), ids=lambda p: str(p.relative_to(VECTORS)))
def test_inclusion_vectors(path: Path) -> None:
    case = _load(path)
    args = (case["leafIdx"], case["treeSize"], base64.b64decode(case["leafHash"]))
    proof, root = _hashes(case["proof"]), base64.b64decode(case["root"])
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args, proof, root)
    else:
        verify_inclusion(*args, proof, root)


@pytest.mark.parametrize("path", _cases("consistency"), ids=lambda p: str(p.relative_to(VECTORS)))
def test_consistency_vectors(path: Path) -> None:
    case = _load(path)
    sizes = (case["size1"], case["size2"], _hashes(case["proof"]))
    roots = (base64.b64decode(case["root1"]), base64.b64decode(case["root2"]))
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*sizes, *roots)
    else:
        verify_consistency(*sizes, *roots)


def test_known_hashes() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"").hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )


def test_roots_match_the_rfc_definition_and_the_streaming_builder() -> None:
    tree, builder, entries = MemoryTree(), RootBuilder(), []
    for size in range(71):
        assert tree.root() == builder.root() == _mth(entries), size
        assert tree.size == builder.size == size
        entries.append(_entry(size))
        assert tree.append(entries[-1]) == size
        builder.add(leaf_hash(entries[-1]))
    assert [tree.root(n) for n in range(71)] == [_mth(entries[:n]) for n in range(71)]


def test_every_proof_in_small_trees_verifies() -> None:
    tree = _tree(40)
    for n in range(1, 41):
        root = tree.root(n)
        for m in range(n):
            verify_inclusion(m, n, leaf_hash(_entry(m)), tree.inclusion_proof(m, n), root)
        for m in range(n + 1):
            verify_consistency(m, n, tree.consistency_proof(m, n), tree.root(m), root)


sizes = st.integers(1, BIG).flatmap(lambda n: st.tuples(st.integers(0, n - 1), st.just(n)))
bits = st.integers(0, 8 * 32 - 1)


@settings(max_examples=60, deadline=None)
@given(sizes, st.sampled_from(["proof", "leaf", "root"]), st.integers(0, 64), bits)
def test_inclusion_proofs_verify_and_any_flipped_bit_fails(
    mn: tuple[int, int], target: str, which: int, bit: int
) -> None:
    m, n = mn
    tree = _tree(BIG)
    proof, leaf, root = tree.inclusion_proof(m, n), leaf_hash(_entry(m)), tree.root(n)
    verify_inclusion(m, n, leaf, proof, root)
    if target == "proof" and proof:
        proof[which % len(proof)] = _flip(proof[which % len(proof)], bit)
    elif target == "leaf":
        leaf = _flip(leaf, bit)
    else:
        root = _flip(root, bit)
    with pytest.raises(ProofError):
        verify_inclusion(m, n, leaf, proof, root)


@settings(max_examples=60, deadline=None)
@given(sizes, st.integers(0, BIG))
def test_an_inclusion_proof_fails_for_another_index_or_size(
    mn: tuple[int, int], other: int
) -> None:
    m, n = mn
    tree = _tree(BIG)
    proof, leaf = tree.inclusion_proof(m, n), leaf_hash(_entry(m))
    if other < n and other != m:
        with pytest.raises(ProofError):
            verify_inclusion(other, n, leaf, proof, tree.root(n))
    if other not in {0, n}:
        with pytest.raises(ProofError):
            verify_inclusion(m, other, leaf, proof, tree.root(other))


@settings(max_examples=60, deadline=None)
@given(sizes, st.sampled_from(["proof", "root1", "root2"]), st.integers(0, 64), bits)
def test_consistency_proofs_verify_and_any_flipped_bit_fails(
    mn: tuple[int, int], target: str, which: int, bit: int
) -> None:
    m, n = mn[0] + 1, mn[1]  # 1 <= m <= n: with m == 0 there is nothing to prove about root2
    tree = _tree(BIG)
    proof, root1, root2 = tree.consistency_proof(m, n), tree.root(m), tree.root(n)
    verify_consistency(m, n, proof, root1, root2)
    if target == "proof" and proof:
        proof[which % len(proof)] = _flip(proof[which % len(proof)], bit)
    elif target == "root1":
        root1 = _flip(root1, bit)
    else:
        root2 = _flip(root2, bit)
    with pytest.raises(ProofError):
        verify_consistency(m, n, proof, root1, root2)


@settings(max_examples=60, deadline=None)
@given(st.integers(3, BIG).flatmap(lambda n: st.tuples(st.integers(1, n - 1), st.just(n))))
def test_a_consistency_proof_fails_for_other_sizes(mn: tuple[int, int]) -> None:
    m, n = mn
    tree = _tree(BIG)
    proof = tree.consistency_proof(m, n)
    for other in {1, m - 1, m + 1, n - 1} - {0, m, n}:
        with pytest.raises(ProofError):
            verify_consistency(other, n, proof, tree.root(other), tree.root(n))
    for other in {m, m + 1, n - 1, n + 1, 2 * n} - {n}:
        if other <= BIG:
            with pytest.raises(ProofError):
                verify_consistency(m, other, proof, tree.root(m), tree.root(other))


def test_the_empty_tree_is_extended_by_any_tree_with_an_empty_proof() -> None:
    tree = _tree(5)
    verify_consistency(0, 5, [], EMPTY_ROOT, tree.root())
    with pytest.raises(ProofError):
        verify_consistency(0, 5, [], tree.root(1), tree.root())


def test_verification_says_when_a_proof_has_the_wrong_length() -> None:
    tree = _tree(8)
    proof, leaf, root = tree.inclusion_proof(3, 8), leaf_hash(_entry(3)), tree.root(8)
    with pytest.raises(ProofError, match="too long"):
        verify_inclusion(3, 8, leaf, [*proof, root], root)
    with pytest.raises(ProofError, match="too short"):
        verify_inclusion(3, 8, leaf, proof[:-1], root)
    proof = tree.consistency_proof(3, 8)
    with pytest.raises(ProofError, match="too long"):
        verify_consistency(3, 8, [*proof, root], tree.root(3), root)
    with pytest.raises(ProofError, match="too short"):
        verify_consistency(3, 8, proof[:-1], tree.root(3), root)


def test_verification_rejects_hashes_of_the_wrong_length() -> None:
    tree = _tree(8)
    proof, leaf, root = tree.inclusion_proof(3, 8), leaf_hash(_entry(3)), tree.root(8)
    with pytest.raises(ProofError, match="leaf"):
        verify_inclusion(3, 8, leaf[:31], proof, root)
    with pytest.raises(ProofError, match="proof hash 1"):
        verify_inclusion(3, 8, leaf, [proof[0], proof[1] + b"\0", proof[2]], root)
    with pytest.raises(ProofError, match="root2"):
        verify_consistency(3, 8, tree.consistency_proof(3, 8), tree.root(3), root + b"\0")


def test_stored_hash_layout_matches_tlog() -> None:
    assert [merkle.stored_hash_count(n) for n in range(1, 9)] == [1, 3, 4, 7, 8, 10, 11, 15]
    assert [merkle.stored_hash_index(0, n) for n in range(6)] == [0, 1, 3, 4, 7, 8]
    assert [merkle.stored_hash_index(1, n) for n in range(3)] == [2, 5, 9]
    assert merkle.stored_hash_index(2, 0) == 6
    assert merkle.stored_hash_index(3, 0) == 14


def test_every_complete_subtree_is_stored_once_densely() -> None:
    size = 100
    complete = [
        merkle.stored_hash_index(level, n) for level in range(8) for n in range(size >> level)
    ]
    assert sorted(complete) == list(range(merkle.stored_hash_count(size)))
    tree = MemoryTree()
    for i in range(size):
        tree.append(_entry(i))
        assert len(tree._hashes) == merkle.stored_hash_count(i + 1)
    start, end = merkle.stored_hash_index(0, 99), merkle.stored_hash_count(100)
    assert tree._hashes[start:end] == merkle.append_hashes(
        99, leaf_hash(_entry(99)), [tree._hashes[i] for i in merkle.append_indexes(99)]
    )


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 2**48).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_proofs_read_few_hashes_and_only_stored_ones(mn: tuple[int, int]) -> None:
    m, n = mn
    bound = 2 * math.ceil(math.log2(n)) + 2
    stored = merkle.stored_hash_count(n)
    for indexes in (
        merkle.root_indexes(n),
        merkle.inclusion_indexes(min(m, n - 1), n),
        merkle.consistency_indexes(m, n),
        merkle.append_indexes(n),
    ):
        assert len(indexes) <= bound
        assert all(0 <= i < stored for i in indexes)


@pytest.mark.parametrize(
    "call",
    [
        lambda: merkle.inclusion_indexes(5, 5),
        lambda: merkle.inclusion_indexes(-1, 5),
        lambda: merkle.consistency_indexes(6, 5),
        lambda: merkle.consistency_indexes(-1, 5),
        lambda: merkle.root_indexes(-1),
        lambda: merkle.stored_hash_index(-1, 0),
        lambda: merkle.stored_hash_count(-1),
        lambda: merkle.append_indexes(-1),
        lambda: merkle.append_hashes(1, leaf_hash(b""), []),
        lambda: merkle.append_hashes(0, b"entry, not a hash", []),
        lambda: merkle.root_from(3, [EMPTY_ROOT]),
        lambda: merkle.inclusion_from(0, 8, [EMPTY_ROOT]),
        lambda: _tree(5).root(6),
        lambda: _tree(5).inclusion_proof(2, 6),
        lambda: _tree(5).consistency_proof(3, 2),
        lambda: RootBuilder().add(b"short"),
    ],
)
def test_out_of_range_arguments_are_refused(call: Any) -> None:
    with pytest.raises(ValueError):
        call()
