"""What the emulator does to collectors on purpose: rate limits, faults, late arrivals.

Also the ways tests feed it: added entries, the admin HTTP paths, replayed event files, and
a clean stop that releases the port.
"""

from __future__ import annotations

import errno
import http.client
import json
import socket
import time
from urllib.parse import urlsplit

import pytest
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator

from audit_pipeline.errors import ConfigurationError
from audit_pipeline.slack.emulator import Emulator, EmulatorConfig, running_emulator
from audit_pipeline.slack.generator import generate_hour
from audit_pipeline.slack.page_bytes import split_page

pytestmark = pytest.mark.e2e

H = 1795712400  # 2026-11-25T17:00:00Z
HOUR = 3600


def entry(entry_id: str, second: int, action: str = "user_login", **extra) -> dict:
    return {
        "id": entry_id,
        "date_create": second,
        "action": action,
        "actor": {"type": "user", "user": {"id": "W0TEST", "name": "T", "email": "", "team": "E1"}},
        "entity": {"type": "user", "user": {"id": "W0TEST"}},
        "context": {"location": {"type": "enterprise", "id": "E1"}, "ua": "", "ip_address": ""},
        **extra,
    }


def outcome(emulator: Emulator, timeout: float = 5) -> str:
    """One raw /logs request, reduced to what a client sees: a status or an error type."""
    url = urlsplit(emulator.base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        conn.request(
            "GET",
            f"{url.path}logs?oldest={H}&limit=20",
            headers={"Authorization": f"Bearer {emulator.token}"},
        )
        response = conn.getresponse()
        body = response.read()
        json.loads(body) if body.startswith(b"{") else None
        return str(response.status)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return type(exc).__name__
    finally:
        conn.close()


# --- rate limit --------------------------------------------------------------------------


def test_token_bucket_answers_429_with_an_integer_retry_after(start_emulator, raw, fake_clock):
    clock = fake_clock(H + HOUR)
    emulator = start_emulator(start=H, end=H + HOUR, rate_limit_per_min=60, burst=3, clock=clock)
    statuses = [raw(emulator, "logs", {"limit": 1}).status for _ in range(3)]
    assert statuses == [200, 200, 200]
    limited = raw(emulator, "logs", {"limit": 1})
    assert limited.status == 429
    assert limited.json() == {"ok": False, "error": "rate_limited"}
    assert limited.headers["Retry-After"] == "1"
    clock.advance(1.0)
    assert raw(emulator, "logs", {"limit": 1}).status == 200
    assert raw(emulator, "logs", {"limit": 1}).status == 429
    # schemas/actions are not counted against the org's /logs budget
    assert raw(emulator, "schemas", token=None).status == 200
    assert emulator.stats()["rate_limited"] == 2


def test_retry_after_grows_with_the_deficit(start_emulator, raw, fake_clock):
    emulator = start_emulator(
        start=H, end=H + HOUR, rate_limit_per_min=6, burst=1, clock=fake_clock(H + HOUR)
    )
    assert raw(emulator, "logs", {"limit": 1}).status == 200
    assert raw(emulator, "logs", {"limit": 1}).headers["Retry-After"] == "10"


def test_rate_limit_zero_is_off(start_emulator, raw, fake_clock):
    emulator = start_emulator(start=H, end=H + HOUR, rate_limit_per_min=0, clock=fake_clock(H))
    assert {raw(emulator, "logs", {"limit": 1}).status for _ in range(80)} == {200}


def test_the_sdk_rate_limit_handler_recovers(start_emulator, client_for):
    emulator = start_emulator(start=H, end=H + HOUR, rate_limit_per_min=120, burst=1)
    client = client_for(emulator, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])
    plain = client_for(emulator, retry_handlers=[])
    assert plain.logs(oldest=H, limit=1).status_code == 200
    assert plain.logs(oldest=H, limit=1).status_code == 429  # default handlers do not retry
    started = time.monotonic()
    assert client.logs(oldest=H, limit=1).status_code == 200
    assert time.monotonic() - started >= 0.5


# --- faults ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "error"),
    [
        ("500", 500, "internal_error"),
        ("503", 503, "service_unavailable"),
        ("429", 429, "rate_limited"),
        ("invalid_cursor", 400, "invalid_cursor"),
    ],
)
def test_scripted_error_faults(start_emulator, raw, fake_clock, fault, status, error):
    emulator = start_emulator(start=H, end=H + HOUR, clock=fake_clock(H + HOUR))
    emulator.script_faults([fault, "ok", fault])
    replies = [raw(emulator, "logs", {"limit": 5}) for _ in range(4)]
    assert [r.status for r in replies] == [status, 200, status, 200]
    assert replies[0].json()["error"] == error and replies[0].json()["ok"] is False
    if fault == "429":
        assert replies[0].headers["Retry-After"].isdigit()
    assert emulator.stats()["faults"] == {fault: 2}


