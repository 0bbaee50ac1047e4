"""Normalization pins the API's odd shapes: each one lands in the right column, losslessly."""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_pipeline.lake import EVENT_SCHEMA, WindowNormalizer, normalize_entries, write_batch_file
from audit_pipeline.lake.fidelity import Faithful, judge_entry
from audit_pipeline.lake.normalize import SpillingWindowNormalizer
from audit_pipeline.lake.parquet import write_batch_stream
from audit_pipeline.ledger.merkle import leaf_hash

FIXTURE = Path(__file__).parents[1] / "fixtures" / "odd_entries.jsonl"
H = 1795860000  # 2026-11-28T10:00Z, the hour of the fixture


def odd_entries() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text().splitlines()]


@pytest.fixture(scope="module")
def rows() -> dict[str, dict]:
    table = normalize_entries(odd_entries(), window_start=H, window_end=H + 3600).table
    return {r["event_id"]: r for r in table.to_pylist()}


@pytest.mark.parametrize(
    ("event_id", "column", "expected"),
    [
        ("0b4c1a2e-0001-4f00-8a00-000000000001", "session_id", "1234567890123"),
        ("0b4c1a2e-0001-4f00-8a00-000000000001", "details", None),
        (
            "0b4c1a2e-0001-4f00-8a00-000000000001",
            "user_agent",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36",
        ),
        ("0b4c1a2e-0002-4f00-8a00-000000000002", "session_id", "a1b2c3d4e5"),
        ("0b4c1a2e-0002-4f00-8a00-000000000002", "ip_address", ""),
        ("0b4c1a2e-0002-4f00-8a00-000000000002", "user_agent", ""),
        ("0b4c1a2e-0002-4f00-8a00-000000000002", "details", None),
        ("0b4c1a2e-0003-4f00-8a00-000000000003", "session_id", None),
        (
            "0b4c1a2e-0003-4f00-8a00-000000000003",
            "details",
            '{"new_value":true,"previous_value":false}',
        ),
        ("0b4c1a2e-0003-4f00-8a00-000000000003", "location_type", "enterprise"),
        (
            "0b4c1a2e-0004-4f00-8a00-000000000004",
            "details",
            '{"new_value":["acme.com","acme.org"],"previous_value":["acme.com"]}',
        ),
        ("0b4c1a2e-0005-4f00-8a00-000000000005", "entity_type", "enterprise"),
        ("0b4c1a2e-0005-4f00-8a00-000000000005", "entity_id", "E0AB12CD3"),
        (
            "0b4c1a2e-0006-4f00-8a00-000000000006",
            "details",
            '{"failed_users":"[]","succeeded_users":"[\\"W0FFEE123\\",\\"W0FFEE124\\"]"}',
        ),
        ("0b4c1a2e-0006-4f00-8a00-000000000006", "entity_name", "Bob"),
        ("0b4c1a2e-0008-4f00-8a00-000000000008", "action", "anomaly"),
        ("0b4c1a2e-0008-4f00-8a00-000000000008", "ip_address", "198.51.100.66"),
        ("0b4c1a2e-0009-4f00-8a00-000000000009", "entity_type", "account_type_role"),
        ("0b4c1a2e-0009-4f00-8a00-000000000009", "entity_id", "7"),
        ("0b4c1a2e-0009-4f00-8a00-000000000009", "entity_name", "Channel Manager"),
        ("0b4c1a2e-0010-4f00-8a00-000000000010", "entity_type", "hologram"),
        ("0b4c1a2e-0010-4f00-8a00-000000000010", "entity_id", "HLG0001"),
        ("0b4c1a2e-0010-4f00-8a00-000000000010", "entity_name", None),
        ("0b4c1a2e-0010-4f00-8a00-000000000010", "context_app_id", "A0APP0001"),
        ("0b4c1a2e-0010-4f00-8a00-000000000010", "actor_user_id", "USLACKSECURITY"),
        ("0b4c1a2e-0010-4f00-8a00-000000000010", "actor_user_email", ""),
        ("0b4c1a2e-0010-4f00-8a00-000000000010", "details", "{}"),
        ("0b4c1a2e-0011-4f00-8a00-000000000011", "entity_name", "Q4 plan"),
        ("0b4c1a2e-0012-4f00-8a00-000000000012", "entity_name", "Onboarding"),
        ("zz9-not-hex-ÿ-0013", "entity_name", "Résumé – final.pdf"),
        ("zz9-not-hex-ÿ-0013", "actor_user_email", "botuser-T0123ABCD-A0APP0001@slack-bots.com"),
        ("0b4c1a2e-0014-4f00-8a00-000000000014", "entity_type", "message"),
        ("0b4c1a2e-0014-4f00-8a00-000000000014", "entity_id", None),
        ("0b4c1a2e-0014-4f00-8a00-000000000014", "details", '{"score":0.25}'),
    ],
)
def test_odd_shapes_land_in_their_columns(rows, event_id, column, expected):
    assert rows[event_id][column] == expected


