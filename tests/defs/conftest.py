"""Fixtures for the Dagster layer: a real emulator, a real ledger on disk, a Slack recorder.

Assets are built by the same factories the code location uses, with a partition start at
``H0`` and an injected clock, and materialized with ``dagster.materialize`` into one
instance per test, so the checkpoint Dagster records in one run is the one the next trusts.
"""

from __future__ import annotations

import json
import shutil
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from audit_pipeline.defs.assets import build_audit_ledger, build_slack_audit_events
from audit_pipeline.defs.resources import LedgerResource, SlackAuditResource, SlackNotifier
from audit_pipeline.defs.witnesses import WitnessSetResource
from audit_pipeline.lake import PARQUET_FORMAT
from audit_pipeline.ledger import Ledger
from audit_pipeline.ledger.keys import init_key
from audit_pipeline.slack.emulator import Emulator, running_emulator

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

HOUR = 3600
H0 = int(datetime(2026, 11, 20, tzinfo=UTC).timestamp())  # first partition of the tests
HOURS = 6  # the emulator serves [H0, H0 + 6h)
EVENTS_PER_HOUR = 40
KEY_EPOCH = H0 - 30 * 86_400

test_partitions = dg.HourlyPartitionsDefinition(
    start_date=datetime.fromtimestamp(H0, UTC), timezone="UTC"
)


def key_of(index: int) -> str:
    """key_of returns the partition key of hour ``H0 + index``."""
    return datetime.fromtimestamp(H0 + index * HOUR, UTC).strftime("%Y-%m-%d-%H:%M")


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with running_emulator(
        rate_limit_per_min=0,
        start=H0,
        end=H0 + HOURS * HOUR,
        events_per_hour=EVENTS_PER_HOUR,
        seed=7,
    ) as emu:
        yield emu


@pytest.fixture
def key_path(tmp_path: Path, data_dir: Path) -> Path:
    path = tmp_path / "keys" / "signing-key"
    init_key(data_dir, path, name="dagster-test", now=KEY_EPOCH)
    return path


@pytest.fixture
def trusted_keys(tmp_path: Path, data_dir: Path, key_path: Path) -> Path:
    """trusted_keys is a copy of the keyring held outside the data directory (as deployed)."""
    path = tmp_path / "trusted" / "keyring.json"
    path.parent.mkdir()
    shutil.copyfile(data_dir / "ledger" / "keys" / "keyring.json", path)
    return path


@dataclass
class Pipeline:
    """Pipeline materializes the assets hour by hour into one Dagster instance."""

    instance: dg.DagsterInstance
    resources: dict[str, Any]
    data_dir: Path
    now: float = H0 + 4 * HOUR + 20 * 60  # hours 0..3 are settled
    downstream_runs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.events = build_slack_audit_events(
            partitions_def=test_partitions, coverage_start=H0, clock=lambda: self.now
        )
        self.ledger = build_audit_ledger(coverage_start=H0, clock=lambda: self.now)

        @dg.asset(deps=["audit_ledger"])
        def published(context) -> None:  # unannotated: Dagster reads hints unresolved
            """Stands in for the auditor dataset: must never run past a failed check."""
            self.downstream_runs.append(context.run.run_id)

        self.published = published

    h0: int = H0
    hour: int = HOUR

    key = staticmethod(key_of)

    def sync(self, *indexes: int) -> Outcome:
        """sync runs the hourly job for hours ``H0 + i`` (one ranged run if several)."""
        assets = [self.events, self.ledger, self.published]
        if len(indexes) == 1:
            return Outcome(
                dg.materialize(
                    assets,
                    partition_key=key_of(indexes[0]),
                    instance=self.instance,
                    resources=self.resources,
                    raise_on_error=False,
                ),
                self.instance,
            )
        tags = {
            "dagster/asset_partition_range_start": key_of(min(indexes)),
            "dagster/asset_partition_range_end": key_of(max(indexes)),
        }
        return Outcome(
            dg.materialize(
                assets,
                tags=tags,
                instance=self.instance,
                resources=self.resources,
                raise_on_error=False,
            ),
            self.instance,
        )

    def ledger_windows(self) -> set[int]:
        """ledger_windows is the set of hours the ledger on disk holds a batch for."""
        return Ledger(self.data_dir, file_format=PARQUET_FORMAT).committed_windows()

    def verify(self, *, full: bool = False, adopt: bool = False) -> Outcome:
        """verify materializes only ``audit_ledger`` (and what depends on it)."""
        config = {"full": full, "adopt_unrecorded_ledger": adopt}
        return Outcome(
            dg.materialize(
                [self.events, self.ledger, self.published],
                selection=["audit_ledger", "published"],
                instance=self.instance,
                resources=self.resources,
                run_config={"ops": {"audit_ledger": {"config": config}}},
                raise_on_error=False,
            ),
            self.instance,
        )


