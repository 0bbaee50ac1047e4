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
     (2, "missing hour", "2 missing hours"), (17115, "event", "17,115 events")],
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


def test_next_commands_name_the_venv_script_when_it_is_not_on_path(tmp_path, monkeypatch):
    from audit_pipeline.cli.output import invoked_as

    script = tmp_path / ".venv" / "bin" / "audit-pipeline"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert invoked_as(".venv/bin/audit-pipeline") == ".venv/bin/audit-pipeline"
    assert invoked_as("/somewhere/else/__main__.py").endswith(" -m audit_pipeline.cli")


@pytest.mark.e2e
def test_the_demos_next_commands_run_as_printed(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).with_name("audit-pipeline")
    env = {**os.environ, "PATH": "/usr/bin:/bin"}  # as after `make demo`: not on PATH
    proc = subprocess.run(
        [str(script), "demo", "--hours", "2", "--events-per-hour", "30", "--data-dir", "demo"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout[proc.stdout.index("next:") :].splitlines()[1:]
    commands = [line.strip() for line in lines if not line.strip().startswith("make ")]
    assert len(commands) == 3
    for command in commands:
        run = subprocess.run(
            command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert run.returncode == 0, f"{command}: {run.stderr}"
    assert (tmp_path / "report.html").is_file()
