"""``audit.duckdb`` opens in the DuckDB auditors already have, not only in 2.0."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import duckdb
import pytest

from audit_pipeline.dataset.storage import STORAGE_VERSION_NUMBER, storage_version_number

OLD_DUCKDB = "duckdb>=1.4,<1.5"


def test_the_dataset_is_written_in_the_1x_storage_format(scenario_dataset, tmp_path):
    assert storage_version_number(scenario_dataset / "audit.duckdb") == STORAGE_VERSION_NUMBER
    # what DuckDB 2.0 would have written by default, for contrast
    default = tmp_path / "default.duckdb"
    duckdb.connect(str(default)).execute("CREATE TABLE t AS SELECT 1").close()
    assert storage_version_number(default) != STORAGE_VERSION_NUMBER
    (tmp_path / "text").write_text("not a database, but long enough to have a header")
    assert storage_version_number(tmp_path / "text") is None


READER = """
import json, sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
events = con.execute("SELECT count(*) FROM audit_events").fetchone()[0]
top = con.execute("SELECT action FROM top_actions LIMIT 1").fetchone()[0]
print(json.dumps({"version": duckdb.__version__, "events": events, "top": top}))
"""


@pytest.mark.e2e
def test_duckdb_1_4_opens_the_dataset_read_only(scenario_dataset: Path, fresh_venv):
    python = fresh_venv("duckdb14", OLD_DUCKDB)
    database = scenario_dataset / "audit.duckdb"
    proc = subprocess.run(
        [str(python), "-c", READER, str(database)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["version"].startswith("1.4.")
    con = duckdb.connect(str(database), read_only=True)
    try:
        assert seen["events"] == con.execute("SELECT count(*) FROM audit_events").fetchone()[0]
        assert seen["top"] == con.execute("SELECT action FROM top_actions LIMIT 1").fetchone()[0]
    finally:
        con.close()