@dataclass
class Outcome:
    """Outcome wraps one in-process run with the views the tests read."""

    result: dg.ExecuteInProcessResult
    instance: dg.DagsterInstance | None = None

    @property
    def success(self) -> bool:
        return self.result.success

    @property
    def run_id(self) -> str:
        return self.result.run_id

    @property
    def checks(self) -> dict[str, dg.AssetCheckEvaluation]:
        """checks are every check evaluation the run recorded, whichever step logged it."""
        if self.instance is None:
            return {e.check_name: e for e in self.result.get_asset_check_evaluations()}
        logs = self.instance.all_logs(
            self.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        )
        return {
            e.dagster_event.event_specific_data.check_name: e.dagster_event.event_specific_data
            for e in logs
            if e.dagster_event is not None
        }

    @property
    def failed_checks(self) -> set[str]:
        return {name for name, e in self.checks.items() if not e.passed}

    def check_metadata(self, name: str) -> dict[str, Any]:
        return {k: v.value for k, v in self.checks[name].metadata.items()}

    def materialized(self, asset: str) -> list[dg.AssetMaterialization]:
        return list(self.result.asset_materializations_for_node(asset))

    def metadata(self, asset: str) -> dict[str, Any]:
        materializations = self.materialized(asset)
        assert materializations, f"{asset} was not materialized"
        return {k: v.value for k, v in materializations[-1].metadata.items()}


@pytest.fixture
def notifier_server() -> Iterator[SlackRecorder]:
    recorder = SlackRecorder()
    recorder.start()
    try:
        yield recorder
    finally:
        recorder.stop()


@pytest.fixture
def pipeline_factory(emulator: Emulator, data_dir: Path, key_path: Path, trusted_keys: Path):
    """pipeline_factory(instance=None, notifier=None, anchored_keys=True) builds a Pipeline on
    this test's ledger (``anchored_keys`` False: no AUDIT_TRUSTED_KEYS, as an unset deployment)."""

    def build(
        instance: dg.DagsterInstance | None = None,
        notifier: SlackNotifier | None = None,
        *,
        anchored_keys: bool = True,
    ) -> Pipeline:
        resources = {
            "slack_audit": SlackAuditResource(
                token=emulator.token, base_url=emulator.base_url, max_calls_per_minute=0
            ),
            "ledger": LedgerResource(
                data_dir=str(data_dir),
                signing_key=str(key_path),
                trusted_keys=str(trusted_keys) if anchored_keys else None,
            ),
            "slack_notifier": notifier or SlackNotifier(),
            "witnesses": WitnessSetResource(witnesses=""),
        }
        return Pipeline(instance or dg.DagsterInstance.ephemeral(), resources, data_dir)

    return build


@pytest.fixture
def pipeline(pipeline_factory) -> Pipeline:
    return pipeline_factory()


class SlackRecorder:
    """SlackRecorder is a local Slack Web API that records ``chat.postMessage`` calls.

    ``reply`` sets what it answers (``{"ok": False, "error": ...}`` to refuse).
    """

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.reply: dict[str, Any] = {"ok": True}
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                body = json.loads(raw) if raw.startswith(b"{") else {}
                recorder.posts.append(
                    {
                        "path": self.path,
                        "authorization": self.headers.get("Authorization"),
                        "raw": raw.decode(),
                        **body,
                    }
                )
                answer = {**recorder.reply}
                if answer.get("ok"):
                    answer.update(channel=body.get("channel"), ts=f"{len(recorder.posts)}.000")
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/api/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def texts(self) -> Sequence[str]:
        return [p.get("text", "") for p in self.posts]
