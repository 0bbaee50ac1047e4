"""Hash tiles of the log of manifests (C2SP ``tlog-tiles`` layout): the log's hashes kept
on disk so that a commit, an incremental verification and a proof read what is new or
what a proof needs, not every manifest.

Layout (under ``ledger/tile/``, each file write-once, mode 0444, concatenated 32-byte
hashes)::

    ledger/tile/<L>/<N>          a full tile: 256 hashes
    ledger/tile/<L>/<N>.p/<W>    a partial tile: its first W hashes (levels >= 1 only)

``<N>`` is the tile index in groups of three digits, all but the last prefixed with
``x`` (``1234067`` is ``x001/x234/067``), as in C2SP. A level-0 tile holds the leaf hashes
``leaf_hash(manifest bytes)`` of 256 consecutive batches; entry ``j`` of a level-``L``
tile is the root of leaves ``[j*256^L, (j+1)*256^L)``. Level-0 tiles are written only
when full (the newest batches, fewer than 256, are hashed from their manifests); a tile
of a higher level is written, full or partial, each time a tile below it fills up, so
every width a reader at some tree size needs exists.

Nothing here is trusted on its own: :class:`LogHashes` gives the log's root at a size,
and the caller accepts the tiles only when that root equals a verified signed
checkpoint's; otherwise it falls back to the manifests. A tile that is absent is
computed from the level below it (level 0: from the manifests), so a ledger written
before tiles existed reads as before, and its next commit writes the tiles it lacks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

from audit_pipeline.ledger import merkle
from audit_pipeline.ledger.errors import LedgerError
from audit_pipeline.ledger.layout import manifest_path
from audit_pipeline.ledger.storage import LedgerFiles, ObjectExistsError

TILES = "ledger/tile"
TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
HASH = merkle.HASH_SIZE

ReadTile = Callable[[str], "bytes | None"]
LeafHashes = Callable[[int, int], list[bytes]]


_TILE_PATH = re.compile(r"^ledger/tile/([0-9]+)/((?:x[0-9]{3}/)*[0-9]{3})(?:\.p/([0-9]+))?$")


def parse_tile_path(rel: str) -> tuple[int, int, int] | None:
    """parse_tile_path reads (level, index, width) from a tile's path (None: not one, or
    not spelled canonically)."""
    found = _TILE_PATH.match(rel)
    if found is None:
        return None
    level, index = int(found[1]), int(found[2].replace("x", "").replace("/", ""))
    width = int(found[3]) if found[3] else TILE_WIDTH
    if not 1 <= width <= TILE_WIDTH or tile_path(level, index, width) != rel:
        return None
    return level, index, width


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """tile_path is the C2SP path of a tile (``width`` < 256: a partial one)."""
    if level < 0 or index < 0 or not 1 <= width <= TILE_WIDTH:
        raise ValueError(f"no tile at level {level}, index {index}, width {width}")
    digits = f"{index:03d}"
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    name = "/".join([*(f"x{g}" for g in groups[:-1]), groups[-1]])
    partial = "" if width == TILE_WIDTH else f".p/{width}"
    return f"{TILES}/{level}/{name}{partial}"


def entries_at(level: int, full_leaves: int) -> int:
    """entries_at is how many hashes level ``level`` holds over ``full_leaves`` leaves."""
    return full_leaves >> (TILE_HEIGHT * level)


def tiles_for(full_leaves: int) -> list[tuple[int, int, int]]:
    """tiles_for lists (level, index, width) of every tile a reader of ``full_leaves``
    leaves (a multiple of 256) uses: the full level-0 tiles, and at each higher level the
    full tiles and the partial one."""
    out: list[tuple[int, int, int]] = []
    count = entries_at(0, full_leaves)
    out.extend((0, i, TILE_WIDTH) for i in range(count // TILE_WIDTH))
    level = 1
    while (count := entries_at(level, full_leaves)) > 0:
        out.extend((level, i, TILE_WIDTH) for i in range(count // TILE_WIDTH))
        if count % TILE_WIDTH:
            out.append((level, count // TILE_WIDTH, count % TILE_WIDTH))
        level += 1
    return out


def tiles_completed_at(size: int) -> list[tuple[int, int, int]]:
    """tiles_completed_at lists the tiles whose last entry appears when the log reaches
    ``size``: what a commit of batch ``size - 1`` writes (nothing unless it fills a
    level-0 tile)."""
    out: list[tuple[int, int, int]] = []
    if size == 0 or size % TILE_WIDTH:
        return out
    out.append((0, size // TILE_WIDTH - 1, TILE_WIDTH))
    level = 1
    while (count := entries_at(level, size)) > 0:
        width = (count - 1) % TILE_WIDTH + 1
        out.append((level, (count - 1) // TILE_WIDTH, width))
        if width != TILE_WIDTH:
            break
        level += 1
    return out


class LogHashes:
    """LogHashes answers hashes of the log of ``size`` leaves from tiles and leaf hashes.

    Leaves ``[0, full)`` (``full`` a multiple of 256, at most ``size``) are read from
    tiles through ``read_tile`` (None: absent); every other leaf, and the leaves of an
    absent level-0 tile, come from ``leaf_hashes(lo, hi)`` (hashing the manifests).
    Tiles that were absent or malformed are listed in :attr:`computed` (what a commit
    may write). Nothing read is trusted until :meth:`root` matches a signed root.
    """

    def __init__(self, size: int, full: int, read_tile: ReadTile, leaf_hashes: LeafHashes) -> None:
        if full % TILE_WIDTH or not 0 <= full <= size:
            raise ValueError(f"tiles cover whole tiles within the log, not {full} of {size}")
        self.size = size
        self.full = full
        self.read_tile = read_tile
        self._leaf_hashes = leaf_hashes
        self._tiles: dict[tuple[int, int], list[bytes]] = {}
        self._tail: list[bytes] | None = None
        self.computed: dict[str, bytes] = {}
        self.tiles_read = 0

    # -- entries ---------------------------------------------------------------------------

    def _tile(self, level: int, index: int) -> list[bytes]:
        cached = self._tiles.get((level, index))
        if cached is not None:
            return cached
        count = entries_at(level, self.full)
        width = min(TILE_WIDTH, count - index * TILE_WIDTH)
        assert width > 0, "tiles: bad math in _tile"
        path = tile_path(level, index, width)
        raw = self.read_tile(path)
        if raw is not None and len(raw) == width * HASH:
            self.tiles_read += 1
            hashes = [raw[i : i + HASH] for i in range(0, len(raw), HASH)]
        else:
            first = index * TILE_WIDTH
            if level == 0:
                hashes = self._leaf_hashes(first, first + width)
            else:
                hashes = [self._entry_root(level - 1, j) for j in range(first, first + width)]
            self.computed[path] = b"".join(hashes)
        self._tiles[level, index] = hashes
        return hashes

    def _entry_root(self, level: int, index: int) -> bytes:
        """The root of the 256 level-``level`` entries under entry ``index`` one level up."""
        return merkle.root_hash(self._tile(level, index))

    def _tail_leaves(self) -> list[bytes]:
        if self._tail is None:
            self._tail = self._leaf_hashes(self.full, self.size) if self.size > self.full else []
        return self._tail

    def leaf(self, index: int) -> bytes:
        if index >= self.full:
            return self._tail_leaves()[index - self.full]
        return self._tile(0, index // TILE_WIDTH)[index % TILE_WIDTH]

    def _perfect(self, lo: int, height: int) -> bytes:
        """The root of the perfect subtree of leaves ``[lo, lo + 2**height)``."""
        if lo >= self.full:
            start = lo - self.full
            return merkle.root_hash(self._tail_leaves()[start : start + (1 << height)])
        if lo + (1 << height) > self.full:  # across the last tile: its two halves
            half = height - 1
            return merkle.node_hash(self._perfect(lo, half), self._perfect(lo + (1 << half), half))
        level = height // TILE_HEIGHT
        first = lo >> (TILE_HEIGHT * level)
        count = 1 << (height - TILE_HEIGHT * level)
        offset = first % TILE_WIDTH
        return merkle.root_hash(self._tile(level, first // TILE_WIDTH)[offset : offset + count])

    def subtree_root(self, lo: int, hi: int) -> bytes:
        """subtree_root is MTH(D[lo:hi]) for a range an RFC 6962 proof or root uses (``lo``
        a multiple of a power of two at least ``hi - lo``)."""
        if not 0 <= lo < hi <= self.size:
            raise ValueError(f"no subtree [{lo}, {hi}) in a log of {self.size}")
        parts = []
        while lo < hi:
            height = (hi - lo).bit_length() - 1
            while lo % (1 << height):
                height -= 1
            parts.append(self._perfect(lo, height))
            lo += 1 << height
        root = parts[-1]
        for left in reversed(parts[:-1]):
            root = merkle.node_hash(left, root)
        return root

    # -- the log ---------------------------------------------------------------------------

    def root(self, size: int | None = None) -> bytes:
        """root is the log's RFC 6962 root at ``size`` (default: all of it)."""
        size = self.size if size is None else size
        if size == 0:
            return merkle.empty_root()
        return self.subtree_root(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return merkle.inclusion_path(index, self.size if size is None else size, self.subtree_root)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        size2 = self.size if size2 is None else size2
        return merkle.consistency_path(size1, size2, self.subtree_root)

    def tile_bytes(self, level: int, index: int, width: int) -> bytes:
        """tile_bytes is what the tile (level, index, width) holds for this log."""
        span = 1 << (TILE_HEIGHT * level)
        first = index * TILE_WIDTH
        if (first + width) * span <= self.full:
            return b"".join(self._tile(level, index)[:width])
        return b"".join(
            self.subtree_root(j * span, (j + 1) * span) for j in range(first, first + width)
        )

    def adopt(self, other: LogHashes) -> None:
        """adopt reuses the tiles ``other`` (the same log, before an append) has read."""
        if other.full == self.full:
            self._tiles.update(other._tiles)


def expected_tiles(hashes: LogHashes, tiles: Iterable[tuple[int, int, int]]) -> dict[str, bytes]:
    """expected_tiles maps each tile's path to the bytes it must hold in this log."""
    return {tile_path(*t): hashes.tile_bytes(*t) for t in tiles}


def stored_log(files: LedgerFiles, size: int, *, use_tiles: bool = True) -> LogHashes:
    """stored_log reads the log of ``size`` leaves from a data directory: its whole tiles
    and the manifests after them (``use_tiles`` False: every manifest, the fallback when
    the tiles do not reproduce a signed root). FileNotFoundError names a missing manifest."""

    def read_tile(rel: str) -> bytes | None:
        try:
            return files.read(rel)
        except (FileNotFoundError, LedgerError):
            return None

    def leaf_hashes(lo: int, hi: int) -> list[bytes]:
        return [merkle.leaf_hash(files.read(manifest_path(seq))) for seq in range(lo, hi)]

    full = size // TILE_WIDTH * TILE_WIDTH if use_tiles else 0
    return LogHashes(size, full, read_tile if use_tiles else _absent, leaf_hashes)


def _absent(_rel: str) -> None:
    return None


def missing_tiles(files: LedgerFiles, hashes: LogHashes) -> dict[str, bytes]:
    """missing_tiles maps each tile a reader of this log would use that is not stored yet
    to the bytes it must hold (what a commit writes: the new ones, and those of a ledger
    written before tiles existed)."""
    return {
        path: hashes.tile_bytes(*tile)
        for tile in tiles_for(hashes.size // TILE_WIDTH * TILE_WIDTH)
        if not files.exists(path := tile_path(*tile))
    }


def publish_tiles(
    create: Callable[[str, bytes], None], files: LedgerFiles, tiles: Mapping[str, bytes]
) -> list[str]:
    """publish_tiles creates each tile once; one already there with the same bytes (a lost
    race, a retried commit) is fine. Returns the paths stored with other bytes."""
    conflicts = []
    for path, data in tiles.items():
        try:
            create(path, data)
        except (FileExistsError, ObjectExistsError):
            try:
                same = files.read(path) == data
            except (FileNotFoundError, LedgerError):
                same = False
            if not same:
                conflicts.append(path)
    return conflicts
