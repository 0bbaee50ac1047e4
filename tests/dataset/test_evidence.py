"""Evidence bundles verify offline from the bundle alone, and any tampering fails them."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from audit_pipeline.dataset.evidence import (
    EVIDENCE_FILE,
    EvidenceError,
    export_evidence,
    verify_bundle,
)
from audit_pipeline.lake import PARQUET_FORMAT
from audit_pipeline.ledger import verify_ledger

T0 = 1_764_374_400  # 2025-11-29T00:00Z, the scenario's first hour


@pytest.fixture(scope="module")
def bundle(scenario_dataset, tmp_path_factory) -> Path:
    """A bundle for hours 1..2 of the scenario (hours 0, 3, 4 are outside)."""
    t0 = 1_764_374_400
    out = tmp_path_factory.mktemp("evidence") / "bundle"
    result = export_evidence(scenario_dataset, start=t0 + 3600, end=t0 + 3 * 3600, out=out)
    assert (result.batches_in_range, result.data_files) == (2, 2)
    return out


@pytest.fixture
def copy(bundle, tmp_path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(bundle, target)
    for path in target.rglob("*"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return target


def test_partial_bundle_verifies_offline_with_only_its_files(copy):
    report = verify_bundle(copy)
    assert report, report.summary()
    excluded = [n for n in report.notices if n.code == "data_outside_range"]
    assert len(excluded) == 3  # hour 0 (hour + late batch) and hour 4
    parquet = sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*.parquet"))
    assert parquet == [
        "lake/date=2025-11-29/hour=01/00000002-hour.parquet",
        "lake/date=2025-11-29/hour=02/00000003-hour.parquet",
    ]
    assert not list(copy.rglob("*signing-key*"))
    assert "PRIVATE" not in (copy / "ledger/keys/keyring.json").read_text()
    readme = (copy / "README.md").read_text()
    assert "audit-pipeline verify --data-dir ." in readme
    doc = json.loads((copy / EVIDENCE_FILE).read_text())
    assert doc["range"]["start_utc"] == "2025-11-29T01:00Z"
    assert doc["events_in_range"] == 11


def _flip_byte(rel: str) -> Callable[[Path], None]:
    def tamper(root: Path) -> None:
        path = root / rel
        data = bytearray(path.read_bytes())
        data[len(data) // 3] ^= 0x20
        path.write_bytes(bytes(data))

    return tamper


def _delete(rel: str) -> Callable[[Path], None]:
    return lambda root: (root / rel).unlink()


def _inject(root: Path) -> None:
    src = root / "lake/date=2025-11-29/hour=01/00000002-hour.parquet"
    shutil.copyfile(src, src.with_name("00000099-hour.parquet"))


def _swap_keys(root: Path) -> None:
    from audit_pipeline.ledger.keys import Keyring, TrustedKey
    from audit_pipeline.ledger.note import generate_key

    _, vkey = generate_key("test-log")
    ring = Keyring((TrustedKey.from_vkey(vkey, valid_from=0),))
    (root / "ledger/keys/keyring.json").write_bytes(ring.to_bytes())


def _edit_manifest(root: Path) -> None:
    path = root / "ledger/manifests/00000002.json"
    path.write_bytes(path.read_bytes().replace(b'"rows":7', b'"rows":6'))


def _shrink_claimed_range(root: Path) -> None:
    """Delete an in-range file and pretend the range never covered it."""
    (root / "lake/date=2025-11-29/hour=02/00000003-hour.parquet").unlink()
    doc = json.loads((root / EVIDENCE_FILE).read_text())
    doc["range"]["end"] -= 3600
    (root / EVIDENCE_FILE).write_text(json.dumps(doc))


TAMPERING = {
    "flipped byte in data": _flip_byte("lake/date=2025-11-29/hour=01/00000002-hour.parquet"),
    "in-range data file deleted": _delete("lake/date=2025-11-29/hour=02/00000003-hour.parquet"),
    "file injected": _inject,
    "manifest edited": _edit_manifest,
    "manifest deleted": _delete("ledger/manifests/00000001.json"),
    "newest manifest deleted": _delete("ledger/manifests/00000005.json"),
    "checkpoint edited": _flip_byte("ledger/checkpoints/00000006.checkpoint"),
    "keys replaced": _swap_keys,
    "range shrunk to hide a deletion": _shrink_claimed_range,
}


@pytest.mark.parametrize("how", list(TAMPERING))
def test_any_tampering_fails_verification(copy, how):
    assert verify_bundle(copy)
    TAMPERING[how](copy)
    report = verify_bundle(copy)
    assert not report, f"{how}: tampered bundle still verifies"


def test_whole_ledger_bundle_is_a_plain_ledger_copy(scenario_dataset, tmp_path):
    t0 = 1_764_374_400
    out = tmp_path / "all"
    export_evidence(scenario_dataset, start=t0, end=t0 + 5 * 3600, out=out)
    report = verify_ledger(out, file_format=PARQUET_FORMAT)
    assert report, report.summary()
    assert report.notices == ()


def test_zip_bundle_unpacks_and_verifies(scenario_dataset, tmp_path):
    t0 = 1_764_374_400
    out = tmp_path / "evidence.zip"
    export_evidence(scenario_dataset, start=t0, end=t0 + 3600, out=out)
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "unpacked")
    assert "README.md" in names and EVIDENCE_FILE in names
    assert verify_bundle(tmp_path / "unpacked")


def test_bad_requests_are_refused_clearly(scenario_dataset, bundle, tmp_path):
    t0 = 1_764_374_400
    with pytest.raises(EvidenceError, match="already exists"):
        export_evidence(scenario_dataset, start=t0, end=t0 + 3600, out=bundle)
    with pytest.raises(EvidenceError, match="no committed batch"):
        export_evidence(scenario_dataset, start=t0 - 7200, end=t0, out=tmp_path / "x")
    with pytest.raises(EvidenceError, match="whole UTC hours"):
        export_evidence(scenario_dataset, start=t0 + 1, end=t0 + 3600, out=tmp_path / "y")
    with pytest.raises(EvidenceError, match="not an evidence bundle"):
        verify_bundle(tmp_path)


def test_verify_command_passes_on_a_whole_ledger_bundle_and_fails_after_tampering(
    scenario_dataset, tmp_path, cli
):
    t0 = 1_764_374_400
    out = tmp_path / "all"
    export_evidence(scenario_dataset, start=t0, end=t0 + 5 * 3600, out=out)
    code, stdout, stderr = cli("verify", "--data-dir", str(out))
    assert code == 0, stdout + stderr
    victim = out / "lake/date=2025-11-29/hour=01/00000002-hour.parquet"
    victim.chmod(0o644)
    _flip_byte("lake/date=2025-11-29/hour=01/00000002-hour.parquet")(out)
    code, stdout, stderr = cli("verify", "--data-dir", str(out))
    assert code == 1 and "file_hash_mismatch" in stdout + stderr


def _unshared(argv: list[str], read_only: Path | None = None) -> list[str]:
    """_unshared runs ``argv`` without a network (and with ``read_only`` mounted read-only)
    when this machine allows unprivileged namespaces; otherwise as it is."""
    probe = subprocess.run(["unshare", "-n", "-m", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        return argv
    mount = f"mount --bind -o ro {shlex.quote(str(read_only))} {shlex.quote(str(read_only))} && "
    script = (mount if read_only else "") + "exec " + shlex.join(argv)
    return ["unshare", "-n", "-m", "sh", "-c", script]


@pytest.mark.e2e
def test_the_real_verify_command_passes_offline_on_a_partial_bundle_copy(bundle, tmp_path):
    copy = tmp_path / "elsewhere" / "bundle"
    shutil.copytree(bundle, copy)
    script = str(Path(sys.executable).with_name("audit-pipeline"))
    argv = [script, "verify", "--data-dir", str(copy), "--json"]
    done = subprocess.run(
        _unshared(argv, read_only=copy), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert report["data_range"] == {"start": T0 + 3600, "end": T0 + 3 * 3600}
    assert [n["code"] for n in report["notices"]] == ["data_outside_range"] * 3
    assert "data range 2025-11-29T01:00Z..2025-11-29T03:00Z from the bundle's" in done.stderr
    assert "not recorded in a verification history: this is an evidence bundle" in done.stderr
    assert not (copy / "verification").exists()

    _flip_byte("lake/date=2025-11-29/hour=02/00000003-hour.parquet")(copy)
    done = subprocess.run(_unshared(argv), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert json.loads(done.stdout)["finding_counts"].get("file_hash_mismatch") == 1


def _hide_a_deletion_consistently(root: Path) -> None:
    """Delete the last in-range file and rewrite EVIDENCE.json as if it was never exported."""
    victim = "lake/date=2025-11-29/hour=02/00000003-hour.parquet"
    (root / victim).unlink()
    doc = json.loads((root / EVIDENCE_FILE).read_text())
    doc["range"]["end"] -= 3600
    doc["data_files"] = [f for f in doc["data_files"] if f["path"] != victim]
    doc["batches_in_range"] = [s for s in doc["batches_in_range"] if s != 3]
    (root / EVIDENCE_FILE).write_text(json.dumps(doc))


def test_verify_checks_the_claimed_range_and_the_range_the_auditor_asked_for(copy, cli):
    code, _, err = cli("verify", "--data-dir", str(copy))
    assert code == 0, err
    assert "data range 2025-11-29T01:00Z..2025-11-29T03:00Z from the bundle's EVIDENCE.json" in err
    assert "not signed" in err and "--range" in err
    assert not (copy / "verification").exists()

    # EVIDENCE.json is not signed, so a consistent edit narrows what the bundle claims; the
    # verifier says where the range came from, and the auditor's own range catches it.
    _hide_a_deletion_consistently(copy)
    asked = ("--range", "2025-11-29T01:00:00Z", "2025-11-29T03:00:00Z")
    code, out, err = cli("verify", "--data-dir", str(copy), *asked, "--json")
    assert code == 1 and "from --range" in err
    report = json.loads(out)
    assert report["finding_counts"] == {"data_file_missing": 1}
    assert report["findings"][0]["location"].endswith("00000003-hour.parquet")


def test_a_bundle_claiming_hours_the_log_never_had_fails(copy, cli):
    doc = json.loads((copy / EVIDENCE_FILE).read_text())
    doc["range"] = {"start": T0 - 10 * 3600, "end": T0 - 9 * 3600}
    doc["data_files"] = []
    (copy / EVIDENCE_FILE).write_text(json.dumps(doc))
    for path in copy.rglob("*.parquet"):
        path.unlink()
    report = verify_bundle(copy)
    assert set(report.codes()) == {"range_not_covered"}
    code, _, err = cli("verify", "--data-dir", str(copy))
    assert code == 1 and "range_not_covered" in err


def test_a_bad_range_is_a_usage_error(copy, cli):
    code, _, err = cli("verify", "--data-dir", str(copy), "--range", "2025-11-29T01:30Z", "x")
    assert code == 2 and "not a time" in err
    code, _, err = cli(
        "verify", "--data-dir", str(copy), "--range", "2025-11-29T01:30Z", "2025-11-29T03:00Z"
    )
    assert code == 2 and "whole UTC hours" in err
    doc = json.loads((copy / EVIDENCE_FILE).read_text())
    doc["range"] = {"start": "soon"}
    (copy / EVIDENCE_FILE).write_text(json.dumps(doc))
    code, _, err = cli("verify", "--data-dir", str(copy))
    assert code == 2 and "has no valid range" in err


def test_export_claims_only_hours_the_log_has(scenario_dataset, tmp_path):
    out = tmp_path / "tail"
    result = export_evidence(scenario_dataset, start=T0 + 3 * 3600, end=T0 + 48 * 3600, out=out)
    assert (result.start, result.end) == (T0 + 3 * 3600, T0 + 5 * 3600)
    assert "asked for 2025-11-29T03:00Z..2025-12-01T00:00Z" in result.summary()
    assert json.loads((out / EVIDENCE_FILE).read_text())["range"]["end"] == T0 + 5 * 3600
    assert verify_bundle(out)


def test_bundle_modes_whatever_the_umask(scenario_dataset, tmp_path):
    """Like the data directory: files read-only, directories 0755, under umask 000 too."""
    old = os.umask(0)
    try:
        out = tmp_path / "bundle"
        export_evidence(scenario_dataset, start=T0 + 3600, end=T0 + 2 * 3600, out=out)
        export_evidence(
            scenario_dataset, start=T0 + 3600, end=T0 + 2 * 3600, out=tmp_path / "b.zip"
        )
    finally:
        os.umask(old)
    modes = {p.relative_to(out).as_posix(): p.stat().st_mode & 0o777 for p in out.rglob("*")}
    modes["."] = out.stat().st_mode & 0o777
    assert {m for p, m in modes.items() if (out / p).is_dir()} == {0o755}
    assert {m for p, m in modes.items() if (out / p).is_file()} == {0o444}
    assert (tmp_path / "b.zip").stat().st_mode & 0o777 == 0o444
    with zipfile.ZipFile(tmp_path / "b.zip") as archive:
        assert {(i.external_attr >> 16) & 0o777 for i in archive.infolist()} == {0o444}


def test_an_unverified_ledger_is_not_exported_and_the_count_reads_well(scenario_dataset, tmp_path):
    from audit_pipeline.dataset.build import DatasetIntegrityError

    data_dir = tmp_path / "data"
    shutil.copytree(scenario_dataset, data_dir)
    (data_dir / "lake" / "stray.parquet").write_bytes(b"not committed")  # one finding
    with pytest.raises(DatasetIntegrityError, match=r"did not verify \(1 finding\)"):
        export_evidence(data_dir, start=T0, end=T0 + 3600, out=tmp_path / "ev")
    assert not (tmp_path / "ev").exists()
