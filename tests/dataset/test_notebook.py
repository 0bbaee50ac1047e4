"""notebooks/auditor.ipynb executes top to bottom, headless, on a data dir the test builds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "auditor.ipynb"


@pytest.mark.e2e
@pytest.mark.slow
def test_auditor_notebook_runs_top_to_bottom(scenario_dataset, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="notebook tests need nbformat")
    nbclient = pytest.importorskip("nbclient", reason="notebook tests need nbclient, ipykernel")
    data_dir = tmp_path / "data"
    shutil.copytree(scenario_dataset, data_dir)
    (data_dir / "audit.duckdb").unlink()  # the notebook must build it when it is missing
    monkeypatch.setenv("AUDIT_DATA_DIR", str(data_dir))
    monkeypatch.delenv("AUDIT_DATASET", raising=False)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # raises CellExecutionError on any failing cell
    outputs = [
        out.get("text", "") + str(out.get("data", {}).get("text/html", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    ]
    text = "\n".join(outputs)
    assert "OK: ledger test.example/audit intact" in text
    assert "proved pref." in text and "forged proof rejected" in text
    assert "<svg" in text and "Login sources" in text
    assert "Workflow runs by outcome" in text and "Approvals (approver and decision" in text
    assert (data_dir / "audit.duckdb").is_file()
