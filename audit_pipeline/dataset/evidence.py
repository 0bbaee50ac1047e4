"""Evidence bundles: the part of the ledger a third party needs to check a time range offline.

A bundle is a data directory in the ledger's own layout (so the ledger's verifier needs no
special case to read it), plus two files for people::

    README.md                       how to verify, in plain words
    EVIDENCE.json                   what was exported: range, checkpoint, files and hashes
    ledger/manifests/*.json         EVERY manifest from genesis to the exported checkpoint
    ledger/checkpoints/*.checkpoint every signed checkpoint up to that size
    ledger/keys/keyring.json        the public keys (never a private key)
    ledger/witnessed/               checkpoints with the witnesses' cosignatures, and the
                                    refusals the committer recorded (when witnesses are set)
    WITNESS-KEYS.txt                the witness keys the exporter was configured with
    lake/...                        the data files of the batches whose hour is in range

Why every manifest: the chain and the checkpoint's Merkle root cover the whole log, so a
verifier can only prove "these batches are the log's, and nothing between them is
missing" with all manifests (about 1 KB each; a year is under 10 MB). Data files are
copied only for the range, so a bundle for one day of a year-long ledger stays small.

Verifying a partial range is the ledger verifier's own job (``verify_ledger(...,
data_range=(start, end))``): a data file of a batch whose hour lies outside the range may
be absent (notice ``data_outside_range``), every hour of the range must have a manifest
(``range_not_covered``), and everything else (a missing or changed file inside the range,
any manifest, checkpoint or key change, any injected file) still fails.
:func:`verify_bundle`, which ``audit-pipeline verify`` uses when it finds ``EVIDENCE.json``,
takes the range from there (or from the caller) and adds one check of the bundle's own
claims: a data file ``EVIDENCE.json`` lists as exported must be present. The range in
``EVIDENCE.json`` is not signed: an auditor who wants the hours they asked for passes
them (``verify --range START END``), which no edit inside the bundle can narrow. The export
records the range clamped to the hours the log has, so its own bundle never claims more.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from audit_pipeline import __version__
from audit_pipeline.dataset import history
from audit_pipeline.errors import ConfigurationError
from audit_pipeline.lake import PARQUET_FORMAT
from audit_pipeline.ledger import (
    Keyring,
    VerifyReport,
    resolve_data_dir,
    verify_ledger,
)
from audit_pipeline.ledger.cosignature import WitnessKey
from audit_pipeline.ledger.errors import LedgerError
from audit_pipeline.ledger.layout import (
    CHECKPOINT_SUFFIX,
    CHECKPOINTS,
    DATA_MODE,
    DIR_MODE,
    HOUR,
    KEYRING,
    LocalStorage,
    format_hour,
    make_dirs,
    manifest_path,
    open_regular,
    parse_numbered_name,
    read_regular,
)
from audit_pipeline.ledger.verify import Finding, FindingCode, check_data_range
from audit_pipeline.ledger.witnessed import (
    REFUSAL_RECORDS,
    REFUSALS,
    WITNESSED,
    default_quorum,
    is_witness_record,
    parse_witnessed_name,
)
from audit_pipeline.text import plural

EVIDENCE_FILE = "EVIDENCE.json"
README_FILE = "README.md"
WITNESS_KEYS_FILE = "WITNESS-KEYS.txt"
EVIDENCE_SCHEMA = "audit_pipeline.evidence/v1"


log = logging.getLogger(__name__)


class EvidenceError(ConfigurationError):
    """The export was asked for something it cannot produce (bad range, output exists)."""


class BundleChangedError(LedgerError):
    """A member of a zipped bundle is not the bytes the archive recorded for it (CRC-32 or
    compressed stream): it changed after it was zipped, which is an integrity failure."""


@dataclass(frozen=True)
class EvidenceResult:
    """What an export wrote; ``start``/``end`` is the range recorded in the bundle (the one
    asked for, clamped to the hours the log has)."""

    out: Path
    start: int
    end: int
    batches_in_range: int
    data_files: int
    events: int
    bytes_copied: int
    tree_size: int
    root_hash: str
    requested: tuple[int, int] | None = None

    def summary(self) -> str:
        clamped = ""
        if self.requested is not None and self.requested != (self.start, self.end):
            lo, hi = self.requested
            clamped = f" (asked for {format_hour(lo)}..{format_hour(hi)}; the log has no more)"
        return (
            f"evidence for {format_hour(self.start)}..{format_hour(self.end)}{clamped} written "
            f"to {self.out}: {self.batches_in_range} batches in range ({self.data_files} data "
            f"files, {self.events} events, {self.bytes_copied} bytes) and all "
            f"{self.tree_size} manifests up to the checkpoint with root {self.root_hash}"
        )


def export_evidence(
    data_dir: str | Path | None,
    *,
    start: int,
    end: int,
    out: Path,
    keyring: Keyring | None = None,
    trusted_checkpoint: bytes | None = None,
    witness_keys: Sequence[WitnessKey] = (),
    witness_quorum: int | None = None,
) -> EvidenceResult:
    """export_evidence verifies the ledger, then writes the bundle for hours [start, end).
    ``witness_keys`` (the ones the pipeline asks) are written beside the cosigned
    checkpoints, so the receiver knows which keys to obtain and check them with."""
    # DuckDB only here: 'audit-pipeline verify' imports this module to check bundles.
    from audit_pipeline.dataset.build import DatasetIntegrityError, verified_chain

    if start % HOUR or end % HOUR or end <= start:
        raise EvidenceError("the range must be whole UTC hours with END after START")
    data_dir = resolve_data_dir(data_dir)
    out = Path(out)
    zipped = out.suffix.lower() == ".zip"
    if out.exists() and (zipped or any(out.iterdir())):
        raise EvidenceError(f"{out} already exists; choose a new path for the bundle")
    report = verify_ledger(
        data_dir, file_format=PARQUET_FORMAT, keyring=keyring, trusted_checkpoint=trusted_checkpoint
    )
    try:
        history.record(data_dir, report, trigger="export-evidence")
    except history.HistoryError as exc:  # a read-only copy can still be exported from
        log.warning("not recorded in the verification history: %s", exc)
    if not report:
        raise DatasetIntegrityError(
            f"the ledger in {data_dir} did not verify ({plural(len(report.findings), 'finding')}); "
            "no evidence exported. Run 'audit-pipeline verify' for the full report."
        )
    if report.checkpoint is None:
        raise EvidenceError(f"the ledger in {data_dir} has no checkpoint to export yet")
    chain = verified_chain(data_dir, report)
    in_range = [m for m in chain if start <= m.manifest.window_start < end]
    if not in_range:
        raise EvidenceError(
            f"no committed batch has an hour in {format_hour(start)}..{format_hour(end)}"
        )
    requested = (start, end)
    # The bundle claims only hours the log has: a verifier fails a range with uncovered hours.
    hours = [m.manifest.window_start for m in chain]
    start, end = max(start, min(hours)), min(end, max(hours) + HOUR)
    staging = Path(tempfile.mkdtemp(prefix=".evidence-", dir=out.parent if zipped else None))
    try:
        files: list[dict[str, Any]] = []
        for signed in chain:
            _copy(data_dir, staging, manifest_path(signed.sequence))
        for name in sorted(os.listdir(data_dir / CHECKPOINTS)):
            size = parse_numbered_name(name, CHECKPOINT_SUFFIX)
            if size is not None and size <= report.tree_size:
                _copy(data_dir, staging, f"{CHECKPOINTS}/{name}")
        for rel in LocalStorage(data_dir).walk_files(WITNESSED):
            # every round's record up to the size, every refusal (a file or one object each)
            # (records only: a stray file in a nested folder is never copied)
            witnessed = parse_witnessed_name(rel.rpartition("/")[2])
            if rel == REFUSALS or (
                is_witness_record(rel)
                and (rel.startswith(f"{REFUSAL_RECORDS}/") or witnessed[0] <= report.tree_size)
            ):
                _copy(data_dir, staging, rel)
        if witness_keys:
            (staging / WITNESS_KEYS_FILE).write_text("".join(k.vkey + "\n" for k in witness_keys))
        keys_target = staging / KEYRING
        keys_target.parent.mkdir(parents=True, exist_ok=True)
        if keyring is not None:
            keys_target.write_bytes(keyring.to_bytes())
        else:
            _copy(data_dir, staging, KEYRING)
        copied = events = 0
        for signed in in_range:
            data = signed.manifest.data
            if data is None:
                continue
            _copy(data_dir, staging, data.path)
            if _sha256(staging / data.path) != data.sha256:
                raise DatasetIntegrityError(f"{data.path} changed while it was being exported")
            copied += data.size
            events += data.rows
            files.append({"path": data.path, "sha256": data.sha256, "size": data.size,
                          "sequence": signed.sequence})  # fmt: skip
        exported_at = int(time.time())
        doc = {
            "schema": EVIDENCE_SCHEMA,
            "exported_at": exported_at,
            "exported_at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exported_at)),
            "exported_by": f"audit-pipeline {__version__}",
            "origin": report.origin,
            "range": {
                "start": start,
                "end": end,
                "start_utc": format_hour(start),
                "end_utc": format_hour(end),
            },
            "tree_size": report.tree_size,
            "root_hash": report.to_json()["root_hash"],
            "checkpoint": report.checkpoint.decode(),
            "batches_in_range": [m.sequence for m in in_range],
            "data_files": files,
            "events_in_range": events,
            "formats": sorted({m.manifest.format for m in chain}),
            "anchored": report.anchored,
        }
        if witness_keys:
            doc["witnesses"] = {
                "keys": [k.vkey for k in witness_keys],
                "quorum": default_quorum(witness_keys, witness_quorum),
            }
        (staging / EVIDENCE_FILE).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        (staging / README_FILE).write_text(_readme(doc, len(chain)))
        for path in staging.rglob("*"):  # explicit modes whatever the umask
            path.chmod(DIR_MODE if path.is_dir() else DATA_MODE)
        if zipped:
            _zip(staging, out)
        else:
            make_dirs(out)
            for item in sorted(staging.iterdir()):
                shutil.move(str(item), out / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return EvidenceResult(
        out=out,
        start=start,
        end=end,
        batches_in_range=len(in_range),
        data_files=len(files),
        events=events,
        bytes_copied=copied,
        tree_size=report.tree_size,
        root_hash=str(doc["root_hash"]),
        requested=requested,
    )


def _copy(src_root: Path, dst_root: Path, rel: str) -> None:
    """_copy copies a regular file only (never a link, FIFO or device; NotRegularFileError)."""
    target = dst_root / rel
    make_dirs(target.parent)
    source = LocalStorage(src_root).regular_path(rel)
    with os.fdopen(open_regular(source), "rb") as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _zip(staging: Path, out: Path) -> None:
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(p for p in staging.rglob("*") if p.is_file()):
                archive.write(path, path.relative_to(staging).as_posix())
        tmp.chmod(DATA_MODE)
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _readme(doc: Mapping[str, Any], manifests: int) -> str:
    rng = doc["range"]
    return f"""# Audit log evidence: {rng["start_utc"]} to {rng["end_utc"]} (UTC, end excluded)

