"""The verified chain a build reads: every manifest's exact bytes, proven by the verified root.

A build re-reads manifests 0..tree_size-1 after verification and checks that their Merkle
root is the verified one, so a manifest changed after verification is caught. Only the
manifests a build needs are parsed (a year is 8,760 of them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from audit_pipeline.dataset.errors import DatasetIntegrityError
from audit_pipeline.ledger import LedgerError, SignedManifest, VerifyReport, merkle, parse_manifest
from audit_pipeline.ledger.layout import LocalStorage, manifest_path


class VerifiedChain:
    """VerifiedChain is the verified log: the exact bytes of every manifest, proven by the verified
    root, parsed only where a build needs their fields (a year is 8,760 manifests)."""

    def __init__(self, raws: list[bytes]) -> None:
        self.raws = raws
        self.sha256 = [hashlib.sha256(raw).hexdigest() for raw in raws]
        self.roots = manifest_prefix_roots([merkle.leaf_hash(raw) for raw in raws])
        self._parsed: dict[int, SignedManifest] = {}

    def __len__(self) -> int:
        return len(self.raws)

    def manifest(self, sequence: int) -> SignedManifest:
        signed = self._parsed.get(sequence)
        if signed is None:
            try:
                signed = parse_manifest(self.raws[sequence])
            except LedgerError as exc:
                raise DatasetIntegrityError(f"manifest {sequence} does not parse: {exc}") from exc
            if signed.sequence != sequence:
                raise DatasetIntegrityError(f"manifest {sequence} names sequence {signed.sequence}")
            self._parsed[sequence] = signed
        return signed

    def manifests(self, start: int = 0) -> list[SignedManifest]:
        return [self.manifest(sequence) for sequence in range(start, len(self.raws))]


def read_verified_chain(data_dir: Path, report: VerifyReport) -> VerifiedChain:
    """read_verified_chain reads manifests 0..tree_size-1 and checks their root is the verified one
    (so a manifest changed after verification is caught)."""
    raws = []
    for sequence in range(report.tree_size):
        try:
            raws.append(LocalStorage(data_dir).read(manifest_path(sequence)))
        except (OSError, LedgerError) as exc:
            raise DatasetIntegrityError(
                f"manifest {sequence} cannot be read after verification: "
                f"{getattr(exc, 'strerror', None) or exc}; nothing was published"
            ) from exc
    chain = VerifiedChain(raws)
    if report.tree_size and chain.roots[-1] != report.root_hash:
        raise DatasetIntegrityError(
            f"the manifests in {data_dir} no longer have the verified root of size "
            f"{report.tree_size}: the ledger changed after verification; nothing was published"
        )
    return chain


def verified_chain(data_dir: Path, report: VerifyReport) -> list[SignedManifest]:
    """verified_chain returns the manifests the report verified, proven by their root."""
    return read_verified_chain(data_dir, report).manifests()


def manifest_prefix_roots(leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """manifest_prefix_roots returns the RFC 6962 root of every prefix of the manifests'
    leaf hashes, O(n log n) (index = size). The ledger keeps its own; the two are to become
    one (ledger/merkle.py)."""
    roots = [merkle.empty_root()]
    stack: list[tuple[int, bytes]] = []
    for leaf in leaf_hashes:
        stack.append((1, leaf))
        while len(stack) > 1 and stack[-1][0] == stack[-2][0]:
            (width, right), (_, left) = stack.pop(), stack.pop()
            stack.append((width * 2, merkle.node_hash(left, right)))
        root = stack[-1][1]
        for _, left in reversed(stack[:-1]):
            root = merkle.node_hash(left, root)
        roots.append(root)
    return roots
