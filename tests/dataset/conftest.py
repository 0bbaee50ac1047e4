"""Dataset fixtures: a real signed ledger of hand-made entries whose answers are known.

``scenario_ledger`` commits five UTC hours starting at ``T0`` through the real ``Ledger``
with real Parquet batch files:

- hour 0: logins (alice from two IPs, bob failing twice then succeeding), a pref change,
  an SSO change, a role change; then a *late* batch for hour 0 with one more alice login;
- hour 1: 2FA change, app install, app scope expansion, file downloads, a public link;
- hour 2: two anomalies (reasons as lists), workflow and workflow_v2 changes;
- hour 3: no events (an ``empty`` batch);
- hour 4: generated background traffic (``generate_hour``) so volumes are realistic.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from audit_pipeline.lake import events_from_table, normalize_entries, write_batch_file
from audit_pipeline.ledger import EventRecord, Ledger
from audit_pipeline.ledger.layout import HOUR

T0 = 1_764_374_400  # 2025-11-29T00:00:00Z
SEED = 7

ALICE = {"id": "U0ALICE", "name": "alice", "email": "alice@example.com", "team": "E01"}
BOB = {"id": "U0BOB", "name": "bob", "email": "bob@example.com", "team": "E01"}
CAROL = {"id": "U0CAROL", "name": "carol", "email": "carol@example.com", "team": "E01"}
ORG = {"type": "enterprise", "id": "E01", "name": "Example Org", "domain": "example"}
UA_MAC = "Mozilla/5.0 (Macintosh)"
UA_CLI = "SlackCLI/2.0"


def entry(
    event_id: str,
    t: int,
    action: str | None,
    actor: dict[str, Any],
    entity: dict[str, Any],
    *,
    ip: str = "192.0.2.1",
    ua: str = UA_MAC,
    details: Any = None,
) -> dict[str, Any]:
    e: dict[str, Any] = {
        "id": event_id,
        "date_create": t,
        "actor": {"type": "user", "user": dict(actor)},
        "entity": entity,
        "context": {"location": ORG, "ua": ua, "ip_address": ip, "session_id": 1234},
    }
    if action is not None:
        e["action"] = action
    if details is not None:
        e["details"] = details
    return e


def user_entity(user: dict[str, Any]) -> dict[str, Any]:
    return {"type": "user", "user": dict(user)}


def app_entity(app_id: str, name: str, scopes: list[str]) -> dict[str, Any]:
    app = {"id": app_id, "name": name, "scopes": scopes}
    return {"type": "app", "app": {**app, "is_distributed": False, "is_directory_approved": True}}


def scenario_hours() -> dict[int, list[list[dict[str, Any]]]]:
    """scenario_hours maps hour start -> list of batches (each a list of API entries)."""
    h0, h1, h2, h3 = T0, T0 + HOUR, T0 + 2 * HOUR, T0 + 3 * HOUR
    ws = {"type": "workspace", "workspace": {"id": "T01", "name": "Main", "domain": "main"}}
    hour0 = [
        entry("ev-login-a1", h0 + 10, "user_login", ALICE, user_entity(ALICE), ip="198.51.100.1"),
        entry("ev-login-a2", h0 + 20, "user_login", ALICE, user_entity(ALICE), ip="198.51.100.2"),
        entry("ev-fail-b1", h0 + 30, "user_login_failed", BOB, user_entity(BOB),
              ip="203.0.113.9", details={"reason": "invalid_password"}),
        entry("ev-fail-b2", h0 + 31, "user_login_failed", BOB, user_entity(BOB),
              ip="203.0.113.9", details={"reason": "two_factor_failed"}),
        entry("ev-login-b1", h0 + 40, "user_login", BOB, user_entity(BOB), ip="203.0.113.9"),
        entry("ev-pref-1", h0 + 100, "pref.public_channel_retention_changed", CAROL, ws,
              details={"new_value": "90", "previous_value": "365"}),
        entry("ev-sso-1", h0 + 200, "pref.sso_setting_changed", CAROL, ws,
              details={"new_value": "required", "previous_value": "optional"}),
        entry("ev-role-1", h0 + 300, "role_change_to_admin", CAROL, user_entity(BOB)),
        entry("ev-other-1", h0 + 400, "user_channel_join", ALICE,
              {"type": "channel", "channel": {"id": "C01", "name": "general"}}),
    ]  # fmt: skip
    late0 = [
        entry("ev-login-a3", h0 + 3000, "user_login", ALICE, user_entity(ALICE),
              ip="198.51.100.1", ua=UA_CLI),
    ]  # fmt: skip
    hour1 = [
        entry("ev-2fa-1", h1 + 5, "pref.two_factor_auth_changed", CAROL, ws,
              details={"new_value": True, "previous_value": False}),
        entry("ev-app-1", h1 + 60, "app_installed", CAROL,
              app_entity("A01", "Deploybot", ["chat:write"]),
              details={"scopes": ["chat:write", "commands"], "bot_scopes": ["chat:write"]}),
        entry("ev-scope-1", h1 + 120, "app_scopes_expanded", CAROL,
              app_entity("A01", "Deploybot", ["chat:write", "files:read"]),
              details={"new_scopes": ["chat:write", "files:read"],
                       "previous_scopes": ["chat:write"]}),
        entry("ev-dl-1", h1 + 200, "file_downloaded", ALICE,
              {"type": "file", "file": {"id": "F01", "name": "plan.pdf", "filetype": "pdf"}}),
        entry("ev-dl-2", h1 + 201, "file_downloaded", ALICE,
              {"type": "file", "file": {"id": "F02", "name": "budget.xlsx", "filetype": "xlsx"}}),
        entry("ev-dl-3", h1 + 202, "file_downloaded", ALICE,
              {"type": "file", "file": {"id": "F01", "name": "plan.pdf", "filetype": "pdf"}}),
        entry("ev-link-1", h1 + 300, "file_public_link_created", BOB,
              {"type": "file", "file": {"id": "F03", "name": "deck.key", "filetype": "key"}}),
    ]  # fmt: skip
    hour2 = [
        entry("ev-anom-1", h2 + 50, "anomaly", BOB, user_entity(BOB),
              details={"reason": ["tor", "asn"], "action_timestamp": (h2 - 600) * 1_000_000,
                       "ip_address": "203.0.113.66"}),
        entry("ev-anom-2", h2 + 60, "anomaly", ALICE, user_entity(ALICE),
              details={"reason": ["session_fingerprint"],
                       "action_timestamp": (h2 + 10) * 1_000_000 + 500_000}),
        entry("ev-wf-1", h2 + 100, "workflow_published", CAROL,
              {"type": "workflow", "workflow": {"id": "Wf01", "name": "Onboarding"}}),
        entry("ev-wf2-1", h2 + 200, "workflow_v2_published", ALICE,
              {"type": "workflow_v2", "workflow_v2": {
                  "id": "Wf02", "name": "Expense approvals", "app_id": "A0WF",
                  "callback_id": "expenses", "updated_by": "U0ALICE", "date_updated": h2}}),
    ]  # fmt: skip
    return {h0: [hour0, late0], h1: [hour1], h2: [hour2], h3: [[]]}


# What the views must answer for the scenario (hand-counted from scenario_hours).
EXPECTED = {
    "logins": {("U0ALICE", "198.51.100.1", UA_MAC): (1, 0), ("U0ALICE", "198.51.100.1", UA_CLI):
               (1, 0), ("U0ALICE", "198.51.100.2", UA_MAC): (1, 0),
               ("U0BOB", "203.0.113.9", UA_MAC): (1, 2)},
    "admin": {"ev-pref-1": "preference", "ev-sso-1": "sso", "ev-role-1": "role",
              "ev-2fa-1": "two_factor"},
    "apps": {"ev-app-1": "install", "ev-scope-1": "scopes"},
    "files_by_user": {"U0ALICE": (3, 2, 0), "U0BOB": (0, 0, 1)},
    "anomalies": {"ev-anom-1": ["tor", "asn"], "ev-anom-2": ["session_fingerprint"]},
    "workflows": {"ev-wf-1": ("workflow", "Wf01", "Onboarding", "CAROL"),
                  "ev-wf2-1": ("workflow_v2", "Wf02", "Expense approvals", "ALICE")},
}  # fmt: skip


def commit_entries(
    ledger: Ledger, hour: int, entries: Sequence[dict[str, Any]], run_id: str = "test-run"
):
    """commit_entries normalizes entries of one hour and commits them as a batch."""
    rows = normalize_entries(entries, window_start=hour, window_end=hour + HOUR).table

    def write(new_events: Sequence[EventRecord], path: Path) -> None:
        wanted = {e.event_id for e in new_events}
        table = rows
        if len(wanted) != rows.num_rows:
            mask = [i in wanted for i in rows.column("event_id").to_pylist()]
            table = rows.filter(mask)
        write_batch_file(table, path)

    return ledger.commit_batch(
        window_start=hour,
        window_end=hour + HOUR,
        events=events_from_table(rows),
        write_data=write,
        source={"api_url": "test", "oldest": hour, "latest": hour + HOUR - 1, "pages": 1},
        run_id=run_id,
    )


def background_entries(hour: int, events_per_hour: int = 300) -> list[dict[str, Any]]:
    from audit_pipeline.slack.generator import generate_hour

    return list(generate_hour(SEED, hour, events_per_hour))


def fill_scenario(ledger: Ledger) -> Ledger:
    for hour, batches in scenario_hours().items():
        for batch in batches:
            commit_entries(ledger, hour, batch)
    commit_entries(ledger, T0 + 4 * HOUR, background_entries(T0 + 4 * HOUR))
    return ledger


@pytest.fixture
def scenario_ledger(ledger: Ledger) -> Ledger:
    return fill_scenario(ledger)


@pytest.fixture(scope="module")
def scenario_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scenario_dataset is a data dir with the scenario ledger and a built dataset, shared
    by a module's read-only tests (they must not change it)."""
    from audit_pipeline.dataset.build import build_dataset
    from audit_pipeline.lake import PARQUET_FORMAT
    from audit_pipeline.ledger.keys import init_key

    base = tmp_path_factory.mktemp("scenario")
    data_dir = base / "data"
    data_dir.mkdir()
    signer, _, _ = init_key(
        data_dir, base / "keys" / "signing-key", name="test-log", now=T0 - 86_400
    )
    ledger = Ledger(
        data_dir, file_format=PARQUET_FORMAT, signer=signer, origin="test.example/audit"
    )
    fill_scenario(ledger)
    build_dataset(data_dir)
    return data_dir


@pytest.fixture
def cli() -> Callable[..., tuple[int, str, str]]:
    """cli(*argv) runs ``audit-pipeline`` in-process; returns (exit code, stdout, stderr)."""
    import contextlib
    import io

    from audit_pipeline.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
        return code, out.getvalue(), err.getvalue()

    return run


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


@pytest.fixture
def scenario() -> SimpleNamespace:
    """scenario gives tests the scenario's constants and helpers (conftest is not importable
    under --import-mode=importlib)."""
    return SimpleNamespace(
        T0=T0,
        HOUR=HOUR,
        EXPECTED=EXPECTED,
        hours=scenario_hours,
        commit=commit_entries,
        entry=entry,
        user_entity=user_entity,
        ALICE=ALICE,
    )