def test_502_comes_from_a_proxy_with_an_html_body(start_emulator, raw, client_for, fake_clock):
    emulator = start_emulator(start=H, end=H + HOUR, clock=fake_clock(H + HOUR))
    emulator.script_faults(["502", "502"])
    reply = raw(emulator, "logs")
    assert reply.status == 502 and reply.body.startswith(b"<html>")
    response = client_for(emulator, retry_handlers=[]).logs(limit=1)
    assert response.status_code == 502 and response.body is None


def test_reset_is_a_real_tcp_reset(start_emulator, client_for, fake_clock):
    emulator = start_emulator(start=H, end=H + HOUR, clock=fake_clock(H + HOUR))
    emulator.script_faults(["reset"])
    url = urlsplit(emulator.base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    conn.request("GET", f"{url.path}logs", headers={"Authorization": f"Bearer {emulator.token}"})
    with pytest.raises(ConnectionResetError) as caught:
        conn.getresponse()
    assert caught.value.errno == errno.ECONNRESET  # an RST, not an orderly close
    conn.close()
    # the SDK's default handlers retry a reset once
    emulator.script_faults(["reset"])
    assert client_for(emulator).logs(oldest=H, limit=3).status_code == 200
    emulator.script_faults(["reset"])
    with pytest.raises(ConnectionResetError):
        client_for(emulator, retry_handlers=[]).logs(oldest=H, limit=3)
    no_wait = FixedValueRetryIntervalCalculator(0.0)
    retried = client_for(
        emulator, retry_handlers=[ConnectionErrorRetryHandler(interval_calculator=no_wait)]
    )
    emulator.script_faults(["reset", "reset"])
    with pytest.raises(ConnectionResetError):
        retried.logs(oldest=H, limit=3)


def test_truncated_bodies(start_emulator, client_for, fake_clock):
    emulator = start_emulator(start=H, end=H + HOUR, clock=fake_clock(H + HOUR))
    client = client_for(emulator, retry_handlers=[])
    emulator.script_faults(["truncated"])
    with pytest.raises(http.client.IncompleteRead):
        client.logs(oldest=H, limit=50)
    emulator.script_faults(["truncated_json"])
    with pytest.raises(json.JSONDecodeError):
        client.logs(oldest=H, limit=50)
    # a truncated page was not served: nothing counted, the next read is whole
    assert emulator.stats()["entries_served"] == 0
    assert len(client.logs(oldest=H, limit=50).body["entries"]) >= 50


def test_slow_responses_trip_client_timeouts(start_emulator, client_for, fake_clock):
    emulator = start_emulator(start=H, end=H + HOUR, clock=fake_clock(H + HOUR), slow_seconds=0.6)
    emulator.script_faults(["slow", "slow"])
    with pytest.raises((TimeoutError, OSError)):
        client_for(emulator, retry_handlers=[], timeout=0.2).logs(oldest=H, limit=5)
    started = time.monotonic()
    assert client_for(emulator, retry_handlers=[]).logs(oldest=H, limit=5).status_code == 200
    assert time.monotonic() - started >= 0.5


def test_a_429_storm_is_several_429s_in_a_row(start_emulator, raw, fake_clock):
    emulator = start_emulator(start=H, end=H + HOUR, clock=fake_clock(H + HOUR), storm_length=4)
    emulator.script_faults(["429_storm"])
    assert [raw(emulator, "logs").status for _ in range(5)] == [429] * 4 + [200]


def test_scripting_replaces_the_queue_and_names_unknown_faults(start_emulator, raw, fake_clock):
    emulator = start_emulator(start=H, end=H + HOUR, clock=fake_clock(H + HOUR))
    emulator.script_faults(["500", "500"])
    emulator.script_faults([])
    assert raw(emulator, "logs").status == 200
    with pytest.raises(ConfigurationError, match="unknown fault 'teapot'"):
        emulator.script_faults(["500", "teapot"])
    assert raw(emulator, "logs").status == 200  # nothing queued by the refused script


def test_random_faults_follow_the_seed(fake_clock):
    def run() -> tuple[list[str], dict[str, int]]:
        config = dict(start=H, end=H + HOUR, fault_rate=0.3, seed=5, slow_seconds=0.01)
        with running_emulator(rate_limit_per_min=0, clock=fake_clock(H + HOUR), **config) as emu:
            return [outcome(emu) for _ in range(40)], emu.stats()["faults"]

    (first, faults), (second, _) = run(), run()
    assert first == second
    assert sum(faults.values()) - faults.get("slow", 0) == sum(s != "200" for s in first)
    assert first.count("200") >= 15
    assert len(set(first) - {"200"}) >= 3, first


# --- late arrivals -------------------------------------------------------------------------


def test_late_entries_appear_only_after_their_hour_was_read(
    start_emulator, client_for, pages_of, fake_clock
):
    clock = fake_clock(H + 3 * HOUR)
    emulator = start_emulator(
        seed=8, start=H, end=H + 2 * HOUR, late_delay=300, late_fraction=0.05, clock=clock
    )
    client = client_for(emulator)
    late = generate_hour(8, H, 600, late_fraction=0.05).late_ids
    truth = {e["id"] for e in emulator.entries() if H <= e["date_create"] < H + HOUR}
    assert late and late < truth

    def read(hour: int) -> set[str]:
        return {
            e["id"]
            for p in pages_of(client, oldest=hour, latest=hour + HOUR - 1, limit=200)
            for e in p
        }

    assert read(H) == truth - late  # the first read misses them
    clock.advance(299)
    assert read(H) == truth - late  # still hidden just before the delay ends
    clock.advance(2)
    assert read(H) == truth  # a collector that re-reads the hour gets them
    # the next hour was never read, so its countdown has not started
    late_next = generate_hour(8, H + HOUR, 600, late_fraction=0.05).late_ids
    assert not read(H + HOUR) & late_next
    stats = emulator.stats()
    assert stats["late_revealed"] == len(late)
    assert stats["late_countdowns"] == len(late) + len(late_next)


def test_added_entries_can_arrive_late(start_emulator, client_for, fake_clock):
    clock = fake_clock(H + 2 * HOUR)
    emulator = start_emulator(events_per_hour=0, late_delay=60, clock=clock)
    client = client_for(emulator)
    emulator.add_entries([entry("on-time", H + 10)])
    emulator.add_entries([entry("late", H + 20)], late=True)
    assert [e["id"] for e in client.logs(oldest=H, limit=10).body["entries"]] == ["on-time"]
    clock.advance(61)
    assert [e["id"] for e in client.logs(oldest=H, limit=10).body["entries"]] == ["late", "on-time"]


def test_without_late_delay_nothing_is_held_back(start_emulator, client_for, pages_of, fake_clock):
    emulator = start_emulator(
        seed=8, start=H, end=H + HOUR, late_fraction=0.5, clock=fake_clock(H + HOUR)
    )
    got = [e for p in pages_of(client_for(emulator), oldest=H, limit=1000) for e in p]
    assert got == emulator.entries()


# --- feeding entries -------------------------------------------------------------------------


def test_added_entries_are_visible_at_once_and_in_order(start_emulator, client_for, fake_clock):
    emulator = start_emulator(seed=4, start=H, end=H + HOUR, clock=fake_clock(H + 2 * HOUR))
    client = client_for(emulator)
    before = client.logs(oldest=H + 100, latest=H + 100, limit=100).body["entries"]
    emulator.add_entries([entry("added-1", H + 100), entry("added-2", H + 100)])
    after = client.logs(oldest=H + 100, latest=H + 100, limit=100).body["entries"]
    assert [e["id"] for e in after] == ["added-2", "added-1"] + [e["id"] for e in before]
    assert emulator.entries()[0]["id"] != "added-1"
    assert {"added-1", "added-2"} <= {e["id"] for e in emulator.entries()}
    # an action Slack added after the catalogue was recorded can still be filtered on
    emulator.add_entries([entry("new", H + 200, action="brand_new_action")])
    body = client.logs(oldest=H, action="brand_new_action").body
    assert [e["id"] for e in body["entries"]] == ["new"]


def test_paging_down_to_second_zero_ends_cleanly(start_emulator, client_for, pages_of, fake_clock):
    emulator = start_emulator(events_per_hour=0, clock=fake_clock(H))
    emulator.add_entries([entry("epoch", 0), entry("one", 1), entry("two", 1)])
    pages = pages_of(client_for(emulator), oldest=0, limit=1)
    assert [[e["id"] for e in page] for page in pages] == [["two", "one"], ["epoch"]]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"date_create": H, "action": "user_login"}, "'id'"),
        ({"id": "x", "date_create": "soon", "action": "user_login"}, "'date_create'"),
        ({"id": "x", "date_create": True, "action": "user_login"}, "'date_create'"),
        ({"id": "x", "date_create": H}, "'action'"),
        ({"id": "x", "date_create": H, "action": "a", "details": {"v": float("nan")}}, "JSON"),
        (["not", "an", "object"], "JSON object"),
    ],
)
def test_bad_added_entries_are_refused_whole(start_emulator, fake_clock, bad, message):
    emulator = start_emulator(events_per_hour=0, clock=fake_clock(H + HOUR))
    with pytest.raises(ConfigurationError, match=message):
        emulator.add_entries([entry("good", H), bad])
    assert emulator.entries() == []


