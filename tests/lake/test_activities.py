"""Workflow activity rows: identity, leaves and the fixed schema, for any bytes Slack sends."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from audit_pipeline.lake.activities import (
    ACTIVITY_SCHEMA,
    activity_from_leaf,
    activity_id,
    normalize_activities,
)
from audit_pipeline.lake.parquet import events_from_table
from audit_pipeline.ledger.events import record_mismatch

H = 1795860000
MICROS = 1_000_000

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def activity_bytes(draw) -> bytes:
    """Activities inside the hour, outside it, odd spellings, and plain garbage."""
    kind = draw(st.sampled_from(["inside", "outside", "spaced", "garbage", "no_created"]))
    if kind == "garbage":
        return draw(st.binary(max_size=30))
    created = H * MICROS + draw(st.integers(0, 3600 * MICROS - 1))
    if kind == "outside":
        created += 3600 * MICROS
    doc = {"created": created, "payload": draw(_json_values), "event_type": "x"}
    if kind == "no_created":
        del doc["created"]
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()))
    if kind == "spaced":
        text = text.replace(":", " : ")
    return text.encode()


@settings(max_examples=150, deadline=None)
@given(st.lists(activity_bytes(), max_size=12).flatmap(lambda xs: st.permutations(xs + xs[:2])))
def test_every_activity_is_one_row_with_its_exact_bytes(items):
    table = normalize_activities(items, H)
    assert table.schema.equals(ACTIVITY_SCHEMA, check_metadata=False)
    rows = table.to_pylist()
    assert Counter(r["raw_bytes"] for r in rows) == Counter(items)  # nothing lost or altered
    assert len({r["event_id"] for r in rows}) == len(rows)  # identities never collide
    for record, row in zip(events_from_table(table), rows, strict=True):
        assert record_mismatch(record) is None  # the ledger reads id and time from the leaf
        assert row["leaf_hash"] == hashlib.sha256(b"\x00" + record.leaf_data).digest()
        assert H <= record.date_create < H + 3600
        if row["quarantine_reason"] is None:
            assert row["event_id"] == activity_id(row["raw_bytes"], row["occurrence"])
            assert activity_from_leaf(row["raw_json"]) == json.loads(row["raw_bytes"])
    assert normalize_activities(list(reversed(items)), H).equals(table)  # order-free


def test_identical_activities_are_numbered_and_outside_ones_quarantined():
    inside = b'{"created":%d,"event_type":"function_execution_output"}' % (H * MICROS + 1)
    outside = b'{"created":%d}' % ((H + 3600) * MICROS)
    rows = normalize_activities([inside, outside, inside], H).to_pylist()
    ids = sorted(r["event_id"] for r in rows if r["quarantine_reason"] is None)
    assert ids == [activity_id(inside, 0), activity_id(inside, 1)]
    (quarantined,) = [r for r in rows if r["quarantine_reason"]]
    assert "outside the window" in quarantined["quarantine_reason"]
    assert quarantined["raw_bytes"] == outside
