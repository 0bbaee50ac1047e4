"""What commands print reads well: help without doubled defaults, one statement per query,
plurals."""

from __future__ import annotations

import pytest

from audit_pipeline.cli import main
from audit_pipeline.text import plural


def test_emulator_help_shows_each_default_once(capsys):
    with pytest.raises(SystemExit):
        main(["emulator", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in out
    assert "(default: a week before --end)" in out and "(default: 8765)" in out


def test_query_refuses_several_statements(scenario_free_dataset, capsys):
    code = main(["query", "--data-dir", str(scenario_free_dataset), "select 1; select 2"])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "audit-pipeline query: error: 2 statements given; query runs exactly one "
        "(run them one at a time)"
    )
    assert main(["query", "--data-dir", str(scenario_free_dataset), "select 41 + 1;"]) == 0
    assert "42" in capsys.readouterr().out


def test_query_help_says_one_statement(capsys):
    with pytest.raises(SystemExit):
        main(["query", "--help"])
    assert "Runs exactly one statement" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(
    ("count", "word", "text"),
    [(1, "finding", "1 finding"), (0, "finding", "0 findings"), (1, "batch", "1 batch"),
     (2, "batch", "2 batches"), (1, "retry", "1 retry"), (3, "retry", "3 retries"),
     (2, "missing hour", "2 missing hours")],
)  # fmt: skip
def test_plural(count, word, text):
    assert plural(count, word) == text


@pytest.fixture
def scenario_free_dataset(tmp_path):
    """A dataset built by the demo path: a small real ledger and its DuckDB file."""
    data_dir = tmp_path / "demo"
    assert (
        main(["demo", "--hours", "1", "--events-per-hour", "20", "--data-dir", str(data_dir)]) == 0
    )
    return data_dir