def test_raw_json_is_lossless_for_every_shape(rows):
    for entry in odd_entries():
        raw = rows[entry["id"]]["raw_json"]
        assert json.loads(raw) == entry
        # types survive too (bool stays bool, int stays int)
        assert json.dumps(json.loads(raw), sort_keys=True) == json.dumps(entry, sort_keys=True)
        assert rows[entry["id"]]["leaf_hash"] == leaf_hash(raw.encode())
        assert rows[entry["id"]]["quarantine_reason"] is None


def test_rows_are_sorted_by_time_then_id_and_window_edges_kept():
    table = normalize_entries(
        list(reversed(odd_entries())), window_start=H, window_end=H + 3600
    ).table
    keys = list(zip(table["date_create"].to_pylist(), table["event_id"].to_pylist(), strict=True))
    assert keys == sorted(keys)
    seconds = [t.timestamp() for t, _ in keys]
    assert seconds[0] == H and seconds[-1] == H + 3599
    assert table.schema.equals(EVENT_SCHEMA)


def test_identical_repeats_are_skipped_and_counted():
    entries = odd_entries()
    result = normalize_entries(entries + entries[:3], window_start=H, window_end=H + 3600)
    assert result.row_count == len(entries)
    assert result.duplicates_skipped == 3
    assert result.quarantined == 0


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("not an object", "JSON string"),
        ([1, 2], "JSON array"),
        ({"id": "x6", "date_create": H, "action": ""}, "action is an empty string"),
        ({"date_create": H, "action": "user_login"}, "id"),
        ({"id": "", "date_create": H, "action": "user_login"}, "id"),
        ({"id": "x1", "date_create": str(H), "action": "user_login"}, "date_create"),
        ({"id": "x2", "date_create": True, "action": "user_login"}, "date_create"),
        ({"id": "x3", "date_create": H + 3600, "action": "user_login"}, "outside"),
        ({"id": "x4", "date_create": H - 1, "action": "user_login"}, "outside"),
        ({"id": "x5", "date_create": H}, "action"),
    ],
)
def test_unparseable_entries_are_quarantined_not_dropped(entry, reason):
    result = normalize_entries([entry], window_start=H, window_end=H + 3600)
    assert result.row_count == 1 and result.quarantined == 1
    row = result.table.to_pylist()[0]
    assert reason in row["quarantine_reason"]
    assert row["event_id"].startswith("quarantine-")
    wrapper = json.loads(row["raw_json"])
    sent = base64.b64decode(wrapper["quarantine"].pop("entry_base64"))
    assert wrapper["quarantine"] == {"reason": row["quarantine_reason"]}
    assert sent == row["entry_bytes"] and json.loads(sent) == entry
    assert wrapper["id"] == row["event_id"]
    assert wrapper["date_create"] == row["date_create"].timestamp()
    assert H <= row["date_create"].timestamp() < H + 3600


