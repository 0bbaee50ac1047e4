"""AuditLogSource against the emulator over real HTTP: every trap of the live API."""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest

from audit_pipeline.errors import ConfigurationError
from audit_pipeline.slack.client import (
    AuditApiSettings,
    AuditLogSource,
    RequestPacer,
    SlackApiError,
    SlackAuthError,
)
from audit_pipeline.slack.emulator import running_emulator

H = 1795860000  # 2026-11-28T10:00Z


def burst(n: int, second: int, prefix: str) -> list[dict]:
    return [
        {
            "id": f"{prefix}-{i:05d}",
            "date_create": second,
            "action": "user_channel_join",
            "actor": {
                "type": "user",
                "user": {"id": "W1", "name": "a", "email": "a@x", "team": "E1"},
            },
            "entity": {"type": "channel", "channel": {"id": "C1", "name": "general"}},
            "context": {"location": {"type": "workspace", "id": "T1"}, "ua": "", "ip_address": ""},
        }
        for i in range(n)
    ]


def read_window(source: AuditLogSource, oldest: int, latest: int) -> list[dict]:
    return [json.loads(e) for page in source.iter_pages(oldest, latest) for e in page]


@pytest.fixture(scope="module")
def emulator():
    with running_emulator(
        start=H - 3600, end=H + 7200, events_per_hour=400, seed=7, rate_limit_per_min=0
    ) as emu:
        yield emu


def expected_ids(emulator, oldest: int, latest: int) -> Counter:
    return Counter(e["id"] for e in emulator.entries() if oldest <= e["date_create"] <= latest)


def test_small_pages_read_every_event_exactly_once(source_for, emulator):
    source = source_for(emulator, page_size=37)
    got = Counter(e["id"] for e in read_window(source, H, H + 3599))
    expected = expected_ids(emulator, H, H + 3599)
    assert got == expected
    assert source.stats.pages >= sum(expected.values()) / 37 > 2
    # nothing from outside the window, although the cursor does not carry `oldest`
    assert all(H <= e["date_create"] <= H + 3599 for e in read_window(source, H, H + 3599))


def test_same_second_burst_larger_than_the_page_is_not_split(source_for, emulator):
    second = H + 1800
    emulator.add_entries(burst(120, second, "burst"))
    source = source_for(emulator, page_size=50)
    got = Counter(e["id"] for e in read_window(source, second, second))
    assert sum(1 for k in got if k.startswith("burst-")) == 120
    assert max(got.values()) == 1


def test_window_edges_are_inclusive(source_for, emulator):
    emulator.add_entries(burst(3, H, "edge-first") + burst(3, H + 3599, "edge-last"))
    got = {e["id"] for e in read_window(source_for(emulator), H, H + 3599)}
    assert {f"edge-first-{i:05d}" for i in range(3)} <= got
    assert {f"edge-last-{i:05d}" for i in range(3)} <= got
    before = {e["id"] for e in read_window(source_for(emulator), H - 3600, H - 1)}
    assert not any(i.startswith("edge-") for i in before)


@pytest.mark.parametrize("fault", ["500", "503", "reset", "truncated"])
def test_transient_faults_are_retried(source_for, emulator, fault):
    source = source_for(emulator, page_size=100)
    emulator.script_faults([fault, fault])
    got = Counter(e["id"] for e in read_window(source, H - 3600, H - 1))
    assert got == expected_ids(emulator, H - 3600, H - 1)
    assert source.stats.retries >= 2


def test_rate_limit_waits_for_retry_after(source_for, emulator):
    source = source_for(emulator, page_size=200)
    emulator.script_faults(["429"])
    got = Counter(e["id"] for e in read_window(source, H - 3600, H - 1))
    assert got == expected_ids(emulator, H - 3600, H - 1)
    assert source.stats.rate_limited == 1


def test_invalid_cursor_restarts_the_window(source_for, emulator):
    source = source_for(emulator, page_size=60)
    # the first page succeeds, the second answers invalid_cursor: the window starts again
    emulator.script_faults(["ok", "invalid_cursor"])
    entries = read_window(source, H - 3600, H - 1)
    assert source.stats.window_restarts == 1
    assert set(Counter(e["id"] for e in entries)) == set(expected_ids(emulator, H - 3600, H - 1))


def test_retry_budget_is_finite(source_for, emulator):
    source = source_for(emulator, max_retries=1)
    emulator.script_faults(["500", "500", "500"])
    with pytest.raises(SlackApiError, match="HTTP 500"):
        read_window(source, H - 3600, H - 1)
    emulator.script_faults([])


def test_bad_token_fails_fast_with_the_likely_cause(source_for, emulator):
    secret = "xoxp-this-is-the-wrong-secret"
    source = AuditLogSource(
        AuditApiSettings(token=secret, base_url=emulator.base_url, max_calls_per_minute=0)
    )
    with pytest.raises(SlackAuthError) as caught:
        read_window(source, H, H + 3599)
    message = str(caught.value)
    assert "401" in message and "auditlogs:read" in message and "org owner" in message
    assert secret not in message and secret not in repr(source.settings)
    assert source.stats.retries == 0


def test_environment_proxy_does_not_capture_loopback(source_for, emulator, monkeypatch):
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # nothing listens on port 9
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    got = read_window(source_for(emulator, max_retries=0), H, H + 3599)
    assert got
    assert "127.0.0.1" in os.environ["no_proxy"]


def test_settings_from_env_validate_and_hide_the_token():
    env = {"SLACK_AUDIT_TOKEN": "xoxp-secret", "SLACK_AUDIT_BASE_URL": "http://127.0.0.1:1"}
    settings = AuditApiSettings.from_env(env, page_size=500)
    assert settings.base_url == "http://127.0.0.1:1/" and settings.page_size == 500
    assert "xoxp-secret" not in repr(settings)
    with pytest.raises(ConfigurationError, match="SLACK_AUDIT_TOKEN"):
        AuditApiSettings.from_env({})
    with pytest.raises(ConfigurationError, match="page size"):
        AuditApiSettings.from_env(env, page_size=10_000)
    with pytest.raises(ConfigurationError, match="SLACK_AUDIT_TIMEOUT must be a number"):
        AuditApiSettings.from_env({**env, "SLACK_AUDIT_TIMEOUT": "soon"})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SLACK_AUDIT_TIMEOUT", "nan"),
        ("SLACK_AUDIT_TIMEOUT", "inf"),
        ("SLACK_AUDIT_MAX_CALLS_PER_MINUTE", "nan"),
        ("SLACK_AUDIT_MAX_CALLS_PER_MINUTE", "-1"),
    ],
)
def test_settings_refuse_numbers_that_are_not_usable(name, value):
    """NaN passed 'timeout <= 0' and crashed later as an unexpected ValueError (exit 3)."""
    env = {"SLACK_AUDIT_TOKEN": "xoxp-secret", "SLACK_AUDIT_BASE_URL": "http://127.0.0.1:1"}
    with pytest.raises(ConfigurationError, match="must be"):
        AuditApiSettings.from_env({**env, name: value})


def test_pacer_spaces_requests_to_the_ceiling():
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = RequestPacer(120, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        pacer.wait()
    assert slept == pytest.approx([0.5, 0.5, 0.5, 0.5])
    assert RequestPacer(0).wait() == 0.0
