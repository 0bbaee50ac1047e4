"""The emulator's /audit/v1/ API through the unmodified SDK and raw HTTP, traps included.

Each test pins one behaviour of the live API (see the module docstring of
``audit_pipeline.slack.emulator``): order, inclusive bounds, unsplit same-second groups,
cursors that carry no filters, both end-of-data forms, auth, errors, rate limits.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections import Counter
from importlib import resources

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk.audit_logs.v1.logs import Entry

from audit_pipeline.slack import catalogue
from audit_pipeline.slack.emulator import Emulator, EmulatorConfig, running_emulator

pytestmark = pytest.mark.e2e

H = 1795712400  # 2026-11-25T17:00:00Z, a busy weekday hour
HOUR = 3600

SEED = 21


@pytest.fixture(scope="module")
def emu(fake_clock):
    """A read-only emulator: hours H-2 .. H+2 generated, the clock fixed after them."""
    emulator = Emulator(
        EmulatorConfig(
            seed=SEED,
            start=H - 2 * HOUR,
            end=H + 3 * HOUR,
            events_per_hour=600,
            rate_limit_per_min=0,
            clock=fake_clock(H + 4 * HOUR),
        )
    )
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def truth(emu):
    return emu.entries()


def window(truth, oldest, latest):
    return [e for e in truth if oldest <= e["date_create"] <= latest]


def test_sdk_reads_a_window_newest_first_exactly_once(emu, truth, client_for, pages_of):
    client = client_for(emu)
    pages = pages_of(client, oldest=H, latest=H + HOUR - 1, limit=97)
    got = [e for page in pages for e in page]
    assert len(pages) > 3
    assert got == window(truth, H, H + HOUR - 1)  # same entries, same (newest-first) order
    stamps = [e["date_create"] for e in got]
    assert stamps == sorted(stamps, reverse=True)
    typed = client.logs(oldest=H, latest=H + HOUR - 1, limit=5).typed_body
    assert all(isinstance(e, Entry) and e.id for e in typed.entries)


def test_bounds_are_inclusive(emu, truth, client_for):
    client = client_for(emu)
    for second in (H, H + HOUR - 1):
        expected = window(truth, second, second)
        assert expected, "the generator puts entries on both hour edges"
        body = client.logs(oldest=second, latest=second, limit=1000).body
        assert body["entries"] == expected
    body = client.logs(oldest=H + 1, latest=H + HOUR - 2, limit=9999).body
    assert body["entries"] == window(truth, H + 1, H + HOUR - 2)


def test_a_same_second_group_is_never_split_even_beyond_limit(emu, truth, client_for, pages_of):
    per_second = Counter(e["date_create"] for e in truth)
    second, size = max(per_second.items(), key=lambda item: item[1])
    assert size > 12
    client = client_for(emu)
    first = client.logs(oldest=second, latest=second, limit=5).body
    assert len(first["entries"]) == size > 5
    oldest = second - second % HOUR - HOUR
    pages = pages_of(client, oldest=oldest, latest=oldest + 2 * HOUR - 1, limit=7)
    seconds_by_page = [{e["date_create"] for e in page} for page in pages]
    for earlier, later in itertools.pairwise(seconds_by_page):
        assert not earlier & later
    assert sum(len(p) for p in pages) == len(window(truth, oldest, oldest + 2 * HOUR - 1))
    assert size <= max(len(p) for p in pages) < size + 7


def test_the_cursor_carries_the_position_but_not_the_filters(emu, truth, client_for, pages_of):
    client = client_for(emu)
    first = client.logs(oldest=H, latest=H + HOUR - 1, limit=100).body
    cursor = first["response_metadata"]["next_cursor"]
    # resending the filters keeps the window ...
    kept = client.logs(oldest=H, latest=H + HOUR - 1, limit=100, cursor=cursor).body
    assert all(H <= e["date_create"] < H + HOUR for e in kept["entries"])
    # ... the same cursor twice gives the same page ...
    again = client.logs(oldest=H, latest=H + HOUR - 1, limit=100, cursor=cursor).body
    assert again == kept
    # ... and dropping them pages on through everything the emulator ever served.
    drifted = [e for page in pages_of(client, limit=1000, cursor=cursor) for e in page]
    assert min(e["date_create"] for e in drifted) == min(e["date_create"] for e in truth)
    assert drifted[: len(kept["entries"])] == kept["entries"]
    older = [e for e in truth if e["date_create"] < first["entries"][-1]["date_create"]]
    assert drifted == older


def test_cursors_are_opaque_base64_often_padded_and_tamper_proof(emu, client_for, raw, fake_clock):
    client = client_for(emu)
    cursors = []
    cursor = None
    for _ in range(12):
        body = client.logs(oldest=H - 2 * HOUR, limit=20, cursor=cursor).body
        cursor = body["response_metadata"]["next_cursor"]
        cursors.append(cursor)
    for c in cursors:
        base64.b64decode(c, validate=True)
        assert str(H) not in c  # the position is not readable text
    assert any(c.endswith("=") for c in cursors), "clients must URL-encode the cursor"
    good = cursors[3]
    flipped = good[:5] + ("A" if good[5] != "A" else "B") + good[6:]
    with running_emulator(seed=SEED, start=H, end=H + HOUR, clock=fake_clock(H + HOUR)) as other:
        foreign = client_for(other).logs(oldest=H, limit=5).body["response_metadata"]["next_cursor"]
    for bad in (
        flipped,
        foreign,
        "not-a-cursor",
        "%%%",
        base64.b64encode(b"1795860000:1").decode(),
    ):
        reply = raw(emu, "logs", {"cursor": bad})
        assert reply.status == 400
        assert reply.json() == {"ok": False, "error": "invalid_cursor"}


def test_end_of_data_comes_in_both_live_forms(emu, client_for):
    client = client_for(emu)
    endings = []
    for _ in range(2):
        response = client.logs(oldest=H, latest=H + 5, limit=1000)
        endings.append(response.body)
        typed = response.typed_body  # the SDK copes with either form
        assert typed.entries is not None
    forms = {
        ("response_metadata" in b, b.get("response_metadata", {}).get("next_cursor"))
        for b in endings
    }
    assert forms == {(True, ""), (False, None)}
    empty = client.logs(oldest=H + 3 * HOUR, latest=H + 3 * HOUR + 10).body
    assert empty["entries"] == []


def test_success_bodies_have_no_ok_and_use_live_json(emu, raw):
    reply = raw(emu, "logs", {"oldest": H, "latest": H + HOUR - 1, "limit": 50})
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    doc = reply.json()
    assert "ok" not in doc and set(doc) == {"entries", "response_metadata"}
    assert b"\\/" in reply.body and b"Mozilla/5.0" not in reply.body  # slashes escaped
    assert reply.body.isascii()
    first = reply.body.index(b'{"id":')
    assert reply.body[first:].startswith(b'{"id":"') and b'"date_create":' in reply.body[:300]


def test_filters_action_actor_entity_combine_with_and(emu, truth, client_for, pages_of):
    client = client_for(emu)

    def read(**filters):
        return [e for p in pages_of(client, oldest=H - 2 * HOUR, limit=500, **filters) for e in p]

    logins = read(action="user_login")
    assert logins and logins == [e for e in truth if e["action"] == "user_login"]
    pair = read(action="user_login,file_downloaded")
    assert pair == [e for e in truth if e["action"] in ("user_login", "file_downloaded")]
    actor = Counter(e["actor"]["user"]["id"] for e in truth).most_common(1)[0][0]
    assert read(actor=actor) == [e for e in truth if e["actor"]["user"]["id"] == actor]
    file_id = next(e["entity"]["file"]["id"] for e in truth if e["entity"]["type"] == "file")
    by_entity = read(entity=file_id)
    assert by_entity and by_entity == [
        e for e in truth if e["entity"]["type"] == "file" and e["entity"]["file"]["id"] == file_id
    ]
    both = read(action="file_downloaded", entity=file_id)
    assert both == [e for e in by_entity if e["action"] == "file_downloaded"]


def test_action_lists_take_thirty_known_names(emu, raw):
    names = list(catalogue.action_names())
    assert raw(emu, "logs", {"action": ",".join(names[:30]), "limit": 1}).status == 200
    too_many = raw(emu, "logs", {"action": ",".join(names[:31])})
    assert too_many.status == 400 and too_many.json()["error"] == "invalid_arguments"
    for bad in ("user_login,not_an_action", "user_login,", "User_Login"):
        reply = raw(emu, "logs", {"action": bad})
        assert reply.status == 400 and reply.json()["error"] == "invalid_action", bad


def test_logs_need_the_bearer_token_and_answer_401_with_an_empty_body(emu, raw, client_for):
    for token in (None, "xoxp-wrong"):
        reply = raw(emu, "logs", {"limit": 1}, token=token)
        assert reply.status == 401 and reply.body == b""
    response = client_for(emu, token="xoxp-wrong").logs(limit=1)
    assert response.status_code == 401 and response.body is None


def test_schemas_and_actions_need_no_token_and_are_served_verbatim(emu, raw, client_for):
    files = resources.files("audit_pipeline.slack") / "catalogue"
    for name in ("schemas", "actions"):
        reply = raw(emu, name, token=None)
        assert reply.status == 200
        assert reply.body == (files / f"{name}.json").read_bytes()
    client = client_for(emu, token="xoxp-anything")
    assert set(client.actions().body["actions"]) == set(catalogue.action_categories())
    assert client.schemas().status_code == 200


@pytest.mark.parametrize(
    ("params", "status", "error"),
    [
        ({"oldest": "abc"}, 400, "invalid_arguments"),
        ({"latest": "1.5"}, 400, "invalid_arguments"),
        ({"oldest": "-5"}, 400, "invalid_arguments"),
        ({"limit": "0"}, 400, "invalid_arguments"),
        ({"limit": "-1"}, 400, "invalid_arguments"),
        ({"limit": "ten"}, 400, "invalid_arguments"),
        ({"limit": ""}, 400, "invalid_arguments"),
        ({"actor": ""}, 400, "invalid_arguments"),
        ({"team_id": "T1"}, 400, "invalid_arguments"),
        ("oldest=1&oldest=2", 400, "invalid_arguments"),
        ("oldest=%ff", 400, "invalid_arguments"),
        ({"oldest": str(H + 10), "latest": str(H)}, 400, "invalid_range"),
        ({"latest": "1500000000"}, 400, "invalid_range"),  # before March 2018
        ({"oldest": str(H + 5 * HOUR)}, 400, "invalid_range"),  # after the clock's now
        ({"cursor": "garbage"}, 400, "invalid_cursor"),
    ],
)
def test_bad_input_gets_a_clear_error_never_a_trace(emu, raw, params, status, error):
    reply = raw(emu, "logs", params)
    assert reply.status == status
    doc = reply.json()
    assert doc["ok"] is False and doc["error"] == error
    assert b"Traceback" not in reply.body


def test_bad_input_errors_name_the_parameter(emu, raw):
    doc = raw(emu, "logs", {"team_id": "T1"}).json()
    assert "team_id" in doc["response_metadata"]["messages"][0]
    doc = raw(emu, "logs", {"limit": "0"}).json()
    assert "limit" in doc["response_metadata"]["messages"][0]


def test_other_methods_and_paths(emu, raw):
    reply = raw(emu, "logs", method="POST", body=b"{}")
    assert reply.status == 405 and reply.json()["error"] == "method_not_allowed"
    reply = raw(emu, "nothing_here")
    assert reply.status == 404 and reply.json() == {
        "ok": False,
        "error": "bad_endpoint",
        "response_metadata": {"messages": ["[ERROR] no such endpoint: /audit/v1/nothing_here"]},
    }


def test_limit_is_capped_at_9999(start_emulator, client_for, pages_of, fake_clock):
    emulator = start_emulator(events_per_hour=0, clock=fake_clock(H + HOUR))
    template = {"action": "user_login", "actor": {"type": "user", "user": {"id": "W1"}}}
    emulator.add_entries(
        [{"id": f"e-{i}", "date_create": H + i % 3000, **template} for i in range(12_000)]
    )
    client = client_for(emulator)
    body = client.logs(oldest=H, limit=100_000).body
    # 9,999 entries end inside a second; the rest of that second comes along
    assert 9_999 <= len(body["entries"]) < 9_999 + 4
    assert body["response_metadata"]["next_cursor"]
    everything = [e for p in pages_of(client, oldest=H, limit=100_000) for e in p]
    assert len(everything) == 12_000 == len({e["id"] for e in everything})


def test_entries_dated_after_now_are_not_served_until_the_clock_gets_there(
    start_emulator, client_for, pages_of, fake_clock
):
    clock = fake_clock(H + 1800)
    emulator = start_emulator(seed=3, start=H, end=H + HOUR, clock=clock)
    client = client_for(emulator)
    served = [e for p in pages_of(client, oldest=H, limit=1000) for e in p]
    assert served and max(e["date_create"] for e in served) <= H + 1800
    assert len(served) < len(emulator.entries())
    clock.advance(1800)
    served = [e for p in pages_of(client, oldest=H, latest=H + HOUR, limit=1000) for e in p]
    assert served == emulator.entries()


def test_hours_ahead_are_prefetched_and_added_entries_still_win(
    start_emulator, client_for, pages_of, fake_clock
):
    emulator = start_emulator(seed=6, start=H - 5 * HOUR, end=H + HOUR, clock=fake_clock(H + HOUR))
    client = client_for(emulator)
    first = client.logs(oldest=H - 5 * HOUR, limit=50).body
    deadline = time.monotonic() + 10
    while emulator.stats()["prefetched_hours"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert emulator.stats()["prefetched_hours"] >= 2
    added = {"id": "added-late", "date_create": H - 2 * HOUR + 7, "action": "user_login"}
    emulator.add_entries([added])
    cursor = first["response_metadata"]["next_cursor"]
    rest = [e for p in pages_of(client, oldest=H - 5 * HOUR, limit=50, cursor=cursor) for e in p]
    assert first["entries"] + rest == emulator.entries()
    assert added in rest


def test_warm_renders_the_range_in_the_background(start_emulator, client_for, pages_of, fake_clock):
    emulator = start_emulator(
        seed=6, start=H - 5 * HOUR, end=H + HOUR, warm=True, clock=fake_clock(H + HOUR)
    )
    deadline = time.monotonic() + 20
    while emulator.stats()["cached_hours"] < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert emulator.stats()["cached_hours"] == 6
    got = [e for p in pages_of(client_for(emulator), oldest=H - 5 * HOUR, limit=999) for e in p]
    assert got == emulator.entries()


def test_keep_alive_serves_many_requests_on_one_connection(emu):
    import http.client
    from urllib.parse import urlsplit

    url = urlsplit(emu.base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    headers = {"Authorization": f"Bearer {emu.token}"}
    try:
        conn.request("GET", f"{url.path}logs?oldest={H}&limit=10", headers=headers)
        conn.getresponse().read()
        sock = conn.sock
        for _ in range(5):
            conn.request("GET", f"{url.path}logs?oldest={H}&limit=10", headers=headers)
            response = conn.getresponse()
            assert response.status == 200 and json.loads(response.read())["entries"]
            assert conn.sock is sock
    finally:
        conn.close()


def test_concurrent_clients_see_the_same_data(emu, truth, client_for, pages_of):
    from concurrent.futures import ThreadPoolExecutor

    def read_all(_):
        client = client_for(emu)
        return [e["id"] for p in pages_of(client, oldest=H - HOUR, limit=150) for e in p]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(read_all, range(4)))
    expected = [e["id"] for e in truth if e["date_create"] >= H - HOUR]
    assert all(r == expected for r in results)


def test_stats_count_requests_pages_and_entries(start_emulator, raw, fake_clock):
    emulator = start_emulator(seed=2, start=H, end=H + HOUR, clock=fake_clock(H + HOUR))
    raw(emulator, "logs", {"oldest": H, "limit": 10})
    raw(emulator, "logs", {"limit": "0"})
    raw(emulator, "logs", token=None)
    raw(emulator, "schemas", token=None)
    stats = emulator.stats()
    assert stats["logs_requests"] == 2 and stats["unauthorized"] == 1
    assert stats["pages"] == 1 and stats["bad_requests"] == 1
    assert stats["entries_served"] >= 10 and stats["schemas_requests"] == 1
    assert stats["statuses"] == {"200": 2, "400": 1, "401": 1}


@pytest.fixture(scope="module")
def empty_emu(fake_clock):
    emulator = Emulator(
        EmulatorConfig(events_per_hour=0, rate_limit_per_min=0, clock=fake_clock(H + 400 * HOUR))
    )
    emulator.start()
    yield emulator
    emulator.stop()


_regions = itertools.count()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    offsets=st.lists(st.integers(0, 2 * HOUR - 1), max_size=60),
    limit=st.integers(1, 12),
    action=st.sampled_from([None, "user_login", "user_logout"]),
)
def test_paging_returns_each_matching_entry_once_in_order(
    empty_emu, client_for, pages_of, offsets, limit, action
):
    base = H + 3 * HOUR * next(_regions)  # each example gets its own stretch of time
    entries = [
        {
            "id": f"{base}-{i}",
            "date_create": base + offset,
            "action": "user_login" if i % 3 else "user_logout",
        }
        for i, offset in enumerate(offsets)
    ]
    empty_emu.add_entries(entries)
    params = {"oldest": base, "latest": base + 2 * HOUR - 1, "limit": limit}
    if action:
        params["action"] = action
    pages = pages_of(client_for(empty_emu), **params)
    expected = sorted(
        (e for e in reversed(entries) if action in (None, e["action"])),
        key=lambda e: -e["date_create"],
    )
    assert [e for page in pages for e in page] == expected
    seconds = [{e["date_create"] for e in page} for page in pages]
    for earlier, later in itertools.pairwise(seconds):
        assert not earlier & later
    assert all(len(page) >= limit for page in pages[:-1])
