"""Read-only queries: results render as table, CSV and JSON; nothing can be written."""

from __future__ import annotations

import csv
import io
import json

import pytest

from audit_pipeline.dataset.build import DatasetMissingError, dataset_path
from audit_pipeline.dataset.query import QueryError, format_result, open_dataset, run_query


@pytest.fixture
def locked(scenario_dataset):
    con = open_dataset(dataset_path(scenario_dataset), lock_down=True)
    yield con
    con.close()


SQL = (
    "SELECT event_id, date_create, leaf_hash, succeeded FROM login_events "
    "JOIN audit_events USING (event_id, date_create) WHERE event_id LIKE 'ev-fail-%' "
    "ORDER BY event_id"
)


def test_formats(locked):
    result = run_query(locked, SQL.replace("login_events", "login_events l"))
    assert result.columns == ["event_id", "date_create", "leaf_hash", "succeeded"]
    doc = json.loads(format_result(result, "json"))
    assert [d["event_id"] for d in doc] == ["ev-fail-b1", "ev-fail-b2"]
    assert doc[0]["date_create"] == "2025-11-29T00:00:30Z"
    assert len(doc[0]["leaf_hash"]) == 64 and doc[0]["succeeded"] is False
    rows = list(csv.reader(io.StringIO(format_result(result, "csv"))))
    assert rows[0] == result.columns and rows[2][0] == "ev-fail-b2" and rows[2][3] == "false"
    table = format_result(result, "table", max_cell=20).splitlines()
    assert table[0].split() == result.columns
    assert table[-1] == "(2 rows)"
    assert all(len(cell) <= 20 for line in table[2:-1] for cell in line.split("  ") if cell)


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM audit_events",
        "UPDATE audit_events SET action = 'x'",
        "CREATE TABLE audit.t (a INT)",
        "COPY (SELECT 1) TO '/tmp/audit-pipeline-leak.csv'",
        "SELECT * FROM read_csv('/etc/passwd')",
        "ATTACH '/tmp/other.duckdb' AS other",
        "SET enable_external_access = true",
    ],
)
def test_writes_and_file_access_are_refused(locked, sql):
    with pytest.raises(QueryError):
        run_query(locked, sql)
    assert run_query(locked, "SELECT count(*) FROM audit_events").rows[0][0] > 0


def test_bad_sql_names_the_problem(locked):
    with pytest.raises(QueryError, match="no_such_table"):
        run_query(locked, "SELECT * FROM no_such_table")


def test_missing_dataset_says_how_to_build_it(tmp_path):
    with pytest.raises(DatasetMissingError, match="dataset build"):
        open_dataset(tmp_path / "audit.duckdb")
