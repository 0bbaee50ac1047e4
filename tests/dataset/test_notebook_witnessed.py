"""The auditor notebook with witnesses configured: it verifies with their keys and shows
who cosigned the latest checkpoint and when."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from audit_pipeline.lake import PARQUET_FORMAT
from audit_pipeline.ledger import Ledger
from audit_pipeline.ledger.keys import load_signing_key
from audit_pipeline.witness.committer import witness_latest
from audit_pipeline.witness.config import WitnessEndpoint, make_policy
from audit_pipeline.witness.local import running_local_witness

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "auditor.ipynb"


@pytest.mark.e2e
@pytest.mark.slow
def test_notebook_shows_the_witnesses_of_the_latest_checkpoint(
    scenario_dataset, tmp_path, monkeypatch
):
    nbformat = pytest.importorskip("nbformat", reason="notebook tests need nbformat")
    nbclient = pytest.importorskip("nbclient", reason="notebook tests need nbclient, ipykernel")
    data_dir = tmp_path / "data"
    shutil.copytree(scenario_dataset, data_dir)
    signer = load_signing_key(scenario_dataset.parent / "keys" / "signing-key")
    ledger = Ledger(data_dir, file_format=PARQUET_FORMAT)
    with running_local_witness(tmp_path / "witness", "test.example/audit", signer.verifier) as w:
        round_ = witness_latest(ledger, make_policy([w], None))
        assert round_.met
    endpoint: WitnessEndpoint = w
    monkeypatch.setenv("AUDIT_DATA_DIR", str(data_dir))
    monkeypatch.setenv("AUDIT_WITNESSES", f"w {endpoint.url} {endpoint.key.vkey}")
    monkeypatch.delenv("AUDIT_WITNESS_QUORUM", raising=False)
    monkeypatch.delenv("AUDIT_DATASET", raising=False)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()
    text = "\n".join(
        out.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )
    assert "cosigned by 1 of 1 trusted witnesses (quorum 1)" in text
    assert f"{endpoint.key.name} (key id {endpoint.key.key_id:08x}) cosigned at " in text
