"""RFC 6962 / RFC 9162 Merkle trees: published vectors, exhaustive small trees (Go tlog
style), proofgen-style vector files, hypothesis properties, leaf/node domain separation.

One property of the RFC algorithms is pinned rather than hidden: an inclusion or
consistency proof does not authenticate the (new) tree size beyond the shape of the path,
so a few other sizes with the same shape verify too (leaf 0 of 7 "verifies" as leaf 0 of 6
against the size-7 root). The size is bound by the signed checkpoint that carries it with
the root. Tests compute that shape from the RFC's recursive definitions, independently of
the implementation, and require failure exactly when the shape differs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit_pipeline.ledger.errors import (
    InvalidProofError,
    LedgerError,
    MalformedError,
    RootMismatchError,
)
from audit_pipeline.ledger.merkle import (
    HASH_SIZE,
    LEAF_PREFIX,
    NODE_PREFIX,
    empty_root,
    leaf_hash,
    node_hash,
    prove_consistency,
    prove_inclusion,
    root_from_inclusion_proof,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).parent / "vectors"

RFC6962_INPUTS = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
RFC6962_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
EXHAUSTIVE_MAX = 64


def _leaves(n: int, salt: bytes = b"") -> list[bytes]:
    return [leaf_hash(salt + i.to_bytes(4, "big")) for i in range(n)]


def _flip(h: bytes, bit: int) -> bytes:
    b = bytearray(h)
    b[bit // 8 % len(b)] ^= 1 << (bit % 8)
    return bytes(b)


def _fails(check: Callable[..., None], *args: object) -> bool:
    try:
        check(*args)
    except LedgerError:
        return True
    return False


def _k(n: int) -> int:
    """Largest power of two smaller than n, counted the slow way (independent code)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _path_shape(index: int, size: int) -> tuple[str, ...]:
    """The sides of the siblings on PATH(index, D[size]), from RFC 9162's recursion."""
    sides = []
    while size > 1:
        k = _k(size)
        if index < k:
            sides.append("right")
            size = k
        else:
            sides.append("left")
            index, size = index - k, size - k
    return tuple(sides)


def _consistency_shape(size1: int, size2: int) -> tuple[str, ...]:
    """The steps of SUBPROOF(size1, D[size2], true), from RFC 9162's recursion."""
    if size2 == 0:
        return ("empty tree",)
    if size1 == 0:
        return ("from empty",)
    if size1 > size2:
        return ("impossible",)
    steps, known = [], True
    while size1 != size2:
        k = _k(size2)
        if size1 <= k:
            steps.append("right")
            size2 = k
        else:
            steps.append("left")
            size1, size2, known = size1 - k, size2 - k, False
    steps.append("old root known" if known else "old root sent")
    return tuple(steps)


class CountingReader:
    """A lazy leaf-hash sequence (only __len__ and integer __getitem__) counting reads."""

    def __init__(self, leaves: list[bytes]) -> None:
        self._leaves = leaves
        self.reads = 0

    def __len__(self) -> int:
        return len(self._leaves)

    def __getitem__(self, i: int) -> bytes:
        if not isinstance(i, int):
            raise TypeError("integer indexes only")
        self.reads += 1
        return self._leaves[i]


# --- published vectors --------------------------------------------------------------


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    want = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert empty_root().hex() == want
    assert root_hash([]) == empty_root()


def test_domain_separation_prefixes() -> None:
    assert (LEAF_PREFIX, NODE_PREFIX, HASH_SIZE) == (b"\x00", b"\x01", 32)
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert (
        node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )


@pytest.mark.parametrize("size", range(1, 9))
def test_rfc6962_roots(size: int) -> None:
    leaves = [leaf_hash(d) for d in RFC6962_INPUTS[:size]]
    assert root_hash(leaves).hex() == RFC6962_ROOTS[size - 1]
    assert root_hash(tuple(leaves)).hex() == RFC6962_ROOTS[size - 1]
    assert root_hash(CountingReader(leaves)).hex() == RFC6962_ROOTS[size - 1]


