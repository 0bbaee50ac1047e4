"""The row-level checks on whole columns decide exactly as the per-record definition does."""

from __future__ import annotations

from audit_pipeline.ledger import merkle
from audit_pipeline.ledger.events import EventRecord, record_mismatch
from audit_pipeline.ledger.verify_rows import EventColumns, leaf_hashes, mismatched_rows

T = 1795860000

# (row id, row time, leaf bytes): agreeing rows and every way a leaf can disagree
ROWS = [
    ("a", T, b'{"date_create":%d,"id":"a"}' % T),
    ("b", T, b'{"date_create":%d,"id":"x"}' % T),  # another id
    ("c", T, b'{"date_create":%d,"id":"c"}' % (T + 1)),  # another time
    ("d", T, b'["d"]'),  # not an object
    ("e", T, b'{"date_create":%d,"id":"e"' % T),  # not JSON
    ("f", T, b'{"date_create":%d,"id":"f","n":123456789012345678901234567890}' % T),  # big int
    ("g", T, b'{"date_create":%d,"id":"g","n":1e999}' % T),  # beyond a double
    ("h", 1, b'{"date_create":true,"id":"h"}'),  # true == 1 in Python, as record_mismatch sees it
    ("i", T, b'{"id":"i"}'),  # no time
    ("j", T, b'"j"'),  # a string
    ("k", T, b'{"date_create":%d.0,"id":"k"}' % T),  # a float equal to the time
    ("l", T, b'{"date_create":%d,"id":"l","id":"z"}' % T),  # a repeated key (last wins)
]


def test_mismatched_rows_agrees_with_record_mismatch_row_by_row() -> None:
    columns = EventColumns([r[0] for r in ROWS], [r[1] for r in ROWS], [r[2] for r in ROWS])
    want = [
        f"{event_id} ({why})"
        for event_id, date_create, leaf in ROWS
        if (why := record_mismatch(EventRecord(event_id, date_create, leaf)))
    ]
    assert mismatched_rows(columns) == want
    assert {w.split()[0] for w in want} >= {"b", "c", "d", "e", "i", "j", "l"}


def test_leaf_hashes_are_the_tree_leaf_hashes() -> None:
    leaves = [r[2] for r in ROWS]
    assert leaf_hashes(leaves) == [merkle.leaf_hash(leaf) for leaf in leaves]