def test_admin_paths_drive_a_running_emulator(start_emulator, raw, client_for, fake_clock):
    clock = fake_clock(H + 2 * HOUR)
    emulator = start_emulator(events_per_hour=0, late_delay=30, clock=clock)
    as_list = json.dumps([entry("a", H + 1), entry("b", H + 2)]).encode()
    reply = raw(emulator, "/_emulator/entries", method="POST", body=as_list)
    assert reply.status == 200 and reply.json() == {"ok": True, "added": 2}
    jsonl = b"".join(json.dumps(entry(i, H + 3)).encode() + b"\n" for i in ("c", "d"))
    assert raw(emulator, "/_emulator/entries", "late=1", method="POST", body=jsonl).status == 200
    assert raw(emulator, "/_emulator/entries", method="POST", body=b"{oops").status == 400
    refused = raw(emulator, "/_emulator/entries", method="POST", body=b'[{"id": 1}]')
    assert refused.status == 400 and refused.json()["error"] == "invalid_entries"
    assert (
        raw(emulator, "/_emulator/entries", method="POST", body=as_list, token=None).status == 401
    )

    client = client_for(emulator)
    assert [e["id"] for e in client.logs(oldest=H).body["entries"]] == ["b", "a"]
    clock.advance(31)
    assert [e["id"] for e in client.logs(oldest=H).body["entries"]] == ["d", "c", "b", "a"]

    assert raw(emulator, "/_emulator/faults", method="POST", body=b'["503"]').status == 200
    assert client.logs(oldest=H).status_code == 503
    bad = raw(emulator, "/_emulator/faults", method="POST", body=b'["nope"]')
    assert bad.status == 400 and "nope" in bad.json()["response_metadata"]["messages"][0]

    stats = raw(emulator, "/_emulator/stats").json()
    assert stats["entries_added"] == 4 and stats["faults"] == {"503": 1}
    lines = raw(emulator, "/_emulator/entries").body.splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["d", "c", "b", "a"]
    assert raw(emulator, "/_emulator/stats", token=None).status == 401
    assert raw(emulator, "/_emulator/nothing").status == 404


