"""``audit-pipeline dev``: the Dagster UI on the demo data, with the emulator beside it.

What ``make dev`` runs. It starts the Audit Logs API emulator in this process, makes sure
the demo data directory has a signing key, copies the instance template to
``$DAGSTER_HOME/dagster.yaml`` the first time, keeps a copy of the demo keyring there as
the trusted keys (``AUDIT_TRUSTED_KEYS``: taken once, on first use), syncs (through the
real ``hourly_sync`` job, recorded in the persistent instance) the closed hours Dagster has
not materialized yet, then runs ``dagster dev -w workspace.yaml`` on loopback with every
setting in its environment, prints the URL, and stops both on Ctrl-C or SIGTERM.
``DAGSTER_HOME`` (``.dagster_home/`` by default) is refused inside any data directory.

``dagster dev`` started from a script inherits ignored SIGINT/SIGTERM handlers and then
cannot be stopped (Dagster maps SIGTERM to the inherited SIGINT handler), so it is started
with default handlers restored, in its own session, and stopped by signal from here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from audit_pipeline.cli.sync import (
    DEMO_DATA_DIR,
    DEMO_KEY_FILE,
    DEMO_ORIGIN,
    DEMO_SEED,
    DEMO_WORKFLOW_RUNS_PER_HOUR,
    DEV_PORT,
    demo_witness_dir,
    next_commands,
    prepare_demo_data_dir,
)
from audit_pipeline.errors import AuditPipelineError, ConfigurationError
from audit_pipeline.ingest import HOUR, format_hour, last_closed_hour, parse_hour
from audit_pipeline.ledger.layout import resolve_data_dir
from audit_pipeline.text import plural
from audit_pipeline.witness.local import running_local_witness

DEFAULT_PORT = DEV_PORT
DAGSTER_LOG = "dagster-dev.log"
# Dagster's record of the ledger (the recorded checkpoints) must not sit where whoever
# writes the data can rewrite it: never inside a data directory.
DAGSTER_HOME_DIR = Path(".dagster_home")
TRUSTED_KEYS_FILE = "trusted-keys.json"
MAX_HOURS_PER_RUN = 24
TEMPLATE = Path(__file__).resolve().parents[1] / "dagster.yaml"
READY_TIMEOUT = 180.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dev",
        help="run the Dagster UI on the demo data with the emulator beside it",
        description=(
            "Start the Audit Logs API emulator, sync the demo hours Dagster has not "
            "materialized yet, and run 'dagster dev -w workspace.yaml' on loopback with "
            "DAGSTER_HOME set; prints the UI's URL. Stop with Ctrl-C. Run from the "
            "repository root (where workspace.yaml is)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="UI port")
    parser.add_argument("--data-dir", type=Path, default=DEMO_DATA_DIR, help="demo data dir")
    parser.add_argument(
        "--dagster-home", type=Path, default=DAGSTER_HOME_DIR, help="DAGSTER_HOME to use"
    )
    parser.add_argument(
        "--hours", type=int, default=24, help="closed hours the demo starts with (a new ledger)"
    )
    parser.add_argument("--events-per-hour", type=int, default=600, help="emulator volume")
    parser.add_argument(
        "--workspace", type=Path, default=Path("workspace.yaml"), help="Dagster workspace file"
    )
    parser.set_defaults(func=run_dev)


def check_dagster_home(home: Path, data_dirs: list[Path]) -> None:
    """check_dagster_home refuses a DAGSTER_HOME inside (or equal to) a data directory."""
    for data_dir in data_dirs:
        if home == data_dir or data_dir in home.parents:
            raise ConfigurationError(
                f"DAGSTER_HOME {home} is inside the data directory {data_dir}: Dagster's record "
                "of the ledger must live where whoever writes the data cannot rewrite it; "
                "pass --dagster-home outside it"
            )


def install_trusted_keys(home: Path, data_dir: Path) -> Path:
    """install_trusted_keys copies the demo keyring beside the instance the first time (trust
    on first use: later keys added to the data directory are not trusted by it)."""
    target = home / TRUSTED_KEYS_FILE
    if not target.exists():
        shutil.copyfile(data_dir / "ledger" / "keys" / "keyring.json", target)
    return target


def _install_instance_template(home: Path, template: Path = TEMPLATE) -> Path:
    """Copy the instance template to ``home`` the first time (never over an edited copy)."""
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        shutil.copyfile(template, target)
    return target


def _demo_start_hour(data_dir: Path, hours: int, now: float) -> int:
    """The first partition: the ledger's first hour, else ``hours`` before the last closed.

    (The Dagster definitions must not be imported before ``AUDIT_START_HOUR`` is set.)
    """
    from audit_pipeline.lake import PARQUET_FORMAT
    from audit_pipeline.ledger import Ledger

    held = set()
    if (data_dir / "ledger" / "manifests").is_dir():
        held = Ledger(data_dir, file_format=PARQUET_FORMAT).committed_windows()
    if held:
        return min(held)
    return last_closed_hour(now) - (hours - 1) * HOUR


def dagster_environment(
    base: Mapping[str, str],
    *,
    data_dir: Path,
    dagster_home: Path,
    key_path: Path,
    emulator_url: str,
    emulator_token: str,
    start_hour: int,
    port: int,
    activities_token: str | None = None,
) -> dict[str, str]:
    """dagster_environment is what the code location, its runs and sensors read."""
    return {
        **base,
        "DAGSTER_HOME": str(dagster_home),
        "AUDIT_DATA_DIR": str(data_dir),
        "AUDIT_SIGNING_KEY": str(key_path),
        "AUDIT_TRUSTED_KEYS": str(dagster_home / TRUSTED_KEYS_FILE),
        "AUDIT_START_HOUR": format_hour(start_hour),
        "AUDIT_DAGSTER_URL": f"http://127.0.0.1:{port}",
        "SLACK_AUDIT_TOKEN": emulator_token,
        "SLACK_AUDIT_BASE_URL": emulator_url,
        "SLACK_AUDIT_MAX_CALLS_PER_MINUTE": "0",
        # The emulator's admin.apps.activities.list, with its own token (workflow runs).
        **(
            {
                "SLACK_ACTIVITIES_TOKEN": activities_token,
                "SLACK_ACTIVITIES_BASE_URL": emulator_url.replace("/audit/v1/", "/api/"),
                "SLACK_ACTIVITIES_MAX_CALLS_PER_MINUTE": "0",
            }
            if activities_token
            else {}
        ),
    }


def sync_missing_hours(env: Mapping[str, str], log=print) -> int:
    """sync_missing_hours runs ``hourly_sync`` in this process for every closed hour of the
    partition set without a materialization, at most 24 hours per run; returns runs made."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        import dagster as dg

        from audit_pipeline.definitions import defs
        from audit_pipeline.defs.anchors import verified_runs_anchors

        definitions = defs()
        partitions = definitions.resolve_assets_def("slack_audit_events").partitions_def
        job = definitions.resolve_job_def("hourly_sync")
        runs = 0
        with dg.DagsterInstance.get() as instance:
            done = instance.get_materialized_partitions(dg.AssetKey("slack_audit_events"))
            missing = [k for k in partitions.get_partition_keys() if k not in done]
            # A new Dagster home over an existing demo ledger: adopting it is this command's
            # decision (the demo's), said out loud; a real deployment adopts by hand.
            adopt = not verified_runs_anchors(instance)
            for chunk in _contiguous_runs(missing, partitions):
                first, last = (format_hour(parse_hour(k)) for k in (chunk[0], chunk[-1]))
                log(f"dev: syncing {first}..{last} through hourly_sync")
                if adopt:
                    log("dev: first verification in this Dagster home: adopting the demo ledger")
                result = job.execute_in_process(
                    instance=instance,
                    run_config={
                        # the run's events are in the UI; the console shows only problems
                        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
                        "ops": {"audit_ledger": {"config": {"adopt_unrecorded_ledger": adopt}}},
                    },
                    tags={
                        "dagster/asset_partition_range_start": chunk[0],
                        "dagster/asset_partition_range_end": chunk[-1],
                    },
                    raise_on_error=False,
                )
                adopt = False
                runs += 1
                if not result.success:
                    raise AuditPipelineError(
                        f"the demo sync run {result.run_id} failed; see it in the UI"
                    )
        return runs
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _contiguous_runs(keys: list[str], partitions) -> list[list[str]]:
    """Split partition keys into runs of consecutive hours, each at most 24 long."""
    runs: list[list[str]] = []
    all_keys = partitions.get_partition_keys()
    index = {k: i for i, k in enumerate(all_keys)}
    for key in keys:
        if runs and index[key] == index[runs[-1][-1]] + 1 and len(runs[-1]) < MAX_HOURS_PER_RUN:
            runs[-1].append(key)
        else:
            runs.append([key])
    return runs


