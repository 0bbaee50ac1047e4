"""An auditor installs only the verifier (no Dagster, Slack client or DuckDB) into an empty
virtual environment, from wheels and without a package index as the bundle's README says
for an offline machine, and checks a zipped evidence bundle with it."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _source_copy(where: Path) -> Path:
    """A copy of the checkout's package sources (so the build leaves nothing in it)."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, where / name)
    shutil.copytree(
        ROOT / "audit_pipeline", where / "audit_pipeline",
        ignore=shutil.ignore_patterns("__pycache__"),
    )  # fmt: skip
    return where


@pytest.mark.e2e
@pytest.mark.slow
def test_a_bundle_verifies_from_a_fresh_venv_without_dagster(
    scenario_dataset, tmp_path_factory, fresh_venv, cli
):
    work = tmp_path_factory.mktemp("auditor")
    source = _source_copy(tmp_path_factory.mktemp("source"))
    python = fresh_venv("verifier")
    # as the bundle README says for an offline machine: wheels fetched elsewhere, then an
    # install that may not reach any index
    wheels = tmp_path_factory.mktemp("wheels")
    fetched = subprocess.run(
        [str(python), "-m", "pip", "wheel", "--quiet", "-w", str(wheels), str(source)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if fetched.returncode != 0:
        pytest.skip(f"no package index to fetch the verifier's wheels: {fetched.stderr[-300:]}")
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-index", "--find-links",
         str(wheels), "audit-pipeline"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    names = sorted(p.name.split("-")[0].lower() for p in wheels.glob("*.whl"))
    assert "dagster" not in names and "duckdb" not in names and "slack_sdk" not in names
    tool = python.parent / "audit-pipeline"

    bundle = work / "evidence.zip"
    argv = ["--start", "2025-11-29T00", "--end", "2025-11-29T03", "--out", str(bundle)]
    assert cli("export-evidence", "--data-dir", str(scenario_dataset), *argv)[0] == 0
    code, keys, _ = cli("keys", "public", "--data-dir", str(scenario_dataset))
    assert code == 0
    (work / "keys.txt").write_text(keys)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(tool), *args], cwd=work, capture_output=True, text=True, timeout=120,
            env={"PATH": f"{python.parent}:/usr/bin:/bin", "HOME": str(work)},
        )  # fmt: skip

    # nothing of the pipeline is installed
    absent = subprocess.run(
        [str(python), "-c", "import dagster"], capture_output=True, text=True, check=False
    )
    assert absent.returncode != 0 and "No module named 'dagster'" in absent.stderr
    for module in ("slack_sdk", "duckdb"):
        probe = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True)
        assert probe.returncode != 0, module

    # the README inside the bundle tells the auditor to run exactly this
    readme = zipfile.ZipFile(bundle).read("README.md").decode()
    assert "audit-pipeline verify evidence.zip --trusted-keys" in readme
    assert "dependencies (cryptography, orjson, pyarrow)" in readme
    proc = run("verify", "evidence.zip", "--trusted-keys", "keys.txt")
    assert proc.returncode == 0, proc.stderr
    assert "OK: ledger test.example/audit intact" in proc.stderr

    # a command of the pipeline says what to install instead of a traceback
    proc = run("sync", "--start", "2025-11-29T00", "--end", "2025-11-29T01")
    assert proc.returncode == 2
    assert "pip install 'audit-pipeline[pipeline]'" in proc.stderr
    assert "Traceback" not in proc.stderr