This folder is a piece of a tamper-evident audit log of Slack Enterprise Grid events.
It holds:

- `lake/`: the event data (Parquet files) of every batch whose hour is in the range
  ({len(doc["data_files"])} files, {doc["events_in_range"]} events);
- `ledger/manifests/`: all {manifests} signed batch manifests from the start of the log.
  Each one names a data file with its size and SHA-256 and links to the previous manifest;
- `ledger/checkpoints/`: signed checkpoints (Merkle tree heads over the manifests);
- `ledger/keys/keyring.json`: the public keys that signed them, each with the log positions
  (tree sizes) where its trust starts and stops or where it was revoked, and a statement
  signed by the key that made the entry;
- `EVIDENCE.json`: what was exported, with the hash of every data file and the manifest
  formats present (`audit_pipeline.manifest/v2`; older `v1` manifests verify too).

Log: `{doc["origin"]}`, size {doc["tree_size"]}, root hash `{doc["root_hash"]}`.

## How to check it (offline)

1. Install the verifier (Python 3.11+). The plain install is only the verifier, with three
   dependencies (cryptography, orjson, pyarrow); it does not pull the operators' pipeline
   (Dagster, the Slack client, DuckDB: that is `audit-pipeline[pipeline]`, not needed here):

       python3 -m venv verifier
       verifier/bin/pip install audit-pipeline        # or: pip install ./<copy of its source>

   Offline: on any machine with the package index, same OS and Python version, run
   `pip download audit-pipeline -d wheels`, carry `wheels/` over, and install with
   `verifier/bin/pip install --no-index --find-links wheels audit-pipeline`.
   Verifying needs no network connection.
