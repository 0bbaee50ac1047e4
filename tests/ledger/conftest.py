"""Ledger test fixtures: a JSON-lines batch format (no pyarrow), events, keys, a clock.

The JSON-lines format stores one canonical JSON API entry per line; the line is the leaf.
Files are written sorted by event id, not in the order events are passed, so tests see
that the ledger describes the file as written.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from audit_pipeline.ledger import merkle
from audit_pipeline.ledger.commit import CommitResult, Ledger
from audit_pipeline.ledger.errors import MalformedError
from audit_pipeline.ledger.events import EventRecord
from audit_pipeline.ledger.keys import init_key
from audit_pipeline.ledger.layout import HOUR, manifest_path
from audit_pipeline.ledger.manifest import Manifest, parse_manifest, sign_manifest
from audit_pipeline.ledger.note import Signer, generate_key
from audit_pipeline.ledger.verify import VerifyReport, verify_ledger

T0 = 1_735_689_600  # 2025-01-01T00:00:00Z: hour 0 of the test data
KEY_EPOCH = T0 - 30 * 86_400  # the first key is valid from here
CLOCK_START = T0 + 10 * 86_400  # commits happen after the hours they record
ORIGIN = "test.example/ledger"


class JsonLinesFormat:
    """A BatchFileFormat: one canonical JSON entry per line."""

    suffix = ".jsonl"

    def read_events(self, path: Path) -> list[EventRecord]:
        data = Path(path).read_bytes()
        if data and not data.endswith(b"\n"):
            raise MalformedError(f"{path}: truncated (no final newline)")
        records = []
        for number, line in enumerate(data.splitlines(), 1):
            try:
                entry = json.loads(line)
                records.append(EventRecord(entry["id"], entry["date_create"], line))
            except (ValueError, TypeError, KeyError):
                raise MalformedError(f"{path}: line {number} is not an audit entry") from None
        return records

    def read_leaf_hashes(self, path: Path) -> list[bytes]:
        return [merkle.leaf_hash(r.leaf_data) for r in self.read_events(path)]


JSONL = JsonLinesFormat()


def write_jsonl(events: Sequence[EventRecord], path: Path) -> None:
    path.write_bytes(
        b"".join(e.leaf_data + b"\n" for e in sorted(events, key=lambda e: e.event_id))
    )


def hour(index: int) -> int:
    return T0 + index * HOUR


def entry(event_id: str, date_create: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "date_create": date_create,
        "action": "user_login",
        "actor": {"type": "user", "user": {"id": "W0123", "name": "Ada", "email": "a@x.test"}},
        "entity": {"type": "user", "user": {"id": "W0123", "name": "Ada"}},
        "context": {"location": {"type": "enterprise", "id": "E1", "name": "Acme"}},
        **extra,
    }


def make_events(hour_index: int, n: int, *, prefix: str = "ev") -> list[EventRecord]:
    """make_events returns ``n`` distinct events spread over hour ``hour_index``."""
    start = hour(hour_index)
    return [
        EventRecord.from_entry(entry(f"{prefix}-{hour_index:04d}-{i:05d}", start + (i * 37) % HOUR))
        for i in range(n)
    ]


class Clock:
    """A settable clock: each reading advances one second."""

    def __init__(self, start: float = CLOCK_START) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1
        return self.now


def commit(
    ledger: Ledger,
    hour_index: int,
    events: Sequence[EventRecord] | None = None,
    n: int = 3,
    write_data: Callable[[Sequence[EventRecord], Path], None] = write_jsonl,
) -> CommitResult:
    """commit commits ``events`` (default: ``n`` fresh ones) for hour ``hour_index``."""
    if events is None:
        events = make_events(hour_index, n)
    return ledger.commit_batch(
        window_start=hour(hour_index),
        window_end=hour(hour_index) + HOUR,
        events=events,
        write_data=write_data,
        source={
            "api_url": "https://api.slack.test/audit/v1/logs",
            "oldest": hour(hour_index),
            "latest": hour(hour_index) + HOUR - 1,
            "pages": 1,
        },
        run_id=f"run-{hour_index}",
    )


def verify(data_dir: Path, **kwargs: Any) -> VerifyReport:
    kwargs.setdefault("file_format", JSONL)
    kwargs.setdefault("now", CLOCK_START + 365 * 86_400)
    return verify_ledger(data_dir, **kwargs)


def codes(report: VerifyReport) -> set[str]:
    return {f.code.value for f in report.findings}


def make_writable(path: Path) -> None:
    os.chmod(path, stat.S_IMODE(path.stat().st_mode) | stat.S_IWUSR)


def resign(
    data_dir: Path, seq: int, signer: Signer, mutate: Callable[[dict[str, Any]], None]
) -> bytes:
    """resign rewrites manifest ``seq`` with an edited payload, validly signed by ``signer``
    (an attacker holding a key). Returns the new bytes."""
    path = data_dir / manifest_path(seq)
    payload = parse_manifest(path.read_bytes()).manifest.to_dict()
    mutate(payload)
    payload["key"] = {"key_id": f"{signer.key_hash:08x}", "name": signer.name}
    manifest = Manifest.from_dict(payload)
    raw = sign_manifest(manifest, signer).raw
    make_writable(path)
    path.write_bytes(raw)
    return raw


def copy_data_dir(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return tmp_path / "config" / "signing-key"


def write_key(path: Path, skey: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(skey + "\n")


@pytest.fixture(scope="session")
def test_skey() -> str:
    """test_skey: one private key for the session, so prebuilt ledgers can be copied."""
    return generate_key("test-log")[0]


@pytest.fixture
def signing_key(data_dir: Path, key_path: Path, test_skey: str) -> Signer:
    write_key(key_path, test_skey)
    signer, created, added = init_key(data_dir, key_path, name="test-log", now=KEY_EPOCH)
    assert added and not created
    return signer


@pytest.fixture
def other_key() -> Signer:
    skey, _ = generate_key("test-log")
    return Signer.from_private_key(skey)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(data_dir: Path, signing_key: Signer, clock: Clock) -> Ledger:
    return Ledger(data_dir, file_format=JSONL, signer=signing_key, origin=ORIGIN, clock=clock)


def build_six_hours(ledger: Ledger) -> None:
    for h in range(6):
        commit(ledger, h, [] if h == 2 else None)
    commit(ledger, 1, make_events(1, 2, prefix="late"))


@pytest.fixture(scope="session")
def six_hours_template(tmp_path_factory: pytest.TempPathFactory, test_skey: str) -> Path:
    root = tmp_path_factory.mktemp("six_hours")
    data = root / "data"
    data.mkdir()
    write_key(root / "key", test_skey)
    signer, _, _ = init_key(data, root / "key", name="test-log", now=KEY_EPOCH)
    build_six_hours(Ledger(data, file_format=JSONL, signer=signer, origin=ORIGIN, clock=Clock()))
    return data


@pytest.fixture
def six_hours(ledger: Ledger, six_hours_template: Path) -> Ledger:
    """A clean ledger: hours 0-5, hour 2 empty, a late batch for hour 1 (7 batches),
    copied from a session-wide template."""
    shutil.copytree(six_hours_template, ledger.data_dir, dirs_exist_ok=True)
    ledger.clock.now = CLOCK_START + 1000
    return ledger


HELPERS = SimpleNamespace(
    T0=T0,
    KEY_EPOCH=KEY_EPOCH,
    CLOCK_START=CLOCK_START,
    ORIGIN=ORIGIN,
    JSONL=JSONL,
    Clock=Clock,
    codes=codes,
    commit=commit,
    copy_data_dir=copy_data_dir,
    entry=entry,
    hour=hour,
    make_events=make_events,
    make_writable=make_writable,
    resign=resign,
    verify=verify,
    write_jsonl=write_jsonl,
)


@pytest.fixture
def lh() -> SimpleNamespace:
    """lh: the ledger test helpers (test modules cannot import conftest in importlib mode)."""
    return HELPERS
