"""The one fixed Arrow schema of an audit event row.

Every batch file of the lake has exactly this schema, in this column order. The
normalized columns are conveniences for queries; ``raw_json`` is the whole API entry as
canonical JSON (lossless: ``json.loads(raw_json)`` equals the entry Slack sent, types
included) and ``leaf_hash`` is ``SHA-256(0x00 || raw_json)``, the event's RFC 6962 leaf in
its batch's Merkle tree. Entries that cannot be parsed at all are kept as rows too, with a
``quarantine_reason`` and a synthetic ``event_id`` (``quarantine-<sha256 prefix>``); their
``raw_json`` is ``{"id": <synthetic id>, "date_create": …, "quarantine": {"reason": …,
"entry": <the entry as sent>}}`` (``entry_text`` instead of ``entry`` when the entry has no
canonical JSON, e.g. a NaN), so nothing the API returned is ever dropped and quarantine
rows are covered by the ledger like any event.

``entry_bytes`` (schema 2) holds the entry exactly as the API sent it: its bytes within its
page, before any parsing. ``raw_json`` is derived from them only when the round trip is
faithful (``lake/fidelity.py``); otherwise the row is quarantined and its leaf carries
these same bytes in base64 (``{"quarantine": {"entry_base64": …, "reason": …}}``).

Compatibility: columns are only ever added at the end, with a new ``SCHEMA_VERSION``;
files of an older schema are read with the newer columns null (``lake/parquet.py``).
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "2"
# Parquet has no second-precision timestamp: milliseconds, always whole seconds.
DATE_TYPE = pa.timestamp("ms", tz="UTC")

_COLUMNS: tuple[tuple[str, pa.DataType, bool, str], ...] = (
    (
        "event_id",
        pa.string(),
        False,
        "The entry's `id` (`quarantine-…` for quarantine rows).",
    ),
    ("date_create", DATE_TYPE, False, "When Slack recorded the event (UTC, whole seconds)."),
    ("action", pa.string(), True, "Action name, e.g. `user_login`, `pref.sso_setting_changed`."),
    ("actor_type", pa.string(), True, "`actor.type` (usually `user`)."),
    ("actor_user_id", pa.string(), True, "`actor.user.id` (may be USLACKSECURITY / USLACKUSER)."),
    ("actor_user_name", pa.string(), True, "`actor.user.name`."),
    ("actor_user_email", pa.string(), True, "`actor.user.email`."),
    ("actor_user_team", pa.string(), True, "`actor.user.team` (workspace or org id)."),
    ("entity_type", pa.string(), True, "`entity.type`: user, channel, file, app, workflow …"),
    ("entity_id", pa.string(), True, "The entity's `id` as text (an int for account_type_role)."),
    ("entity_name", pa.string(), True, "The entity's `name`, `title` or `template_name`."),
    ("location_type", pa.string(), True, "`context.location.type`: workspace or enterprise."),
    ("location_id", pa.string(), True, "`context.location.id`."),
    ("location_name", pa.string(), True, "`context.location.name`."),
    ("location_domain", pa.string(), True, "`context.location.domain`."),
    ("ip_address", pa.string(), True, "`context.ip_address` (may be empty)."),
    ("user_agent", pa.string(), True, "`context.ua` (may be empty)."),
    ("session_id", pa.string(), True, "`context.session_id` as text (Slack sends int or string)."),
    ("context_app_id", pa.string(), True, "`context.app.id` when an app acted."),
    ("details", pa.string(), True, "`details` as canonical JSON (null when absent or null)."),
    ("raw_json", pa.string(), False, "The whole entry as canonical JSON: the Merkle leaf data."),
    ("leaf_hash", pa.binary(32), False, "SHA-256(0x00 || raw_json): the RFC 6962 leaf hash."),
    ("quarantine_reason", pa.string(), True, "Why the entry could not be parsed (null if fine)."),
    (
        "entry_bytes",
        pa.binary(),
        True,
        "The entry exactly as the API sent it (its bytes within the page); null in files "
        "written before schema 2.",
    ),
)

EVENT_SCHEMA = pa.schema(
    [
        pa.field(name, dtype, nullable=nullable, metadata={"description": doc})
        for name, dtype, nullable, doc in _COLUMNS
    ],
    metadata={"audit_pipeline.schema_version": SCHEMA_VERSION},
)

# Schema 1 files (before entry_bytes) are still read: the same columns minus the last.
EVENT_SCHEMA_V1 = pa.schema(list(EVENT_SCHEMA)[:-1])

COLUMN_DOCS: dict[str, str] = {name: doc for name, _, _, doc in _COLUMNS}
