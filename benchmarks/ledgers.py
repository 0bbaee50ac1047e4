"""Ledgers of realistic shape for the verify, query and proof benchmarks, built fast.

``Ledger.commit_batch`` re-reads the whole chain on every commit (it lists every
checkpoint, re-hashes every manifest and recomputes the log root, twice), so a commit costs
O(batches already committed): building a year of hourly batches through it takes most of
the benchmark budget on its own (measured in the results). :class:`BulkLedgerWriter`
writes the same on-disk format with the chain kept in memory: the same normalizer, the same
Parquet writer, manifests signed with ``sign_manifest``, checkpoints with
``sign_checkpoint``. The benchmarks verify what it built with ``verify_ledger`` and extend
it with ``Ledger.commit_batch``, so a divergence from the real format fails loudly.

Events come from the seeded generator. For a year, one generated week is reused with fresh
ids and shifted times (so every hour keeps its weekday and time-of-day volume), which keeps
generation out of the build time without changing the shape of any row.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from audit_pipeline.lake import PARQUET_FORMAT, WindowNormalizer, write_batch_file
from audit_pipeline.ledger import merkle
from audit_pipeline.ledger.batch_index import BatchRef, index_path, sign_index
from audit_pipeline.ledger.checkpoint import Checkpoint, sign_checkpoint
from audit_pipeline.ledger.commit import file_digest
from audit_pipeline.ledger.keys import init_key, key_id
from audit_pipeline.ledger.layout import (
    CHECKPOINTS,
    LAKE,
    MANIFESTS,
    LocalStorage,
    batch_data_path,
    checkpoint_path,
    manifest_path,
)
from audit_pipeline.ledger.manifest import GENESIS_PREV, DataFile, Manifest, sign_manifest
from audit_pipeline.ledger.note import Signer
from audit_pipeline.ledger.tiles import (
    TILE_WIDTH,
    LogHashes,
    expected_tiles,
    tile_path,
    tiles_completed_at,
    tiles_for,
)
from audit_pipeline.slack.generator import HOUR, generate_hour

WEEK = 7 * 24 * HOUR
ORIGIN = "audit-pipeline.bench/generated"
KEY_NAME = "bench"
SEED = 2026


@dataclass
class BuiltLedger:
    """A data directory the benchmarks read: where, what it holds, how to extend it."""

    data_dir: Path
    key_path: Path
    start: int
    hours: int
    events: int
    seconds: float
    checkpoints: dict[int, bytes] = field(default_factory=dict)

    @property
    def end(self) -> int:
        return self.start + self.hours * HOUR


class BulkLedgerWriter:
    """Appends one batch per hour in the ledger's format, keeping the chain in memory."""

    def __init__(self, data_dir: Path, signer: Signer, *, origin: str = ORIGIN) -> None:
        self.storage = LocalStorage(data_dir)
        self.storage.ensure_dirs()
        self.signer = signer
        self.origin = origin
        self.key_id = key_id(signer.key_hash)
        self.leaves: list[bytes] = []
        self.refs: list[BatchRef] = []
        self.prev = GENESIS_PREV
        self.created = int(time.time())

    @property
    def size(self) -> int:
        return len(self.leaves)

    def append(self, window_start: int, table: pa.Table, source: dict[str, Any]) -> None:
        seq = self.size
        kind = "hour" if table.num_rows else "empty"
        data = None
        times: list[int] = []
        leaf_hashes: list[bytes] = []
        if table.num_rows:
            rel = batch_data_path(window_start, seq, kind, PARQUET_FORMAT.suffix)
            target = self.storage.path(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            staged = target.with_name(f".{target.name}.tmp")
            write_batch_file(table, staged)
            os.chmod(staged, 0o444)
            os.replace(staged, target)
            size, sha256 = file_digest(target)
            data = DataFile(path=rel, size=size, sha256=sha256, rows=table.num_rows)
            seconds = table.column("date_create").cast(pa.int64()).to_pylist()
            times = [t // 1000 for t in seconds]
            leaf_hashes = [merkle.leaf_hash(raw) for raw in _raw_bytes(table)]
        manifest = Manifest(
            origin=self.origin,
            sequence=seq,
            prev_manifest_sha256=self.prev,
            window_start=window_start,
            window_end=window_start + HOUR,
            kind=kind,
            data=data,
            event_count=len(times),
            min_date_create=min(times, default=None),
            max_date_create=max(times, default=None),
            events_root=merkle.root_hash(leaf_hashes).hex(),
            source=source,
            run_id="benchmark-build",
            created=self.created,
            key_name=self.signer.name,
            key_id=self.key_id,
        )
        signed = sign_manifest(manifest, self.signer)
        path = self.storage.path(manifest_path(seq))
        path.write_bytes(signed.raw)
        os.chmod(path, 0o444)
        self.prev = signed.sha256
        self.leaves.append(signed.leaf_hash)
        self.refs.append(BatchRef.of(signed))
        self._write_tiles()

    def _write_tiles(self) -> None:
        """The hash tiles and batch index a commit at this size writes (``ledger/tiles.py``,
        ``ledger/batch_index.py``)."""
        leaves, full = self.leaves, self.size // TILE_WIDTH * TILE_WIDTH
        hashes = LogHashes(self.size, full, lambda _rel: None, lambda lo, hi: leaves[lo:hi])
        for rel, data in expected_tiles(hashes, tiles_completed_at(self.size)).items():
            self.storage.create_exclusive(rel, data, mode=0o444)
        if self.size % TILE_WIDTH == 0:
            start = self.size - TILE_WIDTH
            index = sign_index(self.signer, self.origin, self.size, self.created, self.refs[start:])
            self.storage.create_exclusive(index_path(start), index, mode=0o444)

    def checkpoint(self) -> bytes:
        """checkpoint signs and stores the checkpoint of the current size; returns it."""
        cp = Checkpoint(self.origin, self.size, merkle.root_hash(self.leaves))
        signed = sign_checkpoint(cp, self.signer)
        path = self.storage.path(checkpoint_path(self.size))
        path.write_bytes(signed)
        os.chmod(path, 0o444)
        return signed


def _raw_bytes(table: pa.Table) -> list[bytes]:
    return table.column("raw_json").cast(pa.binary()).to_pylist()


def _week_pool(start: int, events_per_hour: int) -> list[list[dict]]:
    """One generated week from ``start`` (a Monday 00:00 keeps weekdays aligned)."""
    return [generate_hour(SEED, start + h * HOUR, events_per_hour) for h in range(7 * 24)]


def hour_entries(pool: list[list[dict]], start: int, hour_index: int) -> Iterator[dict]:
    """The entries of hour ``hour_index``: the pool's hour of the same weekday and time,
    shifted by whole weeks, with ids unique to that week."""
    week, in_week = divmod(hour_index, 7 * 24)
    shift = week * WEEK
    for entry in pool[in_week]:
        if week:
            entry = dict(entry)
            entry["id"] = f"w{week:03d}-{entry['id']}"
            entry["date_create"] += shift
        yield entry


def build_ledger(
    data_dir: Path,
    *,
    start: int,
    hours: int,
    events_per_hour: int,
    checkpoint_sizes: tuple[int, ...] = (),
    progress: Callable[[str], None] | None = None,
) -> BuiltLedger:
    """build_ledger writes ``hours`` hourly batches from ``start`` into a new data directory.

    A checkpoint is stored at each of ``checkpoint_sizes`` and at the final size.
    """
    started = time.perf_counter()
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    key_path = data_dir.parent / f"{data_dir.name}-signing-key"
    key_path.unlink(missing_ok=True)
    signer, _, _ = init_key(data_dir, key_path, name=KEY_NAME, now=start - 86_400)
    writer = BulkLedgerWriter(data_dir, signer)
    pool = _week_pool(start, events_per_hour)
    built = BuiltLedger(data_dir, key_path, start, hours, 0, 0.0)
    wanted = set(checkpoint_sizes)
    for index in range(hours):
        window = start + index * HOUR
        normalizer = WindowNormalizer(window, window + HOUR)
        normalizer.add(hour_entries(pool, start, index))
        table = normalizer.finish().table
        built.events += table.num_rows
        writer.append(window, table, {"generator_seed": SEED, "hour_index": index})
        if writer.size in wanted:
            built.checkpoints[writer.size] = writer.checkpoint()
        if progress and (index + 1) % 1000 == 0:
            progress(f"built {index + 1}/{hours} hours, {built.events:,} events")
    built.checkpoints[writer.size] = writer.checkpoint()
    built.seconds = time.perf_counter() - started
    return built


def prefix_copy(source: BuiltLedger, data_dir: Path, hours: int) -> BuiltLedger:
    """prefix_copy is the ledger as it was after its first ``hours`` batches (files are
    write-once, so they are hard-linked; the keyring is copied)."""
    if hours not in source.checkpoints:
        raise ValueError(f"no checkpoint of size {hours} was stored")
    if data_dir.exists():
        shutil.rmtree(data_dir)
    src = LocalStorage(source.data_dir)
    dst = LocalStorage(data_dir)
    dst.ensure_dirs()
    shutil.copytree(source.data_dir / "ledger" / "keys", data_dir / "ledger" / "keys",
                    dirs_exist_ok=True)  # fmt: skip
    events = 0
    from audit_pipeline.ledger.manifest import parse_manifest

    for seq in range(hours):
        rel = manifest_path(seq)
        signed = parse_manifest(src.read(rel))
        os.link(src.path(rel), dst.path(rel))
        if signed.manifest.data is not None:
            data_rel = signed.manifest.data.path
            dst.path(data_rel).parent.mkdir(parents=True, exist_ok=True)
            os.link(src.path(data_rel), dst.path(data_rel))
            events += signed.manifest.event_count
    cp_rel = checkpoint_path(hours)
    os.link(src.path(cp_rel), dst.path(cp_rel))
    whole = hours // TILE_WIDTH * TILE_WIDTH
    rels = [tile_path(*t) for t in tiles_for(whole)]
    for rel in [*rels, *(index_path(s) for s in range(0, whole, TILE_WIDTH))]:
        dst.path(rel).parent.mkdir(parents=True, exist_ok=True)
        os.link(src.path(rel), dst.path(rel))
    return BuiltLedger(
        data_dir,
        source.key_path,
        source.start,
        hours,
        events,
        0.0,
        {hours: source.checkpoints[hours]},
    )


def ledger_files(data_dir: Path) -> list[Path]:
    """Every file verification reads: data files, manifests and checkpoints."""
    files: list[Path] = []
    for sub in (LAKE, MANIFESTS, CHECKPOINTS):
        root = data_dir / sub
        if root.is_dir():
            files.extend(p for p in sorted(root.rglob("*")) if p.is_file())
    return files


def sha256_floor(files: list[Path]) -> int:
    """The floor: hashlib.sha256 over every byte of ``files``; returns the bytes hashed."""
    total = 0
    for path in files:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
                total += len(chunk)
    return total
