"""``audit-pipeline dev`` prints a short story up to the URL: no Dagster DEBUG lines, no
warnings (those go to dagster dev's own log), and next commands."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audit_pipeline.cli.dev import stop_process

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.e2e
@pytest.mark.slow
def test_dev_is_quiet_until_the_url(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDIT_", "DAGSTER_"))}
    env["AUDIT_AUTOMATION"] = "off"
    port = _free_port()
    err = tmp_path / "stderr.txt"
    with err.open("w") as err_file:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("audit-pipeline")), "dev", "--port", str(port),
             "--data-dir", str(tmp_path / "data"), "--dagster-home", str(tmp_path / "home"),
             "--hours", "1", "--events-per-hour", "20"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err_file, text=True,
            start_new_session=True,
        )  # fmt: skip
        try:
            url = process.stdout.readline().strip()
        finally:
            stop_process(process, timeout=60)
    time.sleep(0.1)
    assert url == f"http://127.0.0.1:{port}", err.read_text()
    lines = err.read_text().splitlines()
    before = lines[: next(i for i, ln in enumerate(lines) if "Dagster UI at" in ln) + 1]
    assert all(line.startswith("dev: ") for line in before), before
    assert len(before) <= 6
    assert not any("DEBUG" in line or "Warning" in line for line in before)
    assert any(" verify --data-dir " in line for line in lines)
    assert (tmp_path / "home" / "dagster-dev.log").stat().st_size > 0
