"""The witness flow as users run it: ``witness keys init``, ``witness serve`` (two processes),
``sync`` with AUDIT_WITNESSES, ``verify --witness-key``, ``prove`` / ``verify-proof`` with
witness keys, and the alarm after the newest batch is deleted and its hour committed again."""

from __future__ import annotations

import importlib.util
import json
import stat
import sys
import time
from pathlib import Path

import pytest

from audit_pipeline.cli import main
from audit_pipeline.ledger.cosignature import WitnessSigner
from audit_pipeline.ledger.layout import CHECKPOINTS, HOUR, manifest_path
from audit_pipeline.ledger.manifest import parse_manifest
from audit_pipeline.slack.emulator import running_emulator

_spec = importlib.util.spec_from_file_location(
    "_witness_cli_helpers", Path(__file__).parents[1] / "witness" / "conftest.py"
)
_helpers = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _helpers
_spec.loader.exec_module(_helpers)
start_witness = _helpers.start_witness


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def hour_text(start: int) -> str:
    return time.strftime("%Y-%m-%dT%H", time.gmtime(start))


def test_witness_keys_init_writes_a_private_key_once(tmp_path: Path, capsys) -> None:
    key = tmp_path / "w" / "key"
    code, out, _ = run(capsys, "witness", "keys", "init", "--key", str(key), "--name", "w.test/1")
    assert code == 0 and out.startswith("w.test/1+") and "PRIVATE" not in out
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text().startswith("PRIVATE+KEY+w.test/1+")
    code, _, err = run(capsys, "witness", "keys", "init", "--key", str(key), "--name", "w.test/1")
    assert code == 2 and "already exists" in err


@pytest.mark.e2e
def test_sync_with_two_witnesses_then_a_rewritten_hour(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, start_witness
) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("AUDIT_SIGNING_KEY", str(tmp_path / "signing-key"))
    code, vkey, _ = run(capsys, "keys", "init", "--data-dir", str(data))
    assert code == 0
    log = f"audit-pipeline/ledger={vkey.strip()}"
    w1 = start_witness(tmp_path / "w1", "witness.test/w1", [log])
    w2 = start_witness(tmp_path / "w2", "witness.test/w2", [log])
    monkeypatch.setenv("AUDIT_WITNESSES", f"w1 {w1.url} {w1.vkey}\nw2 {w2.url} {w2.vkey}")
    witness_args = ["--witness-key", w1.vkey, "--witness-key", w2.vkey]
    end = int(time.time() // HOUR) * HOUR - HOUR
    start = end - 2 * HOUR
    sync = ["sync", "--start", hour_text(start), "--end", hour_text(end), "--lookback", "0"]
    sync += ["--data-dir", str(data), "--max-calls-per-minute", "0"]
    with running_emulator(
        start=start, end=end, events_per_hour=15, seed=3, rate_limit_per_min=0
    ) as emulator:
        monkeypatch.setenv("SLACK_AUDIT_TOKEN", emulator.token)
        monkeypatch.setenv("SLACK_AUDIT_BASE_URL", emulator.base_url)
        code, _, err = run(capsys, *sync)
        assert code == 0, err
        assert err.count("cosigned by 2/2 (quorum 2, met)") == 2

        code, _, err = run(capsys, "verify", "--data-dir", str(data), "--no-record", *witness_args)
        assert code == 0, err
        assert "checkpoint 2 cosigned by 2 of 2 trusted witnesses" in err

        manifest = parse_manifest((data / manifest_path(1)).read_bytes())
        proof = tmp_path / "proof.json"
        event_id = _first_event_id(data, manifest)
        code, _, err = run(
            capsys, "prove", event_id, "--data-dir", str(data), "--batch", "1", "--out", str(proof)
        )
        assert code == 0, err
        check = ["verify-proof", str(proof), "--public-key", vkey.strip()]
        code, _, err = run(capsys, *check, *witness_args)
        assert code == 0 and "cosigned by witness.test/w1" in err
        stranger = WitnessSigner.generate("witness.test/w3").key.vkey
        code, _, err = run(capsys, *check, "--witness-key", stranger)
        assert code == 1 and "quorum is 1" in err

        code, _, err = run(capsys, "dataset", "build", "--data-dir", str(data))
        assert code == 0, err
        html = tmp_path / "report.html"
        code, _, err = run(capsys, "report", "--data-dir", str(data), "--out", str(html))
        assert code == 0, err
        page = html.read_text()
        assert "2 of 2 trusted witnesses cosigned size 2 (quorum 2)" in page
        assert "witness.test/w1" in page and "witness.test/w2" in page

        bundle = tmp_path / "bundle"
        code, _, err = run(
            capsys, "export-evidence", "--start", hour_text(start), "--end", hour_text(end),
            "--out", str(bundle), "--data-dir", str(data),
        )  # fmt: skip
        assert code == 0, err
        assert (bundle / "WITNESS-KEYS.txt").read_text().split() == [w1.vkey, w2.vkey]
        assert f"--witness-key {w1.vkey}" in (bundle / "README.md").read_text()
        code, _, err = run(capsys, "verify", "--data-dir", str(bundle), *witness_args)
        assert code == 0 and "cosigned by 2 of 2" in err, err

        # The insider, with a copy of the signing key (none of the state a signer may keep
        # beside it), deletes the newest batch and its checkpoint and syncs the hour again.
        stolen = tmp_path / "stolen-key"
        stolen.write_bytes((tmp_path / "signing-key").read_bytes())
        stolen.chmod(0o600)
        monkeypatch.setenv("AUDIT_SIGNING_KEY", str(stolen))
        (data / manifest.manifest.data.path).unlink()
        (data / manifest_path(1)).unlink()
        (data / CHECKPOINTS / "00000002.checkpoint").unlink()
        code, out, err = run(capsys, *sync[:2], hour_text(end - HOUR), *sync[3:], "--json")
        assert code == 1, err
        assert "INTEGRITY ALARM" in err and "w1:" in err and "w2:" in err
        outcomes = json.loads(out)["witnesses"][-1]["outcomes"]
        assert {o["status"] for o in outcomes} == {"inconsistent"}

    code, _, err = run(capsys, "verify", "--data-dir", str(data), "--no-record", *witness_args)
    assert code == 1
    assert "witness_conflict" in err and "witness.test/w1" in err and "witness.test/w2" in err


def _first_event_id(data: Path, signed) -> str:
    from audit_pipeline.lake import PARQUET_FORMAT

    return PARQUET_FORMAT.read_events(data / signed.manifest.data.path)[0].event_id


def test_demo_runs_a_local_witness_that_cosigns_and_catches_up(tmp_path: Path, capsys) -> None:
    data = tmp_path / "demo"
    assert main(["demo", "--hours", "2", "--events-per-hour", "20", "--data-dir", str(data)]) == 0
    out, err = capsys.readouterr()
    # two hours of each source: four batches, each checkpoint cosigned after its commit
    assert "checkpoint 4 cosigned by 1 of 1 trusted witnesses" in out
    assert "cosigned by 1/1 (quorum 1, met)" in err
    witness_dir = tmp_path / "demo-witness"
    assert (witness_dir / "witness-key").exists() and (witness_dir / "state" / "logs").is_dir()
    assert len(list((data / "ledger" / "witnessed").glob("*.checkpoint"))) == 4
    # Again: nothing new to commit, the witness is still asked about the latest checkpoint.
    assert main(["demo", "--hours", "2", "--events-per-hour", "20", "--data-dir", str(data)]) == 0
    assert "cosigned by 1 of 1 trusted witnesses" in capsys.readouterr().out
