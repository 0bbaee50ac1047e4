"""Every asset's column schema carries each column's real type (what the UI shows)."""

from __future__ import annotations

import re

import dagster as dg

from audit_pipeline.dataset.schema import TABLES
from audit_pipeline.definitions import defs as load_defs
from audit_pipeline.lake import EVENT_SCHEMA


def _schema(name: str) -> dg.TableSchema:
    spec = load_defs().resolve_assets_def(name).specs_by_key[dg.AssetKey(name)]
    return spec.metadata["dagster/column_schema"]


def test_the_events_schema_has_the_parquet_types():
    types = {c.name: c.type for c in _schema("slack_audit_events").columns}
    assert types == {f.name: str(f.type) for f in EVENT_SCHEMA}
    assert types["date_create"] == "timestamp[ms, tz=UTC]"
    assert "binary" in types["leaf_hash"]


def test_the_dataset_schema_has_the_duckdb_types_of_audit_events():
    ddl = TABLES["audit_events"][0]
    declared = dict(re.findall(r"(\w+) (TIMESTAMPTZ|VARCHAR|BLOB|JSON|BIGINT)", ddl))
    types = {c.name: c.type for c in _schema("audit_dataset").columns}
    assert types == declared
    assert types["date_create"] == "TIMESTAMPTZ" and types["details"] == "JSON"
