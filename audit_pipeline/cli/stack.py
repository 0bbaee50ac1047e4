"""``audit-pipeline stack``: the production-shaped Dagster deployment, locally, as processes.

``make dev`` is one ``dagster dev`` process on SQLite. Production is several services that
share nothing but the instance database, the broker and the data directory; this command
starts exactly those, each its own process on loopback:

- the instance on PostgreSQL (``dagster-production.yaml`` into ``$DAGSTER_HOME``; the
  database is created if missing),
- a code server (``dagster code-server start``) serving ``audit_pipeline.definitions``,
- ``dagster-webserver`` and ``dagster-daemon`` loading it through a gRPC workspace,
- a Celery worker (``dagster-celery worker start``) taking the runs' steps from RabbitMQ,

with the Audit Logs API emulator in this process and the demo data directory, as for
``dev``, or (``--store seaweedfs``) a SeaweedFS with an Object Lock bucket holding the data
directory as ``s3://`` (``stack_store.py``). Every process logs to
``$DAGSTER_HOME/stack-logs/<name>.log``. Ctrl-C stops them all.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import orjson

from audit_pipeline.cli.dev import (
    _install_instance_template,
    _restore_default_signals,
    dagster_environment,
    demo_emulator,
    install_trusted_keys,
)
from audit_pipeline.cli.stack_store import STORES, StackStore, stack_store
from audit_pipeline.cli.sync import DEMO_DATA_DIR, DEMO_ORIGIN
from audit_pipeline.errors import AuditPipelineError, ConfigurationError
from audit_pipeline.ledger.layout import is_object_store_url

LOOPBACK = "127.0.0.1"
LOCATION = "audit_pipeline"
TEMPLATE = Path(__file__).resolve().parents[1] / "dagster-production.yaml"
PG_URL_ENV = "DAGSTER_PG_URL"
BROKER_ENV = "AUDIT_CELERY_BROKER"  # the executor reads the same (defs/executor.py)
QUEUE_ENV = "AUDIT_CELERY_QUEUE"
DEFAULT_PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/audit_pipeline_dagster"
DEFAULT_BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
DEFAULT_QUEUE = "dagster"
DEFAULT_HOME = Path("data/dagster_stack_home")
READY_TIMEOUT = 180.0
STOP_TIMEOUT = 15.0

_LOCATION_QUERY = (
    "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
    "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stack",
        help="run the production-shaped Dagster stack locally (PostgreSQL, daemon, Celery)",
        description=(
            "Start the instance on PostgreSQL, a code server, dagster-webserver, "
            "dagster-daemon and a Celery worker (RabbitMQ broker) as separate processes on "
            "loopback, with the Audit Logs API emulator and the demo data directory. Prints "
            "the UI's URL; Ctrl-C stops everything. Needs PostgreSQL and RabbitMQ running."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=3000, help="UI port (0: any free port)")
    # URLs may carry passwords: their defaults are resolved at run time, never printed
    parser.add_argument(
        "--pg-url",
        help=f"instance database, a SQLAlchemy URL (default: ${PG_URL_ENV}, else {DEFAULT_PG_URL})",
    )
    parser.add_argument(
        "--broker",
        help=f"Celery broker URL (default: ${BROKER_ENV}, else {DEFAULT_BROKER})",
    )
    parser.add_argument("--queue", default=DEFAULT_QUEUE, help="Celery queue the steps go to")
    parser.add_argument(
        "--store",
        choices=STORES,
        default="local",
        help="the data directory: the local demo directory, or s3:// in a SeaweedFS started "
        "with the stack (Object Lock bucket; needs AUDIT_RETENTION_DAYS)",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=DEMO_DATA_DIR, help="demo data dir (--store local)"
    )
    parser.add_argument("--dagster-home", type=Path, default=DEFAULT_HOME, help="DAGSTER_HOME")
    parser.add_argument("--events-per-hour", type=int, default=600, help="emulator volume")
    parser.set_defaults(func=run_stack)


# -- the instance ---------------------------------------------------------------------------


def _pg_connect(url: str, dbname: str):
    import psycopg2
    from sqlalchemy.engine import make_url

    parts = make_url(url)
    return psycopg2.connect(
        host=parts.host or LOOPBACK,
        port=parts.port or 5432,
        user=parts.username,
        password=parts.password,
        dbname=dbname,
        connect_timeout=5,
    )


def database_name(url: str) -> str:
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    if not name:
        raise ConfigurationError("the instance database URL names no database")
    return name


def ensure_database(url: str) -> bool:
    """ensure_database creates the URL's database if it does not exist; True if created."""
    import psycopg2
    from psycopg2 import sql

    name = database_name(url)
    try:
        conn = _pg_connect(url, "postgres")
    except psycopg2.OperationalError:
        raise AuditPipelineError(
            "cannot reach PostgreSQL for the Dagster instance (is it running, and does the "
            "URL's user exist?)"
        ) from None
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone():
                return False
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True
    finally:
        conn.close()