class TestRFC9162SevenLeafExample:
    """RFC 9162 section 2.1.5: the tree of d0..d6, with nodes named as in the RFC."""

    d = RFC6962_INPUTS[:7]
    a, b, c, d_, e, f, j = (leaf_hash(x) for x in d)
    g, h, i = node_hash(a, b), node_hash(c, d_), node_hash(e, f)
    k, l_ = node_hash(g, h), node_hash(i, j)
    root = node_hash(k, l_)
    leaves = (a, b, c, d_, e, f, j)

    def test_root(self) -> None:
        assert self.root.hex() == RFC6962_ROOTS[6]
        assert root_hash(self.leaves) == self.root

    def test_inclusion_proofs(self) -> None:
        s = self
        assert prove_inclusion(0, 7, s.leaves) == [s.b, s.h, s.l_]
        assert prove_inclusion(3, 7, s.leaves) == [s.c, s.g, s.l_]
        assert prove_inclusion(4, 7, s.leaves) == [s.f, s.j, s.k]
        assert prove_inclusion(6, 7, s.leaves) == [s.i, s.k]
        for index, proof in [(0, [s.b, s.h, s.l_]), (6, [s.i, s.k])]:
            verify_inclusion(index, 7, s.leaves[index], proof, s.root)

    def test_consistency_proofs(self) -> None:
        s = self
        tree3, tree4 = node_hash(s.g, s.c), s.k
        tree6 = node_hash(s.k, s.i)
        assert prove_consistency(3, 7, s.leaves) == [s.c, s.d_, s.g, s.l_]
        assert prove_consistency(4, 7, s.leaves) == [s.l_]
        assert prove_consistency(6, 7, s.leaves) == [s.i, s.j, s.k]
        verify_consistency(3, 7, [s.c, s.d_, s.g, s.l_], tree3, s.root)
        verify_consistency(4, 7, [s.l_], tree4, s.root)
        verify_consistency(6, 7, [s.i, s.j, s.k], tree6, s.root)


# --- exhaustive small trees -------------------------------------------------------