def test_conflicting_repeat_of_an_id_is_quarantined():
    first = odd_entries()[0]
    changed = {**first, "action": "user_logout"}
    result = normalize_entries([first, changed], window_start=H, window_end=H + 3600)
    assert result.row_count == 2 and result.quarantined == 1
    reasons = [r for r in result.table["quarantine_reason"].to_pylist() if r]
    assert "different content" in reasons[0]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    entry=st.fixed_dictionaries(
        {
            "id": st.text(min_size=1, max_size=12).filter(str.strip),
            "action": st.text(min_size=1, max_size=12).filter(str.strip),
        },
        optional={
            "actor": json_values,
            "entity": json_values,
            "context": json_values,
            "details": json_values,
            "extra": json_values,
        },
    ),
    offset=st.integers(0, 3599),
)
def test_any_entry_shape_is_kept_losslessly(entry, offset):
    entry = {**entry, "date_create": H + offset}
    result = normalize_entries([entry], window_start=H, window_end=H + 3600)
    assert result.row_count == 1 and result.quarantined == 0
    row = result.table.to_pylist()[0]
    assert json.loads(row["raw_json"]) == entry
    assert json.loads(row["entry_bytes"]) == entry
    assert row["event_id"] == entry["id"]


def test_schema_is_fixed():
    names = [f.name for f in EVENT_SCHEMA]
    assert names[:3] == ["event_id", "date_create", "action"]
    assert EVENT_SCHEMA.field("leaf_hash").type == pa.binary(32)
    assert all(f.metadata and f.metadata[b"description"] for f in EVENT_SCHEMA)


def test_entries_without_a_canonical_form_are_quarantined_faithfully():
    entry = {
        "id": "nan-1",
        "date_create": H + 5,
        "action": "user_login",
        "details": {"x": float("nan")},
    }
    result = normalize_entries([entry], window_start=H, window_end=H + 3600)
    row = result.table.to_pylist()[0]
    assert result.quarantined == 1 and "non-finite number NaN" in row["quarantine_reason"]
    sent = base64.b64decode(json.loads(row["raw_json"])["quarantine"]["entry_base64"])
    assert b"NaN" in sent and b'"nan-1"' in sent and sent == row["entry_bytes"]


def test_entry_bytes_are_kept_exactly_as_sent():
    sent = [
        b'{ "id" : "s1", "date_create": %d, "action": "user_login", "details": {"n": 1.50,'
        b' "big": 123456789012345678901234567890} }' % H,
        b'{"id":"s2","date_create":%d,"action":"x","details":{"a":1,"a":2}}' % H,
    ]
    result = normalize_entries(sent, window_start=H, window_end=H + 3600)
    rows = {r["entry_bytes"]: r for r in result.table.to_pylist()}
    assert set(rows) == set(sent)
    good = rows[sent[0]]
    assert good["quarantine_reason"] is None
    assert b'"big":123456789012345678901234567890' in good["raw_json"].encode()
    assert "duplicate key 'a'" in rows[sent[1]]["quarantine_reason"]