def test_events_file_is_replayed_exactly(tmp_path, start_emulator, client_for, raw, fake_clock):
    odd = [
        entry(
            "slash",
            H + 5,
            context={"ua": "Mozilla/5.0 (X11)", "ip_address": "", "session_id": None},
        ),
        entry("unicode", H + 4, details={"new_value": ["ü", "☃"], "previous_value": False}),
        entry(
            "int-entity",
            H + 3,
            entity={"type": "account_type_role", "account_type_role": {"id": 7}},
        ),
        entry("no-details", H + 2, details=None),
        entry(
            "unknown", H + 1, entity={"type": "hologram", "hologram": {"id": "HG1"}}, extra_key=[1]
        ),
    ]
    path = tmp_path / "export.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in reversed(odd)) + "\n")
    emulator = start_emulator(events_file=path, clock=fake_clock(H + HOUR))
    assert emulator.entries() == odd
    assert client_for(emulator).logs(oldest=H).body["entries"] == odd
    body = raw(emulator, "logs", {"oldest": H}).body
    lines = path.read_bytes().split(b"\n")[:-2]
    assert body == b'{"entries":[' + b",".join(reversed(lines)) + b"]}"  # verbatim, newest first
    assert client_for(emulator).logs(entity="7").body["entries"] == [odd[2]]
    assert client_for(emulator).logs(entity="HG1").body["entries"] == [odd[4]]


