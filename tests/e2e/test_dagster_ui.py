"""End to end: ``audit-pipeline dev`` (the emulator plus a real ``dagster dev``) on loopback
with a temporary DAGSTER_HOME; a partition run launched through GraphQL; the asset pages in
a real headless Chromium.

The browser is Debian's ``/usr/bin/chromium`` driven by Playwright through
``executable_path`` (no browser is ever downloaded). Without it the UI test skips with the
reason, unless ``AUDIT_PIPELINE_REQUIRE_BROWSER=1`` (CI sets it), which makes it fail.
The three traps of a scripted ``dagster dev`` are handled: default signal handlers are
restored in the child (``audit-pipeline dev`` does it for ``dagster dev``), the daemon runs
so queued runs start, and the first-visit community modal is dismissed with ``setNuxSeen``.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO / "data" / "screenshots"
LOCATION = "audit_pipeline"
LEDGER_CHECKS = {
    "ledger_chain_intact",
    "ledger_files_match_manifests",
    "ledger_has_no_unreferenced_files",
    "ledger_event_ids_unique",
    "ledger_consistent_with_recorded_checkpoint",
    "ledger_keys_anchored",
    "ledger_covers_every_hour",
    "ledger_fresh",
    "ledger_witnesses_agree",
    "ledger_witness_quorum",
}
START_TIMEOUT = 240.0
RUN_TIMEOUT = 240.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _restore_default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@dataclass
class DagsterServer:
    url: str
    log: Path
    home: Path

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
        with opener.open(request, timeout=60) as response:
            answer = json.load(response)
        assert "errors" not in answer, answer
        return answer["data"]


def _read_url(process: subprocess.Popen, log: Path) -> str:
    """The first stdout line of ``audit-pipeline dev`` is the UI's URL."""
    selector = selectors.DefaultSelector()
    assert process.stdout is not None
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"audit-pipeline dev exited ({process.returncode}):\n{log.read_text()}")
        if selector.select(timeout=1):
            line = process.stdout.readline().strip()
            if line.startswith("http://"):
                return line
    pytest.fail(f"no URL from audit-pipeline dev within {START_TIMEOUT} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def dagster_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterServer]:
    root = tmp_path_factory.mktemp("dagster-e2e")
    log = root / "dev.log"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AUDIT_", "SLACK_", "DAGSTER_")) or k.startswith("AUDIT_PIPELINE_")
    }
    env["AUDIT_AUTOMATION"] = "off"  # the test launches its own run
    command = [
        str(Path(sys.executable).with_name("audit-pipeline")),
        "dev",
        "--port",
        str(_free_port()),
        "--data-dir",
        str(root / "data"),
        "--dagster-home",
        str(root / "dagster_home"),
        "--hours",
        "2",
        "--events-per-hour",
        "60",
    ]
    with log.open("w") as log_file:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
            start_new_session=True,
            preexec_fn=_restore_default_signals,
        )
        try:
            url = _read_url(process, log)
            server = DagsterServer(url, log, root / "dagster_home")
            _wait_for_location(server)
            yield server
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def _wait_for_location(server: DagsterServer) -> None:
    query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        entries = server.graphql(query)["workspaceOrError"]["locationEntries"]
        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
            assert [e["name"] for e in entries] == [LOCATION]
            return
        time.sleep(0.5)
    pytest.fail(f"code location not loaded within {START_TIMEOUT} s:\n{server.log.read_text()}")


ASSET_QUERY = """
query ($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      partitionStats { numMaterialized numPartitions numFailed }
      assetMaterializations(limit: 10) { partition runId }
      assetChecksOrError { ... on AssetChecks { checks {
        name blocking executionForLatestMaterialization { status runId }
      } } }
    }
  }
}
"""

