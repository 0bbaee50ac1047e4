"""Read-only access to the dataset: open it, run SQL, render results for a terminal.

:func:`open_dataset` attaches the database file read-only to a fresh in-memory DuckDB
instance instead of ``duckdb.connect(path, read_only=True)``: DuckDB caches one instance
per path inside a process, so a second ``connect`` after a rebuild would silently return
the *old* file's instance. Attaching always opens the file that is at the path now.

With ``lock_down`` (the ``query`` command), external access is switched off and the
configuration locked, so a query can read the dataset and nothing else: no files, no
``COPY ... TO``, no ``ATTACH``, no extension downloads.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from audit_pipeline.dataset.errors import DatasetMissingError
from audit_pipeline.dataset.seal import check_seal
from audit_pipeline.errors import ConfigurationError

FORMATS = ("table", "csv", "json")
_MAX_CELL = 60


class QueryError(ConfigurationError):
    """The SQL is not valid, or asks for something the read-only dataset does not allow."""


def open_dataset(
    path: str | Path,
    *,
    lock_down: bool = False,
    sealed: bool = True,
    data_dir: str | Path | None = None,
) -> duckdb.DuckDBPyConnection:
    """open_dataset returns a read-only connection whose default schema is the dataset's.

    With ``sealed`` (the default) a dataset that does not match its seal, or whose ledger
    (``data_dir``, default: the one the dataset records beside it) no longer holds what it
    was built from, is refused (DatasetTamperedError) before a row is read.
    """
    path = Path(path)
    if not os.path.lexists(path):  # a link or FIFO in its place is the seal check's to refuse
        raise DatasetMissingError(
            f"no dataset at {path}: run 'audit-pipeline dataset build' (or materialize the "
            "audit_dataset asset) first"
        )
    if sealed:
        check_seal(path, Path(data_dir) if data_dir else ledger_beside(path)).require()
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        literal = str(path.resolve()).replace("'", "''")
        con.execute(f"ATTACH '{literal}' AS audit (READ_ONLY)")
        con.execute("USE audit")
        if lock_down:
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
    except duckdb.Error as exc:
        con.close()
        raise ConfigurationError(f"{path} is not a readable DuckDB dataset: {exc}") from exc
    return con


def ledger_beside(path: Path) -> Path | None:
    """ledger_beside: the data directory holding the dataset, when it has a ledger."""
    path = Path(path)
    return path.parent if (path.parent / "ledger").is_dir() else None


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


def require_one_statement(sql: str) -> None:
    """require_one_statement refuses SQL holding several statements, which ``run_query``
    would run all of while showing only the last result. It parses in a scratch in-memory
    database, so the refusal comes before the dataset is opened or checked."""
    con = duckdb.connect(":memory:")
    try:
        count = len(con.extract_statements(sql))
    except duckdb.Error:
        return  # run_query reports the syntax error itself
    finally:
        con.close()
    if count > 1:
        raise QueryError(
            f"{count} statements given; query runs exactly one (run them one at a time)"
        )


def run_query(con: duckdb.DuckDBPyConnection, sql: str) -> QueryResult:
    """run_query runs one statement (or a script whose last statement returns rows)."""
    try:
        relation = con.sql(sql)
        if relation is None:
            return QueryResult([], [])
        return QueryResult(list(relation.columns), relation.fetchall())
    except duckdb.Error as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "read-only" in message or "read only" in message or "attached in read-only" in message:
            message += " (the dataset is read-only; it is rebuilt from the ledger)"
        raise QueryError(message) from None


def _plain(value: Any) -> Any:
    """_plain turns a DuckDB value into JSON-friendly data (timestamps as ISO 8601 UTC)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
            return value.isoformat().replace("+00:00", "Z")
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def cell_text(value: Any) -> str:
    """cell_text renders one value as text (JSON for lists and maps, ISO 8601 for times)."""
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def format_result(result: QueryResult, fmt: str, *, max_cell: int | None = _MAX_CELL) -> str:
    """format_result renders rows as an aligned text table, CSV or a JSON array."""
    if fmt == "json":
        records = [
            {c: _plain(v) for c, v in zip(result.columns, row, strict=True)} for row in result.rows
        ]
        return json.dumps(records, ensure_ascii=False, indent=1) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows([cell_text(v) for v in row] for row in result.rows)
        return buf.getvalue()
    if fmt != "table":
        raise ConfigurationError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return _table(result.columns, [[cell_text(v) for v in row] for row in result.rows], max_cell)


def _table(columns: Sequence[str], rows: list[list[str]], max_cell: int | None) -> str:
    def clip(text: str) -> str:
        text = text.replace("\n", "\\n")
        if max_cell is not None and len(text) > max_cell:
            return text[: max_cell - 1] + "…"
        return text

    cells = [[clip(c) for c in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()
    rule = "  ".join("-" * w for w in widths)
    body = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    noun = "row" if len(rows) == 1 else "rows"
    return "\n".join([line, rule, *body, f"({len(rows)} {noun})"]) + "\n"
