"""The path a stranger follows: get the public key and a checkpoint from the log's owner,
verify a zipped bundle with them, check a proof; and the notebook's commands as printed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "auditor.ipynb"
START, END = "2025-11-29T00", "2025-11-29T03"


@pytest.fixture
def handed_over(scenario_dataset, tmp_path, cli):
    """What the owner hands an auditor: keys, a checkpoint and a zipped bundle."""
    code, keys, _ = cli("keys", "public", "--data-dir", str(scenario_dataset))
    assert code == 0
    (tmp_path / "keys.txt").write_text(keys)
    code, checkpoint, _ = cli("checkpoint", "--data-dir", str(scenario_dataset))
    assert code == 0
    (tmp_path / "checkpoint.txt").write_text(checkpoint)
    bundle = tmp_path / "evidence.zip"
    argv = ["--start", START, "--end", END, "--out", str(bundle)]
    assert cli("export-evidence", "--data-dir", str(scenario_dataset), *argv)[0] == 0
    return tmp_path


def test_keys_public_prints_the_keyrings_full_vkeys(scenario_dataset, cli):
    keyring = json.loads((scenario_dataset / "ledger/keys/keyring.json").read_text())
    vkeys = [k["vkey"] for k in keyring["keys"]]
    code, out, _ = cli("keys", "public", "--data-dir", str(scenario_dataset))
    assert code == 0
    lines = [ln for ln in out.splitlines() if not ln.startswith("#")]
    assert [ln.split()[0] for ln in lines] == vkeys
    # each key's window is on its line, so a file of them keeps a revocation in force
    from audit_pipeline.ledger.keys import load_keyring, parse_trusted_keys

    handed = parse_trusted_keys(out.encode(), source="keys.txt")
    assert handed.keys == load_keyring(scenario_dataset).keys
    code, out, _ = cli("keys", "list", "--data-dir", str(scenario_dataset))
    assert code == 0 and all(v in out for v in vkeys)


def test_a_zipped_bundle_verifies_with_the_handed_over_key_and_checkpoint(handed_over, cli):
    trust = ["--trusted-keys", str(handed_over / "keys.txt")]
    trust += ["--trusted-checkpoint", str(handed_over / "checkpoint.txt")]
    bundle = str(handed_over / "evidence.zip")
    code, _, err = cli("verify", bundle, *trust)
    assert code == 0, err
    assert "reading the zipped evidence bundle" in err and "OK: ledger" in err
    assert "keys: used the data directory's own keyring" not in err
    assert cli("verify", "--data-dir", bundle, *trust)[0] == 0


def test_a_changed_byte_in_a_zipped_bundle_fails(handed_over, cli):
    original = handed_over / "evidence.zip"
    changed = handed_over / "changed.zip"
    with zipfile.ZipFile(original) as src, zipfile.ZipFile(changed, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith(".parquet") and "hour=01" in info.filename:
                data = data[:100] + bytes([data[100] ^ 1]) + data[101:]
            dst.writestr(info, data)
    code, _, err = cli("verify", str(changed), "--trusted-keys", str(handed_over / "keys.txt"))
    assert code == 1
    assert "FAIL" in err


def test_a_zip_member_escaping_the_bundle_is_refused(handed_over, cli):
    evil = handed_over / "evil.zip"
    shutil.copy(handed_over / "evidence.zip", evil)
    with zipfile.ZipFile(evil, "a") as archive:
        archive.writestr("../escaped.txt", "x")
    code, _, err = cli("verify", str(evil))
    assert code == 2
    assert err.strip().splitlines()[-1].endswith("refusing unsafe member '../escaped.txt'")
    assert not (handed_over.parent / "escaped.txt").exists()


def _notebook_commands() -> list[str]:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    text = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return re.findall(r"`(audit-pipeline [^`]+)`", text.replace("\n", " "))


@pytest.mark.e2e
def test_the_notebooks_commands_run_as_printed(scenario_dataset, tmp_path):
    """Every command the notebook tells a reader to type, in order, with its placeholders
    (DATA_DIR, EVENT_ID) filled in, in a shell, exits 0."""
    data_dir = tmp_path / "data"
    shutil.copytree(scenario_dataset, data_dir)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "AUDIT_DATA_DIR": str(data_dir),
    }
    commands = _notebook_commands()
    assert len(commands) >= 5
    for command in commands:
        command = command.replace("DATA_DIR", str(data_dir)).replace("EVENT_ID", "ev-login-a1")
        proc = subprocess.run(
            command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, f"{command}: {proc.stderr}"
    assert "proved" in proc.stderr or "OK" in proc.stderr


def test_notebook_mentions_only_real_flags():
    commands = _notebook_commands()
    assert any("verify-proof" in c and "--public-key" in c for c in commands)
    assert not any("verify-proof" in c and "--trusted-keys" in c for c in commands)


def test_a_proof_checks_against_the_handed_over_keys_and_says_who_signed(
    scenario_dataset, handed_over, cli
):
    proof = handed_over / "proof.json"
    argv = ["prove", "ev-login-a1", "--data-dir", str(scenario_dataset), "--out", str(proof)]
    assert cli(*argv)[0] == 0
    code, out, err = cli("verify-proof", str(proof), "--public-key", str(handed_over / "keys.txt"))
    assert code == 0, err
    line = err.strip().splitlines()[0]
    assert line.startswith("OK: event ev-login-a1 (date_create 2025-11-29T00:00:10Z)")
    assert ", signed by key test-log+" in line
    assert json.loads(out)["id"] == "ev-login-a1"


def test_a_changed_byte_the_zip_itself_notices_is_an_integrity_failure(handed_over, cli):
    """A byte changed inside a stored member: the archive's CRC-32 no longer matches. That
    is the bundle changing after it was made (exit 1), not an unexpected error (exit 3)."""
    original = handed_over / "evidence.zip"
    with zipfile.ZipFile(original) as archive:
        member = next(i for i in archive.infolist() if i.filename.endswith(".parquet"))
    data = bytearray(original.read_bytes())
    header = member.header_offset
    name = int.from_bytes(data[header + 26 : header + 28], "little")
    extra = int.from_bytes(data[header + 28 : header + 30], "little")
    at = header + 30 + name + extra + member.compress_size // 2
    data[at] ^= 0xFF  # a byte in the middle of the member's stored bytes
    changed = handed_over / "crc.zip"
    changed.write_bytes(bytes(data))
    code, _, err = cli("verify", str(changed), "--trusted-keys", str(handed_over / "keys.txt"))
    assert code == 1, err
    assert "the bundle was changed after it was zipped" in err and "Traceback" not in err