LAUNCH = """
mutation ($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


PARTITION_QUERY = """
query ($key: AssetKeyInput!, $partition: String!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      assetMaterializations(partitions: [$partition], limit: 1) {
        partition runId
        metadataEntries { label ... on IntMetadataEntry { intValue } }
      }
    }
  }
}
"""


def _partition_row_count(server: DagsterServer, partition: str) -> tuple[int, str]:
    """The row count and run of one partition's latest materialization."""
    node = server.graphql(
        PARTITION_QUERY, {"key": {"path": ["slack_audit_events"]}, "partition": partition}
    )["assetNodeOrError"]
    [materialization] = node["assetMaterializations"]
    counts = {
        e["label"]: e.get("intValue")
        for e in materialization["metadataEntries"]
        if e.get("intValue") is not None
    }
    return counts["dagster/row_count"], materialization["runId"]


def _asset(server: DagsterServer, name: str) -> dict[str, Any]:
    return server.graphql(ASSET_QUERY, {"key": {"path": [name]}})["assetNodeOrError"]


def _launch_partition_run(server: DagsterServer, partition: str) -> str:
    params = {
        "selector": {
            "repositoryLocationName": LOCATION,
            "repositoryName": "__repository__",
            "jobName": "hourly_sync",
        },
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
    }
    launched = server.graphql(LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def _wait_for_run(server: DagsterServer, run_id: str) -> str:
    query = "query ($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        status = server.graphql(query, {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        time.sleep(1)
    pytest.fail(f"run {run_id} not finished within {RUN_TIMEOUT} s")


@pytest.fixture(scope="module")
def partition_run(dagster_server: DagsterServer) -> dict[str, Any]:
    """Rerun the newest demo hour through GraphQL (idempotent) and wait for it."""
    seeded = _asset(dagster_server, "slack_audit_events")
    partitions = sorted({m["partition"] for m in seeded["assetMaterializations"]})
    assert len(partitions) == 2, seeded
    run_id = _launch_partition_run(dagster_server, partitions[-1])
    status = _wait_for_run(dagster_server, run_id)
    return {
        "run_id": run_id,
        "status": status,
        "partition": partitions[-1],
        "seeded": partitions,
    }


def _hour_label(partition: str) -> str:
    """2026-12-05-04:00 -> 2026-12-05T04:00Z (the ``hour`` metadata of a partition)."""
    return f"{partition[:10]}T{partition[11:13]}:00Z"


def test_a_partition_run_launched_through_graphql_succeeds_with_its_checks(
    dagster_server, partition_run
):
    assert partition_run["status"] == "SUCCESS", dagster_server.log.read_text()[-4000:]
    events = _asset(dagster_server, "slack_audit_events")
    assert events["partitionStats"]["numMaterialized"] == 2
    assert events["partitionStats"]["numFailed"] == 0
    assert {"partition": partition_run["partition"], "runId": partition_run["run_id"]} in events[
        "assetMaterializations"
    ]
    # The second source ran in the same hourly job (dev sets its own token).
    activities = _asset(dagster_server, "slack_workflow_activity")
    assert activities["partitionStats"]["numFailed"] == 0
    assert {"partition": partition_run["partition"], "runId": partition_run["run_id"]} in (
        activities["assetMaterializations"]
    )
    checks = _asset(dagster_server, "audit_ledger")["assetChecksOrError"]["checks"]
    assert {c["name"] for c in checks} == LEDGER_CHECKS
    for check in checks:
        execution = check["executionForLatestMaterialization"]
        assert execution["runId"] == partition_run["run_id"], check
        assert execution["status"] == "SUCCEEDED", check


def _browser_or_skip() -> None:
    problem = None
    if not CHROMIUM.exists():
        problem = f"Debian's chromium is not installed ({CHROMIUM}; apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright package is not installed (pip; never 'playwright install')"
    if problem:
        if os.environ.get("AUDIT_PIPELINE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"AUDIT_PIPELINE_REQUIRE_BROWSER=1 but {problem}")
        pytest.skip(problem)


def test_the_ui_shows_the_assets_and_their_check_states(dagster_server, partition_run, tmp_path):
    _browser_or_skip()
    from playwright.sync_api import sync_playwright

    assert partition_run["status"] == "SUCCESS"
    assets_query = "{ assetNodes { assetKey { path } } }"
    assets = {n["assetKey"]["path"][-1] for n in dagster_server.graphql(assets_query)["assetNodes"]}
    # Both audited sources feed the ledger (audit_dataset when it exists).
    assert {"slack_audit_events", "slack_workflow_activity", "audit_ledger"} <= assets
    parents = dagster_server.graphql(
        '{ assetNodeOrError(assetKey: {path: ["audit_ledger"]}) '
        "{ ... on AssetNode { dependencyKeys { path } } } }"
    )["assetNodeOrError"]["dependencyKeys"]
    assert {p["path"][-1] for p in parents} == {"slack_audit_events", "slack_workflow_activity"}
    assert dagster_server.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True

    shots: list[Path] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(60_000)

            page.goto(f"{dagster_server.url}/asset-groups", wait_until="networkidle")
            for name in sorted(assets):
                page.get_by_text(name, exact=True).first.wait_for()
            page.get_by_text(f"{len(LEDGER_CHECKS)} / {len(LEDGER_CHECKS)} Passed").wait_for()
            shots.append(tmp_path / "lineage.png")
            page.screenshot(path=shots[-1])

            page.goto(f"{dagster_server.url}/assets/audit_ledger?view=checks")
            for name in sorted(LEDGER_CHECKS):
                # Long names are middle-truncated; the full name is in the row's measure node.
                page.get_by_text(name, exact=True).first.wait_for(state="attached")
            page.get_by_text(f"Checks ({len(LEDGER_CHECKS)})").wait_for()
            body = page.inner_text("body")
            assert body.count("Succeeded") == len(LEDGER_CHECKS), body
            assert "Failed" not in body
            assert "This is a blocking asset check." in body  # ledger_chain_intact's page
            shots.append(tmp_path / "audit_ledger_checks.png")
            page.screenshot(path=shots[-1], full_page=True)

            page.goto(f"{dagster_server.url}/assets/slack_audit_events")
            page.get_by_text("Row count").first.wait_for()
            page.get_by_text("Columns").first.wait_for()
            shots.append(tmp_path / "slack_audit_events.png")
            page.screenshot(path=shots[-1])

            # One hour of the two-hour catch-up run: its own row count, not the run's total.
            first = partition_run["seeded"][0]
            rows, run_id = _partition_row_count(dagster_server, first)
            other, _ = _partition_row_count(dagster_server, partition_run["seeded"][1])
            assert run_id != partition_run["run_id"], "the first hour is from the ranged run"
            assert rows > 0 and other > 0
            page.goto(
                f"{dagster_server.url}/assets/slack_audit_events?view=partitions"
                f"&partition={urllib.parse.quote(first)}"
            )
            page.get_by_text(first).first.wait_for()
            page.get_by_text(_hour_label(first)).first.wait_for()  # the "hour" metadata value
            page.get_by_text(str(rows), exact=True).first.wait_for()
            shots.append(tmp_path / "slack_audit_events_partition.png")
            page.screenshot(path=shots[-1], full_page=True)

            page.goto(f"{dagster_server.url}/assets/slack_workflow_activity")
            page.get_by_text("Row count").first.wait_for()
            page.get_by_text("trace_id", exact=True).first.wait_for(state="attached")
            shots.append(tmp_path / "slack_workflow_activity.png")
            page.screenshot(path=shots[-1])

            # The lineage graph around the ledger shows both sources as its upstreams.
            page.goto(
                f"{dagster_server.url}/assets/audit_ledger?view=lineage&lineageScope=upstream"
            )
            for name in ("slack_audit_events", "slack_workflow_activity", "audit_ledger"):
                page.get_by_text(name, exact=True).first.wait_for()
            shots.append(tmp_path / "audit_ledger_lineage.png")
            page.screenshot(path=shots[-1])
        finally:
            browser.close()

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for shot in shots:
        assert shot.stat().st_size > 10_000, f"{shot} looks empty"
        shutil.copyfile(shot, SCREENSHOTS / shot.name)
