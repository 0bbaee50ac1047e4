"""audit-pipeline verify records its runs in the history; prove finds events via the dataset."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from audit_pipeline.cli import main
from audit_pipeline.dataset import history
from audit_pipeline.dataset.build import build_dataset, dataset_path
from audit_pipeline.dataset.query import open_dataset
from audit_pipeline.dataset.seal import DATASET_ENV
from audit_pipeline.lake import write_events
from audit_pipeline.ledger import EventRecord, Ledger
from audit_pipeline.ledger.layout import HOUR

H0 = 1_764_547_200  # 2025-12-01T00:00Z


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def commit_hour(ledger: Ledger, hour: int, n: int = 3) -> None:
    start = H0 + hour * HOUR
    events = [
        EventRecord.from_entry(
            {
                "id": f"evt-{hour:03d}-{i}",
                "date_create": start + 60 * i,
                "action": "user_login",
                "actor": {"type": "user", "user": {"id": "W1", "name": "Ada"}},
                "entity": {"type": "user", "user": {"id": "W1", "name": "Ada"}},
                "context": {"location": {"type": "workspace", "id": "T1", "name": "Acme"}},
            }
        )
        for i in range(n)
    ]
    ledger.commit_batch(
        window_start=start,
        window_end=start + HOUR,
        events=events,
        write_data=lambda evs, path: write_events(evs, path, window=(start, start + HOUR)),
        source={"api_url": "https://slack.test/audit/v1/logs", "pages": 1},
        run_id="cli-test",
    )


def garble(path: Path) -> None:
    path.chmod(0o644)
    path.write_bytes(b"not a parquet file")


@pytest.fixture(autouse=True)
def _no_dataset_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATASET_ENV, raising=False)


@pytest.fixture
def three_hours(ledger: Ledger) -> Ledger:
    for hour in range(3):
        commit_hour(ledger, hour)
    return ledger


def test_every_verify_run_is_recorded_and_reaches_the_dataset(capsys, three_hours) -> None:
    d = str(three_hours.data_dir)
    code, _, err = run(capsys, "verify", "--data-dir", d)
    assert code == 0 and "recorded as run" in err
    (first,) = history.load_runs(three_hours.data_dir)
    assert (first.trigger, first.ok, first.tree_size) == ("audit-pipeline verify", True, 3)
    assert first.checkpoint == three_hours.latest_checkpoint().decode()
    assert first.report["tree_size"] == 3 and first.run_id in err

    build_dataset(three_hours.data_dir)
    assert run(capsys, "verify", "--data-dir", d, "--no-record")[0] == 0
    assert len(history.load_runs(three_hours.data_dir)) == 2  # the verify and the build

    victim = three_hours.data_dir / three_hours.manifests()[1].manifest.data.path
    victim.chmod(0o644)
    victim.write_bytes(victim.read_bytes() + b"\0")
    code, _, err = run(
        capsys, "verify", "--data-dir", d, "--range", "2025-12-01T01:00Z", str(H0 + 2 * HOUR)
    )
    assert code == 1 and "data range 2025-12-01T01:00Z..2025-12-01T02:00Z from --range" in err
    runs = history.load_runs(three_hours.data_dir)
    assert [r.trigger for r in runs] == [
        "audit-pipeline verify",
        "dataset build",
        "audit-pipeline verify",
    ]
    failed = runs[-1]
    assert not failed.ok and {f["code"] for f in failed.findings} == {
        "size_mismatch",
        "file_hash_mismatch",
        "unreadable_data_file",
    }
    assert failed.report["data_range"] == {"start": H0 + HOUR, "end": H0 + 2 * HOUR}

    con = open_dataset(dataset_path(three_hours.data_dir))
    try:
        rows = con.execute("SELECT run_id, trigger, ok FROM verification_runs").fetchall()
    finally:
        con.close()
    assert (first.run_id, "audit-pipeline verify", True) in rows


def test_a_history_that_cannot_be_written_is_reported_not_fatal(capsys, three_hours) -> None:
    (three_hours.data_dir / "verification").write_text("a file where the directory belongs")
    code, out, err = run(capsys, "verify", "--data-dir", str(three_hours.data_dir), "--json")
    assert code == 0 and json.loads(out)["ok"] is True
    assert "not recorded in the verification history: cannot append" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write a read-only directory")
def test_a_read_only_copy_is_not_recorded(capsys, three_hours) -> None:
    data_dir = three_hours.data_dir
    data_dir.chmod(0o555)
    try:
        code, _, err = run(capsys, "verify", "--data-dir", str(data_dir))
    finally:
        data_dir.chmod(0o755)
    assert code == 0 and f"{data_dir} is not writable" in err
    assert not (data_dir / history.RUNS_LOG).exists()


def test_prove_reads_only_the_batch_the_dataset_names(capsys, three_hours, tmp_path) -> None:
    d = str(three_hours.data_dir)
    build_dataset(three_hours.data_dir)
    # The newest batch is unreadable: a search (newest first) stops there, a lookup does not.
    garble(three_hours.data_dir / three_hours.manifests()[2].manifest.data.path)
    out = tmp_path / "proof.json"
    code, _, err = run(capsys, "prove", "evt-000-1", "--data-dir", d, "--out", str(out))
    assert code == 0, err
    assert f"batch 0 (located through {dataset_path(three_hours.data_dir)})" in err
    vkey = three_hours.signer.vkey
    code, shown, err = run(capsys, "verify-proof", str(out), "--public-key", vkey)
    assert code == 0 and json.loads(shown)["id"] == "evt-000-1"

    dataset_path(three_hours.data_dir).unlink()
    code, _, err = run(capsys, "prove", "evt-000-1", "--data-dir", d)
    assert code == 1 and "unreadable Parquet" in err


def test_prove_falls_back_to_a_search_when_the_dataset_is_stale(
    capsys, three_hours, monkeypatch
) -> None:
    d = str(three_hours.data_dir)
    build_dataset(three_hours.data_dir)
    commit_hour(three_hours, 3)
    code, out, err = run(capsys, "prove", "evt-003-2", "--data-dir", d)
    assert code == 0 and json.loads(out)["log_index"] == 3
    assert "not in the dataset" in err and "searched newest first" in err

    monkeypatch.setenv(DATASET_ENV, str(three_hours.data_dir / "elsewhere.duckdb"))
    code, out, err = run(capsys, "prove", "evt-001-0", "--data-dir", d)
    assert code == 0 and json.loads(out)["log_index"] == 1
    assert "no dataset at" in err

    code, _, err = run(capsys, "prove", "evt-001-0", "--data-dir", d, "--hour", str(H0 + HOUR))
    assert code == 0 and "(searched the given hour)" in err


@pytest.mark.e2e
def test_the_real_verify_command_on_a_read_only_mount_says_it_did_not_record(three_hours):
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("no mount namespaces here to mount the copy read-only")
    data_dir = three_hours.data_dir
    script = str(Path(sys.executable).with_name("audit-pipeline"))
    target = shlex.quote(str(data_dir))
    command = f"mount --bind -o ro {target} {target} && exec {script} verify --data-dir {target}"
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"not recorded in the verification history: {data_dir} is not writable" in done.stderr
    assert not (data_dir / history.RUNS_LOG).exists()