def _restore_default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start_dagster_dev(
    workspace: Path, port: int, env: Mapping[str, str], log_file=None
) -> subprocess.Popen:
    """start_dagster_dev launches ``dagster dev`` so that SIGTERM stops it."""
    dagster = Path(sys.executable).with_name("dagster")
    return subprocess.Popen(
        [str(dagster), "dev", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)],
        env=dict(env),
        stdout=log_file or sys.stderr,  # our stdout carries only the URL
        stderr=subprocess.STDOUT if log_file else None,
        start_new_session=True,
        preexec_fn=_restore_default_signals,
    )


def wait_until_ready(url: str, process: subprocess.Popen, timeout: float = READY_TIMEOUT) -> None:
    """wait_until_ready polls the webserver until it answers (or the process dies)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AuditPipelineError(f"dagster dev exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise AuditPipelineError(f"dagster dev did not answer on {url} within {timeout:.0f} s")


def stop_process(process: subprocess.Popen, timeout: float = 30.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def demo_emulator(start: int, now: float, events_per_hour: int):
    """demo_emulator serves the demo's synthetic events from a week before ``start``."""
    from audit_pipeline.slack.emulator import running_emulator

    return running_emulator(
        start=start - 7 * 24 * HOUR,
        end=last_closed_hour(now) + 8 * 24 * HOUR,  # entries after "now" are never served
        events_per_hour=events_per_hour,
        seed=DEMO_SEED,
        rate_limit_per_min=0,
        workflow_runs_per_hour=DEMO_WORKFLOW_RUNS_PER_HOUR,
        activities_rate_limit_per_min=0,
    )


