"""Checkpoint checks of a verification: a checkpoint held elsewhere must be extended by
today's log (RFC 6962 consistency), and every stored checkpoint must verify and commit to
the log's root at its size."""

from __future__ import annotations

from collections.abc import Mapping

from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ledger import merkle
from audit_pipeline.ledger.batch_index import INDEX, INDEX_SUFFIX, BatchRef, open_index
from audit_pipeline.ledger.checkpoint import Checkpoint, open_checkpoint
from audit_pipeline.ledger.errors import (
    InvalidProofError,
    InvalidSignatureError,
    LedgerError,
    MalformedError,
    UnknownKeyError,
)
from audit_pipeline.ledger.findings import KEY_FINDING_CODES, FindingCode, merkle_b64
from audit_pipeline.ledger.keys import KeyStatus, key_id
from audit_pipeline.ledger.layout import (
    CHECKPOINT_SUFFIX,
    CHECKPOINTS,
    NotRegularFileError,
    parse_numbered_name,
)
from audit_pipeline.ledger.manifest import SignedManifest
from audit_pipeline.ledger.merkle import PrefixRoots
from audit_pipeline.ledger.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    TILES,
    LogHashes,
    parse_tile_path,
)
from audit_pipeline.ledger.verify_context import VerifyContext
from audit_pipeline.text import plural