2. Get the log's public keys from its owner through a channel other than this bundle (an
   email, a ticket, a published page; the owner makes the file with
   `audit-pipeline keys public --data-dir DIR`), save them as `trusted-keys.txt`, and run
   on the zip file as you received it:

       verifier/bin/audit-pipeline verify evidence.zip --trusted-keys trusted-keys.txt

   or, inside the unpacked folder:
   `audit-pipeline verify --data-dir . --trusted-keys trusted-keys.txt`.

   Without `--trusted-keys` the keys inside this folder are used, which proves only that
   the folder is consistent with itself. The verifier takes the range from
   `EVIDENCE.json` and says so; to check the hours you asked for rather than the ones
   this folder claims, add `--range {rng["start_utc"]} {rng["end_utc"]}` (or your own).
3. Compare the root hash printed by the verifier with one the owner published or sent
   you separately (a checkpoint held outside this folder). With such a checkpoint file,
   add `--trusted-checkpoint FILE` and the verifier proves this log extends it.

A signature counts only if its key was trusted at the manifest's *position* in the log: a
revoked key cannot add a batch after its revocation by dating it earlier. The verifier
prints `anchored: false` and the attacks it could not rule out (truncation, rollback,
rewritten history, substituted keys) unless both `--trusted-keys` and
`--trusted-checkpoint` come from outside this folder.

