"""audit-pipeline keys / verify / checkpoint / prove / verify-proof, in process, on Parquet."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from audit_pipeline.cli import main
from audit_pipeline.lake import write_events
from audit_pipeline.ledger import EventRecord, Ledger
from audit_pipeline.ledger.layout import HOUR, manifest_path
from audit_pipeline.ledger.note import generate_key

H0 = 1_764_547_200  # 2025-12-01T00:00Z


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def events_for(hour: int, n: int) -> list[EventRecord]:
    start = H0 + hour * HOUR
    return [
        EventRecord.from_entry(
            {
                "id": f"evt-{hour:03d}-{i}",
                "date_create": start + 60 * i,
                "action": "file_downloaded",
                "actor": {"type": "user", "user": {"id": "W1", "name": "Ada"}},
                "entity": {"type": "file", "file": {"id": f"F{i}", "name": "plan.pdf"}},
                "context": {"location": {"type": "workspace", "id": "T1", "name": "Acme"}},
            }
        )
        for i in range(n)
    ]


def commit_hours(ledger: Ledger, hours: range) -> None:
    for hour in hours:
        start = H0 + hour * HOUR
        ledger.commit_batch(
            window_start=start,
            window_end=start + HOUR,
            events=[] if hour == 2 else events_for(hour, 3),
            write_data=lambda evs, path, s=start: write_events(evs, path, window=(s, s + HOUR)),
            source={"api_url": "https://slack.test/audit/v1/logs", "pages": 1},
            run_id="cli-test",
        )


@pytest.fixture
def four_hours(ledger: Ledger) -> Ledger:
    commit_hours(ledger, range(4))
    return ledger


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "signing-key"


def test_keys_lifecycle(capsys, tmp_path: Path) -> None:
    data_dir, key = tmp_path / "d", tmp_path / "cfg" / "signing-key"
    args = ("--key-file", str(key), "--data-dir", str(data_dir))
    code, vkey, err = run(capsys, "keys", "init", "--name", "acme-audit", *args)
    assert code == 0 and vkey.startswith("acme-audit+") and "created signing key" in err
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text().strip() not in err + vkey
    assert run(capsys, "keys", "init", "--name", "acme-audit", *args)[1] == vkey
    assert run(capsys, "keys", "public", "--key-file", str(key))[1] == vkey
    code, new_vkey, err = run(capsys, "keys", "rotate", *args)
    assert code == 0 and new_vkey != vkey and "rotated" in err
    old_id = vkey.split("+")[1]
    code, _, err = run(
        capsys,
        "keys",
        "revoke",
        old_id,
        "--at",
        "2025-01-01T00:00:00Z",
        "--data-dir",
        str(data_dir),
    )
    assert code == 0 and "revoked" in err
    code, out, _ = run(capsys, "keys", "list", "--json", "--data-dir", str(data_dir))
    keys = {k["key_id"]: k for k in json.loads(out)["keys"]}
    assert keys[old_id]["revoked_at"] == 1_735_689_600
    assert keys[old_id]["status_now"] == "key_revoked"
    assert keys[new_vkey.split("+")[1]]["status_now"] == "valid"
    code, table, _ = run(capsys, "keys", "list", "--data-dir", str(data_dir))
    assert f"acme-audit+{old_id}" in table and "2025-01-01T00:00:00Z" in table
    assert run(capsys, "keys", "revoke", "ffffffff", "--data-dir", str(data_dir))[0] == 2
    assert (
        run(capsys, "keys", "revoke", old_id, "--at", "soon", "--data-dir", str(data_dir))[0] == 2
    )


def test_key_path_from_the_environment(capsys, tmp_path: Path, monkeypatch) -> None:
    key = tmp_path / "env-key"
    monkeypatch.setenv("AUDIT_SIGNING_KEY", str(key))
    monkeypatch.setenv("AUDIT_DATA_DIR", str(tmp_path / "envdata"))
    code, vkey, _ = run(capsys, "keys", "init")
    assert code == 0 and key.is_file() and (tmp_path / "envdata/ledger/keys/keyring.json").is_file()
    assert run(capsys, "keys", "public")[1] == vkey


def test_verify_clean_human_and_json(capsys, four_hours: Ledger) -> None:
    code, out, err = run(capsys, "verify", "--data-dir", str(four_hours.data_dir))
    assert (code, out) == (0, "")
    assert "\nOK: ledger test.example/audit intact: 4 batches" in "\n" + err
    assert "--trusted-keys" in err  # the data directory's own keyring was used
    code, out, err = run(
        capsys, "verify", "--json", "--jobs", "2", "--data-dir", str(four_hours.data_dir)
    )
    report = json.loads(out)
    assert code == 0 and report["schema"] == "audit_pipeline.verify/v1" and report["ok"]
    assert report["checked"]["events"] == 9 and report["tree_size"] == 4


def test_verify_depth_files_says_rows_were_not_rederived(capsys, four_hours: Ledger) -> None:
    args = ("verify", "--depth", "files", "--data-dir", str(four_hours.data_dir))
    code, out, err = run(capsys, *args)
    assert code == 0 and "file level: rows not re-derived" in err.splitlines()[0]
    assert "notice: rows_not_rederived" in err
    code, out, err = run(capsys, *args, "--json", "--jobs", "2")
    report = json.loads(out)
    assert code == 0 and report["checked"]["depth"] == "files"
    assert report["checked"]["data_files"] == 3 and "events" not in report["checked"]
    path = four_hours.data_dir / four_hours.manifests()[1].manifest.data.path
    path.chmod(0o644)
    path.write_bytes(path.read_bytes() + b"\n")
    code, out, err = run(capsys, *args, "--json")
    assert code == 1 and {"size_mismatch", "file_hash_mismatch"} <= {
        f["code"] for f in json.loads(out)["findings"]
    }


def test_verify_help_says_what_each_depth_proves(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "byte for byte what a signed manifest pinned" in text
    assert "a key holder signing a lie" in text and "worker processes" in text


def test_verify_findings_exit_1_with_one_json_document(capsys, four_hours: Ledger) -> None:
    (four_hours.data_dir / manifest_path(1)).unlink()
    code, out, err = run(capsys, "verify", "--json", "--data-dir", str(four_hours.data_dir))
    report = json.loads(out)
    assert code == 1 and not report["ok"]
    assert report["missing_sequences"] == [1]
    assert "missing_manifest" in report["finding_counts"]
    assert "\nFAIL: " in "\n" + err and "missing_manifest" in err


def test_checkpoint_then_truncation_is_caught(capsys, four_hours: Ledger, tmp_path) -> None:
    code, text, _ = run(capsys, "checkpoint", "--data-dir", str(four_hours.data_dir))
    assert code == 0 and text.splitlines()[:2] == ["test.example/audit", "4"]
    held = tmp_path / "held.checkpoint"
    held.write_text(text)
    assert (
        run(
            capsys,
            "verify",
            "--trusted-checkpoint",
            str(held),
            "--incremental",
            "--data-dir",
            str(four_hours.data_dir),
        )[0]
        == 0
    )
    newest = four_hours.manifests()[3].manifest
    (four_hours.data_dir / newest.data.path).unlink()
    (four_hours.data_dir / manifest_path(3)).unlink()
    (four_hours.data_dir / "ledger/checkpoints/00000004.checkpoint").unlink()
    assert run(capsys, "verify", "--data-dir", str(four_hours.data_dir))[0] == 0
    code, out, _ = run(
        capsys,
        "verify",
        "--json",
        "--trusted-checkpoint",
        str(held),
        "--data-dir",
        str(four_hours.data_dir),
    )
    assert code == 1 and json.loads(out)["finding_counts"] == {"tail_truncated": 1}


def test_trusted_keys_file(capsys, four_hours: Ledger, key_file: Path, tmp_path) -> None:
    vkey = run(capsys, "keys", "public", "--key-file", str(key_file))[1]
    trusted = tmp_path / "auditor.vkeys"
    trusted.write_text("# from the ledger operator, by phone\n" + vkey)
    code, _, err = run(
        capsys, "verify", "--trusted-keys", str(trusted), "--data-dir", str(four_hours.data_dir)
    )
    assert code == 0 and "--trusted-keys" not in err
    malformed = tmp_path / "malformed.vkeys"
    malformed.write_text("other+00000000+AQ==\n")
    assert (
        run(
            capsys,
            "verify",
            "--trusted-keys",
            str(malformed),
            "--data-dir",
            str(four_hours.data_dir),
        )[0]
        == 2
    )
    stranger = tmp_path / "stranger.vkeys"
    stranger.write_text(generate_key("test-log")[1] + "\n")
    code, out, _ = run(
        capsys,
        "verify",
        "--json",
        "--trusted-keys",
        str(stranger),
        "--data-dir",
        str(four_hours.data_dir),
    )
    assert code == 1 and set(json.loads(out)["finding_counts"]) == {"unknown_key"}


def test_usage_errors_exit_2(capsys, four_hours: Ledger, tmp_path: Path) -> None:
    d = str(four_hours.data_dir)
    assert run(capsys, "verify", "--incremental", "--data-dir", d)[0] == 2
    assert run(capsys, "verify", "--jobs", "0", "--data-dir", d)[0] == 2
    assert run(capsys, "verify", "--data-dir", str(tmp_path / "none"))[0] == 2
    assert (
        run(capsys, "verify", "--trusted-checkpoint", str(tmp_path / "none"), "--data-dir", d)[0]
        == 2
    )
    assert run(capsys, "prove", "no-such-event", "--data-dir", d)[0] == 2


def test_checkpoint_of_an_empty_ledger_exits_3(capsys, data_dir: Path, signing_key) -> None:
    code, out, err = run(capsys, "checkpoint", "--data-dir", str(data_dir))
    assert (code, out) == (3, "") and "no checkpoint" in err


def test_prove_and_verify_proof(capsys, four_hours: Ledger, key_file: Path, tmp_path) -> None:
    proof_file = tmp_path / "evt.proof.json"
    code, _, err = run(
        capsys,
        "prove",
        "evt-003-1",
        "--out",
        str(proof_file),
        "--data-dir",
        str(four_hours.data_dir),
    )
    assert code == 0 and "batch 3" in err
    assert proof_file.stat().st_size < 4096
    vkey = run(capsys, "keys", "public", "--key-file", str(key_file))[1].strip()
    code, out, err = run(capsys, "verify-proof", str(proof_file), "--public-key", vkey)
    assert code == 0 and json.loads(out)["id"] == "evt-003-1" and err.startswith("OK: event")
    vkeys = tmp_path / "vkeys"
    vkeys.write_text(vkey + "\n")
    assert run(capsys, "verify-proof", str(proof_file), "--public-key", str(vkeys))[0] == 0
    by_hour = run(
        capsys,
        "prove",
        "evt-003-1",
        "--hour",
        "2025-12-01T03:30:00Z",
        "--data-dir",
        str(four_hours.data_dir),
    )[1]
    assert json.loads(by_hour) == json.loads(proof_file.read_text())

    doc = json.loads(proof_file.read_text())
    doc["event"]["action"] = "file_uploaded"
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(doc))
    code, out, err = run(capsys, "verify-proof", str(tampered), "--public-key", vkey)
    assert code == 1 and out == "" and "event in its batch" in err
    other = run(
        capsys,
        "keys",
        "init",
        "--key-file",
        str(tmp_path / "k2"),
        "--data-dir",
        str(tmp_path / "d2"),
    )[1].strip()
    code, _, err = run(capsys, "verify-proof", str(proof_file), "--public-key", other)
    assert code == 1 and "unknown key" in err
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    assert run(capsys, "verify-proof", str(garbage), "--public-key", vkey)[0] == 1


@pytest.mark.parametrize(
    "command",
    [["keys"], ["keys", "init"], ["verify"], ["checkpoint"], ["prove"], ["verify-proof"]],
)
def test_help_documents_exit_codes(capsys, command: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    assert "exit codes: 0" in capsys.readouterr().out


def test_keys_restart_signer_is_recorded(capsys, four_hours: Ledger, tmp_path: Path) -> None:
    from audit_pipeline.ledger.signer_state import load_signer_state

    state = tmp_path / "state"
    args = ("--state", str(state), "--data-dir", str(four_hours.data_dir))
    with pytest.raises(SystemExit):  # --reason is required
        run(capsys, "keys", "restart-signer", *args)
    code, _, err = run(capsys, "keys", "restart-signer", "--reason", "restored backup", *args)
    assert code == 0 and "restarted on purpose" in err and "continues from size 4" in err
    recorded = load_signer_state(state)
    assert recorded.size == 4 and recorded.resets[0]["reason"] == "restored backup"


def test_verify_against_the_signer_state_sees_truncation(
    capsys, four_hours: Ledger, tmp_path: Path
) -> None:
    from audit_pipeline.ledger.signer_state import reset_signer_state

    data_dir = four_hours.data_dir
    state = tmp_path / "signing-key.state"
    newest = (data_dir / "ledger/checkpoints/00000004.checkpoint").read_bytes()
    reset_signer_state(state, reason="test", now=1, adopt=newest)
    (data_dir / manifest_path(3)).unlink()
    (data_dir / "ledger/checkpoints/00000004.checkpoint").unlink()
    for path in (data_dir / "lake").rglob("00000003-*"):
        path.unlink()
    assert run(capsys, "verify", "--no-record", "--data-dir", str(data_dir))[0] == 0
    code, _, err = run(
        capsys, "verify", "--no-record", "--signer-state", str(state), "--data-dir", str(data_dir)
    )
    assert code == 1 and "tail_truncated" in err and "tail_truncation" not in err