class CheckpointChecks(VerifyContext):
    """Checkpoints: a trusted one held elsewhere (consistency), and every stored one."""

    def _trusted(
        self,
        raw: bytes | None,
        origin: str | None,
        size: int,
        contiguous: int,
        roots: PrefixRoots,
        leaf_hashes: list[bytes],
    ) -> Checkpoint | None:
        if raw is None:
            return None
        where = "trusted checkpoint"
        try:
            cp, _ = open_checkpoint(raw, self.keyring.verifiers())
        except (UnknownKeyError, InvalidSignatureError) as exc:
            # Fail closed: the keyring may have been swapped for one that signs a new history.
            code = (
                FindingCode.UNKNOWN_KEY
                if isinstance(exc, UnknownKeyError)
                else FindingCode.BAD_SIGNATURE
            )
            self.add(
                code,
                where,
                f"the checkpoint held elsewhere does not verify with {self.keyring.source}: {exc}",
            )
            return None
        except LedgerError as exc:
            raise ConfigurationError(f"the trusted checkpoint is not a checkpoint: {exc}") from exc
        if origin is not None and cp.origin != origin:
            self.add(
                FindingCode.ORIGIN_MISMATCH, where, "checkpoint of another log", origin, cp.origin
            )
            return None
        if cp.tree_size > size:
            self.add(
                FindingCode.TAIL_TRUNCATED,
                where,
                f"the log has {plural(size, 'manifest')} but a checkpoint held elsewhere commits "
                f"to {cp.tree_size}: the newest {plural(cp.tree_size - size, 'batch')} removed "
                "or the log "
                "rolled back",
                cp.tree_size,
                size,
            )
            return None
        if cp.tree_size > contiguous:
            self.add(
                FindingCode.CONSISTENCY_FAILURE,
                where,
                "manifests it covers are missing; consistency cannot be proven",
            )
            return None
        self.checked["consistency_proofs"] += 1
        if cp.tree_size == 0:
            return cp
        current = roots.root(contiguous)
        try:
            proof = merkle.prove_consistency(cp.tree_size, contiguous, leaf_hashes)
            merkle.verify_consistency(cp.tree_size, contiguous, proof, cp.root_hash, current)
        except InvalidProofError as exc:
            self.add(
                FindingCode.CONSISTENCY_FAILURE,
                where,
                f"today's log does not extend the trusted checkpoint of size {cp.tree_size} "
                f"(history rewritten or forked): {exc}",
                merkle_b64(cp.root_hash),
                merkle_b64(roots.root(cp.tree_size)),
            )
            return None
        return cp

    def _check_checkpoints(
        self,
        parsed: Mapping[int, SignedManifest],
        origin: str | None,
        size: int,
        contiguous: int,
        roots: PrefixRoots,
        start: int,
    ) -> None:
        verifiers = self.keyring.verifiers()
        sizes = []
        names, _ = self.names_from(CHECKPOINTS, start, CHECKPOINT_SUFFIX)
        for name in names:
            rel = f"{CHECKPOINTS}/{name}"
            named = parse_numbered_name(name, CHECKPOINT_SUFFIX)
            if named is None:
                self.add(FindingCode.UNEXPECTED_FILE, rel, "not a checkpoint file name")
                continue
            sizes.append(named)
            if named <= start and named != size:
                continue
            self.checked["checkpoints"] += 1
            try:
                cp, opened = open_checkpoint(self.storage.read(rel), verifiers)
            except NotRegularFileError as exc:
                self.add(FindingCode.NOT_REGULAR_FILE, rel, str(exc))
                continue
            except UnknownKeyError as exc:
                self.add(FindingCode.UNKNOWN_KEY, rel, str(exc))
                continue
            except InvalidSignatureError as exc:
                self.add(FindingCode.BAD_SIGNATURE, rel, str(exc))
                continue
            except MalformedError as exc:
                self.add(FindingCode.MALFORMED_CHECKPOINT, rel, str(exc))
                continue
            if cp.tree_size != named:
                self.add(
                    FindingCode.MALFORMED_CHECKPOINT,
                    rel,
                    "file name and tree size differ",
                    named,
                    cp.tree_size,
                )
            if origin is not None and cp.origin != origin:
                self.add(
                    FindingCode.ORIGIN_MISMATCH, rel, "checkpoint of another log", origin, cp.origin
                )
            if cp.tree_size > size:
                self.add(
                    FindingCode.TAIL_TRUNCATED,
                    rel,
                    f"checkpoint commits to {cp.tree_size} manifests but the log has {size}: "
                    f"the newest {cp.tree_size - size} were removed",
                    cp.tree_size,
                    size,
                )
                continue
            signed_at = parsed.get(cp.tree_size - 1)
            if signed_at is not None:
                for sig in opened.sigs:
                    status = self.keyring.status(
                        sig.name, sig.key_hash, signed_at.manifest.created, cp.tree_size - 1
                    )
                    if status is not KeyStatus.VALID:
                        self.add(
                            KEY_FINDING_CODES[status.value],
                            rel,
                            f"checkpoint signed by {sig.name}+{key_id(sig.key_hash)}, "
                            f"{status.value} at batch {cp.tree_size - 1}",
                        )
            if 0 < cp.tree_size <= contiguous and roots.root(cp.tree_size) != cp.root_hash:
                self.add(
                    FindingCode.CHECKPOINT_MISMATCH,
                    rel,
                    f"root of the log's first {cp.tree_size} manifests differs from the "
                    "signed checkpoint (manifests changed, reordered or forked)",
                    merkle_b64(cp.root_hash),
                    merkle_b64(roots.root(cp.tree_size)),
                )
        latest = max(sizes, default=0)
        if size and latest < size:
            self.notice(
                "checkpoint_behind",
                CHECKPOINTS,
                f"no checkpoint yet for the newest {plural(size - latest, 'batch')} (a commit was "
                "interrupted after its manifest; the next commit signs one)",
            )

    def _check_tiles(self, leaf_hashes: list[bytes], parsed: Mapping[int, SignedManifest]) -> None:
        """Every stored hash tile holds the hashes of the log's manifests, and every batch
        index file is signed and lists the batches the manifests say (readers accept both
        only against a signed root or a signature, but must never meet a wrong one)."""
        self._check_index(parsed, len(leaf_hashes))
        size = len(leaf_hashes)
        hashes = LogHashes(
            size,
            size // TILE_WIDTH * TILE_WIDTH,
            lambda _rel: None,
            lambda lo, hi: leaf_hashes[lo:hi],
        )
        for rel in self.storage.walk_files(TILES):
            tile = parse_tile_path(rel)
            if tile is None:
                self.add(FindingCode.UNEXPECTED_FILE, rel, "not a hash tile's name")
                continue
            self.checked["log_tiles"] += 1
            level, index, width = tile
            covers = (index * TILE_WIDTH + width) << (TILE_HEIGHT * level)
            try:
                raw = self.storage.read(rel)
            except NotRegularFileError as exc:
                self.add(FindingCode.NOT_REGULAR_FILE, rel, str(exc))
                continue
            if covers > hashes.full:
                self.add(
                    FindingCode.LOG_TILE_MISMATCH,
                    rel,
                    f"a hash tile of the first {covers} manifests, but the log has {size}",
                )
            elif raw != hashes.tile_bytes(level, index, width):
                self.add(
                    FindingCode.LOG_TILE_MISMATCH,
                    rel,
                    "the hash tile does not hold the hashes of the log's manifests (altered): "
                    "commits and proofs fall back to reading every manifest",
                )

    def _check_index(self, parsed: Mapping[int, SignedManifest], size: int) -> None:
        origin = parsed[0].manifest.origin if 0 in parsed else None
        for name in self.storage.list_dir(INDEX):
            rel = f"{INDEX}/{name}"
            start = parse_numbered_name(name, INDEX_SUFFIX)
            if start is None or start % TILE_WIDTH:
                self.add(FindingCode.UNEXPECTED_FILE, rel, "not a batch index file's name")
                continue
            self.checked["batch_index_files"] += 1
            try:
                raw = self.storage.read(rel)
            except NotRegularFileError as exc:
                self.add(FindingCode.NOT_REGULAR_FILE, rel, str(exc))
                continue
            index = None if origin is None else open_index(raw, self.keyring, origin, start)
            want = [
                BatchRef.of(parsed[s]) if s in parsed else None
                for s in range(start, min(start + TILE_WIDTH, size))
            ]
            try:
                refs = None if index is None else index.refs()
            except ValueError:
                refs = None
            windows = [r.window_start for r in want if r is not None]
            if refs is None:
                detail = (
                    "the batch index file does not verify with a key trusted where it was signed"
                )
            elif refs != want or (index.first, index.last) != (min(windows), max(windows)):
                detail = "the batch index file lists other hours or kinds than the manifests"
            else:
                continue
            self.add(FindingCode.LOG_TILE_MISMATCH, rel, detail)