{_witness_readme(doc)}

The check passes only if every signature, every hash link between manifests, every data
file's hash and the Merkle root of its events, and every checkpoint agree. Changing,
removing or adding any byte of the log data or the signed files makes it fail and says
where. The data files of batches outside the range are deliberately absent: their
manifests are checked, their events are not part of this evidence.

To read the events: `duckdb -c "SELECT * FROM read_parquet('lake/date=*/**/*.parquet')"`,
or open the files with any Parquet reader. Column `raw_json` is each event exactly as Slack's
Audit Logs API returned it; workflow activities (admin.apps.activities.list) are under
`lake/source=slack_app_activities/`, with the bytes Slack sent in `raw_bytes`;
`audit-pipeline prove` on the original system produces a
per-event proof that checks against the same checkpoint.
"""


def _witness_readme(doc: Mapping[str, Any]) -> str:
    witnesses = doc.get("witnesses")
    if not witnesses:
        return ""
    flags = " ".join(f"--witness-key {k}" for k in witnesses["keys"])
    return f"""4. Independent witnesses cosigned the log's checkpoints (`ledger/witnessed/`); their
   keys are in `{WITNESS_KEYS_FILE}`. Obtain them from the witnesses' operators too, then
   add `{flags} --witness-quorum {witnesses["quorum"]}`: the latest checkpoint must carry
   their cosignatures and nothing they cosigned may contradict this log.
