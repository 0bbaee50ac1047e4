"""LogView: the log of manifests as a commit needs it, read without reading every manifest.

Built from the newest signed checkpoint (verified by the caller): the hash tiles and the
manifests after the last whole tile give the log's hashes, accepted only when they
reproduce the checkpoint's root (:class:`TileMismatch` otherwise: the caller reads every
manifest instead). Which batches hold an hour comes from the signed batch index
(:mod:`.batch_index`) plus the newest manifests; a manifest parsed below the checkpoint is
accepted only with an inclusion proof to its signed root. A log read in full (the
fallback, or a chain already in memory) is a view too (:meth:`LogView.of_chain`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence

from audit_pipeline.ledger import merkle
from audit_pipeline.ledger.batch_index import BatchRef, IndexFile, index_path, open_index
from audit_pipeline.ledger.checkpoint import Checkpoint
from audit_pipeline.ledger.errors import InvalidProofError, LedgerError
from audit_pipeline.ledger.keys import Keyring
from audit_pipeline.ledger.layout import manifest_path
from audit_pipeline.ledger.manifest import GENESIS_PREV, SignedManifest, parse_manifest
from audit_pipeline.ledger.storage import LedgerFiles
from audit_pipeline.ledger.tiles import TILE_HEIGHT, TILE_WIDTH, LogHashes


class TileMismatch(LedgerError):
    """The tiles (or a manifest below the checkpoint) do not give the signed root."""


class ChainError(LedgerError):
    """The manifests after the checkpoint are not a clean chain (unreadable, unlinked)."""


class LogView:
    """LogView is the log of ``size`` manifests: hashes, the newest manifest, the batches
    of an hour. Create with :func:`read_log` or :meth:`of_chain`."""

    def __init__(
        self,
        size: int,
        hashes: LogHashes,
        manifest: Callable[[int], SignedManifest],
        refs: list[BatchRef],
        origin: str | None,
        *,
        from_tiles: bool,
        unindexed: Sequence[int] = (),
        indexed: Sequence[IndexFile] = (),
    ) -> None:
        self.size = size
        self.hashes = hashes
        self._manifest = manifest
        self._plain = refs  # batches known from their manifests
        self._indexed = tuple(indexed)  # the rest, from verified index files
        self.origin = origin
        self.from_tiles = from_tiles
        self.unindexed = tuple(unindexed)  # index files absent or untrusted (their starts)

    @staticmethod
    def of_chain(chain: Sequence[SignedManifest]) -> LogView:
        chain = list(chain)
        leaves = [m.leaf_hash for m in chain]
        hashes = LogHashes(len(leaves), 0, _no_tile, lambda lo, hi: leaves[lo:hi])
        starts = range(0, len(chain) - TILE_WIDTH + 1, TILE_WIDTH)
        return LogView(
            len(chain),
            hashes,
            chain.__getitem__,
            [BatchRef.of(m) for m in chain],
            chain[0].manifest.origin if chain else None,
            from_tiles=False,
            unindexed=starts,
        )

    def manifest(self, seq: int) -> SignedManifest:
        return self._manifest(seq)

    @property
    def last(self) -> SignedManifest | None:
        return self._manifest(self.size - 1) if self.size else None

    def leaf_hashes(self) -> list[bytes]:
        return [self.hashes.leaf(i) for i in range(self.size)]

    @property
    def refs(self) -> list[BatchRef]:
        """Every batch's source, hour and kind, in sequence order."""
        return sorted([*self._plain, *(r for f in self._indexed for r in _refs(f))])

    def coverage_refs(self) -> list[BatchRef]:
        """The batches an incremental run's hour coverage is judged on: every one read from
        its manifest and, of each index file, those with a source's earliest and latest
        window and whole hour. Checking from a size at or past the indexed batches, hours
        are judged only from the newest earlier one on, so the verdicts are those of
        :attr:`refs`, without a ref for every batch of history."""
        return sorted([*self._plain, *(r for f in self._indexed for r in _refs(f, extremes=True))])

    def contradicted(self, manifests: Mapping[int, SignedManifest]) -> list[int]:
        """The sequence numbers of ``manifests`` (read from the log) that a verified index
        file describes otherwise (another source, hour or kind)."""
        files = {f.start: f for f in self._indexed}
        refs: dict[int, list[BatchRef]] = {}  # each file parsed once, when a manifest needs it
        out = []
        for seq, signed in manifests.items():
            start = seq - seq % TILE_WIDTH
            if start not in files:
                continue
            if start not in refs:
                refs[start] = _refs(files[start])
            if refs[start][seq - start] != BatchRef.of(signed):
                out.append(seq)
        return out

    def batches_of(self, window_start: int, source: str) -> list[SignedManifest]:
        """The batches of ``source`` for the hour, in sequence order (index files whose
        window range excludes the hour are not parsed)."""
        found = [
            r.seq
            for f in self._indexed
            if f.first <= window_start <= f.last
            for r in _refs(f)
            if r.window_start == window_start and r.source == source
        ]
        found += [
            r.seq for r in self._plain if r.window_start == window_start and r.source == source
        ]
        return [self._manifest(seq) for seq in sorted(found)]

    def windows(self, source: str) -> set[int]:
        return {r.window_start for r in self.refs if r.source == source}

    def references(self, path: str) -> bool:
        """Whether a committed manifest names ``path`` as its data file (the sequence
        number a lake file name starts with says which)."""
        number = path.rsplit("/", 1)[-1].split("-", 1)[0]
        if not number.isdigit() or int(number) >= self.size:
            return False
        data = self._manifest(int(number)).manifest.data
        return data is not None and data.path == path

    def appended(self, signed: SignedManifest) -> LogView:
        """The view after ``signed`` (manifest ``size``) was committed."""
        leaf = signed.leaf_hash
        old = self.hashes
        size = self.size + 1

        def leaf_hashes(lo: int, hi: int) -> list[bytes]:
            return [leaf if i == self.size else old.leaf(i) for i in range(lo, hi)]

        hashes = LogHashes(size, old.full, old.read_tile, leaf_hashes)
        hashes.adopt(old)

        def manifest(seq: int) -> SignedManifest:
            return signed if seq == self.size else self._manifest(seq)

        return LogView(
            size,
            hashes,
            manifest,
            [*self._plain, BatchRef.of(signed)],
            self.origin or signed.manifest.origin,
            from_tiles=self.from_tiles,
            unindexed=self.unindexed,
            indexed=self._indexed,
        )


