"""``audit-pipeline dev`` keeps Dagster's record of the ledger out of every data directory
and points the Dagster resources at trusted keys held beside the instance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit_pipeline.cli.dev import (
    DAGSTER_HOME_DIR,
    check_dagster_home,
    dagster_environment,
    install_trusted_keys,
)
from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ledger.keys import init_key


@pytest.mark.parametrize("home", ["data/dagster_home", "data", "data/demo/.dagster"])
def test_a_dagster_home_inside_a_data_directory_is_refused(tmp_path: Path, home: str):
    data_dirs = [tmp_path / "data" / "demo", tmp_path / "data"]
    with pytest.raises(ConfigurationError, match="inside the data directory"):
        check_dagster_home(tmp_path / home, data_dirs)


def test_the_default_dagster_home_is_outside_the_default_data_directory(tmp_path: Path):
    assert not DAGSTER_HOME_DIR.is_absolute() and DAGSTER_HOME_DIR.parts[0] != "data"
    check_dagster_home(tmp_path / DAGSTER_HOME_DIR, [tmp_path / "data" / "demo", tmp_path / "data"])


def test_trusted_keys_are_taken_once_and_set_for_the_code_location(tmp_path: Path):
    data_dir, home = tmp_path / "data" / "demo", tmp_path / ".dagster_home"
    home.mkdir()
    init_key(data_dir, tmp_path / "key", name="demo", now=0)
    trusted = install_trusted_keys(home, data_dir)
    first = trusted.read_bytes()
    init_key(data_dir, tmp_path / "attacker", name="attacker", now=0)  # added later
    install_trusted_keys(home, data_dir)
    assert trusted.read_bytes() == first, "keys added to the data directory are not taken"
    assert len(json.loads(first)["keys"]) == 1
    env = dagster_environment(
        {},
        data_dir=data_dir,
        dagster_home=home,
        key_path=tmp_path / "key",
        emulator_url="http://127.0.0.1:1/",
        emulator_token="t",
        start_hour=0,
        port=3000,
    )
    assert env["AUDIT_TRUSTED_KEYS"] == str(trusted)
    assert env["DAGSTER_HOME"] == str(home)