def run_dev(args: argparse.Namespace) -> int:
    workspace = args.workspace.resolve()
    if not workspace.is_file():
        raise ConfigurationError(
            f"no {args.workspace} here: run 'audit-pipeline dev' from the repository root"
        )
    if args.hours < 1:
        raise ConfigurationError(f"--hours must be at least 1, got {args.hours}")
    data_dir = args.data_dir.resolve()
    home = args.dagster_home.resolve()
    check_dagster_home(home, [data_dir, resolve_data_dir().resolve()])
    data_dir.mkdir(parents=True, exist_ok=True)
    _install_instance_template(home)
    now = time.time()
    key_path = data_dir / DEMO_KEY_FILE
    fresh = not (data_dir / "ledger" / "manifests").is_dir()
    signer = prepare_demo_data_dir(data_dir, now=now)
    install_trusted_keys(home, data_dir)
    start = _demo_start_hour(data_dir, args.hours, now)

    with (
        demo_emulator(start, now, args.events_per_hour) as emulator,
        running_local_witness(
            demo_witness_dir(data_dir), DEMO_ORIGIN, signer.verifier, forget=fresh
        ) as witness,
    ):
        env = dagster_environment(
            os.environ,
            data_dir=data_dir,
            dagster_home=home,
            key_path=key_path,
            emulator_url=emulator.base_url,
            emulator_token=emulator.token,
            start_hour=start,
            port=args.port,
            activities_token=emulator.config.activities_token,
        )
        env.setdefault("AUDIT_LOG_ORIGIN", DEMO_ORIGIN)
        env.setdefault("AUDIT_WITNESSES", f"{witness.label} {witness.url} {witness.key.vkey}")
        print(f"dev: emulator serving {emulator.base_url}", file=sys.stderr, flush=True)
        print(f"dev: witness {witness.key.vkey} at {witness.url}", file=sys.stderr, flush=True)
        runs = sync_missing_hours(env, log=lambda m: print(m, file=sys.stderr, flush=True))
        log_path = home / DAGSTER_LOG
        print(
            f"dev: {plural(runs, 'catch-up run')}; starting dagster dev (its log: {log_path})",
            file=sys.stderr,
            flush=True,
        )
        log_file = open(log_path, "ab")  # noqa: SIM115 (closed after the process ends)
        process = start_dagster_dev(workspace, args.port, env, log_file=log_file)
        stopping = False

        def stop(signum: int, frame: FrameType | None) -> None:
            # Only signal here: the main thread's wait() returns once dagster dev exits.
            nonlocal stopping
            stopping = True
            process.send_signal(signal.SIGTERM)

        previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            url = f"http://127.0.0.1:{args.port}"
            try:
                wait_until_ready(url, process)
            except AuditPipelineError:
                if stopping:
                    return 0
                raise
            print(url, flush=True)
            print(
                f"dev: Dagster UI at {url} (Ctrl-C stops it); in another shell:\n"
                + next_commands(args.data_dir, dev=False),
                file=sys.stderr,
                flush=True,
            )
            code = process.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            stop_process(process)
            log_file.close()
        return 0 if stopping else code