def _no_tile(_rel: str) -> None:
    return None


def _refs(index: IndexFile, *, extremes: bool = False) -> list[BatchRef]:
    """The index file's refs (``extremes``: only those of each source's earliest and
    latest hour); a malformed file is a :class:`TileMismatch`."""
    try:
        return index.extremes() if extremes else index.refs()
    except ValueError as exc:
        raise TileMismatch(f"{index_path(index.start)} is malformed: {exc}") from exc


def _read_present(files: LedgerFiles, starts: range) -> dict[int, bytes]:
    """_read_present reads the index files of ``starts`` at once (an object store: a few
    GETs at a time, not one round trip after another); those absent are left out."""
    try:
        return dict(zip(starts, files.read_all([index_path(s) for s in starts]), strict=True))
    except (FileNotFoundError, LedgerError):
        found = {}
        for start in starts:
            try:
                found[start] = files.read(index_path(start))
            except (FileNotFoundError, LedgerError):
                continue
        return found


def read_log(
    files: LedgerFiles,
    size: int,
    checkpoint: Checkpoint | None,
    keyring: Callable[[], Keyring],
    *,
    use_tiles: bool = True,
) -> LogView:
    """read_log reads the log of ``size`` manifests that extends ``checkpoint`` (verified by
    the caller; None: no checkpoint yet, every manifest is read). TileMismatch when what
    was read does not give the checkpoint's root; ChainError when the manifests after the
    checkpoint are unreadable or unlinked."""
    raws: dict[int, bytes] = {}
    parsed: dict[int, SignedManifest] = {}
    signed_size = 0 if checkpoint is None else checkpoint.tree_size

    def raw(seq: int) -> bytes:
        found = raws.get(seq)
        if found is None:
            found = raws[seq] = files.read(manifest_path(seq))
        return found

    def raw_range(lo: int, hi: int) -> list[bytes]:
        """The manifests ``lo .. hi - 1`` (those not read yet in one read_all: an object
        store reads them concurrently)."""
        missing = [s for s in range(lo, hi) if s not in raws]
        raws.update(zip(missing, files.read_all([manifest_path(s) for s in missing]), strict=True))
        return [raws[s] for s in range(lo, hi)]

    def read_tile(rel: str) -> bytes | None:
        try:
            return files.read(rel)
        except (FileNotFoundError, LedgerError):
            return None

    full = signed_size // TILE_WIDTH * TILE_WIDTH if use_tiles else 0
    hashes = LogHashes(
        size,
        full,
        read_tile if use_tiles else _no_tile,
        lambda lo, hi: [merkle.leaf_hash(r) for r in raw_range(lo, hi)],
    )
    if checkpoint is not None and hashes.root(signed_size) != checkpoint.root_hash:
        raise TileMismatch(f"the log's hashes do not give the checkpoint of {signed_size}")

    def parse(seq: int) -> SignedManifest:
        try:
            return parse_manifest(raw(seq))
        except LedgerError as exc:
            raise ChainError(f"manifest {seq} is unreadable: {exc}") from exc

    def manifest(seq: int) -> SignedManifest:
        found = parsed.get(seq)
        if found is not None:
            return found
        signed = parse(seq)
        if seq < full:  # below the whole tiles: proven against the signed root
            assert checkpoint is not None
            try:
                merkle.verify_inclusion(
                    seq,
                    signed_size,
                    signed.leaf_hash,
                    hashes.inclusion_proof(seq, signed_size),
                    checkpoint.root_hash,
                )
            except InvalidProofError as exc:
                raise TileMismatch(f"manifest {seq} is not the one the log's root holds") from exc
        parsed[seq] = signed
        return signed

    def _proven_block(start: int) -> list[SignedManifest]:
        """The 256 manifests of a whole tile, proven at once: their subtree's root and its
        path to the signed root (one proof, not 256)."""
        assert checkpoint is not None
        block = [parse(s) for s in range(start, start + TILE_WIDTH)]
        node = merkle.root_hash([m.leaf_hash for m in block])
        path = hashes.inclusion_proof(start, signed_size)[TILE_HEIGHT:]
        index, width = start >> TILE_HEIGHT, -(-signed_size >> TILE_HEIGHT)
        try:
            root = merkle.root_from_inclusion_proof(index, width, node, path)
        except InvalidProofError as exc:
            raise TileMismatch(
                f"manifests {start}.. are not the ones the log's root holds"
            ) from exc
        if root != checkpoint.root_hash:
            raise TileMismatch(f"manifests {start}.. are not the ones the log's root holds")
        for seq, signed in enumerate(block, start):
            parsed[seq] = signed
        return block

    # The manifests after the whole tiles: read, parsed and linked one to the next.
    prev = GENESIS_PREV if full == 0 else hashlib.sha256(manifest(full - 1).raw).hexdigest()
    for seq in range(full, size):
        signed = parse(seq)
        if signed.sequence != seq or signed.manifest.prev_manifest_sha256 != prev:
            raise ChainError(f"manifest {seq} does not link to manifest {seq - 1}")
        parsed[seq] = signed
        prev = signed.sha256

    refs: list[BatchRef] = []
    unindexed = []
    indexed = []
    origin = checkpoint.origin if checkpoint is not None else None
    trusted_keys = keyring() if origin is not None and full else None
    stored = {} if trusted_keys is None else _read_present(files, range(0, full, TILE_WIDTH))
    for start in range(0, full, TILE_WIDTH):
        found = None
        if trusted_keys is not None and origin is not None and start in stored:
            try:
                found = open_index(stored[start], trusted_keys, origin, start)
            except LedgerError:
                found = None
        if found is None:
            unindexed.append(start)
            refs.extend(BatchRef.of(s) for s in _proven_block(start))
        else:
            indexed.append(found)
    refs.extend(BatchRef.of(parsed[s]) for s in range(full, size))
    if size:
        unindexed.extend(range(full, size - TILE_WIDTH + 1, TILE_WIDTH))
    if origin is None and size:
        origin = manifest(0).manifest.origin
    return LogView(
        size,
        hashes,
        manifest,
        refs,
        origin,
        from_tiles=use_tiles,
        unindexed=unindexed,
        indexed=indexed,
    )
