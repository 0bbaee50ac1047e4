"""The seeded generator: deterministic bytes, live key order, and every shape a parser meets."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections import Counter

import pytest

from audit_pipeline.slack import catalogue
from audit_pipeline.slack.emulator import render_entry
from audit_pipeline.slack.generator import (
    HOUR,
    diurnal_factor,
    generate_hour,
    generate_range,
    hour_volume,
)

H = 1795860000  # 2026-11-28T10:00:00Z, a Saturday
WEEK_START = 1795478400  # 2026-11-23T00:00:00Z, a Monday
KEY_ORDER = ["id", "date_create", "action", "actor", "entity", "context", "details"]
UUID_SHAPE = re.compile(r"[0-9a-z]{8}-[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{12}")
HEX_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def digest(entries) -> str:
    return hashlib.sha256(b"\n".join(render_entry(e) for e in entries)).hexdigest()


@pytest.fixture(scope="module")
def three_days() -> list[dict]:
    return list(generate_range(7, WEEK_START, WEEK_START + 72 * HOUR, 600))


def test_same_arguments_give_the_same_bytes():
    first = generate_hour(3, H, 600, late_fraction=0.05)
    second = generate_hour(3, H, 600, late_fraction=0.05)
    assert digest(first) == digest(second)
    assert first.late_ids == second.late_ids


@pytest.mark.e2e
def test_bytes_do_not_depend_on_the_process_hash_seed():
    code = (
        "import hashlib, sys\n"
        "from audit_pipeline.slack.emulator import render_entry\n"
        "from audit_pipeline.slack.generator import generate_hour\n"
        f"entries = generate_hour(3, {H}, 600)\n"
        "blob = b'\\n'.join(render_entry(e) for e in entries)\n"
        "print(hashlib.sha256(blob).hexdigest())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == digest(generate_hour(3, H, 600))


def test_seeds_and_hours_are_independent_streams():
    assert digest(generate_hour(1, H, 600)) != digest(generate_hour(2, H, 600))
    assert digest(generate_hour(1, H, 600)) != digest(generate_hour(1, H + HOUR, 600))


def test_a_range_is_its_hours_in_order_and_respects_its_bounds():
    hours = [e for h in (H, H + HOUR, H + 2 * HOUR) for e in generate_hour(5, h, 300)]
    assert digest(generate_range(5, H, H + 3 * HOUR, 300)) == digest(hours)
    inner = list(generate_range(5, H + 1800, H + 5400, 300))
    assert inner == [e for e in hours if H + 1800 <= e["date_create"] < H + 5400]


def test_late_ids_are_a_fraction_and_leave_the_entries_unchanged():
    plain = generate_hour(4, H, 2000)
    late = generate_hour(4, H, 2000, late_fraction=0.1)
    assert digest(plain) == digest(late)
    assert plain.late_ids == frozenset()
    assert late.late_ids <= {e["id"] for e in late}
    assert 0.05 < len(late.late_ids) / len(late) < 0.15


def test_entries_are_in_live_key_order_and_oldest_first(three_days):
    for entry in three_days:
        assert list(entry) == KEY_ORDER[: len(entry)]
        assert len(entry) in (6, 7)
    stamps = [e["date_create"] for e in three_days]
    assert stamps == sorted(stamps)
    assert stamps[0] >= WEEK_START and stamps[-1] < WEEK_START + 72 * HOUR


def test_ids_are_unique_uuid_like_and_some_are_not_hex(three_days):
    ids = [e["id"] for e in three_days]
    assert len(set(ids)) == len(ids)
    assert all(UUID_SHAPE.fullmatch(i) for i in ids)
    not_hex = sum(1 for i in ids if not HEX_UUID.fullmatch(i))
    assert 0.002 < not_hex / len(ids) < 0.03


def test_actions_come_from_the_catalogue_with_their_entity_types(three_days):
    seen = Counter(e["action"] for e in three_days)
    assert set(seen) == set(catalogue.action_names())  # every name, over three days
    for entry in three_days:
        etype = entry["entity"]["type"]
        assert etype in catalogue.entity_types_for(entry["action"])
        assert isinstance(entry["entity"][etype], dict)
    # a realistic mix: logins and downloads dominate, anomalies are rare
    total = len(three_days)
    assert seen["user_login"] / total > 0.08
    assert seen["file_downloaded"] / total > 0.04
    assert 0.001 < seen["anomaly"] / total < 0.02


def _details(entry):
    return entry.get("details") if isinstance(entry.get("details"), dict) else {}


SHAPES = {
    "details absent": lambda e: "details" not in e,
    "details null": lambda e: "details" in e and e["details"] is None,
    "new_value string": lambda e: isinstance(_details(e).get("new_value"), str),
    "new_value bool": lambda e: isinstance(_details(e).get("new_value"), bool),
    "new_value list": lambda e: isinstance(_details(e).get("new_value"), list),
    "new_value object of lists": lambda e: (
        isinstance(_details(e).get("new_value"), dict)
        and all(isinstance(v, list) for v in _details(e)["new_value"].values())
    ),
    "succeeded_users list": lambda e: isinstance(_details(e).get("succeeded_users"), list),
    "succeeded_users JSON string": lambda e: (
        isinstance(_details(e).get("succeeded_users"), str)
        and isinstance(json.loads(_details(e)["succeeded_users"]), list)
    ),
    "unknown details key": lambda e: bool(
        set(_details(e)) & {"client_surface", "is_admin_api_call", "event_schema_version"}
    ),
    "empty ip_address": lambda e: e["context"]["ip_address"] == "",
    "empty ua": lambda e: e["context"]["ua"] == "",
    "ipv6 address": lambda e: ":" in e["context"]["ip_address"],
    "session_id int": lambda e: type(e["context"]["session_id"]) is int,
    "session_id string": lambda e: isinstance(e["context"]["session_id"], str),
    "session_id null": lambda e: e["context"]["session_id"] is None,
    "enterprise location": lambda e: e["context"]["location"]["type"] == "enterprise",
    "workspace location": lambda e: e["context"]["location"]["type"] == "workspace",
    "context app": lambda e: "app" in e["context"],
    "acting agent": lambda e: "acting_agent" in e["context"],
    "agent message": lambda e: "agent_message" in e["context"],
    "USLACKSECURITY actor": lambda e: e["actor"]["user"]["id"] == "USLACKSECURITY",
    "USLACKUSER actor": lambda e: e["actor"]["user"]["id"] == "USLACKUSER",
    "bot actor": lambda e: e["actor"]["user"]["email"].endswith("@slack-bots.com"),
    "actor account_type": lambda e: "account_type" in e["actor"]["user"],
    "int entity id": lambda e: type(e["entity"][e["entity"]["type"]].get("id")) is int,
    "entity type unknown to /schemas": lambda e: (
        e["entity"]["type"] not in catalogue.schema_entity_types()
    ),
    "slash in ua": lambda e: "/" in e["context"]["ua"],
    "non-ASCII name": lambda e: not e["actor"]["user"]["name"].isascii(),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_shape_a_parser_must_take_occurs(three_days, shape):
    hits = sum(1 for e in three_days if SHAPES[shape](e))
    assert hits >= 5, f"{shape}: {hits} of {len(three_days)}"
    if shape in ("empty ip_address", "empty ua", "details null", "session_id null"):
        assert hits / len(three_days) < 0.25, f"{shape} is too common to be realistic"


def test_anomalies_are_stamped_after_the_fact_in_microseconds(three_days):
    anomalies = [e for e in three_days if e["action"] == "anomaly"]
    assert len(anomalies) >= 20
    for entry in anomalies:
        details = entry["details"]
        assert type(details["action_timestamp"]) is int
        assert details["action_timestamp"] < entry["date_create"] * 1_000_000
        assert details["action_timestamp"] > (entry["date_create"] - 86400) * 1_000_000
        assert isinstance(details["reason"], list) and details["reason"]
        assert entry["entity"]["type"] == "user"


def test_volume_follows_the_week_around_events_per_hour():
    hours = range(WEEK_START, WEEK_START + 7 * 24 * HOUR, HOUR)
    volumes = [hour_volume(9, h, 600) for h in hours]
    assert abs(sum(volumes) / len(volumes) - 600) < 600 * 0.05
    weekday_peak = max(volumes[:24])
    weekday_trough = min(volumes[:24])
    assert weekday_peak > 3 * weekday_trough
    saturday_peak = max(volumes[5 * 24 : 6 * 24])
    assert saturday_peak < weekday_peak * 0.6
    assert sum(diurnal_factor(h) for h in hours) / len(volumes) == pytest.approx(1.0)
    assert len(generate_hour(9, WEEK_START + 17 * HOUR, 600)) == volumes[17]
    assert generate_hour(9, H, 0) == []


def test_same_second_bursts_and_entries_on_the_hour_edges(three_days):
    per_second = Counter(e["date_create"] for e in three_days)
    bursts = [s for s, n in per_second.items() if n >= 12]
    assert len(bursts) >= 20
    assert max(per_second.values()) >= 100  # larger than a typical page
    for second in bursts[:10]:
        group = [e for e in three_days if e["date_create"] == second]
        actors = {e["actor"]["user"]["id"] for e in group}
        actions = Counter(e["action"] for e in group)
        assert len(actors) <= 3 and actions.most_common(1)[0][1] >= 12
    hour_starts = range(WEEK_START, WEEK_START + 72 * HOUR, HOUR)
    assert all(per_second[h] >= 1 and per_second[h + HOUR - 1] >= 1 for h in hour_starts)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((1, H + 1, 600), {}, "aligned to a UTC hour"),
        ((1, H, -1), {}, "events_per_hour"),
        ((1, H, 600), {"late_fraction": 1.5}, "late_fraction"),
    ],
)
def test_bad_arguments_are_named(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_hour(*args, **kwargs)


def test_end_before_start_is_refused():
    with pytest.raises(ValueError, match="before start"):
        list(generate_range(1, H, H - HOUR, 10))
