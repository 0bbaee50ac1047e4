"""RFC 6962 Merkle trees (RFC 9162 section 2.1): tree hashes, inclusion and consistency proofs.

Byte format
-----------
Every hash is 32 bytes of SHA-256. A leaf and an interior node are hashed with different
one-byte prefixes, so that a node can never be presented as a leaf (RFC 9162 section 2.1.1,
"second preimage" protection)::

    leaf_hash(d)       = SHA-256(0x00 || d)
    node_hash(l, r)    = SHA-256(0x01 || l || r)
    MTH({})            = SHA-256("")                      (the empty tree)
    MTH({d0})          = leaf_hash(d0)
    MTH(D[n]), n > 1   = node_hash(MTH(D[0:k]), MTH(D[k:n]))
                         where k is the largest power of two smaller than n

Worked example, with the RFC 6962 test inputs d0 = "" (empty) and d1 = 0x00::

    leaf_hash(b"")      = 6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d
    leaf_hash(b"\\x00")  = 96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7
    MTH(d0, d1)         = fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125
                        = node_hash(leaf_hash(d0), leaf_hash(d1))

A tree of three leaves a, b, c is ``node_hash(node_hash(a, b), c)``. The inclusion proof
of c (RFC 6962 calls it a "Merkle audit path") is ``[node_hash(a, b)]``; the consistency
proof from size 2 to size 3 is ``[c]``. Proofs list sibling subtree hashes from the leaf
up. Seven leaves d0..d6 give RFC 9162's worked example: the inclusion proof of d0 is
``[b, h, l]`` and PROOF(3, D[7]) is ``[c, d, g, l]``.

Compatibility: these are the RFC's bytes exactly, so proofs made here verify with any
RFC 6962 / RFC 9162 implementation (Go's sumdb/tlog, transparency-dev/merkle) and back.

What a proof does not bind: an inclusion proof's arithmetic uses only the shape of the
path from the leaf to the root, and a few other tree sizes share that shape (a proof for
leaf 0 of 7 also "verifies" for size 6 against the same root). The tree size is
authenticated by the signed checkpoint that carries it together with the root, never by
the proof alone.

Functions named after the spec steps follow transparency-dev/merkle's ``proof/verify.go``:
verification first decomposes the proof into its inner part (below the point where the
path meets the right border of the tree) and its border part.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from audit_pipeline.ledger.errors import InvalidProofError, MalformedError, RootMismatchError

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """leaf_hash returns the RFC 6962 hash of one leaf's data: SHA-256(0x00 || data)."""
    return _sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """node_hash returns the RFC 6962 interior node hash: SHA-256(0x01 || left || right)."""
    return _sha256(NODE_PREFIX + left + right).digest()


def empty_root() -> bytes:
    """empty_root returns the root hash of the tree with no leaves: SHA-256 of nothing."""
    return _sha256(b"").digest()


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """root_hash returns MTH over the given leaf hashes (RFC 9162 section 2.1.1).

    It hashes level by level, carrying an odd last node up unchanged, which gives the same
    tree as splitting at the largest power of two (about 1 s for a million leaves).
    """
    size = len(leaf_hashes)
    if size == 0:
        return empty_root()
    return _subtree_root(leaf_hashes, 0, size)