def drop_database(url: str) -> None:
    """drop_database removes the URL's database, ending its sessions first (tests)."""
    from psycopg2 import sql

    name = database_name(url)
    conn = _pg_connect(url, "postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
    finally:
        conn.close()


# -- the processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


@dataclass
class Stack:
    """Stack is the running services; :meth:`stop` ends every one (and its children)."""

    home: Path
    webserver_url: str
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def log_path(self, name: str) -> Path:
        return self.home / "stack-logs" / f"{name}.log"

    def start(self, name: str, command: list[str], env: Mapping[str, str]) -> None:
        self.log_path(name).parent.mkdir(parents=True, exist_ok=True)
        with self.log_path(name).open("ab") as log:
            self.processes[name] = subprocess.Popen(
                command,
                env=dict(env),
                cwd=Path.cwd(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_restore_default_signals,
            )

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise AuditPipelineError(
                    f"{name} exited with code {process.returncode}; see {self.log_path(name)}"
                )

    def stop(self) -> None:
        """stop sends SIGTERM to each process group, newest first, then SIGKILL stragglers."""
        for process in reversed(self.processes.values()):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)

    def graphql(self, query: str, variables: Mapping | None = None) -> dict:
        """graphql posts one query to the webserver and returns its ``data``."""
        body = orjson.dumps({"query": query, "variables": dict(variables or {})})
        request = urllib.request.Request(
            f"{self.webserver_url}/graphql",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                payload = orjson.loads(answer.read())
        except urllib.error.HTTPError as exc:
            raise AuditPipelineError(f"GraphQL answered {exc.code}: {exc.read()[:500]!r}") from None
        if payload.get("errors"):
            raise AuditPipelineError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def wait_until_loaded(self, timeout: float = READY_TIMEOUT) -> None:
        """wait_until_loaded returns once the webserver shows the code location LOADED."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                entries = self.graphql(_LOCATION_QUERY)["workspaceOrError"]["locationEntries"]
                last = repr(entries)
                if entries and all(
                    e["loadStatus"] == "LOADED"
                    and e["locationOrLoadError"]["__typename"] != "PythonError"
                    for e in entries
                ):
                    return
            except (urllib.error.URLError, OSError, AuditPipelineError, KeyError) as exc:
                last = type(exc).__name__
            time.sleep(0.5)
        raise AuditPipelineError(f"the code location did not load within {timeout:.0f} s: {last}")


def write_workspace(home: Path, code_port: int) -> Path:
    """write_workspace points the webserver and daemon at the code server over gRPC."""
    target = home / "workspace.yaml"
    target.write_text(
        "load_from:\n"
        "  - grpc_server:\n"
        f"      host: {LOOPBACK}\n"
        f"      port: {code_port}\n"
        f"      location_name: {LOCATION}\n",
        encoding="utf-8",
    )
    return target


def write_worker_config(home: Path) -> Path:
    """write_worker_config gives the Celery worker the executor's broker (by reference)."""
    target = home / "celery.yaml"
    target.write_text(
        f"execution:\n  config:\n    broker:\n      env: {BROKER_ENV}\n", encoding="utf-8"
    )
    return target


def start_stack(env: Mapping[str, str], home: Path, *, port: int, queue: str) -> Stack:
    """start_stack starts code server, webserver, daemon and a Celery worker; returns once
    the webserver shows the code location loaded. ``env`` must hold ``DAGSTER_HOME``,
    ``DAGSTER_PG_URL`` and ``AUDIT_CELERY_BROKER``."""
    for required in ("DAGSTER_HOME", PG_URL_ENV, BROKER_ENV):
        if not env.get(required):
            raise ConfigurationError(f"{required} is not set for the stack")
    _install_instance_template(home, TEMPLATE)
    if env.get("AUDIT_DATA_DIR") and not is_object_store_url(env["AUDIT_DATA_DIR"]):
        # the keys the instance trusts, taken once beside it (outside the data directory);
        # for an object store, stack_store puts them there
        install_trusted_keys(home, Path(env["AUDIT_DATA_DIR"]))
    code_port = free_port()
    workspace = write_workspace(home, code_port)
    worker_config = write_worker_config(home)
    env = {
        **env,
        QUEUE_ENV: queue,
        # the worker runs `celery` by name
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    }
    stack = Stack(home, f"http://{LOOPBACK}:{port}")
    try:
        stack.start(
            "code-server",
            [
                _tool("dagster"),
                "code-server",
                "start",
                "-m",
                "audit_pipeline.definitions",
                "--location-name",
                LOCATION,
                "-h",
                LOOPBACK,
                "-p",
                str(code_port),
            ],
            env,
        )
        stack.start(
            "celery-worker",
            [
                _tool("dagster-celery"),
                "worker",
                "start",
                "-A",
                "dagster_celery.app",
                "-y",
                str(worker_config),
                "-q",
                queue,
                "-n",
                f"audit-{queue}",
            ],
            env,
        )
        stack.start(
            "webserver",
            [_tool("dagster-webserver"), "-w", str(workspace), "-h", LOOPBACK, "-p", str(port)],
            env,
        )
        stack.start("daemon", [_tool("dagster-daemon"), "run", "-w", str(workspace)], env)
        stack.wait_until_loaded()
    except BaseException:
        stack.stop()
        raise
    return stack


def run_stack(args: argparse.Namespace) -> int:
    from audit_pipeline.ingest import HOUR, last_closed_hour

    home = args.dagster_home.resolve()
    port = args.port or free_port()
    pg_url = args.pg_url or os.environ.get(PG_URL_ENV) or DEFAULT_PG_URL
    broker = args.broker or os.environ.get(BROKER_ENV) or DEFAULT_BROKER
    now = time.time()
    start = last_closed_hour(now) - 23 * HOUR
    with (
        # first: a store's settings are checked before anything starts
        stack_store(
            args.store, data_dir=args.data_dir.resolve(), home=home, environ=os.environ, now=now
        ) as store,
        demo_emulator(start, now, args.events_per_hour) as emulator,
    ):
        if ensure_database(pg_url):
            print(f"stack: created database {database_name(pg_url)}", file=sys.stderr)
        env = stack_environment(
            os.environ,
            store,
            home=home,
            emulator=emulator,
            start_hour=start,
            port=port,
            pg_url=pg_url,
            broker=broker,
        )
        stack = start_stack(env, home, port=port, queue=args.queue)
        stopping = False

        def stop(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True

        previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            print(stack.webserver_url, flush=True)
            print(
                f"stack: Dagster UI at {stack.webserver_url}; data in {store.data_dir}; logs in "
                f"{home / 'stack-logs'} (Ctrl-C stops everything)",
                file=sys.stderr,
                flush=True,
            )
            while not stopping:
                stack.check_alive()
                time.sleep(1)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            stack.stop()
    return 0


def stack_environment(
    base: Mapping[str, str],
    store: StackStore,
    *,
    home: Path,
    emulator,
    start_hour: int,
    port: int,
    pg_url: str,
    broker: str,
) -> dict[str, str]:
    """stack_environment is what every process of the stack reads: ``dev``'s settings, the
    data directory (and, for an object store, the AWS settings), the instance database and
    the broker."""
    env = dagster_environment(
        base,
        data_dir=Path(store.data_dir),
        dagster_home=home,
        key_path=store.key_path,
        emulator_url=emulator.base_url,
        emulator_token=emulator.token,
        start_hour=start_hour,
        port=port,
    )
    env.setdefault("AUDIT_LOG_ORIGIN", DEMO_ORIGIN)
    env.update(store.env)
    env["AUDIT_DATA_DIR"] = store.data_dir  # an s3:// URL must not go through Path
    env[PG_URL_ENV] = pg_url
    env[BROKER_ENV] = broker
    return env