def test_odd_entries_of_an_events_file_are_served_verbatim(
    tmp_path, start_emulator, raw, fake_clock
):
    lines = [
        b'{"id": "a", "date_create": %d, "action": "x"}' % (H + 9),
        b'{"no": "date"}',  # no date of its own: served beside the entry before it
        b'{"id": "b", "date_create": %d, "action": "", "d": 1e400}' % (H + 8),
        b'{"id": "c", "id": "d", "date_create": %d, "action": "x", "s": "\xff"}' % (H + 7),
        b'{"id": "e", "date_create": %d, "action": "x", "d": %s}'
        % (H + 6, b"[" * 3000 + b"]" * 3000),
    ]
    path = tmp_path / "odd.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    emulator = start_emulator(events_file=path, clock=fake_clock(H + HOUR))
    body = raw(emulator, "logs", {"oldest": H}).body
    assert sorted(split_page(body, "entries").items) == sorted(lines)
    assert sorted(emulator.entry_bytes()) == sorted(lines)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": "a", "action": "x"}\n', "no entry has a date_create"),
        ("[1, 2]", "no entry has a date_create"),
        ('[{"id": "a", "date_create": 1, "action": "x"}', "cannot be followed"),
    ],
)
def test_unplaceable_events_files_are_refused_with_the_reason(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=message):
        Emulator(EmulatorConfig(events_file=path))


def test_admin_answers_400_to_deep_nesting(start_emulator, raw, fake_clock):
    emulator = start_emulator(events_per_hour=0, clock=fake_clock(H + HOUR))
    deep = b'{"id": "a", "date_create": %d, "action": "x", "d": %s}' % (
        H,
        b"[" * 100_000 + b"]" * 100_000,
    )
    refused = raw(emulator, "/_emulator/entries", method="POST", body=deep)
    assert refused.status == 400 and refused.json()["error"] == "invalid_entries"
    taken = raw(emulator, "/_emulator/entries", {"raw": 1}, method="POST", body=deep)
    assert taken.status == 200 and emulator.entry_bytes() == [deep]
    for path, body in (
        ("/_emulator/faults", b"[" * 100_000 + b"]" * 100_000),
        ("/_emulator/faults", b"\xff"),
        ("/_emulator/entries", b'{"id": "x", "date_create": 1, "action": "a"}\n\xff'),
        ("/_emulator/entries", b'[{"id": "x", "date_create": 1e400, "action": "a"}]'),
    ):
        refused = raw(emulator, path, method="POST", body=body)
        assert refused.status == 400, (path, body[:20], refused.status)
        assert refused.json()["error"] in ("invalid_entries", "invalid_faults")


# --- lifecycle and configuration -----------------------------------------------------------


def test_stop_releases_the_port_even_with_idle_keep_alive_connections(fake_clock):
    emulator = Emulator(EmulatorConfig(start=H, end=H + HOUR, clock=fake_clock(H + HOUR)))
    emulator.start()
    url = urlsplit(emulator.base_url)
    idle = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    idle.request("GET", f"{url.path}schemas")
    idle.getresponse().read()
    started = time.monotonic()
    emulator.stop()
    emulator.stop()  # idempotent
    assert time.monotonic() - started < 2
    idle.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((url.hostname, url.port), timeout=2).close()
    again = Emulator(EmulatorConfig(port=url.port, start=H, end=H + HOUR))
    assert again.start().endswith(f":{url.port}/audit/v1/")
    again.stop()


def test_a_busy_port_is_a_configuration_error(start_emulator):
    emulator = start_emulator(start=H, end=H + HOUR)
    port = urlsplit(emulator.base_url).port
    with pytest.raises(ConfigurationError, match=f"cannot listen on 127.0.0.1:{port}"):
        Emulator(EmulatorConfig(port=port, start=H, end=H + HOUR)).start()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"start": H + 1, "end": H + HOUR}, "start must be Unix seconds aligned"),
        ({"start": H, "end": H}, "must be before end"),
        ({"port": 70000}, "port"),
        ({"token": "has space"}, "token"),
        ({"fault_rate": 1.5}, "fault_rate"),
        ({"late_fraction": -0.1}, "late_fraction"),
        ({"burst": 0}, "burst"),
        ({"rate_limit_per_min": -1}, "rate_limit_per_min"),
    ],
)
def test_bad_configuration_is_named(fields, message):
    with pytest.raises(ConfigurationError, match=message):
        Emulator(EmulatorConfig(**fields))


def test_the_token_stays_out_of_reprs():
    config = EmulatorConfig(token="xoxp-secret-value")
    assert "xoxp-secret-value" not in repr(config)
