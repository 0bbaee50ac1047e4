"""What every benchmark shares: child processes with their peak RSS, medians, result rows,
the emulator in its own process, and the facts about the machine a run happened on."""

from __future__ import annotations

import json
import os
import platform
import resource
import selectors
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

HOUR = 3600
REPO_ROOT = Path(__file__).resolve().parent.parent
TOKEN = "xoxp-emulator-token"  # the emulator's fake default token, not a secret
PACKAGES = (
    "audit-pipeline",
    "slack-sdk",
    "pyarrow",
    "orjson",
    "duckdb",
    "cryptography",
    "dagster",
    "dlt",
)


class BenchmarkError(RuntimeError):
    """A benchmark could not produce a number (a child failed, a count was wrong)."""


@dataclass
class Row:
    """One line of the results table."""

    benchmark: str
    case: str
    value: str
    detail: str = ""
    target: str = ""
    status: str = ""  # "met", "MISSED", "skipped", "info"


@dataclass
class Section:
    """The rows and notes one benchmark contributes to the results."""

    name: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self, case: str, value: str, detail: str = "", target: str = "", status: str = ""):
        self.rows.append(Row(self.name, case, value, detail, target, status))

    def check(self, case: str, value: str, ok: bool, target: str, detail: str = "") -> None:
        self.row(case, value, detail, target, "met" if ok else "MISSED")


@dataclass(frozen=True)
class ChildRun:
    """A finished child process: its output, wall time and peak resident set size."""

    stdout: str
    stderr: str
    seconds: float
    max_rss: int  # bytes

    def json(self) -> Any:
        """json returns the last stdout line parsed as JSON (workers report that way)."""
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        if not lines:
            raise BenchmarkError(f"child printed nothing; stderr:\n{self.stderr[-2000:]}")
        return json.loads(lines[-1])


def python_child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """python_child_env is this environment without proxies (loopback only) plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def run_child(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 1800,
    cwd: Path | None = None,
) -> ChildRun:
    """run_child runs ``argv`` to completion and measures that one child with ``wait4``.

    ``wait4`` gives the rusage of exactly this child (and what it waited for), unlike
    ``RUSAGE_CHILDREN``, which is the maximum over every child this process ever had.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else python_child_env(),
        cwd=cwd,
    )
    out, err = _communicate(proc, started + timeout)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
    if proc.returncode != 0:
        raise BenchmarkError(
            f"{' '.join(argv[:4])} ... exited {proc.returncode}:\n{stderr[-3000:]}"
        )
    return ChildRun(stdout, stderr, seconds, usage.ru_maxrss * 1024)


def _communicate(proc: subprocess.Popen, deadline: float) -> tuple[bytes, bytes]:
    """Reads both pipes until EOF without reaping the child (so wait4 still can)."""
    chunks: dict[int, list[bytes]] = {1: [], 2: []}
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stderr is not None
    sel.register(proc.stdout, selectors.EVENT_READ, 1)
    sel.register(proc.stderr, selectors.EVENT_READ, 2)
    open_pipes = 2
    while open_pipes:
        left = deadline - time.perf_counter()
        if left <= 0:
            proc.kill()
            raise BenchmarkError(f"child {proc.args[:3]} timed out")
        for key, _ in sel.select(timeout=min(left, 5.0)):
            data = os.read(key.fileobj.fileno(), 1 << 16)  # type: ignore[union-attr]
            if data:
                chunks[key.data].append(data)
            else:
                sel.unregister(key.fileobj)
                open_pipes -= 1
    sel.close()
    return b"".join(chunks[1]), b"".join(chunks[2])


def module_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def repeat_median(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    """repeat_median runs ``fn`` ``repeats`` times; returns the median seconds, all, last."""
    samples, result = [], None
    for _ in range(repeats):
        seconds, result = timed(fn)
        samples.append(seconds)
    return median(samples), samples, result


def fmt_rate(per_second: float) -> str:
    return f"{per_second:,.0f} events/s"


def fmt_mb(nbytes: float) -> str:
    return f"{nbytes / 2**20:,.0f} MiB"


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def fmt_s(seconds: float) -> str:
    return f"{seconds:,.2f} s"


# -- the emulator in its own process ------------------------------------------------------


@dataclass(frozen=True)
class EmulatorProcess:
    base_url: str
    entries: int
    render_seconds: float
    pid: int
    activities: int = 0  # workflow activities served by admin.apps.activities.list

    @property
    def web_api_url(self) -> str:
        """web_api_url is where the emulator serves Web API methods (``…/api/``)."""
        return self.base_url.replace("/audit/v1/", "/api/")

    def stats(self) -> dict[str, Any]:
        """stats reads the emulator's counters from its admin path."""
        import urllib.request

        root = self.base_url.split("/audit/v1/")[0]
        request = urllib.request.Request(
            root + "/_emulator/stats", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=30) as response:
            return json.loads(response.read())


@contextmanager
def emulator_process(
    *,
    start: int,
    end: int,
    events_per_hour: int,
    rate_limit: int = 0,
    seed: int = 1,
    workflow_runs_per_hour: int = 0,
) -> Iterator[EmulatorProcess]:
    """emulator_process serves ``[start, end)`` from a child process, fully pre-rendered
    (workflow runs too, when asked for: their activities without a rate limit)."""
    argv = module_argv(
        "benchmarks.emulator_server",
        f"--start={start}",
        f"--end={end}",
        f"--events-per-hour={events_per_hour}",
        f"--rate-limit={rate_limit}",
        f"--seed={seed}",
        f"--workflow-runs-per-hour={workflow_runs_per_hour}",
    )
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=python_child_env(),
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        if len(line) not in (3, 4):
            raise BenchmarkError("the emulator process did not start")
        activities = int(line[3]) if len(line) == 4 else 0
        yield EmulatorProcess(line[0], int(line[1]), float(line[2]), proc.pid, activities)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the machine ----------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def machine_facts() -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count() or 0,
        "ram": f"{_ram_bytes() / 2**30:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "packages": package_versions(),
    }


def self_max_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