jsonish = st.lists(
    st.sampled_from(
        [b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\", b"1e400", b"0.1", b"-", b"\xff",
         b'"id"', b'"action"', b'"date_create"', b'"x"', b"%d" % H, b"NaN", b"true"]
    ),
    max_size=30,
).map(b"".join)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(jsonish, st.binary(max_size=60)), max_size=8))
def test_fuzz_every_entry_is_one_row_with_its_exact_bytes(sent):
    result = normalize_entries(sent, window_start=H, window_end=H + 3600)
    rows = result.table.to_pylist()
    stored = {r["entry_bytes"] for r in rows}
    assert stored <= set(sent) and len(rows) + result.duplicates_skipped == len(sent)
    leaves = {r["raw_json"] for r in rows}
    for data in set(sent) - stored:  # only a repeat of the same entry is not a row itself
        verdict = judge_entry(data)
        assert isinstance(verdict, Faithful) and verdict.canonical.decode() in leaves
    for row in rows:
        leaf = json.loads(row["raw_json"])
        assert leaf["id"] == row["event_id"]
        if row["quarantine_reason"] is not None:
            assert base64.b64decode(leaf["quarantine"]["entry_base64"]) == row["entry_bytes"]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_pages_in_any_order_give_the_same_sorted_table(data):
    """Pages newest first with same-second groups across their edges, a restarted window's
    repeats, a late page out of order and quarantine rows among them: one sorted table,
    the same as the entries normalized in one go."""
    seconds = data.draw(st.lists(st.integers(0, 5), min_size=1, max_size=40))
    entries = [
        json.dumps({"id": f"e{i:03d}", "date_create": H + s, "action": "a"}).encode()
        for i, s in enumerate(seconds)
    ]
    entries += [b'{"id":"q","date_create":' + str(H).encode() + b',"action":"x","id":"r"}']
    entries += [b'{"id":"nan","date_create":%d,"action":"x","n":NaN}' % (H + 2)]
    entries.sort(key=lambda b: -json.loads(b.replace(b"NaN", b"0"))["date_create"])
    cuts = sorted(data.draw(st.sets(st.integers(1, len(entries) - 1), max_size=6)))
    pages = [entries[a:b] for a, b in zip([0, *cuts], [*cuts, len(entries)], strict=True)]
    pages = data.draw(st.permutations(pages))
    pages += data.draw(st.lists(st.sampled_from(pages), max_size=2))  # a restarted window
    normalizer = WindowNormalizer(H, H + 3600)
    for page in pages:
        normalizer.add(page)
    paged = normalizer.finish()
    whole = normalize_entries(entries, window_start=H, window_end=H + 3600)
    assert paged.table.equals(whole.table)
    table = paged.table
    keys = list(zip(table["date_create"].to_pylist(), table["event_id"].to_pylist(), strict=True))
    assert keys == sorted(keys) and paged.quarantined == 2
    with tempfile.TemporaryDirectory() as spill:
        spilling = SpillingWindowNormalizer(H, H + 3600, directory=Path(spill))
        for page in pages:
            spilling.add(page)
        spilled = spilling.finish()
        assert spilled.keys.equals(table.select(["event_id", "date_create", "leaf_hash"]))
        streamed = pa.Table.from_batches(list(spilled.batches()), schema=EVENT_SCHEMA)
        assert streamed.equals(table)
        assert (spilled.quarantined, spilled.duplicates_skipped) == (2, paged.duplicates_skipped)
        write_batch_file(table, Path(spill) / "whole.parquet")
        write_batch_stream(spilled.batches(), Path(spill) / "streamed.parquet")
        whole_bytes = (Path(spill) / "whole.parquet").read_bytes()
        assert (Path(spill) / "streamed.parquet").read_bytes() == whole_bytes


ids = st.text(
    st.characters(codec="utf-8", exclude_characters='"\\'), min_size=1, max_size=6
).filter(str.strip)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(ids, st.integers(0, 3)), max_size=30), st.randoms())
def test_a_pages_rows_are_in_arrows_own_sort_order(items, rng):
    """Each page's batch is handed on in (date_create, event_id) order, whatever the ids
    (any code point), repeats, quarantine rows and arrival order."""
    sent = [
        json.dumps({"id": i, "date_create": H + s, "action": "a"}, ensure_ascii=False).encode()
        for i, s in items
    ]
    sent += [b'{"id":"x","date_create":%d,"action":"a","n":1e400}' % H, b"\xff"]
    rng.shuffle(sent)
    normalizer = WindowNormalizer(H, H + 3600)
    kept: list[pa.RecordBatch] = []
    normalizer._keep = kept.append  # the page's batch, as it is handed on
    normalizer.add(sent)
    (batch,) = kept
    order = pc.sort_indices(
        batch, sort_keys=[("date_create", "ascending"), ("event_id", "ascending")]
    )
    assert batch.take(order).equals(batch)
    assert sorted(batch["entry_bytes"].to_pylist()) == sorted(set(sent))
