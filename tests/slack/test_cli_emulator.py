"""``audit-pipeline emulator``: a separate process that prints its URL and stops on a signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from slack_sdk.audit_logs import AuditLogsClient

from audit_pipeline.cli import main

HOUR = 3600


def cli_command() -> list[str]:
    """The installed ``audit-pipeline`` script beside this interpreter, else the same entry."""
    script = Path(sys.executable).with_name("audit-pipeline")
    if script.is_file():
        return [str(script)]
    return [
        sys.executable,
        "-c",
        "import sys; from audit_pipeline.cli import main; sys.exit(main())",
    ]


def start_cli(*args: str) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proc = subprocess.Popen(
        [*cli_command(), "emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    # The first stdout line is the base URL; a reader thread keeps a hung start from hanging us.
    first_line: list[str] = []
    reader = threading.Thread(target=lambda: first_line.append(proc.stdout.readline()))
    reader.start()
    reader.join(timeout=30)
    if not first_line or not first_line[0]:
        proc.kill()
        raise AssertionError(f"no base URL printed; stderr: {proc.communicate()[1]}")
    return proc, first_line[0].strip()


def hour_label(moment: int) -> str:
    return time.strftime("%Y-%m-%dT%H", time.gmtime(moment))


@pytest.mark.e2e
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_the_sdk_until_signalled(stop_signal):
    closed = int(time.time()) // HOUR * HOUR - HOUR  # the last complete hour
    proc, base_url = start_cli(
        "--start", hour_label(closed - HOUR), "--end", hour_label(closed + HOUR),
        "--events-per-hour", "2000", "--rate-limit", "0", "--seed", "9", "--token", "xoxp-cli",
    )  # fmt: skip
    try:
        url = urlsplit(base_url)
        assert url.scheme == "http" and url.hostname == "127.0.0.1" and url.port
        assert url.path == "/audit/v1/"
        client = AuditLogsClient(token="xoxp-cli", base_url=base_url)
        body = client.logs(oldest=closed, latest=closed + HOUR - 1, limit=50).body
        assert len(body["entries"]) >= 50
        assert all(closed <= e["date_create"] < closed + HOUR for e in body["entries"])
        assert AuditLogsClient(token="xoxp-other", base_url=base_url).logs().status_code == 401
        # the admin path lets a test in another process add data
        request = urllib.request.Request(
            base_url.replace("/audit/v1/", "/_emulator/entries"),
            data=json.dumps(
                [{"id": "cli-added", "date_create": closed, "action": "user_login"}]
            ).encode(),
            headers={"Authorization": "Bearer xoxp-cli"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response) == {"ok": True, "added": 1}
        ids = [e["id"] for e in client.logs(oldest=closed, latest=closed).body["entries"]]
        assert "cli-added" in ids
    finally:
        proc.send_signal(stop_signal)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "emulator: serving 2 generated hours" in err and "stopped after" in err
    assert "xoxp-cli" not in out + err


@pytest.mark.e2e
def test_cli_replays_an_events_file(tmp_path: Path):
    moment = int(time.time()) - 2 * HOUR
    path = tmp_path / "export.jsonl"
    path.write_text(
        json.dumps({"id": "replayed", "date_create": moment, "action": "anomaly"}) + "\n"
    )
    proc, base_url = start_cli("--events-file", str(path), "--rate-limit", "0")
    try:
        client = AuditLogsClient(token="xoxp-emulator-token", base_url=base_url)
        assert [e["id"] for e in client.logs(oldest=moment - 10).body["entries"]] == ["replayed"]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "1 entries from" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--start", "yesterday"], "not a UTC hour"),
        (["--start", "2026-11-28T13", "--end", "2026-11-28T13"], "must be before end"),
        (["--events-file", "/nonexistent/x.jsonl"], "cannot read events file"),
        (["--events-file", "x.jsonl", "--start", "2026-11-28T13"], "--events-file"),
        (["--fault-rate", "3"], "fault_rate"),
        (["--late-delay", "-1"], "late_delay"),
    ],
)
def test_cli_bad_arguments_exit_2_with_the_reason(capsys, argv, message):
    assert main(["emulator", "--port", "0", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["emulator", "--port", "eighty"])
    assert caught.value.code == 2
    assert "--port" in capsys.readouterr().err
