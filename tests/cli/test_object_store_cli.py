"""Commands not wired to an object-store data directory refuse ``s3://`` in one line (exit 2).

``s3:`` is never read as a local relative path, whether it comes from ``--data-dir`` or
``$AUDIT_DATA_DIR``, and nothing is created on the way.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from audit_pipeline.cli import main
from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ledger.layout import resolve_data_dir

URL = "s3://audit-bucket/ledger"

COMMANDS = [["dataset", "path"]]
KEYRING_CHANGES = [["keys", "rotate"], ["keys", "revoke", "x"]]


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AUDIT_DATA_DIR", raising=False)
    return tmp_path


def refused(argv: list[str], how: str, capsys, monkeypatch) -> list[str]:
    """refused runs ``argv`` on the object store (by flag or variable) and returns the one
    line of its refusal (exit 2)."""
    if how == "flag":
        argv = [*argv, "--data-dir", URL]
    else:
        monkeypatch.setenv("AUDIT_DATA_DIR", URL)
    code = main(argv)
    _, err = capsys.readouterr()
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    return lines


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a[:2]))
@pytest.mark.parametrize("how", ["flag", "env"])
def test_unwired_commands_refuse_an_object_store(argv, how, cwd, capsys, monkeypatch) -> None:
    lines = refused(argv, how, capsys, monkeypatch)
    assert URL in lines[0] and "only 'verify', 'sync'," in lines[0]
    assert "'keys init|list|public|restart-signer' do" in lines[0]
    assert not any(cwd.iterdir())  # no local "s3:" directory, no output file


@pytest.mark.parametrize("argv", KEYRING_CHANGES, ids=lambda a: " ".join(a[:2]))
@pytest.mark.parametrize("how", ["flag", "env"])
def test_keyring_changes_refuse_an_object_store_saying_what_instead(
    argv, how, cwd, capsys, monkeypatch
) -> None:
    lines = refused(argv, how, capsys, monkeypatch)
    assert URL in lines[0] and "created once" in lines[0]
    assert "--trusted-keys FILE" in lines[0] and "keys init --data-dir s3://BUCKET/" in lines[0]
    assert not any(cwd.iterdir())


def test_the_layout_never_takes_an_s3_url_for_a_local_path(monkeypatch) -> None:
    with pytest.raises(ConfigurationError, match="object-store data directory"):
        resolve_data_dir(URL)
    with pytest.raises(ConfigurationError):
        resolve_data_dir(Path(URL))  # a Path folds s3:// to s3:/
    monkeypatch.setenv("AUDIT_DATA_DIR", URL)
    with pytest.raises(ConfigurationError):
        resolve_data_dir()


def test_the_dagster_ledger_resource_never_takes_an_s3_url_for_a_local_path(monkeypatch) -> None:
    """LedgerResource works on an s3:// data directory through the store
    (tests/defs/test_object_store_resources.py); asked for a local path, it refuses."""
    from audit_pipeline.defs.resources import LedgerResource

    with pytest.raises(ConfigurationError, match="object-store data directory"):
        LedgerResource(data_dir=URL).resolved_data_dir()
    monkeypatch.setenv("AUDIT_DATA_DIR", URL)
    with pytest.raises(ConfigurationError, match="object-store data directory"):
        LedgerResource().resolved_data_dir()