def _inclusion_failures(
    leaves: list[bytes], roots: list[bytes], index: int, size: int
) -> list[str]:
    """Every way verify_inclusion(index, size) misbehaves, as readable lines."""
    name = f"verify_inclusion({index}, {size})"
    leaf, root = leaves[index], roots[size]
    proof = prove_inclusion(index, size, leaves)
    bad = []
    try:
        verify_inclusion(index, size, leaf, proof, root)
    except LedgerError as e:
        return [f"{name} rejected its own proof: {e}"]
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        bad.append(f"root_from_inclusion_proof({index}, {size}) gave the wrong root")
    for i in range(len(proof)):
        for bit in (0, 3, 255):
            corrupt = [*proof[:i], _flip(proof[i], bit), *proof[i + 1 :]]
            if not _fails(verify_inclusion, index, size, leaf, corrupt, root):
                bad.append(f"{name} succeeded with corrupt hash #{i} (bit {bit})")
    for label, other in [("-1", index - 1), ("+1", index + 1), ("*2", index * 2),
                         ("/2", index // 2), ("^1", index ^ 1)]:  # fmt: skip
        if 0 <= other != index and not _fails(verify_inclusion, other, size, leaf, proof, root):
            bad.append(f"{name} succeeded with index {label} = {other}")
    for label, other in [("-1", size - 1), ("+1", size + 1), ("*2", size * 2), ("/2", size // 2)]:
        if other == size:
            continue
        passed = not _fails(verify_inclusion, index, other, leaf, proof, root)
        if passed != (_path_shape(index, other) == _path_shape(index, size) and index < other):
            bad.append(f"{name} with size {label} = {other}: passed={passed}, path shape says not")
    mutations = {
        "root bit flipped": (leaf, proof, _flip(root, 0)),
        "wrong leaf": (
            leaves[index + 1] if index + 1 < len(leaves) else _flip(leaf, 1),
            proof,
            root,
        ),
        "extended proof": (leaf, [*proof, root], root),
        "prepended hash": (leaf, [leaf, *proof], root),
    }
    if proof:
        mutations["truncated proof"] = (leaf, proof[:-1], root)
        mutations["empty proof"] = (leaf, [], root)
        mutations["reversed proof"] = (
            (leaf, proof[::-1], root) if len(proof) > 1 else (leaf, [], root)
        )
    for label, (lf, pr, rt) in mutations.items():
        if not _fails(verify_inclusion, index, size, lf, pr, rt):
            bad.append(f"{name} succeeded with {label}")
    return bad


def test_exhaustive_inclusion_proofs() -> None:
    leaves = _leaves(EXHAUSTIVE_MAX + 1)
    roots = [root_hash(leaves[:n]) for n in range(2 * EXHAUSTIVE_MAX + 1)]
    bad: list[str] = []
    checked = 0
    for size in range(1, EXHAUSTIVE_MAX + 1):
        for index in range(size):
            bad += _inclusion_failures(leaves, roots, index, size)
            checked += 1
    assert checked == EXHAUSTIVE_MAX * (EXHAUSTIVE_MAX + 1) // 2
    assert not bad, f"{len(bad)} failures, first ones:\n" + "\n".join(bad[:25])


def _consistency_failures(
    leaves: list[bytes], roots: list[bytes], size1: int, size2: int
) -> list[str]:
    name = f"verify_consistency({size1}, {size2})"
    r1, r2 = roots[size1], roots[size2]
    proof = prove_consistency(size1, size2, leaves)
    try:
        verify_consistency(size1, size2, proof, r1, r2)
    except LedgerError as e:
        return [f"{name} rejected its own proof: {e}"]
    bad = []
    for i in range(len(proof)):
        for bit in (0, 4, 255):
            corrupt = [*proof[:i], _flip(proof[i], bit), *proof[i + 1 :]]
            if not _fails(verify_consistency, size1, size2, corrupt, r1, r2):
                bad.append(f"{name} succeeded with corrupt hash #{i} (bit {bit})")
    for label, other in [
        ("-1", size1 - 1),
        ("+1", size1 + 1),
        ("*2", size1 * 2),
        ("/2", size1 // 2),
    ]:
        if 0 <= other != size1 and not _fails(verify_consistency, other, size2, proof, r1, r2):
            bad.append(f"{name} succeeded with size1 {label} = {other}")
    for label, other in [
        ("-1", size2 - 1),
        ("+1", size2 + 1),
        ("*2", size2 * 2),
        ("/2", size2 // 2),
    ]:
        if other == size2:
            continue
        passed = not _fails(verify_consistency, size1, other, proof, r1, r2)
        if passed != (_consistency_shape(size1, other) == _consistency_shape(size1, size2)):
            bad.append(f"{name} with size2 {label} = {other}: passed={passed}, shape says not")
    mutations = {
        "root1 bit flipped": (proof, _flip(r1, 0), r2),
        "extended proof": ([*proof, r2], r1, r2),
        "prepended hash": ([r1, *proof], r1, r2),
    }
    if size1 > 0:  # from the empty tree, any root2 is consistent
        mutations["root2 bit flipped"] = (proof, r1, _flip(r2, 0))
    if r1 != r2:
        mutations["swapped roots"] = (proof, r2, r1)
    if proof:
        mutations["truncated proof"] = (proof[:-1], r1, r2)
        mutations["empty proof"] = ([], r1, r2)
    for label, (pr, a, b) in mutations.items():
        if not _fails(verify_consistency, size1, size2, pr, a, b):
            bad.append(f"{name} succeeded with {label}")
    return bad


def test_exhaustive_consistency_proofs() -> None:
    leaves = _leaves(EXHAUSTIVE_MAX)
    roots = [root_hash(leaves[:n]) for n in range(EXHAUSTIVE_MAX + 1)]
    bad: list[str] = []
    for size2 in range(1, EXHAUSTIVE_MAX + 1):
        for size1 in range(size2 + 1):
            bad += _consistency_failures(leaves, roots, size1, size2)
    assert not bad, f"{len(bad)} failures, first ones:\n" + "\n".join(bad[:25])


def test_size_is_not_bound_by_the_proof_alone() -> None:
    """The documented limit: leaf 0 of 7 'verifies' as leaf 0 of 6 against root 7."""
    leaves = _leaves(7)
    proof = prove_inclusion(0, 7, leaves)
    verify_inclusion(0, 6, leaves[0], proof, root_hash(leaves))
    with pytest.raises(RootMismatchError):
        verify_inclusion(0, 6, leaves[0], prove_inclusion(0, 6, leaves), root_hash(leaves))


# --- leaf / node domain separation ----------------------------------------------------


def test_interior_node_presented_as_leaf_does_not_verify() -> None:
    """Attack 28: a node's preimage (left || right) offered as leaf data, or a node hash
    offered as a leaf hash, at any position of the real tree size, must not verify."""
    leaves = _leaves(8)
    root = root_hash(leaves)
    nodes = {
        "level 1": [node_hash(leaves[i], leaves[i + 1]) for i in range(0, 8, 2)],
        "level 2": [root_hash(leaves[i : i + 4]) for i in (0, 4)],
    }
    for hashes in nodes.values():
        for position, node in enumerate(hashes):
            width = 8 // len(hashes)
            left, right = leaves[position * width], leaves[position * width + width - 1]
            preimage_as_leaf = leaf_hash(left + right) if width == 2 else leaf_hash(node)
            assert preimage_as_leaf != node
            for index in range(8):
                proof = prove_inclusion(index, 8, leaves)
                for candidate in (node, preimage_as_leaf):
                    with pytest.raises(RootMismatchError):
                        verify_inclusion(index, 8, candidate, proof, root)
    # Without the prefixes the attack works: the unprefixed node is the unprefixed "leaf".
    a, b = leaves[0], leaves[1]
    assert hashlib.sha256(a + b).digest() == hashlib.sha256(b"".join([a, b])).digest()
    assert node_hash(a, b) != leaf_hash(a + b)


# --- preconditions and errors -------------------------------------------------------


def test_precondition_messages_give_the_numbers() -> None:
    leaves = _leaves(8)
    root = root_hash(leaves)
    proof = prove_inclusion(2, 8, leaves)
    with pytest.raises(InvalidProofError, match=r"^index is beyond size: 9 >= 8$"):
        verify_inclusion(9, 8, leaves[0], proof, root)
    with pytest.raises(InvalidProofError, match=r"^wrong proof size 2, want 3$"):
        verify_inclusion(2, 8, leaves[2], proof[:2], root)
    with pytest.raises(InvalidProofError, match=r"^wrong proof size 4, want 3$"):
        verify_inclusion(2, 8, leaves[2], [*proof, root], root)
    with pytest.raises(InvalidProofError, match=r"proof hash #1 has 31 bytes, want 32"):
        verify_inclusion(2, 8, leaves[2], [proof[0], proof[1][:31], proof[2]], root)
    with pytest.raises(InvalidProofError, match="leaf index must not be negative, got -1"):
        verify_inclusion(-1, 8, leaves[0], proof, root)
    with pytest.raises(InvalidProofError, match="tree size must be an integer, got bool"):
        verify_inclusion(0, True, leaves[0], [], root)
    with pytest.raises(InvalidProofError, match="root hash has 0 bytes"):
        verify_inclusion(0, 1, leaves[0], [], b"")
    with pytest.raises(InvalidProofError, match="leaf hash must be bytes, got str"):
        verify_inclusion(0, 1, "00" * 32, [], root)
    with pytest.raises(InvalidProofError, match="single value"):
        verify_inclusion(0, 2, leaves[0], leaves[1], root)
    with pytest.raises(InvalidProofError, match=r"^size2 \(3\) < size1 \(4\)$"):
        verify_consistency(4, 3, [], root, root)
    with pytest.raises(InvalidProofError, match=r"^size1=size2, but proof is not empty$"):
        verify_consistency(4, 4, [root], root, root)
    with pytest.raises(InvalidProofError, match=r"^empty proof$"):
        verify_consistency(3, 8, [], root, root)
    with pytest.raises(InvalidProofError, match="from the empty tree must be empty"):
        verify_consistency(0, 8, [root], empty_root(), root)
    with pytest.raises(InvalidProofError, match=r"^wrong proof size 1, want 4$"):
        verify_consistency(3, 7, [root], root, root)


def test_root_mismatch_carries_both_roots() -> None:
    leaves = _leaves(5)
    proof = prove_inclusion(3, 5, leaves)
    wrong = _flip(root_hash(leaves), 7)
    with pytest.raises(RootMismatchError) as caught:
        verify_inclusion(3, 5, leaves[3], proof, wrong)
    assert caught.value.expected == wrong
    assert caught.value.calculated == root_hash(leaves)
    assert wrong.hex() in str(caught.value)
    # size1 = 3 is not a power of two, so root1 is recomputed from the proof and compared.
    proof = prove_consistency(3, 5, leaves)
    with pytest.raises(RootMismatchError) as caught:
        verify_consistency(3, 5, proof, _flip(root_hash(leaves[:3]), 1), root_hash(leaves))
    assert caught.value.calculated == root_hash(leaves[:3])
    assert "root1 mismatch" in str(caught.value)
    # size1 = 2 is: the given root1 seeds the proof, so a wrong root1 shows in root2.
    proof = prove_consistency(2, 5, leaves)
    with pytest.raises(RootMismatchError, match="root2 mismatch"):
        verify_consistency(2, 5, proof, _flip(root_hash(leaves[:2]), 1), root_hash(leaves))


def test_empty_and_equal_size_consistency() -> None:
    leaves = _leaves(4)
    verify_consistency(0, 0, [], empty_root(), empty_root())
    verify_consistency(0, 4, [], empty_root(), root_hash(leaves))
    verify_consistency(4, 4, [], root_hash(leaves), root_hash(leaves))
    with pytest.raises(RootMismatchError):
        verify_consistency(0, 4, [], root_hash(leaves), root_hash(leaves))
    with pytest.raises(RootMismatchError):
        verify_consistency(0, 0, [], empty_root(), root_hash(leaves))
    with pytest.raises(RootMismatchError):
        verify_consistency(4, 4, [], root_hash(leaves), root_hash(leaves[:3]))
    assert prove_consistency(0, 4, leaves) == []
    assert prove_consistency(4, 4, leaves) == []


def test_prove_rejects_impossible_requests() -> None:
    leaves = _leaves(8)
    with pytest.raises(InvalidProofError, match="index is beyond size: 8 >= 8"):
        prove_inclusion(8, 8, leaves)
    with pytest.raises(InvalidProofError, match="tree size 9 is beyond the 8 leaves available"):
        prove_inclusion(0, 9, leaves)
    with pytest.raises(InvalidProofError, match="tree size 9 is beyond the 8 leaves available"):
        prove_consistency(2, 9, leaves)
    with pytest.raises(InvalidProofError, match=r"size2 \(2\) < size1 \(3\)"):
        prove_consistency(3, 2, leaves)


def test_root_hash_rejects_bad_leaf_hashes() -> None:
    leaves = _leaves(5)
    with pytest.raises(MalformedError, match="leaf hash #3 has 33 bytes, want 32"):
        root_hash([*leaves[:3], leaves[3] + b"x", leaves[4]])
    with pytest.raises(MalformedError, match="must be bytes"):
        root_hash([*leaves[:3], "x" * 32])
    with pytest.raises(MalformedError, match="must be bytes"):
        root_hash(["x" * 32])


def test_provers_read_lazily_and_at_most_each_leaf_once() -> None:
    leaves = _leaves(1000)
    for index, size in [(0, 1000), (999, 1000), (517, 777), (3, 4)]:
        reader = CountingReader(leaves)
        assert prove_inclusion(index, size, reader) == prove_inclusion(index, size, leaves)
        assert reader.reads <= size
    for size1, size2 in [(1, 1000), (999, 1000), (517, 777), (512, 1000)]:
        reader = CountingReader(leaves)
        assert prove_consistency(size1, size2, reader) == prove_consistency(size1, size2, leaves)
        assert reader.reads <= size2


# --- vector files ---------------------------------------------------------------------


def _load_generator():
    spec = importlib.util.spec_from_file_location(
        "ledger_vector_generator", VECTORS / "generate.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _vector_files(kind: str) -> list[Path]:
    files = sorted((VECTORS / kind).glob("*/*.json"))
    assert len(files) > 100, f"too few {kind} vectors: {len(files)}"
    return files


def test_inclusion_vector_files() -> None:
    wrong = []
    files = _vector_files("inclusion")
    for path in files:
        v = json.loads(path.read_text())
        failed = _fails(
            verify_inclusion,
            v["leaf_index"],
            v["tree_size"],
            bytes.fromhex(v["leaf_hash"]),
            [bytes.fromhex(h) for h in v["inclusion_proof"]],
            bytes.fromhex(v["root_hash"]),
        )
        if failed != v["want_err"]:
            wrong.append(f"{path.relative_to(VECTORS)}: {v['desc']} (failed={failed})")
    assert not wrong, f"{len(wrong)} out of {len(files)} failures:\n" + "\n".join(wrong)


def test_consistency_vector_files() -> None:
    wrong = []
    files = _vector_files("consistency")
    for path in files:
        v = json.loads(path.read_text())
        failed = _fails(
            verify_consistency,
            v["size1"],
            v["size2"],
            [bytes.fromhex(h) for h in v["consistency_proof"]],
            bytes.fromhex(v["root1"]),
            bytes.fromhex(v["root2"]),
        )
        if failed != v["want_err"]:
            wrong.append(f"{path.relative_to(VECTORS)}: {v['desc']} (failed={failed})")
    assert not wrong, f"{len(wrong)} out of {len(files)} failures:\n" + "\n".join(wrong)


def test_valid_vectors_are_the_proofs_we_generate() -> None:
    leaves = [leaf_hash(d) for d in RFC6962_INPUTS]
    for path in sorted(VECTORS.glob("inclusion/*/valid.json")):
        v = json.loads(path.read_text())
        proof = prove_inclusion(v["leaf_index"], v["tree_size"], leaves)
        assert [h.hex() for h in proof] == v["inclusion_proof"], path
    for path in sorted(VECTORS.glob("consistency/*/valid.json")):
        v = json.loads(path.read_text())
        proof = prove_consistency(v["size1"], v["size2"], leaves)
        assert [h.hex() for h in proof] == v["consistency_proof"], path


def test_vector_files_are_exactly_what_the_generator_writes() -> None:
    generated = _load_generator().vectors()
    on_disk = {
        p.relative_to(VECTORS).as_posix(): p.read_bytes()
        for kind in ("inclusion", "consistency")
        for p in (VECTORS / kind).glob("*/*.json")
    }
    assert sorted(on_disk) == sorted(generated), "vector file set differs: rerun generate.py"
    changed = [rel for rel, data in generated.items() if on_disk[rel] != data]
    assert not changed, f"{len(changed)} vector files differ from generate.py: {changed[:5]}"
    assert sum(map(len, generated.values())) < 400_000


def test_generator_reference_agrees_with_package_on_random_trees() -> None:
    """The generator's step-by-step RFC algorithms and the package agree beyond 8 leaves."""
    gen = _load_generator()
    data = [i.to_bytes(2, "big") for i in range(40)]
    leaves = [leaf_hash(d) for d in data]
    for size in (1, 2, 3, 13, 32, 33, 40):
        assert root_hash(leaves[:size]) == gen.mth(data[:size])
        for index in range(0, size, 3):
            proof = prove_inclusion(index, size, leaves)
            assert proof == gen.path(index, data[:size])
            assert gen.rfc_verify_inclusion(index, size, leaves[index], proof, gen.mth(data[:size]))
        for size1 in range(0, size + 1, 4):
            proof = prove_consistency(size1, size, leaves)
            assert proof == gen.proof(size1, data[:size])
            assert gen.rfc_verify_consistency(
                size1, size, proof, gen.mth(data[:size1]), gen.mth(data[:size])
            )


# --- hypothesis ---------------------------------------------------------------------

_PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def inclusion_cases(draw: st.DrawFn) -> tuple[list[bytes], int, int]:
    size = draw(st.integers(1, 300))
    index = draw(st.integers(0, size - 1))
    salt = draw(st.binary(max_size=8))
    return _leaves(size, salt), index, size


@st.composite
def consistency_cases(draw: st.DrawFn) -> tuple[list[bytes], int, int]:
    size2 = draw(st.integers(1, 300))
    size1 = draw(st.integers(0, size2))
    salt = draw(st.binary(max_size=8))
    return _leaves(size2, salt), size1, size2


@_PROPERTY_SETTINGS
@given(
    inclusion_cases(),
    st.sampled_from(["proof", "root", "leaf", "index", "size"]),
    st.integers(0, 255),
)
def test_property_inclusion(case: tuple[list[bytes], int, int], target: str, bit: int) -> None:
    leaves, index, size = case
    root = root_hash(leaves)
    proof = prove_inclusion(index, size, leaves)
    verify_inclusion(index, size, leaves[index], proof, root)
    leaf = leaves[index]
    if target == "proof" and proof:
        which = bit % len(proof)
        proof = [*proof[:which], _flip(proof[which], bit), *proof[which + 1 :]]
    elif target == "leaf":
        leaf = _flip(leaf, bit)
    elif target == "index":
        other = index ^ (1 << (bit % 10))
        assert _fails(verify_inclusion, other, size, leaf, proof, root)
        return
    elif target == "size":
        other = size ^ (1 << (bit % 10))
        same_shape = other > index and _path_shape(index, other) == _path_shape(index, size)
        assert _fails(verify_inclusion, index, other, leaf, proof, root) != same_shape
        return
    else:
        root = _flip(root, bit)
    assert _fails(verify_inclusion, index, size, leaf, proof, root)


@_PROPERTY_SETTINGS
@given(
    consistency_cases(),
    st.sampled_from(["proof", "root1", "root2", "size1", "size2"]),
    st.integers(0, 255),
)
def test_property_consistency(case: tuple[list[bytes], int, int], target: str, bit: int) -> None:
    leaves, size1, size2 = case
    root1, root2 = root_hash(leaves[:size1]), root_hash(leaves)
    proof = prove_consistency(size1, size2, leaves)
    verify_consistency(size1, size2, proof, root1, root2)
    if target == "proof" and proof:
        which = bit % len(proof)
        proof = [*proof[:which], _flip(proof[which], bit), *proof[which + 1 :]]
    elif target == "size1":
        other = size1 ^ (1 << (bit % 10))
        assert _fails(verify_consistency, other, size2, proof, root1, root2)
        return
    elif target == "size2":
        other = size2 ^ (1 << (bit % 10))
        same_shape = _consistency_shape(size1, other) == _consistency_shape(size1, size2)
        assert _fails(verify_consistency, size1, other, proof, root1, root2) != same_shape
        return
    elif target == "root2" and size1 > 0:
        root2 = _flip(root2, bit)
    else:
        root1 = _flip(root1, bit)
    assert _fails(verify_consistency, size1, size2, proof, root1, root2)


# --- scale ---------------------------------------------------------------------------


@pytest.mark.slow
def test_root_of_a_million_leaves_is_the_perfect_trees_root() -> None:
    """A year's worth of leaves and more: the root (no recursion limit, no quadratic work;
    its speed is the benchmarks' business) equals the perfect tree folded level by level."""
    leaves = _leaves(1 << 20)
    level = list(leaves)
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    assert root_hash(leaves) == level[0]
