"""The HTML report is self-contained, tells the verdict first, and renders in Chromium."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from audit_pipeline.dataset import history
from audit_pipeline.dataset.build import dataset_path
from audit_pipeline.dataset.report import write_report

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def test_report_is_self_contained_and_complete(scenario_dataset, tmp_path):
    page = write_report(tmp_path / "report.html", data_dir=scenario_dataset).read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert "VERIFIED" in page and "VERIFICATION FAILED" not in page
    for heading in ("Covered hours", "Events per hour", "Top actions", "Current checkpoint",
                    "Signing keys", "Verification history"):  # fmt: skip
        assert heading in page
    con_root = re.search(r"Root hash</th><td class=mono>([A-Za-z0-9+/]{43}=)<", page)
    assert con_root, "the checkpoint's root hash is shown, base64 as in the checkpoint"
    checkpoint = (scenario_dataset / "ledger" / "checkpoints").iterdir()
    latest = max(checkpoint, key=lambda p: p.name).read_text().splitlines()
    assert con_root.group(1) == latest[2]  # one encoding: the checkpoint's own line
    assert page.count("<rect") >= 5 + 5  # one cell per covered hour + bars
    assert "late batch" in page  # hour 0 has a late batch


def test_a_failed_verification_is_the_headline(scenario_dataset, tmp_path):
    data_dir = tmp_path / "data"
    shutil.copytree(scenario_dataset, data_dir)
    failed = history.VerificationRun(
        run_id="r-failed",
        verified_at=2_000_000_000,
        trigger="audit-pipeline verify",
        ok=False,
        tree_size=6,
        root_hash=None,
        checkpoint=None,
        report={"findings": [{"code": "file_hash_mismatch", "location": "lake/x.parquet",
                              "detail": "batch 2: SHA-256 differs"}]},
    )  # fmt: skip
    history.append_run(data_dir, failed)
    page = write_report(
        tmp_path / "r.html", data_dir=data_dir, database=dataset_path(data_dir)
    ).read_text()
    assert "VERIFICATION FAILED" in page
    assert "file_hash_mismatch" in page and "lake/x.parquet" in page


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


@pytest.mark.e2e
def test_report_renders_in_headless_chromium(scenario_dataset, tmp_path):
    browser = next((b for b in CHROMIUM if Path(b).exists()), None)
    if browser is None:
        if os.environ.get("AUDIT_PIPELINE_REQUIRE_BROWSER") == "1":
            pytest.fail("no Chromium at " + ", ".join(CHROMIUM))
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    report = write_report(tmp_path / "report.html", data_dir=scenario_dataset)
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1200,2000", f"--screenshot={shot}", report.as_uri()],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert shot.is_file(), proc.stderr[-2000:]
    assert _png_size(shot) == (1200, 2000)
    assert shot.stat().st_size > 30_000  # a blank page compresses to a few KB
    keep = os.environ.get("AUDIT_PIPELINE_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(keep) / "report.png")


def test_a_dataset_behind_the_ledger_is_said_beside_the_verdict(
    scenario_ledger, data_dir, scenario, tmp_path
):
    """The ledger verifies (VERIFIED), but the tiles count the dataset's rows: a report made
    after new batches were committed says the dataset holds fewer batches than the log."""
    from audit_pipeline.dataset.build import build_dataset

    built = build_dataset(data_dir)
    hour = scenario.T0 + 5 * scenario.HOUR
    alice = scenario.ALICE
    news = scenario.entry("news", hour + 60, "user_login", alice, scenario.user_entity(alice))
    scenario.commit(scenario_ledger, hour, [news])
    page = write_report(tmp_path / "r.html", data_dir=data_dir).read_text()
    assert "VERIFIED" in page
    assert f"built from the first {built.tree_size} batches" in page
    assert "has grown since the build: 1 batch" in page
