"""VerifyContext: what one verification run carries (its inputs, findings and notices),
shared by the checks of each concern (:mod:`.verify_data`, :mod:`.verify_checkpoints`,
:mod:`.verify_coverage`) that :func:`.verify.verify_ledger` runs in turn."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from audit_pipeline.ledger.cosignature import WitnessKey
from audit_pipeline.ledger.events import BatchFileFormat
from audit_pipeline.ledger.findings import Finding, FindingCode, Notice
from audit_pipeline.ledger.keys import Keyring
from audit_pipeline.ledger.layout import LocalStorage, numbered_name
from audit_pipeline.ledger.storage import LedgerFiles

FILES, ROWS = "files", "rows"
DEPTHS = (FILES, ROWS)
"""How deep a verification checks each data file. ``files``: its size and SHA-256 against
its signed manifest (bound by hashing; relies on the commit-time check that the rows match
the signed events root). ``rows``: that, and every leaf, the events root, row count, time
range, window, id/time columns and ids re-derived from the rows (catches a signed manifest
that never matched its rows)."""


class VerifyContext:
    """VerifyContext holds one run's inputs and collects what its checks find."""

    def __init__(
        self,
        storage: LedgerFiles,
        file_format: BatchFileFormat,
        keyring: Keyring,
        *,
        now: float,
        jobs: int,
        progress: Callable[[str], None],
        data_range: tuple[int, int] | None = None,
        depth: str = ROWS,
        recheck_trusted_files: bool = False,
    ) -> None:
        self.storage = storage
        self.file_format = file_format
        self.keyring = keyring
        self.now = now
        self.jobs = jobs
        self.progress = progress
        self.data_range = data_range
        self.depth = depth
        self.recheck_trusted_files = recheck_trusted_files
        self.findings: list[Finding] = []
        self.notices: list[Notice] = []
        self.checked: Counter[str] = Counter()
        self.witness_keys: tuple[WitnessKey, ...] = ()
        self.witness_quorum = 0

    def add(
        self,
        code: FindingCode,
        location: str,
        detail: str,
        expected: object = None,
        actual: object = None,
    ) -> None:
        self.findings.append(
            Finding(
                code,
                location,
                None if expected is None else str(expected),
                None if actual is None else str(actual),
                detail,
            )
        )

    def notice(self, code: str, location: str, detail: str) -> None:
        self.notices.append(Notice(code, location, detail))

    def in_range(self, window_start: int) -> bool:
        """in_range: whether an hour's data belongs to what this run was asked to check."""
        return self.data_range is None or (self.data_range[0] <= window_start < self.data_range[1])

    def names_from(self, folder: str, first: int, suffix: str) -> tuple[list[str], int]:
        """names_from lists ``folder`` of numbered names (manifests, checkpoints) for a run
        that checks from number ``first`` on, and says from which number the listing
        starts: locally the whole directory (0); on an object store the names that sort
        from ``first``'s on (one listing of what follows the trusted checkpoint, not of
        the history: the names before it are the trusted checkpoint's, as the last full
        verification found them; FORMAT.md)."""
        if first <= 0 or isinstance(self.storage, LocalStorage):
            return self.storage.list_dir(folder), 0
        after = numbered_name(first - 1, suffix)
        return self.storage.list_dir(folder, after=after), first
