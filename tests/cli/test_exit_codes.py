"""Every failure maps to the README's exit code with one line naming the path and the cause.

Each case is one the issue reproduced: the exit code and the first line of stderr are
asserted, and that a refusal leaves nothing behind.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audit_pipeline.cli import main
from audit_pipeline.cli.errors import run_command
from audit_pipeline.ledger.keys import init_key

CLI = [sys.executable, "-m", "audit_pipeline.cli"]
START, END = "2026-11-28T00", "2026-11-28T02"


@pytest.fixture
def signing_key(tmp_path, monkeypatch) -> Path:
    """A signing key outside any data directory, trusted by nothing yet."""
    key = tmp_path / "keys" / "signing-key"
    init_key(tmp_path / "scratch", key, name="test", now=int(time.time()) - 86_400)
    monkeypatch.setenv("AUDIT_SIGNING_KEY", str(key))
    monkeypatch.setenv("SLACK_AUDIT_TOKEN", "xoxp-not-used")
    return key


def _first_line(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[0]


def _sync(data_dir: str | Path, *extra: str) -> int:
    return main(["sync", "--start", START, "--end", END, "--data-dir", str(data_dir), *extra])


def test_sync_into_an_impossible_directory_is_an_io_error(signing_key, capsys):
    assert _sync("/proc/x") == 3
    assert _first_line(capsys) == (
        "audit-pipeline sync: error: cannot create data directory /proc/x: "
        "/proc: No such file or directory"
    )


def test_sync_into_a_file_is_an_io_error(signing_key, tmp_path, capsys):
    (tmp_path / "README.md").write_text("not a directory")
    assert _sync(tmp_path / "README.md") == 3
    assert _first_line(capsys) == (
        f"audit-pipeline sync: error: data directory {tmp_path / 'README.md'} is not a directory"
    )


def test_sync_into_a_fresh_directory_refuses_before_any_call_and_leaves_nothing(
    signing_key, tmp_path, capsys
):
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    # an unreachable API: had sync called it first, the error would be a network one (3)
    assert _sync(fresh, "--base-url", "http://127.0.0.1:9/", "--max-retries", "0") == 2
    line = _first_line(capsys)
    assert line.startswith(f"audit-pipeline sync: error: no keyring at {fresh}/ledger/keys/")
    assert f"keys init --data-dir {fresh}" in line and "--trusted-keys" not in line
    assert list(fresh.iterdir()) == []  # no ledger/lock left behind


def test_keys_init_into_an_impossible_directory(tmp_path, capsys):
    code = main(["keys", "init", "--data-dir", "/proc/x", "--key-file", str(tmp_path / "k")])
    assert code == 3
    assert _first_line(capsys) == (
        "audit-pipeline keys init: error: cannot create data directory /proc/x: "
        "/proc: No such file or directory"
    )
    assert not (tmp_path / "k").exists()


def test_report_into_an_impossible_path(tmp_path, capsys):
    assert main(["report", "--data-dir", str(tmp_path), "--out", "/proc/report.html"]) == 3
    assert _first_line(capsys) == (
        "audit-pipeline report: error: cannot write report /proc/report.html: "
        "/proc: No such file or directory"
    )


def test_export_evidence_into_an_impossible_path(tmp_path, capsys):
    argv = ["export-evidence", "--start", START, "--end", END, "--data-dir", str(tmp_path)]
    assert main([*argv, "--out", "/proc/ev.zip"]) == 3
    assert _first_line(capsys) == (
        "audit-pipeline export-evidence: error: cannot write evidence bundle /proc/ev.zip: "
        "/proc: No such file or directory"
    )


def test_sync_before_march_2018_is_a_usage_error(signing_key, tmp_path, capsys):
    code = main(
        ["sync", "--start", "2017-01-01T00", "--end", "2017-01-01T02", "--data-dir", str(tmp_path)]
    )
    assert code == 2
    line = _first_line(capsys)
    assert line.startswith("audit-pipeline sync: error: --start 2017-01-01T00:00Z")
    assert "no audit log data from before March 2018" in line


def test_sync_into_the_future_names_the_largest_end(signing_key, tmp_path, capsys):
    code = main(["sync", "--start", START, "--end", "2999-01-01T00", "--data-dir", str(tmp_path)])
    assert code == 2
    line = _first_line(capsys)
    largest = time.strftime("%Y-%m-%dT%H:00Z", time.gmtime(time.time() // 3600 * 3600))
    assert f"the largest allowed --end is {largest}" in line


def test_missing_token_says_it_once(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("SLACK_AUDIT_TOKEN", raising=False)
    assert _sync(tmp_path) == 2
    line = _first_line(capsys)
    assert line.startswith("audit-pipeline sync: error: no Slack token: set SLACK_AUDIT_TOKEN to ")
    assert line.count("SLACK_AUDIT_TOKEN") == 1


def test_verify_proof_names_a_missing_key_file(tmp_path, capsys):
    proof = tmp_path / "p.json"
    proof.write_text("{}")
    assert main(["verify-proof", str(proof), "--public-key", "/nonexistent"]) == 2
    assert _first_line(capsys) == (
        "audit-pipeline verify-proof: error: --public-key /nonexistent: file not found "
        "(give a vkey name+hash+key, or a file of vkeys or a keyring)"
    )


@pytest.mark.parametrize(
    ("exc", "code", "line"),
    [
        (RecursionError("maximum recursion depth exceeded"), 3, "input nested too deeply"),
        (PermissionError(13, "Permission denied", "/data/x"), 3, "/data/x: Permission denied"),
        (ValueError("boom"), 3, "unexpected ValueError: boom (run with -v for the traceback)"),
    ],
)
def test_no_traceback_without_verbose(exc, code, line, capsys):
    def command(_args):
        raise exc

    args = argparse.Namespace(command="verify", verbose=0)
    assert run_command(args, command) == code
    err = capsys.readouterr().err
    assert line in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    args.verbose = 1
    assert run_command(args, command) == code
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.e2e
def test_unreachable_api_prints_one_clean_line(tmp_path):
    """No slack-sdk ERROR lines before the command's own message, no lock left behind."""
    data_dir = tmp_path / "data"
    key = tmp_path / "signing-key"
    env = {
        **os.environ,
        "AUDIT_SIGNING_KEY": str(key),
        "SLACK_AUDIT_TOKEN": "xoxp-not-used",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    subprocess.run([*CLI, "keys", "init", "--data-dir", str(data_dir)], env=env, check=True)
    before = sorted(data_dir.rglob("*"))
    proc = subprocess.run(
        [*CLI, "sync", "--start", START, "--end", END, "--data-dir", str(data_dir),
         "--base-url", "http://127.0.0.1:9/", "--max-retries", "1"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines() == [
        "audit-pipeline sync: error: could not reach http://127.0.0.1:9/logs after 1 retry: "
        "Connection refused"
    ]
    assert sorted(data_dir.rglob("*")) == before  # nothing written, nothing locked


@pytest.mark.parametrize(
    "argv",
    [
        ["verify"], ["checkpoint"], ["keys", "list"], ["dataset", "build"], ["query", "select 1"],
        ["report", "--out", "r.html"], ["demo"],
        ["export-evidence", "--start", START, "--end", END, "--out", "ev.zip"],
    ],
)  # fmt: skip
def test_every_command_says_a_file_is_not_a_data_directory(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "README.md").write_text("a file")
    assert main([*argv, "--data-dir", "README.md"]) == 3
    command = " ".join(argv[:2] if argv[0] in ("keys", "dataset") else argv[:1])
    assert _first_line(capsys) == (
        f"audit-pipeline {command}: error: data directory README.md is not a directory"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["verify", "--trusted-keys", "{special}"],
        ["verify", "--trusted-checkpoint", "{special}"],
        ["verify-proof", "{special}", "--public-key", "{special}"],
    ],
)
@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_a_named_file_that_is_a_fifo_or_device_is_refused_not_waited_on(
    argv, special, tmp_path, capsys
):
    """A FIFO nobody writes to would block the open forever, /dev/zero never ends: the
    FIFO reads as empty (refused as such), the device is named; neither hangs."""
    if special == "fifo":
        special = str(tmp_path / "fifo")
        os.mkfifo(special)
    argv = [a.format(special=special) for a in argv]
    if argv[0] == "verify":
        init_key(tmp_path / "data", tmp_path / "key", name="test", now=int(time.time()) - 86_400)
        argv += ["--data-dir", str(tmp_path / "data"), "--no-record"]
    code = main(argv)
    line = _first_line(capsys)
    assert code in (1, 2) and "error:" in line and "Traceback" not in line
    if special == "/dev/zero":
        assert code == 2 and "a character device, not a regular file" in line


def test_trusted_keys_from_a_pipe_are_read(tmp_path, capsys):
    """`verify --trusted-keys <(command)`: a pipe with a writer is read, not refused."""
    data_dir = tmp_path / "data"
    signer, _, _ = init_key(data_dir, tmp_path / "key", name="t", now=int(time.time()) - 86_400)
    read_end, write_end = os.pipe()
    os.write(write_end, (signer.vkey + "\n").encode())
    os.close(write_end)
    try:
        argv = ["verify", "--data-dir", str(data_dir), "--no-record"]
        assert main([*argv, "--trusted-keys", f"/dev/fd/{read_end}"]) == 0
    finally:
        os.close(read_end)
    assert "keys: used the data directory's own keyring" not in capsys.readouterr().err


def test_a_signing_key_fifo_nobody_writes_is_refused_before_any_call(signing_key, tmp_path, capsys):
    signing_key.unlink()
    os.mkfifo(signing_key, 0o600)
    data_dir = tmp_path / "data"
    init_key(data_dir, tmp_path / "other-key", name="test", now=int(time.time()) - 86_400)
    assert _sync(data_dir, "--base-url", "http://127.0.0.1:9/", "--max-retries", "0") == 2
    assert _first_line(capsys) == (
        f"audit-pipeline sync: error: {signing_key} does not hold a valid signing key"
    )


@pytest.fixture
def read_only_ledger(tmp_path):
    """A data directory with a ledger that nobody may write (0555; root ignores modes, so
    as root the directories are made immutable with chattr, or the test skips)."""
    from audit_pipeline.lake import PARQUET_FORMAT, write_events
    from audit_pipeline.ledger import EventRecord, Ledger

    data_dir = tmp_path / "data"
    signer, _, _ = init_key(data_dir, tmp_path / "key", name="test", now=1_700_000_000)
    ledger = Ledger(data_dir, file_format=PARQUET_FORMAT, signer=signer)
    start = 1_764_547_200  # 2025-12-01T00:00Z
    entry = {"id": "e1", "date_create": start + 60, "action": "user_login"}
    ledger.commit_batch(
        window_start=start,
        window_end=start + 3600,
        events=[EventRecord.from_entry(entry)],
        write_data=lambda evs, path: write_events(evs, path, window=(start, start + 3600)),
        source={"api_url": "https://slack.test/audit/v1/logs", "pages": 1},
        run_id="test",
    )
    dirs = [data_dir, *(p for p in data_dir.rglob("*") if p.is_dir())]
    if os.geteuid() == 0:
        chattr = ["chattr", "-R", "+i", str(data_dir)]
        if subprocess.run(chattr, capture_output=True).returncode:
            pytest.skip("root, and chattr +i is not available here")
        yield data_dir, tmp_path / "key"
        subprocess.run(["chattr", "-R", "-i", str(data_dir)], check=True)
        return
    for d in dirs:
        d.chmod(0o555)
    yield data_dir, tmp_path / "key"
    for d in dirs:
        d.chmod(0o755)


def test_a_read_only_data_dir_is_an_environment_problem_for_every_writer(
    read_only_ledger, tmp_path, capsys
):
    data_dir, key = read_only_ledger
    code = main(["keys", "rotate", "--data-dir", str(data_dir), "--key-file", str(key)])
    assert code == 3, "a read-only mount is the environment (3), not bad usage (2)"
    assert _first_line(capsys).startswith("audit-pipeline keys rotate: error: cannot lock the")
    assert "Errno" not in capsys.readouterr().err


def test_evidence_is_exported_from_a_read_only_data_dir(read_only_ledger, tmp_path, capsys):
    """Recording the verification is a side effect: an auditor's read-only copy still
    exports (as verify still verifies), saying it did not record."""
    data_dir, _ = read_only_ledger
    out = tmp_path / "ev.zip"
    argv = ["export-evidence", "--data-dir", str(data_dir), "--out", str(out)]
    assert main([*argv, "--start", "2025-12-01T00", "--end", "2025-12-01T01"]) == 0
    assert out.is_file()


@pytest.mark.parametrize("lag", ["-1", "nan", "inf"])
def test_verify_refuses_a_max_lag_that_is_not_hours(lag, tmp_path, capsys):
    """A negative lag would fail every ledger (a false integrity alarm); NaN and infinity
    crashed with an unexpected ValueError/OverflowError (exit 3)."""
    init_key(tmp_path / "data", tmp_path / "key", name="test", now=int(time.time()) - 86_400)
    assert main(["verify", "--data-dir", str(tmp_path / "data"), "--max-lag", lag]) == 2
    assert _first_line(capsys).startswith("audit-pipeline verify: error: --max-lag must be")
