"""What an incremental verification of an object store lists: what follows its trusted
checkpoint, so that its cost follows the new batches, not the history.

A full verification lists every version under the audited prefixes. An incremental one
(``--incremental`` with a trusted checkpoint of size ``T``, when the verifier read only
what follows it) lists, each with a prefix and S3's KeyMarker:

- the manifests from ``T`` on, and from the oldest one the verifier read (the one before
  ``T``, the batches since the last batch index file, earlier batches of the hours
  checked), and the checkpoints likewise (names are zero-padded numbers, so "after the
  marker" is "newer");
- the intents (``ledger/staged/``) of batches from ``T`` on;
- the lake partitions (hours) of the batches from ``T`` on, whole (a stray object there is
  named as unreferenced);
- the hash tiles and batch index files past ``T`` (a tile or an index file of the first
  ``T`` batches was complete at ``T``);
- every other object the verifier read (tiles and index files of the first ``T`` batches
  that a proof of the log used), one listing of its key, or of its folder for several.

Every object listed is audited (pinned version, retention, checksum); every object the
verifier read or a new manifest references must be listed. What it trusts: the objects of
the first ``T`` batches it did not read, and anything that sorts before those markers or
sits in another hour, are as the last full verification found them. Their locked versions
cannot change through S3, but a version added over one of them, a delete marker, a
rewrite behind S3's back or a stray object in an old hour is found by the next full
verification, not this one.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from audit_pipeline.ledger.batch_index import INDEX, index_path
from audit_pipeline.ledger.layout import (
    CHECKPOINT_SUFFIX,
    CHECKPOINTS,
    MANIFEST_SUFFIX,
    MANIFESTS,
    batch_data_dir,
    checkpoint_path,
    manifest_path,
    parse_numbered_name,
)
from audit_pipeline.ledger.manifest import SignedManifest, source_name
from audit_pipeline.ledger.object_ledger import STAGED
from audit_pipeline.ledger.storage import ObjectStore, ObjectVersion
from audit_pipeline.ledger.tiles import TILE_HEIGHT, TILE_WIDTH, TILES, parse_tile_path, tile_path
from audit_pipeline.ledger.version_audit import AUDIT_JOBS


def versions_after(
    store: ObjectStore,
    trusted_size: int,
    size: int,
    new: Iterable[SignedManifest],
    read: Iterable[str],
    audited: tuple[str, ...],
) -> list[ObjectVersion]:
    """versions_after lists the versions an incremental audit from ``trusted_size`` covers
    (see above): ``new`` are the manifests from ``trusted_size`` on, ``read`` the keys the
    verifier read, ``audited`` the prefixes a key must be under to be audited at all."""
    read = set(read)
    manifests = min(_numbers(read, MANIFESTS, MANIFEST_SUFFIX), default=trusted_size)
    checkpoints = min(_numbers(read, CHECKPOINTS, CHECKPOINT_SUFFIX), default=trusted_size + 1)
    checkpoints = min(checkpoints, trusted_size + 1)
    listings: list[tuple[str, str | None]] = [
        (f"{MANIFESTS}/", manifest_path(manifests - 1) if manifests > 0 else None),
        (f"{CHECKPOINTS}/", checkpoint_path(checkpoints - 1) if checkpoints > 0 else None),
        (f"{STAGED}/", f"{STAGED}/{trusted_size:08d}"),
        (f"{INDEX}/", _last_old_index(trusted_size)),
    ]
    listings += _tile_listings(trusted_size, size)
    hours = {batch_data_dir(m.manifest.window_start, source_name(m.manifest)) for m in new}
    listings += [(f"{hour}/", None) for hour in sorted(hours)]
    with ThreadPoolExecutor(max_workers=AUDIT_JOBS) as pool:
        found = [v for part in pool.map(lambda a: store.list_versions(*a), listings) for v in part]
        found = [v for v in found if _past(v.key, trusted_size) or v.key in read]
        seen = {v.key for v in found}
        single = sorted(k for k in read if k not in seen and k.startswith(audited))
        for part in pool.map(lambda keys: _versions_of(store, keys), _by_folder(single)):
            found += part
    return found


def _by_folder(keys: list[str]) -> list[list[str]]:
    """_by_folder groups the keys listed one by one by their folder (the index files and
    level-0 tiles a proof used: one listing of their folder, not one per key)."""
    folders: dict[str, list[str]] = {}
    for key in keys:
        folders.setdefault(key.rpartition("/")[0], []).append(key)
    return list(folders.values())


def _numbers(keys: Iterable[str], folder: str, suffix: str) -> list[int]:
    """_numbers are the numbers of the canonically named keys of ``folder`` among ``keys``."""
    found = []
    for key in keys:
        parent, _, name = key.rpartition("/")
        number = parse_numbered_name(name, suffix) if parent == folder else None
        if number is not None:
            found.append(number)
    return found


def _past(key: str, trusted_size: int) -> bool:
    """_past keeps, of a tile listing, the tiles that cover more than the trusted batches."""
    tile = parse_tile_path(key)
    if tile is None:
        return True
    level, index, width = tile
    return (index * TILE_WIDTH + width) << (TILE_HEIGHT * level) > trusted_size


def _tile_listings(trusted_size: int, size: int) -> list[tuple[str, str | None]]:
    """_tile_listings lists each level of tiles from the tile that holds the entry after
    the trusted batches on (partial tiles of it included)."""
    out: list[tuple[str, str | None]] = []
    level = 0
    while level == 0 or size >> (TILE_HEIGHT * level):
        first = (trusted_size >> (TILE_HEIGHT * level)) // TILE_WIDTH
        out.append((f"{TILES}/{level}/", tile_path(level, first - 1) if first else None))
        level += 1
    return out


def _last_old_index(trusted_size: int) -> str | None:
    complete = trusted_size // TILE_WIDTH
    return index_path((complete - 1) * TILE_WIDTH) if complete else None


def _versions_of(store: ObjectStore, keys: list[str]) -> list[ObjectVersion]:
    """_versions_of lists the versions of ``keys`` (of one folder): by the key's own
    prefix for one, else by the folder's (one file per 256 batches: a page per 256,000)."""
    prefix = keys[0] if len(keys) == 1 else keys[0].rpartition("/")[0] + "/"
    wanted = set(keys)
    return [v for v in store.list_versions(prefix) if v.key in wanted]
