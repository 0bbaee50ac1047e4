"""Conformance of the emulator's admin.apps.activities.list: official WebClient and raw HTTP."""

from __future__ import annotations

import json
from collections import Counter
from urllib.parse import urlencode

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from audit_pipeline.slack.activities_generator import (
    APPROVAL_FUNCTION,
    generate_activity_hour,
    publish_entries,
    workflow_plans,
)

from .conftest import HOUR, FakeClock, H, raw_get

MICROS = 1_000_000
WINDOW = {"min_date_created": H * MICROS, "max_date_created": (H + HOUR) * MICROS - 1}


@pytest.fixture
def emu(start_emulator):
    return start_emulator(
        start=H,
        end=H + 2 * HOUR,
        seed=3,
        workflow_runs_per_hour=10,
        activities_rate_limit_per_min=0,
        clock=FakeClock(H + 3 * HOUR),
    )


def web(emu, token: str | None = None) -> WebClient:
    return WebClient(
        token=token or emu.config.activities_token,
        base_url=emu.base_url.replace("/audit/v1/", "/api/"),
    )


def every_page(client: WebClient, **args) -> list[dict]:
    out, cursor = [], None
    while True:
        response = client.admin_apps_activities_list(**args, cursor=cursor)
        assert response["ok"] is True
        out += response["activities"]
        cursor = response["response_metadata"]["next_cursor"]
        if not cursor:
            return out


def post(emu, args: dict | bytes, *, json_body: bool = False, token: str | None = ""):
    body = json.dumps(args).encode() if json_body else urlencode(args).encode()
    return raw_get(
        emu,
        "/api/admin.apps.activities.list",
        method="POST",
        body=body,
        token=emu.config.activities_token if token == "" else token,
    )


def test_generated_runs_are_coherent_and_tied_to_published_workflows():
    activities = generate_activity_hour(3, H, 10)
    runs: dict[str, list[dict]] = {}
    for a in activities:
        runs.setdefault(a["trace_id"], []).append(a)
    plans = {p.workflow_id: p for p in workflow_plans(3)}
    published = {e["entity"]["workflow_v2"]["id"] for e in publish_entries(3, H, H + HOUR)}
    assert set(plans) == published
    assert all(e["action"] == "workflow_v2_published" for e in publish_entries(3, H, H + HOUR))
    complete = [r for r in runs.values() if r[0]["event_type"] == "trigger_executed"]
    assert complete
    for run in complete:
        assert run[1]["event_type"] == "workflow_execution_started"
        assert {a["component_id"] for a in run if a["component_type"] == "workflows"} <= set(plans)
        steps = [a for a in run if a["event_type"] == "workflow_step_started"]
        assert [s["payload"]["current_step"] for s in steps] == list(range(1, len(steps) + 1))
        parents = {a.get("parent_execution_id") for a in run if "parent_execution_id" in a}
        assert len(parents) == 1  # every step hangs under the run's execution id
    results = [
        a["payload"] for a in activities if a["event_type"] == "workflow_step_execution_result"
    ]
    approvals = [p for p in results if p["function_name"] == APPROVAL_FUNCTION and "outputs" in p]
    assert {p["outputs"]["decision"] for p in approvals} <= {"approved", "denied"}
    assert all(p["outputs"]["approver"] == p["inputs"]["approver"] for p in approvals)


def test_sdk_pages_through_a_window_with_every_record_once(emu):
    truth = [a for a in generate_activity_hour(3, H, 10)]
    got = every_page(web(emu), **WINDOW, limit=3, min_log_level="trace", sort_direction="asc")
    assert [a["created"] for a in got] == sorted(a["created"] for a in truth)
    assert Counter(json.dumps(a, sort_keys=True) for a in got) == Counter(
        json.dumps(a, sort_keys=True) for a in truth
    )
    desc = every_page(web(emu), **WINDOW, limit=5, min_log_level="trace")
    assert [a["created"] for a in desc] == sorted((a["created"] for a in truth), reverse=True)


@pytest.mark.parametrize(
    ("args", "check"),
    [
        ({}, lambda a: a["level"] in ("info", "warn", "error", "fatal")),  # default min info
        ({"min_log_level": "error"}, lambda a: a["level"] == "error"),
        ({"log_event_type": "trigger_executed"}, lambda a: a["event_type"] == "trigger_executed"),
        ({"component_type": "functions"}, lambda a: a["component_type"] == "functions"),
        ({"source": "developer"}, lambda a: False),  # the generator logs as slack only
    ],
)
def test_each_filter_through_the_sdk(emu, args, check):
    got = every_page(web(emu), **WINDOW, **args)
    assert all(check(a) for a in got)
    if args.get("source") != "developer":
        assert got


