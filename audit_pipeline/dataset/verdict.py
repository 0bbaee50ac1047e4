"""The verdict now: what the report (and anyone showing a verdict) checks at the moment it
shows one, instead of repeating the verdict recorded by an earlier verification.

:func:`verdict_now` costs far less than a full verification: the dataset is checked against
its seal (one sequential read), the ledger is verified incrementally from the checkpoint
the dataset was built from (every manifest is hashed into the log root, batches after that
checkpoint are fully checked, every stored checkpoint, every file in the lake), and every
older data file is checked by size and SHA-256 against its signed manifest (bytes hashed,
rows not decoded). So a data file cut in half after the last verification, a manifest
rewritten, a dataset edited, all turn the verdict red, with its time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit_pipeline.dataset.seal import SealStatus, check_seal
from audit_pipeline.lake import PARQUET_FORMAT
from audit_pipeline.ledger import Keyring, LedgerError, VerifyReport, verify_ledger
from audit_pipeline.ledger.commit import file_digest
from audit_pipeline.ledger.layout import LocalStorage
from audit_pipeline.ledger.verify import COVERAGE_CODES, FindingCode


@dataclass(frozen=True)
class Verdict:
    """Verdict is one check made now: the ledger's report, the data files of batches before
    the incremental start checked by hash, and the dataset's seal."""

    checked_at: int
    report: VerifyReport | None
    seal: SealStatus
    problems: tuple[dict[str, str], ...] = field(default=())
    error: str | None = None

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and self.report is not None
            and self.report.ok
            and not self.problems
            and self.seal.ok
            and not self.seal.ledger_changed
        )

    @property
    def intact(self) -> bool:
        """intact: nothing against what is committed (hours may still be missing)."""
        return self.ok or (
            self.error is None
            and self.report is not None
            and self.report.intact
            and not self.problems
            and self.seal.ok
            and not self.seal.ledger_changed
        )

    @property
    def hours_missing(self) -> int | None:
        if self.report is None:
            return None
        return sum(1 for f in self.report.findings if f.code is FindingCode.HOUR_MISSING)

    def findings(self) -> list[dict[str, Any]]:
        """findings lists everything that failed, in the report's finding shape."""
        out: list[dict[str, Any]] = []
        if self.error:
            out.append({"code": "verification_error", "location": "-", "detail": self.error})
        if self.seal.problem:
            out.append(
                {
                    "code": "dataset_unsealed",
                    "location": str(self.seal.path),
                    "detail": self.seal.problem,
                }
            )
        elif self.seal.ledger_changed:
            out.append(
                {
                    "code": "ledger_changed",
                    "location": str(self.seal.path),
                    "detail": f"the ledger {self.seal.ledger_note}",
                }
            )
        if self.report is not None:
            out.extend(f.to_dict() for f in self.report.findings)
        out.extend(self.problems)
        return out

    def coverage_only(self) -> bool:
        return self.report is not None and all(
            f.code in COVERAGE_CODES for f in self.report.findings
        )


def verdict_now(data_dir: Path, dataset: Path, *, keyring: Keyring | None = None) -> Verdict:
    """verdict_now checks the ledger and the dataset now (see the module docstring)."""
    data_dir = Path(data_dir)
    now = int(time.time())
    seal = check_seal(dataset, data_dir)
    trusted = None
    if seal.ok and not seal.ledger_changed and seal.seal and seal.seal.checkpoint:
        trusted = seal.seal.checkpoint.encode()
    try:
        report = verify_ledger(
            data_dir,
            file_format=PARQUET_FORMAT,
            keyring=keyring,
            trusted_checkpoint=trusted,
            incremental=trusted is not None,
        )
    except (LedgerError, OSError) as exc:
        return Verdict(now, None, seal, error=str(exc))
    except Exception as exc:
        return Verdict(now, None, seal, error=f"{type(exc).__name__}: {exc}")
    problems = _older_files(data_dir, report) if report.incremental_from else ()
    return Verdict(now, report, seal, tuple(problems))


def _older_files(data_dir: Path, report: VerifyReport) -> list[dict[str, str]]:
    """_older_files checks size and SHA-256 of every data file before the incremental start
    against its manifest (the manifests are proven by the verified root)."""
    from audit_pipeline.dataset.build import DatasetIntegrityError, verified_chain

    if not report.intact:
        return []
    try:
        chain = verified_chain(data_dir, report)
    except DatasetIntegrityError as exc:
        return [{"code": "ledger_changed", "location": "ledger/manifests", "detail": str(exc)}]
    storage = LocalStorage(data_dir)
    problems = []
    for signed in chain[: report.incremental_from]:
        data = signed.manifest.data
        if data is None:
            continue
        try:
            digest = file_digest(storage.regular_path(data.path))
        except FileNotFoundError:
            problems.append(_problem("data_file_missing", data.path, "the data file is missing"))
            continue
        except (OSError, LedgerError) as exc:
            problems.append(_problem("unreadable_data_file", data.path, str(exc)))
            continue
        if digest != (data.size, data.sha256):
            problems.append(
                _problem(
                    "file_hash_mismatch",
                    data.path,
                    f"batch {signed.sequence}: size/SHA-256 {digest[0]}/{digest[1][:16]}... "
                    f"differ from the manifest's {data.size}/{data.sha256[:16]}...",
                )
            )
    return problems


def _problem(code: str, location: str, detail: str) -> dict[str, str]:
    return {"code": code, "location": location, "detail": detail}
