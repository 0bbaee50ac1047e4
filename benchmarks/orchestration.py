"""Orchestration: one hourly partition run in Dagster, and a backfill as one run against one
run per partition.

Runs execute in process against a persistent (SQLite) Dagster instance with the project's
own assets, built by the same factories as the code location, syncing from an emulator in
its own process. ``dagster job execute`` of the ``hourly_sync`` job for one partition gives
the launch-to-success time of a run started from scratch (a new process that loads the
code location, as a run launcher does).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from audit_pipeline.defs.assets import build_audit_ledger, build_slack_audit_events
from audit_pipeline.defs.resources import LedgerResource, SlackAuditResource, SlackNotifier
from audit_pipeline.defs.witnesses import WitnessSetResource
from audit_pipeline.ingest import DEFAULT_LOOKBACK_HOURS, last_closed_hour
from audit_pipeline.ledger.keys import init_key
from benchmarks.common import (
    HOUR,
    BenchmarkError,
    Section,
    emulator_process,
    fmt_s,
    median,
    python_child_env,
    run_child,
    timed,
)
from benchmarks.config import Sizes

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

KEY_FORMAT = "%Y-%m-%d-%H:%M"


def _key(hour: int) -> str:
    return datetime.fromtimestamp(hour, UTC).strftime(KEY_FORMAT)


class _Setup:
    """One data directory, signing key and Dagster instance per way of running."""

    def __init__(self, root: Path, name: str, first: int, base_url: str, token: str) -> None:
        self.root = root / name
        shutil.rmtree(self.root, ignore_errors=True)
        self.data_dir = self.root / "data"
        self.data_dir.mkdir(parents=True)
        self.key = self.root / "signing-key"
        init_key(self.data_dir, self.key, name="bench", now=first - 86_400)
        # the keys the deployment trusts, held outside the data directory (as deployed)
        self.trusted_keys = self.root / "trusted-keys.json"
        shutil.copyfile(self.data_dir / "ledger" / "keys" / "keyring.json", self.trusted_keys)
        (self.root / "dagster").mkdir()
        self.instance = dg.DagsterInstance.local_temp(str(self.root / "dagster"))
        partitions = dg.HourlyPartitionsDefinition(
            start_date=datetime.fromtimestamp(first, UTC), timezone="UTC"
        )
        self.assets = [
            build_slack_audit_events(partitions_def=partitions),
            # the emulator's hours lie in the past: the hours up to now are not synced here
            build_audit_ledger(coverage_start=first, coverage_tolerance_hours=1_000_000),
        ]
        self.resources = {
            "slack_audit": SlackAuditResource(
                token=token, base_url=base_url, max_calls_per_minute=0
            ),
            "ledger": LedgerResource(
                data_dir=str(self.data_dir),
                signing_key=str(self.key),
                trusted_keys=str(self.trusted_keys),
            ),
            "slack_notifier": SlackNotifier(),
            "witnesses": WitnessSetResource(witnesses=""),
        }

    def run(self, first: int, last: int) -> float:
        """Materializes the hours [first, last] in one run; returns its seconds."""
        kwargs: dict = {}
        if first == last:
            kwargs["partition_key"] = _key(first)
        else:
            kwargs["tags"] = {
                "dagster/asset_partition_range_start": _key(first),
                "dagster/asset_partition_range_end": _key(last),
            }
        seconds, result = timed(
            lambda: dg.materialize(
                self.assets,
                instance=self.instance,
                resources=self.resources,
                raise_on_error=False,
                **kwargs,
            )
        )
        if not result.success:
            raise BenchmarkError(f"Dagster run for {_key(first)}..{_key(last)} failed")
        return seconds

    def close(self) -> None:
        self.instance.dispose()


def _cli_launch(root: Path, hour: int, first: int, base_url: str, token: str) -> float:
    """``dagster job execute`` of the hourly job for one partition, from a new process."""
    home = root / "cli"
    shutil.rmtree(home, ignore_errors=True)
    (home / "dagster").mkdir(parents=True)
    data_dir, key = home / "data", home / "signing-key"
    data_dir.mkdir()
    init_key(data_dir, key, name="bench", now=first - 86_400)
    trusted = home / "trusted-keys.json"  # held outside the data directory, as deployed
    shutil.copyfile(data_dir / "ledger" / "keys" / "keyring.json", trusted)
    env = python_child_env(
        {
            "DAGSTER_HOME": str(home / "dagster"),
            "AUDIT_TRUSTED_KEYS": str(trusted),
            "SLACK_AUDIT_TOKEN": token,
            "SLACK_AUDIT_BASE_URL": base_url,
            "SLACK_AUDIT_MAX_CALLS_PER_MINUTE": "0",
            "AUDIT_DATA_DIR": str(data_dir),
            "AUDIT_SIGNING_KEY": str(key),
            "AUDIT_START_HOUR": datetime.fromtimestamp(first, UTC).strftime("%Y-%m-%dT%H"),
            # the emulator's hours lie in the past: the hours up to now are not synced here
            "AUDIT_COVERAGE_TOLERANCE_HOURS": "1000000",
            "AUDIT_AUTOMATION": "0",
        }
    )
    dagster = Path(sys.executable).with_name("dagster")
    child = run_child(
        [
            str(dagster), "job", "execute", "-m", "audit_pipeline.definitions",
            "-j", "hourly_sync", "--tags", json.dumps({"dagster/partition": _key(hour)}),
        ],
        env=env,
        timeout=600,
    )  # fmt: skip
    if "RUN_SUCCESS" not in child.stdout + child.stderr:
        raise BenchmarkError(f"dagster job execute did not succeed:\n{child.stderr[-2000:]}")
    return child.seconds


def run(sizes: Sizes, work: Path, say: Callable[[str], None]) -> Section:
    section = Section("orchestration")
    hours = sizes.backfill_hours
    first = last_closed_hour(time.time()) - (hours + 2) * HOUR
    root = work / "orchestration"
    with emulator_process(
        start=first - DEFAULT_LOOKBACK_HOURS * HOUR,
        end=first + hours * HOUR,
        events_per_hour=sizes.orchestration_events_per_hour,
        seed=5,
    ) as emulator:
        token = "xoxp-emulator-token"
        if sizes.cli_launch:
            say("orchestration: dagster job execute, one hourly partition")
            launch = _cli_launch(root, first, first, emulator.base_url, token)
            section.row(
                "one hourly partition, launch to success (new process)",
                fmt_s(launch),
                "`dagster job execute -j hourly_sync` (events, ledger verification, "
                "dataset), multiprocess executor",
                status="info",
            )
        else:
            section.row("one hourly partition, new process", "skipped", "size tiny",
                        status="skipped")  # fmt: skip

        say(f"orchestration: {sizes.per_partition_runs} runs of one partition each")
        per = _Setup(root, "per-partition", first, emulator.base_url, token)
        samples = [per.run(h, h) for h in _hours(first, sizes.per_partition_runs)]
        per.close()
        one_run = median(samples)
        section.row(
            "one hourly partition, in process (events + ledger)",
            fmt_s(one_run),
            f"median of {len(samples)} consecutive hours (each re-reads its lookback)",
            status="info",
        )

        say(f"orchestration: {hours} partitions in a single run")
        single = _Setup(root, "single-run", first, emulator.base_url, token)
        single_s = single.run(first, first + (hours - 1) * HOUR)
        single.close()
    projected = sum(samples) / len(samples) * hours
    measured_all = len(samples) == hours
    section.check(
        f"backfill of {hours} hours: single run vs one run per partition",
        f"{projected / single_s:.1f}x faster",
        single_s < projected,
        "single run faster",
        f"single run {fmt_s(single_s)}; one run per partition "
        + (f"{fmt_s(projected)}" if measured_all else
           f"~{fmt_s(projected)} (projected from {len(samples)} runs)"),
    )  # fmt: skip
    section.notes.append(
        f"Emulator in its own process, {sizes.orchestration_events_per_hour} events/hour, "
        "rate limit off; in-process runs against a persistent SQLite instance. The project's "
        "asset uses BackfillPolicy.multi_run (24 partitions a run by default, "
        "AUDIT_BACKFILL_HOURS_PER_RUN); a single run is its limit, one run per partition "
        "is what a policy-less asset gets."
    )
    section.extra.update({"single": single_s, "per_partition": one_run})
    return section


def _hours(first: int, count: int) -> list[int]:
    return [first + i * HOUR for i in range(count)]