def test_id_filters_dates_and_json_arguments(emu):
    everything = every_page(web(emu), **WINDOW, min_log_level="trace")
    one = everything[len(everything) // 2]
    for name, key in (
        ("trace_id", "trace_id"),
        ("component_id", "component_id"),
        ("app_id", "app_id"),
        ("team_id", "team_id"),
    ):
        got = every_page(web(emu), **WINDOW, min_log_level="trace", **{name: one[key]})
        assert got and all(a[key] == one[key] for a in got)
    exact = every_page(
        web(emu),
        min_date_created=one["created"],
        max_date_created=one["created"],
        min_log_level="trace",
    )
    assert one in exact and all(a["created"] == one["created"] for a in exact)
    as_json = post(emu, {**WINDOW, "min_log_level": "trace", "limit": 1000}, json_body=True)
    assert as_json.status == 200
    assert len(as_json.json()["activities"]) == len(everything)
    body = as_json.body
    assert body.startswith(b'{"ok":true,"activities":[')


@pytest.mark.parametrize(
    ("token", "error", "extra"),
    [
        (None, "not_authed", {}),
        ("xoxp-wrong", "invalid_auth", {}),
        (
            "AUDIT",
            "missing_scope",
            {"needed": "admin.app_activities:read", "provided": "auditlogs:read"},
        ),
    ],
)
def test_token_errors(emu, token, error, extra):
    raw = post(emu, WINDOW, token=emu.token if token == "AUDIT" else token)
    assert raw.status == 200
    assert raw.json() == {"ok": False, "error": error, **extra}
    if token is not None:
        with pytest.raises(SlackApiError) as caught:
            web(emu, emu.token if token == "AUDIT" else token).admin_apps_activities_list()
        assert caught.value.response["error"] == error


@pytest.mark.parametrize(
    "args",
    [
        {"limit": 0},
        {"limit": 1001},
        {"limit": "ten"},
        {"min_date_created": "yesterday"},
        {"min_date_created": 5, "max_date_created": 4},
        {"sort_direction": "up"},
        {"min_log_level": "loud"},
        {"component_type": "robots"},
        {"source": "elsewhere"},
    ],
)
def test_invalid_arguments(emu, args):
    reply = post(emu, args).json()
    assert reply["ok"] is False and reply["error"] == "invalid_arguments"
    assert reply["response_metadata"]["messages"]


def test_cursors_are_opaque_and_carry_no_filters(emu):
    asc = {**WINDOW, "limit": 2, "min_log_level": "trace", "sort_direction": "asc"}
    cursor = post(emu, asc).json()["response_metadata"]["next_cursor"]
    assert cursor and str(H) not in cursor
    assert post(emu, {"cursor": cursor[:-2] + "xx"}).json()["error"] == "invalid_cursor"
    desc = post(emu, {"cursor": cursor, "sort_direction": "desc"}).json()
    assert desc["error"] == "invalid_cursor"  # an ascending position asked for descending
    # A client that drops the dates with the cursor pages on into the next hour.
    rest = post(
        emu, {"cursor": cursor, "min_log_level": "trace", "limit": 1000, "sort_direction": "asc"}
    ).json()
    assert any(a["created"] >= (H + HOUR) * MICROS for a in rest["activities"])


def test_rate_limit_is_its_own_tier_with_retry_after(start_emulator):
    emu = start_emulator(
        start=H, end=H + HOUR, workflow_runs_per_hour=2, activities_rate_limit_per_min=1, burst=1,
        rate_limit_per_min=0, clock=FakeClock(H + 2 * HOUR),
    )  # fmt: skip
    assert post(emu, WINDOW).status == 200
    limited = post(emu, WINDOW)
    assert limited.status == 429 and int(limited.headers["Retry-After"]) >= 1
    assert limited.json() == {"ok": False, "error": "ratelimited"}
    assert raw_get(emu, "logs", {"oldest": H, "latest": H + 10}).status == 200  # other budget


@pytest.mark.parametrize(
    ("fault", "status"), [("500", 500), ("502", 502), ("503", 503), ("429", 429)]
)
def test_scripted_faults(emu, fault, status):
    emu.activities.script_faults([fault])
    reply = post(emu, WINDOW)
    assert reply.status == status
    assert post(emu, WINDOW).status == 200


def test_truncated_reset_and_invalid_cursor_faults_and_sdk_retries(emu):
    emu.activities.script_faults(["truncated_json"])
    assert post(emu, WINDOW).body.count(b"{") >= 1  # half a body
    emu.activities.script_faults(["reset"])
    with pytest.raises(ConnectionError):
        post(emu, WINDOW)
    emu.activities.script_faults(["invalid_cursor"])
    assert post(emu, WINDOW).json()["error"] == "invalid_cursor"
    from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

    client = web(emu)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=2))
    emu.activities.script_faults(["429"])
    assert client.admin_apps_activities_list(**WINDOW)["ok"] is True


def test_late_activities_appear_after_the_delay_and_admin_replay_is_verbatim(start_emulator):
    clock = FakeClock(H + 2 * HOUR)
    emu = start_emulator(start=H, end=H + HOUR, late_delay=30, clock=clock)
    odd = b'{ "created" : %d, "event_type" : "x", "level":"info", "payload":{"s":"\\u00e9\\/"} }'
    line = odd % (H * MICROS + 7)
    admin = "/_emulator/activities"
    assert raw_get(emu, admin + "?late=1", method="POST", body=line).status == 200
    assert post(emu, WINDOW).json()["activities"] == []  # hidden, and the hour is now read
    clock.advance(31)
    body = post(emu, WINDOW).body
    assert line in body  # served byte for byte
    assert raw_get(emu, admin).body == line + b"\n"
