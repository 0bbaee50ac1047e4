"""Fixtures shared across the test tree: a signing key, a ledger, and an emulator source."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from audit_pipeline.lake import PARQUET_FORMAT
from audit_pipeline.ledger import Ledger
from audit_pipeline.ledger.keys import init_key
from audit_pipeline.slack.activities_client import ActivitiesApiSettings, ActivitySource
from audit_pipeline.slack.client import AuditApiSettings, AuditLogSource

KEY_EPOCH = 1_700_000_000  # keys are valid from before any test data


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def signing_key(tmp_path: Path, data_dir: Path):
    signer, _, _ = init_key(
        data_dir, tmp_path / "keys" / "signing-key", name="test-log", now=KEY_EPOCH
    )
    return signer


@pytest.fixture
def ledger(data_dir: Path, signing_key) -> Ledger:
    return Ledger(
        data_dir, file_format=PARQUET_FORMAT, signer=signing_key, origin="test.example/audit"
    )


@pytest.fixture
def source_for() -> Callable[..., AuditLogSource]:
    """source_for(emulator, **settings) builds an unpaced source reading that emulator."""

    def build(emulator, **overrides) -> AuditLogSource:
        settings = AuditApiSettings(
            token=emulator.token,
            base_url=emulator.base_url,
            max_calls_per_minute=overrides.pop("max_calls_per_minute", 0),
            **overrides,
        )
        return AuditLogSource(settings)

    return build


SERVICES_ENV = "AUDIT_PIPELINE_REQUIRE_SERVICES"


@pytest.fixture(scope="session")
def service_missing() -> Callable[[str], None]:
    """service_missing(reason) skips the test, or fails it when ``.ci/run`` demands the
    services (``AUDIT_PIPELINE_REQUIRE_SERVICES=1``)."""

    def report(reason: str) -> None:
        if os.environ.get(SERVICES_ENV) == "1":
            pytest.fail(f"{SERVICES_ENV}=1 but {reason}")
        pytest.skip(reason)

    return report


@pytest.fixture(scope="session")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """fresh_venv(name, *requirements) makes an empty virtual environment (no access to
    this one's packages) and pip-installs ``requirements`` (if any) into it from the
    package registry; returns its python. Skips, saying why, when that install fails."""
    import subprocess
    import venv

    def make(name: str, *requirements: str) -> Path:
        root = tmp_path_factory.mktemp(name)
        venv.EnvBuilder(with_pip=True, clear=True).create(root)
        python = root / "bin" / "python"
        if not requirements:
            return python
        proc = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             *requirements],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        if proc.returncode != 0:
            pytest.skip(f"pip install {' '.join(requirements)} failed: {proc.stderr[-300:]}")
        return python

    return make


class SettableClock:
    """A clock for emulators: ``clock()`` is ``now``, which a test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock_at() -> type[SettableClock]:
    """clock_at(now) builds a settable clock."""
    return SettableClock


@pytest.fixture
def activity_source_for() -> Callable[..., ActivitySource]:
    """activity_source_for(emulator, **settings): an unpaced admin.apps.activities.list reader."""

    def build(emulator, **overrides) -> ActivitySource:
        settings = ActivitiesApiSettings(
            token=emulator.config.activities_token,
            base_url=emulator.base_url.replace("/audit/v1/", "/api/"),
            max_calls_per_minute=overrides.pop("max_calls_per_minute", 0),
            **overrides,
        )
        return ActivitySource(settings)

    return build