def prove_inclusion(index: int, size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """prove_inclusion returns the inclusion proof of leaf ``index`` in the tree of the
    first ``size`` leaf hashes: PATH(index, D[size]) of RFC 9162 section 2.1.3.1.

    ``leaf_hashes`` may be any sequence with ``len`` and integer indexing; each sibling
    subtree root is computed from its leaves (the subtrees are disjoint, so one proof
    reads each of the ``size`` leaves at most once).
    """
    _check_int("leaf index", index)
    _check_int("tree size", size)
    if index < size:
        _check_available(size, leaf_hashes)
    return inclusion_path(index, size, lambda lo, hi: _subtree_root(leaf_hashes, lo, hi))


def inclusion_path(index: int, size: int, subtree_root: Callable[[int, int], bytes]) -> list[bytes]:
    """inclusion_path is :func:`prove_inclusion` with the subtree roots MTH(D[lo:hi]) it
    needs supplied by ``subtree_root`` (for example from stored hash tiles)."""
    _check_int("leaf index", index)
    _check_int("tree size", size)
    if index >= size:
        raise InvalidProofError(f"index is beyond size: {index} >= {size}")
    proof: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split_point(hi - lo)
        if index < lo + k:
            proof.append(subtree_root(lo + k, hi))
            hi = lo + k
        else:
            proof.append(subtree_root(lo, lo + k))
            lo = lo + k
    proof.reverse()
    return proof


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """root_from_inclusion_proof returns the root hash that ``proof`` gives for the leaf hash
    ``leaf`` at ``index`` in a tree of ``size`` leaves (RFC 9162 section 2.1.3.2).

    Raises InvalidProofError when the index is out of range, a hash is not 32 bytes or the
    proof has the wrong number of hashes for that index and size.
    """
    _check_int("leaf index", index)
    _check_int("tree size", size)
    if index >= size:
        raise InvalidProofError(f"index is beyond size: {index} >= {size}")
    _check_hash("leaf hash", leaf)
    proof = _check_proof(proof)
    inner, border = _decomp_incl_proof(index, size)
    if len(proof) != inner + border:
        raise InvalidProofError(f"wrong proof size {len(proof)}, want {inner + border}")
    calculated = _chain_inner(leaf, proof[:inner], index)
    return _chain_border_right(calculated, proof[inner:])


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """verify_inclusion proves that leaf hash ``leaf`` is leaf ``index`` of the tree of
    ``size`` leaves whose root is ``root``; it returns nothing and raises otherwise.

    Raises RootMismatchError when the proof leads elsewhere, InvalidProofError when it is
    malformed for this index and size.
    """
    _check_hash("root hash", root)
    calculated = root_from_inclusion_proof(index, size, leaf, proof)
    if calculated != root:
        raise RootMismatchError(expected=root, calculated=calculated)


def prove_consistency(size1: int, size2: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """prove_consistency returns the proof that the tree of the first ``size1`` leaves is a
    prefix of the tree of the first ``size2``: PROOF(size1, D[size2]) of RFC 9162 section
    2.1.4.1. The proof is empty when ``size1`` is 0 or equals ``size2``.
    """
    _check_int("size1", size1)
    _check_int("size2", size2)
    if size1 <= size2:
        _check_available(size2, leaf_hashes)
    return consistency_path(size1, size2, lambda lo, hi: _subtree_root(leaf_hashes, lo, hi))


def consistency_path(
    size1: int, size2: int, subtree_root: Callable[[int, int], bytes]
) -> list[bytes]:
    """consistency_path is :func:`prove_consistency` with the subtree roots it needs
    supplied by ``subtree_root``."""
    _check_int("size1", size1)
    _check_int("size2", size2)
    if size2 < size1:
        raise InvalidProofError(f"size2 ({size2}) < size1 ({size1})")
    if size1 == 0 or size1 == size2:
        return []
    proof: list[bytes] = []
    lo, hi, m = 0, size2, size1
    # SUBPROOF's flag b: the old tree's root is a node of the new tree that the verifier
    # already holds as root1, so it is left out of the proof.
    old_root_is_known = True
    while m != hi - lo:
        k = _split_point(hi - lo)
        if m <= k:
            proof.append(subtree_root(lo + k, hi))
            hi = lo + k
        else:
            proof.append(subtree_root(lo, lo + k))
            lo, m = lo + k, m - k
            old_root_is_known = False
    if not old_root_is_known:
        proof.append(subtree_root(lo, hi))
    proof.reverse()
    return proof


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """verify_consistency proves that the tree of ``size1`` leaves with root ``root1`` is a
    prefix of the tree of ``size2`` leaves with root ``root2`` (RFC 9162 section 2.1.4.2);
    it returns nothing and raises InvalidProofError / RootMismatchError otherwise.

    The empty tree is a prefix of every tree: from size 0 the proof must be empty and
    ``root1`` must be the empty root (stricter than transparency-dev, which ignores root1).
    """
    _check_int("size1", size1)
    _check_int("size2", size2)
    _check_hash("root1", root1)
    _check_hash("root2", root2)
    proof = _check_proof(proof)
    if size2 < size1:
        raise InvalidProofError(f"size2 ({size2}) < size1 ({size1})")
    if size1 == 0:
        if proof:
            raise InvalidProofError(
                f"consistency proof from the empty tree must be empty, got {len(proof)} hashes"
            )
        _check_match(root1, empty_root(), "root1 (empty tree)")
        if size2 == 0:
            _check_match(root1, root2, "root2")
        return
    if size1 == size2:
        if proof:
            raise InvalidProofError("size1=size2, but proof is not empty")
        _check_match(root1, root2, "root2")
        return
    if not proof:
        raise InvalidProofError("empty proof")

    inner, border = _decomp_incl_proof(size1 - 1, size2)
    shift = _trailing_zeros(size1)
    inner -= shift
    # The proof starts with the root of the old tree's last complete subtree of size
    # 2^shift, unless the old tree is that very subtree (then it is root1 itself).
    if size1 == 1 << shift:
        seed, start = root1, 0
    else:
        seed, start = proof[0], 1
    if len(proof) != start + inner + border:
        raise InvalidProofError(f"wrong proof size {len(proof)}, want {start + inner + border}")
    path = proof[start:]
    mask = (size1 - 1) >> shift

    calculated1 = _chain_inner_right(seed, path[:inner], mask)
    calculated1 = _chain_border_right(calculated1, path[inner:])
    _check_match(root1, calculated1, "root1")
    calculated2 = _chain_inner(seed, path[:inner], mask)
    calculated2 = _chain_border_right(calculated2, path[inner:])
    _check_match(root2, calculated2, "root2")


class PrefixRoots:
    """PrefixRoots gives the RFC 6962 root of every prefix of the log in O(n log n)."""

    def __init__(self, leaf_hashes: list[bytes]) -> None:
        self._roots: list[bytes] = [empty_root()]
        stack: list[tuple[int, bytes]] = []
        for leaf in leaf_hashes:
            stack.append((1, leaf))
            while len(stack) > 1 and stack[-1][0] == stack[-2][0]:
                (width, right), (_, left) = stack.pop(), stack.pop()
                stack.append((width * 2, node_hash(left, right)))
            root = stack[-1][1]
            for _, left in reversed(stack[:-1]):
                root = node_hash(left, root)
            self._roots.append(root)

    def root(self, size: int) -> bytes:
        return self._roots[size]


def _decomp_incl_proof(index: int, size: int) -> tuple[int, int]:
    """_decomp_incl_proof returns the number of inner and border hashes in the inclusion
    proof of ``index`` in a tree of ``size``: the path is inner until it meets the right
    border of the tree (where ``index`` and ``size - 1`` agree on all higher bits)."""
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner, border


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    """_chain_inner hashes ``seed`` up the inner path, on the side given by index's bits."""
    for level, sibling in enumerate(proof):
        seed = node_hash(sibling, seed) if (index >> level) & 1 else node_hash(seed, sibling)
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    """_chain_inner_right is _chain_inner keeping only left siblings: it rebuilds the old
    tree's root, which has no nodes to the right of its last leaf."""
    for level, sibling in enumerate(proof):
        if (index >> level) & 1 == 1:
            seed = node_hash(sibling, seed)
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    """_chain_border_right hashes ``seed`` up the right border: every sibling is on the left."""
    for sibling in proof:
        seed = node_hash(sibling, seed)
    return seed


def _split_point(n: int) -> int:
    """_split_point returns the largest power of two smaller than n (n > 1)."""
    assert n > 1, "merkle: bad math in _split_point"
    return 1 << ((n - 1).bit_length() - 1)


def _trailing_zeros(n: int) -> int:
    return (n & -n).bit_length() - 1


def _subtree_root(leaf_hashes: Sequence[bytes], start: int, end: int) -> bytes:
    """_subtree_root returns MTH(D[start:end]) for 0 <= start < end <= len(leaf_hashes)."""
    assert 0 <= start < end, "merkle: bad math in _subtree_root"
    if isinstance(leaf_hashes, (list, tuple)):
        level = list(leaf_hashes[start:end])
    else:
        level = [leaf_hashes[i] for i in range(start, end)]
    lengths = set(map(len, level))
    if lengths != {HASH_SIZE}:
        bad = next(i for i, h in enumerate(level) if len(h) != HASH_SIZE)
        raise MalformedError(
            f"leaf hash #{start + bad} has {len(level[bad])} bytes, want {HASH_SIZE}"
        )
    try:
        while len(level) > 1:
            pairs = iter(level)
            parents = [
                _sha256(NODE_PREFIX + left + right).digest()
                for left, right in zip(pairs, pairs, strict=False)
            ]
            if len(level) % 2:
                parents.append(level[-1])
            level = parents
        return bytes(level[0])
    except TypeError as e:
        raise MalformedError(f"leaf hashes must be bytes: {e}") from None


def _check_available(size: int, leaf_hashes: Sequence[bytes]) -> None:
    available = len(leaf_hashes)
    if size > available:
        raise InvalidProofError(f"tree size {size} is beyond the {available} leaves available")


def _check_int(what: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidProofError(f"{what} must be an integer, got {type(value).__name__}")
    if value < 0:
        raise InvalidProofError(f"{what} must not be negative, got {value}")


def _check_hash(what: str, value: object) -> None:
    if not isinstance(value, bytes):
        raise InvalidProofError(f"{what} must be bytes, got {type(value).__name__}")
    if len(value) != HASH_SIZE:
        raise InvalidProofError(f"{what} has {len(value)} bytes, want {HASH_SIZE}")


def _check_proof(proof: Sequence[bytes]) -> list[bytes]:
    if isinstance(proof, (bytes, str)):
        raise InvalidProofError("proof must be a sequence of hashes, not a single value")
    proof = list(proof)
    for i, h in enumerate(proof):
        _check_hash(f"proof hash #{i}", h)
    return proof


def _check_match(expected: bytes, calculated: bytes, what: str) -> None:
    if calculated != expected:
        raise RootMismatchError(expected=expected, calculated=calculated, what=what)
