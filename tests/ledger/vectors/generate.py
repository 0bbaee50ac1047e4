"""Writes the Merkle proof vectors: ``{inclusion,consistency}/<case>/<mutation>.json``.

Each file holds one verification's inputs, a ``desc`` and ``want_err`` (proofgen style, as
in transparency-dev/merkle's testdata). Nothing here imports audit_pipeline: the trees and
proofs come from RFC 9162's definitions (MTH, PATH, PROOF; sections 2.1.1-2.1.4) written
out recursively, and ``want_err`` from the RFC's verification algorithms (2.1.3.2, 2.1.4.2)
transcribed step by step. The tests then hold the package's implementation to this
second, independent one.

Leaves are the RFC 6962 test inputs; the happy-path roots are checked against the RFC's
published roots before anything is written.

    .venv/bin/python tests/ledger/vectors/generate.py     # rewrite the files

A test asserts that the committed files are exactly what this produces.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
KINDS = ("inclusion", "consistency")

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
RFC6962_ROOTS = {
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
# (leaf index, tree size): both ends, the RFC 9162 seven-leaf examples, odd trees.
INCLUSION_CASES = [(0, 1), (0, 7), (3, 7), (6, 7), (1, 8), (6, 8), (2, 5), (4, 5)]
# (size1, size2): the RFC 9162 examples PROOF(3|4|6, D[7]), powers of two, neighbours.
CONSISTENCY_CASES = [(1, 8), (3, 7), (4, 7), (6, 7), (6, 8), (2, 5), (7, 8), (5, 5)]

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _leaf(data: bytes) -> bytes:
    return _sha256(b"\x00" + data)


def _node(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right)


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 section 2.1.1, over leaf inputs (not hashes)."""
    if not d:
        return _sha256(b"")
    if len(d) == 1:
        return _leaf(d[0])
    k = _k(len(d))
    return _node(mth(d[:k]), mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 section 2.1.3.1."""
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def proof(m: int, d: list[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 section 2.1.4.1 (empty for m = 0 or m = n)."""
    if m in (0, len(d)):
        return []
    return _subproof(m, d, True)


def _subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = _k(n)
    if m <= k:
        return [*_subproof(m, d[:k], b), mth(d[k:])]
    return [*_subproof(m - k, d[k:], False), mth(d[:k])]


def _hashes_ok(*hashes: bytes) -> bool:
    return all(len(h) == 32 for h in hashes)


def rfc_verify_inclusion(index: int, size: int, leaf: bytes, p: list[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2, step by step."""
    if not _hashes_ok(leaf, root, *p) or index < 0 or index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for h in p:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(h, r)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _node(r, h)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def rfc_verify_consistency(size1: int, size2: int, p: list[bytes], r1: bytes, r2: bytes) -> bool:
    """RFC 9162 section 2.1.4.2, step by step; sizes 0 and equal sizes as in the package
    (the empty tree is a prefix of any tree, its root is the empty root)."""
    if not _hashes_ok(r1, r2, *p) or size1 < 0 or size2 < size1:
        return False
    if size1 == 0:
        return not p and r1 == mth([]) and (size2 > 0 or r2 == r1)
    if size1 == size2:
        return not p and r1 == r2
    if not p:
        return False
    if size1 & (size1 - 1) == 0:
        p = [r1, *p]
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = p[0]
    for c in p[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = _node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == r1 and sr == r2 and sn == 0


def _flip(h: bytes, bit: int) -> bytes:
    b = bytearray(h)
    b[bit // 8 % len(b)] ^= 1 << (bit % 8)
    return bytes(b)


def _inclusion_vectors(index: int, size: int) -> dict[str, dict]:
    d = RFC6962_INPUTS[:size]
    leaf, root, p = _leaf(d[index]), mth(d), path(index, d)
    assert root.hex() == RFC6962_ROOTS[size], f"MTH of {size} RFC leaves is wrong"
    wrong_leaf = _leaf(b"WrongLeaf")
    probes: list[tuple[str, str, int, int, bytes, list[bytes], bytes]] = [
        ("valid", "the RFC 9162 inclusion proof", index, size, leaf, p, root),
        ("leaf_index_minus_1", "leaf index - 1", index - 1, size, leaf, p, root),
        ("leaf_index_plus_1", "leaf index + 1", index + 1, size, leaf, p, root),
        ("leaf_index_xor_2", "leaf index ^ 2", index ^ 2, size, leaf, p, root),
        ("tree_size_minus_1", "tree size - 1", index, size - 1, leaf, p, root),
        ("tree_size_plus_1", "tree size + 1", index, size + 1, leaf, p, root),
        ("tree_size_times_2", "tree size * 2", index, size * 2, leaf, p, root),
        ("tree_size_div_2", "tree size / 2", index, size // 2, leaf, p, root),
        ("wrong_leaf", "another leaf's hash", index, size, wrong_leaf, p, root),
        ("leaf_data_as_hash", "leaf data given unhashed", index, size, d[index], p, root),
        ("empty_root", "the empty tree's root", index, size, leaf, p, mth([])),
        ("random_root", "an unrelated root", index, size, leaf, p, SOME_HASH),
        ("root_bit_flipped", "root with bit 0 flipped", index, size, leaf, p, _flip(root, 0)),
        ("trailing_garbage", "empty value appended", index, size, leaf, [*p, b""], root),
        ("trailing_root", "root appended to proof", index, size, leaf, [*p, root], root),
        ("preceding_garbage", "empty value prepended", index, size, leaf, [b"", *p], root),
        ("preceding_root", "root prepended to proof", index, size, leaf, [root, *p], root),
    ]
    for i in range(len(p)):
        flipped = [*p[:i], _flip(p[i], 3), *p[i + 1 :]]
        probes.append((f"proof_{i}_bit_flipped", f"proof[{i}] bit 3 flipped", index, size,
                       leaf, flipped, root))  # fmt: skip
    if p:
        probes.append(("truncated", "last proof hash removed", index, size, leaf, p[:-1], root))
        probes.append(("empty_proof", "proof emptied", index, size, leaf, [], root))
    if len(p) > 1:
        inserted = [p[0], SOME_HASH, *p[1:]]
        probes.append(("inserted", "unrelated hash inserted after proof[0]", index, size,
                       leaf, inserted, root))  # fmt: skip
    out = {}
    for name, desc, i, n, lf, pr, rt in probes:
        if i < 0 or (name != "valid" and (i, n, lf, pr, rt) == (index, size, leaf, p, root)):
            continue
        accepted = rfc_verify_inclusion(i, n, lf, pr, rt)
        if name == "valid":
            assert accepted, f"RFC verification rejects its own proof {index}/{size}"
        elif accepted:
            assert name.startswith("tree_size"), f"{name} accepted for {index}/{size}"
            desc += " (same path shape: the proof cannot tell; the checkpoint binds the size)"
        out[name] = {
            "desc": f"leaf {index} of {size}: {desc}",
            "leaf_index": i,
            "tree_size": n,
            "leaf_hash": lf.hex(),
            "root_hash": rt.hex(),
            "inclusion_proof": [h.hex() for h in pr],
            "want_err": not accepted,
        }
    return out


def _consistency_vectors(size1: int, size2: int) -> dict[str, dict]:
    d = RFC6962_INPUTS[:size2]
    r1, r2, p = mth(d[:size1]), mth(d), proof(size1, d)
    assert r1.hex() == RFC6962_ROOTS[size1] and r2.hex() == RFC6962_ROOTS[size2]
    Probe = tuple[str, str, int, int, list[bytes], bytes, bytes]
    probes: list[Probe] = [
        ("valid", "the RFC 9162 consistency proof", size1, size2, p, r1, r2),
        ("size1_minus_1", "size1 - 1", size1 - 1, size2, p, r1, r2),
        ("size1_plus_1", "size1 + 1", size1 + 1, size2, p, r1, r2),
        ("size1_xor_2", "size1 ^ 2", size1 ^ 2, size2, p, r1, r2),
        ("size2_minus_1", "size2 - 1", size1, size2 - 1, p, r1, r2),
        ("size2_plus_1", "size2 + 1", size1, size2 + 1, p, r1, r2),
        ("size2_times_2", "size2 * 2", size1, size2 * 2, p, r1, r2),
        ("size2_div_2", "size2 / 2", size1, size2 // 2, p, r1, r2),
        ("root1_bit_flipped", "root1 with bit 0 flipped", size1, size2, p, _flip(r1, 0), r2),
        ("root2_bit_flipped", "root2 with bit 0 flipped", size1, size2, p, r1, _flip(r2, 0)),
        ("root1_empty_root", "root1 replaced by the empty root", size1, size2, p, mth([]), r2),
        ("swapped_roots", "root1 and root2 swapped", size1, size2, p, r2, r1),
        ("trailing_garbage", "empty value appended", size1, size2, [*p, b""], r1, r2),
        ("trailing_root1", "root1 appended", size1, size2, [*p, r1], r1, r2),
        ("trailing_root2", "root2 appended", size1, size2, [*p, r2], r1, r2),
        ("preceding_garbage", "empty value prepended", size1, size2, [b"", *p], r1, r2),
        ("preceding_root1", "root1 prepended", size1, size2, [r1, *p], r1, r2),
        ("preceding_root2", "root2 prepended", size1, size2, [r2, *p], r1, r2),
    ]
    if p:
        probes.append(("preceding_proof_0", "proof[0] repeated in front", size1, size2,
                       [p[0], *p], r1, r2))  # fmt: skip
        probes.append(("truncated", "last proof hash removed", size1, size2, p[:-1], r1, r2))
        probes.append(("empty_proof", "proof emptied", size1, size2, [], r1, r2))
    for i in range(len(p)):
        flipped = [*p[:i], _flip(p[i], 4), *p[i + 1 :]]
        probes.append((f"proof_{i}_bit_flipped", f"proof[{i}] bit 4 flipped", size1, size2,
                       flipped, r1, r2))  # fmt: skip
    out = {}
    for name, desc, m, n, pr, a, b in probes:
        if m < 0 or (name != "valid" and (m, n, pr, a, b) == (size1, size2, p, r1, r2)):
            continue
        accepted = rfc_verify_consistency(m, n, pr, a, b)
        if name == "valid":
            assert accepted, f"RFC verification rejects its own proof {size1}->{size2}"
        elif accepted:
            assert name.startswith("size2"), f"{name} accepted for {size1}->{size2}"
            desc += " (same proof shape: the proof cannot tell; the checkpoint binds the size)"
        out[name] = {
            "desc": f"size {size1} to {size2}: {desc}",
            "size1": m,
            "size2": n,
            "root1": a.hex(),
            "root2": b.hex(),
            "consistency_proof": [h.hex() for h in pr],
            "want_err": not accepted,
        }
    return out


def vectors() -> dict[str, bytes]:
    """vectors returns every vector file's bytes by path relative to this directory."""
    files: dict[str, bytes] = {}
    cases: list[tuple[str, str, Callable[[int, int], dict[str, dict]], tuple[int, int]]] = [
        ("inclusion", f"leaf_{i}_of_{n}", _inclusion_vectors, (i, n)) for i, n in INCLUSION_CASES
    ]
    cases += [
        ("consistency", f"size_{m}_to_{n}", _consistency_vectors, (m, n))
        for m, n in CONSISTENCY_CASES
    ]
    for kind, case, make, args in cases:
        for mutation, vector in make(*args).items():
            text = json.dumps(vector, indent=1, ensure_ascii=True) + "\n"
            files[f"{kind}/{case}/{mutation}.json"] = text.encode("ascii")
    return files


def main() -> int:
    files = vectors()
    for kind in KINDS:
        for old in sorted((HERE / kind).glob("*/*.json")):
            if old.relative_to(HERE).as_posix() not in files:
                old.unlink()
    for rel, data in files.items():
        target = HERE / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    total = sum(len(data) for data in files.values())
    print(f"wrote {len(files)} vector files, {total} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