"""


def load_evidence(bundle: Path) -> dict[str, Any]:
    """load_evidence reads ``EVIDENCE.json`` (EvidenceError if absent or not a bundle)."""
    path = Path(bundle) / EVIDENCE_FILE
    try:
        doc = json.loads(read_regular(path).decode("utf-8"))
    except FileNotFoundError:
        raise EvidenceError(f"{bundle} is not an evidence bundle (no {EVIDENCE_FILE})") from None
    except (OSError, ValueError, LedgerError) as exc:
        raise EvidenceError(f"cannot read {path}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("schema") != EVIDENCE_SCHEMA:
        raise EvidenceError(f"{path} is not an {EVIDENCE_SCHEMA} document")
    return doc


@contextlib.contextmanager
def unpacked_bundle(archive_path: Path) -> Iterator[Path]:
    """unpacked_bundle unpacks a zipped bundle into a private temporary directory for the
    verifier (removed afterwards) and yields the directory holding its ``EVIDENCE.json``.

    Members that would land outside that directory (absolute paths, ``..``, links) are
    refused; anything else extra in the archive is the verifier's to find (unreferenced
    files fail verification)."""
    archive_path = Path(archive_path)
    if not zipfile.is_zipfile(archive_path):
        raise EvidenceError(f"{archive_path} is not a zip file")
    with tempfile.TemporaryDirectory(prefix="audit-evidence-") as tmp:
        root = Path(tmp)
        with zipfile.ZipFile(archive_path) as archive:
            for info in archive.infolist():
                parts = PurePosixPath(info.filename).parts
                link = stat.S_ISLNK(info.external_attr >> 16)
                if info.filename.startswith("/") or "\\" in info.filename or ".." in parts or link:
                    raise EvidenceError(f"{archive_path}: refusing unsafe member {info.filename!r}")
            try:
                archive.extractall(root)
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                raise BundleChangedError(
                    f"{archive_path}: the bundle was changed after it was zipped: {exc}"
                ) from None
        if not is_bundle(root):
            # a bundle directory zipped with its folder: one top-level directory holding it
            entries = list(root.iterdir())
            if len(entries) == 1 and is_bundle(entries[0]):
                root = entries[0]
        if not is_bundle(root):
            raise EvidenceError(f"{archive_path} holds no {EVIDENCE_FILE}: not an evidence bundle")
        yield root


def is_bundle(path: Path) -> bool:
    """is_bundle: does ``path`` hold an evidence bundle (an ``EVIDENCE.json``)?"""
    return (Path(path) / EVIDENCE_FILE).is_file()


def bundle_range(doc: Mapping[str, Any], where: Path) -> tuple[int, int]:
    """bundle_range is the ``[start, end)`` an ``EVIDENCE.json`` claims (not signed)."""
    try:
        return check_data_range((doc["range"]["start"], doc["range"]["end"]))
    except (KeyError, TypeError, ConfigurationError) as exc:
        raise EvidenceError(f"{where / EVIDENCE_FILE} has no valid range: {exc}") from None


def verify_bundle(
    bundle: Path,
    *,
    keyring: Keyring | None = None,
    trusted_checkpoint: bytes | None = None,
    data_range: tuple[int, int] | None = None,
    incremental: bool = False,
    jobs: int = 1,
    max_lag: int | None = None,
    progress: Callable[[str], None] | None = None,
    witness_keys: Sequence[WitnessKey] = (),
    witness_quorum: int | None = None,
    depth: str = "rows",
) -> VerifyReport:
    """verify_bundle verifies an evidence bundle for a range (see the module docstring).

    The range is ``data_range`` when given (the hours the auditor asked for), else the one
    ``EVIDENCE.json`` claims; callers should say which (``report.data_range`` is the one
    used). Other arguments are :func:`verify_ledger`'s.
    """
    bundle = Path(bundle)
    doc = load_evidence(bundle)
    claimed = bundle_range(doc, bundle)
    try:
        listed = {str(f["path"]): int(f["sequence"]) for f in doc["data_files"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise EvidenceError(f"{bundle / EVIDENCE_FILE} has no valid data_files: {exc}") from None
    report = verify_ledger(
        bundle,
        file_format=PARQUET_FORMAT,
        keyring=keyring,
        trusted_checkpoint=trusted_checkpoint,
        incremental=incremental,
        jobs=jobs,
        max_lag=max_lag,
        data_range=claimed if data_range is None else data_range,
        progress=progress,
        witness_keys=witness_keys,
        witness_quorum=witness_quorum,
        depth=depth,
    )
    findings, notices = list(report.findings), []
    for notice in report.notices:
        if notice.code == "data_outside_range" and notice.location in listed:
            findings.append(
                Finding(
                    FindingCode.DATA_FILE_MISSING,
                    notice.location,
                    None,
                    None,
                    f"batch {listed[notice.location]}: {EVIDENCE_FILE} lists this file as "
                    "exported, but it is absent (deleted, or the bundle's range was narrowed)",
                )
            )
        else:
            notices.append(notice)
    if len(findings) == len(report.findings):
        return report
    checked = dict(report.checked)
    checked["data_outside_range"] = sum(n.code == "data_outside_range" for n in notices)
    return dataclasses.replace(
        report, findings=tuple(findings), notices=tuple(notices), checked=checked
    )
