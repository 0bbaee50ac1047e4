"""Hash tiles: C2SP paths, and the root and proofs they give equal merkle's over the leaves."""

from __future__ import annotations

import hashlib
import random

import pytest

from audit_pipeline.ledger import merkle
from audit_pipeline.ledger.tiles import (
    TILE_WIDTH,
    LogHashes,
    expected_tiles,
    tile_path,
    tiles_completed_at,
    tiles_for,
)


def _leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(hashlib.sha256(str(i).encode()).digest()) for i in range(n)]


def _stored(leaves: list[bytes], full: int) -> dict[str, bytes]:
    """Every tile a writer leaves behind over ``full`` leaves, built from leaf hashes."""
    hashes = LogHashes(full, full, lambda _p: None, lambda lo, hi: leaves[lo:hi])
    out: dict[str, bytes] = {}
    for size in range(TILE_WIDTH, full + 1, TILE_WIDTH):
        grown = LogHashes(size, size, out.get, lambda lo, hi: leaves[lo:hi])
        out.update(expected_tiles(grown, tiles_completed_at(size)))
    assert set(expected_tiles(hashes, tiles_for(full))) <= set(out)
    return out


def test_tile_paths_follow_c2sp():
    assert tile_path(0, 0) == "ledger/tile/0/000"
    assert tile_path(0, 1234067) == "ledger/tile/0/x001/x234/067"
    assert tile_path(1, 1234067, 7) == "ledger/tile/1/x001/x234/067.p/7"
    assert tile_path(2, 999) == "ledger/tile/2/999"
    assert tile_path(0, 1000) == "ledger/tile/0/x001/000"
    with pytest.raises(ValueError):
        tile_path(0, 0, 0)
    with pytest.raises(ValueError):
        tile_path(0, 0, 257)


def test_tiles_completed_at_a_boundary():
    assert tiles_completed_at(255) == []
    assert tiles_completed_at(256) == [(0, 0, 256), (1, 0, 1)]
    assert tiles_completed_at(512) == [(0, 1, 256), (1, 0, 2)]
    assert tiles_completed_at(256 * 256) == [(0, 255, 256), (1, 0, 256), (2, 0, 1)]


@pytest.mark.parametrize("size", [0, 1, 2, 7, 255, 256, 257, 511, 512, 513, 1000, 2049, 65_800])
def test_root_and_proofs_equal_merkle(size):
    leaves = _leaves(size)
    full = size // TILE_WIDTH * TILE_WIDTH
    stored = _stored(leaves, full)
    reads: list[int] = []

    def leaf_hashes(lo: int, hi: int) -> list[bytes]:
        reads.append(hi - lo)
        return leaves[lo:hi]

    hashes = LogHashes(size, full, stored.get, leaf_hashes)
    assert hashes.root() == merkle.root_hash(leaves)
    assert hashes.computed == {}
    assert sum(reads) == size - full  # only the tail came from the manifests
    rng = random.Random(size)
    for index in {0, size - 1, *(rng.randrange(size) for _ in range(5))} if size else ():
        for at in {size, rng.randint(index + 1, size)}:
            assert hashes.inclusion_proof(index, at) == merkle.prove_inclusion(index, at, leaves)
    for size1 in {
        0,
        min(1, size),
        size // 2,
        full,
        size,
        *(rng.randint(0, size) for _ in range(4)),
    }:
        assert hashes.consistency_proof(size1) == merkle.prove_consistency(size1, size, leaves)
        assert hashes.root(size1) == merkle.root_hash(leaves[:size1])


def test_absent_or_damaged_tiles_are_computed_and_listed():
    size = 3 * 256 + 5
    leaves = _leaves(size)
    stored = _stored(leaves, 768)
    del stored[tile_path(0, 1)]
    stored[tile_path(1, 0, 3)] = b"short"
    hashes = LogHashes(size, 768, stored.get, lambda lo, hi: leaves[lo:hi])
    assert hashes.root() == merkle.root_hash(leaves)
    assert set(hashes.computed) == {tile_path(0, 1), tile_path(1, 0, 3)}
    assert hashes.computed[tile_path(0, 1)] == b"".join(leaves[256:512])


def test_an_altered_tile_gives_proofs_that_fail_against_the_signed_root():
    """A level-0 tile the root at 600 does not use (level 1 holds its root) still cannot
    pass: a proof through it does not verify, and neither does a root inside it."""
    size = 600
    leaves = _leaves(size)
    stored = _stored(leaves, 512)
    raw = bytearray(stored[tile_path(0, 0)])
    raw[40] ^= 1
    stored[tile_path(0, 0)] = bytes(raw)
    hashes = LogHashes(size, 512, stored.get, lambda lo, hi: leaves[lo:hi])
    root = merkle.root_hash(leaves)
    assert hashes.root() == root
    assert hashes.root(100) != merkle.root_hash(leaves[:100])
    proof = hashes.inclusion_proof(5)
    with pytest.raises(merkle.RootMismatchError):
        merkle.verify_inclusion(5, size, leaves[5], proof, root)
    stored[tile_path(1, 0, 2)] = bytes(64)
    assert LogHashes(size, 512, stored.get, lambda lo, hi: leaves[lo:hi]).root() != root


@pytest.mark.parametrize("size", [256, 300, 513, 1000, 2049, 65_800])
def test_a_whole_tile_is_proven_by_its_root_and_the_path_above_it(size):
    """log_view proves 256 manifests with one path: the leaf path without its first 8."""
    leaves = _leaves(size)
    root = merkle.root_hash(leaves)
    for start in range(0, size - 255, 256 * max(1, size // 256 // 7)):
        node = merkle.root_hash(leaves[start : start + 256])
        path = merkle.prove_inclusion(start, size, leaves)[8:]
        assert merkle.root_from_inclusion_proof(start >> 8, -(-size >> 8), node, path) == root
