"""Witness test fixtures: the ledger helpers (loaded from tests/ledger/conftest.py, which
importlib mode cannot import by name), witness keys, and witnesses in their own processes."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from audit_pipeline.ledger.cosignature import WitnessSigner

_spec = importlib.util.spec_from_file_location(
    "_ledger_test_helpers", Path(__file__).parents[1] / "ledger" / "conftest.py"
)
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)

data_dir = _helpers.data_dir
key_path = _helpers.key_path
test_skey = _helpers.test_skey
signing_key = _helpers.signing_key
clock = _helpers.clock
ledger = _helpers.ledger
lh = _helpers.lh


@dataclass
class WitnessProcess:
    """A witness served by ``audit-pipeline witness serve`` in its own process."""

    name: str
    url: str
    vkey: str
    state: Path
    process: subprocess.Popen

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process.stdout.close()


def start_witness_process(root: Path, name: str, logs: list[str]) -> WitnessProcess:
    """start_witness creates a key and state under ``root`` and serves on a free port."""
    root.mkdir(parents=True, exist_ok=True)
    key = root / "witness-key"
    if not key.exists():
        key.write_text(WitnessSigner.generate(name).private_key_text + "\n")
        key.chmod(0o600)
    cmd = [sys.executable, "-m", "audit_pipeline.cli", "witness", "serve", "--state"]
    cmd += [str(root / "state"), "--key", str(key), "--port", "0"]
    for log in logs:
        cmd += ["--log", log]
    log_path = root / "witness.log"  # a file, never an unread pipe that could fill up
    with log_path.open("a") as log_file:
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log_file, text=True)
    first, second = process.stdout.readline(), process.stdout.readline()
    if not second.startswith("listening on "):
        process.kill()
        process.wait(timeout=10)
        process.stdout.close()
        raise AssertionError(f"witness did not start: {first!r} {log_path.read_text()}")
    url = second.split()[2]
    return WitnessProcess(name, url, first.split()[1], root / "state", process)


@pytest.fixture
def start_witness() -> Iterator[Callable[[Path, str, list[str]], WitnessProcess]]:
    """start_witness starts witnesses in their own processes; all are killed at the end."""
    started: list[WitnessProcess] = []

    def start(root: Path, name: str, logs: list[str]) -> WitnessProcess:
        w = start_witness_process(root, name, logs)
        started.append(w)
        return w

    yield start
    for w in started:
        w.kill()
