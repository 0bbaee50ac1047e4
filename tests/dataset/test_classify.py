"""Every action of the real /actions catalogue lands in an auditor view or the documented
catch-all; future actions by name pattern and entity type; views ordered as named."""

from __future__ import annotations

import duckdb
import pytest

from audit_pipeline.dataset.classify import CATCH_ALL_CATEGORIES, RULES
from audit_pipeline.dataset.schema import TABLES
from audit_pipeline.dataset.views import VIEWS, create_views
from audit_pipeline.slack.catalogue import action_categories, entity_types_for

CLASSIFIED = (*RULES, "other_events")


@pytest.fixture(scope="module")
def con():
    """An empty dataset whose audit_events holds one row per (action, entity type)."""
    connection = duckdb.connect()
    for ddl, _ in TABLES.values():
        connection.execute(ddl)
    create_views(connection)
    yield connection
    connection.close()


def membership(con, rows: list[tuple[str, str | None]]) -> dict[tuple[str, str | None], set]:
    con.execute("DELETE FROM audit_events")
    con.executemany(
        "INSERT INTO audit_events (event_id, date_create, action, entity_type, raw_json, "
        "leaf_hash, batch_sequence, row_index) VALUES (?, TIMESTAMPTZ '2026-11-28 10:00:00+00',"
        " ?, ?, '{}', ''::BLOB, 0, ?)",
        [(f"{a}|{t}", a, t, i) for i, (a, t) in enumerate(rows)],
    )
    found: dict[tuple[str, str | None], set] = {row: set() for row in rows}
    for view in CLASSIFIED:
        for (event_id,) in con.sql(f"SELECT event_id FROM {view}").fetchall():
            action, entity = event_id.split("|")
            found[(action, None if entity == "None" else entity)].add(view)
    return found


def test_every_catalogue_action_lands_in_a_view_or_the_documented_catch_all(con):
    rows = [
        (action, entity)
        for actions in action_categories().values()
        for action in actions
        for entity in entity_types_for(action)
    ]
    found = membership(con, sorted(set(rows)))
    categories = action_categories()
    for (action, entity), views in found.items():
        assert views, f"{action} ({entity}) is in no view"
        if "other_events" in views:
            assert views == {"other_events"}, (action, views)
            homes = {c for c, names in categories.items() if action in names}
            assert homes <= CATCH_ALL_CATEGORIES, f"{action} ({homes}) fell into other_events"


@pytest.mark.parametrize(
    ("action", "entity", "view", "label"),
    [
        ("service_owner_transferred", "channel", "admin_changes", "role"),
        ("user_session_reset_by_admin", "user", "admin_changes", "sessions"),
        ("bulk_session_reset_by_admin", "enterprise", "admin_changes", "sessions"),
        ("intune_disabled", "enterprise", "admin_changes", "device_management"),
        ("ekm_key_added", "enterprise", "admin_changes", "ekm"),
        ("legal_hold_policy_released", "legal_hold_policy", "admin_changes", "legal_hold"),
        ("barrier_deleted", "barrier", "admin_changes", "information_barrier"),
        ("native_dlp_rule_edited", "native_dlp_rule", "admin_changes", "dlp"),
        ("organization_created", "enterprise", "admin_changes", "org_lifecycle"),
        ("organization_deleted", "enterprise", "admin_changes", "org_lifecycle"),
        ("workspace_deleted", "workspace", "admin_changes", "org_lifecycle"),
        ("auth_policy_entity_removed", "enterprise", "admin_changes", "authentication"),
        ("private_channel_converted_to_public", "channel", "admin_changes", "channel_visibility"),
        ("pref.sso_setting_changed", "enterprise", "admin_changes", "sso"),
        ("app_collaborator_added", "app", "app_changes", "collaborator"),
        ("app_manifest_created", "app", "app_changes", "manifest"),
        ("app_resources_added", "app", "app_changes", "scopes"),  # not in the catalogue
        ("file_malicious_content_detected", "file", "file_events", "malicious_content"),
        ("canvas_edited", "file", "file_events", "canvas"),
        ("file_downloaded", "file", "file_events", "download"),
        ("manual_export_started", "enterprise", "data_access", "export"),
        ("audit_logs_records_searched", "enterprise", "data_access", "search"),
        ("audit_logs_records_searched_anomaly", "user", "anomalies", None),
        ("anomaly", "user", "anomalies", None),
        ("workflow_v2_published", "workflow_v2", "workflow_changes", None),
        # future actions: by name pattern or entity type
        ("ekm_key_rotated_automatically", None, "admin_changes", "ekm"),
        ("legal_hold_policy_exported", None, "admin_changes", "legal_hold"),
        ("app_secret_rotated", None, "app_changes", "other"),
        ("hologram_projected", "file", "file_events", "other"),
        ("workflow_v3_published", None, "workflow_changes", None),
        ("tenant_export_started", None, "data_access", "export"),
    ],
)
def test_actions_land_in_their_view_with_their_label(con, action, entity, view, label):
    found = membership(con, [(action, entity)])
    assert view in found[(action, entity)]
    if label is not None:
        column = {"admin_changes": "category", "app_changes": "change",
                  "file_events": "activity", "data_access": "kind"}[view]  # fmt: skip
        ((got,),) = con.sql(f"SELECT {column} FROM {view}").fetchall()
        assert got == label


def test_the_anomaly_timestamp_is_read_by_magnitude(con):
    con.execute("DELETE FROM audit_events")
    stamps = {"s": "1795860000", "ms": "1795860000123", "us": "1795860000123456"}
    for i, (unit, stamp) in enumerate(stamps.items()):
        con.execute(
            "INSERT INTO audit_events (event_id, date_create, action, details, raw_json, "
            "leaf_hash, batch_sequence, row_index) VALUES (?, TIMESTAMPTZ "
            "'2026-11-28 10:00:00+00', 'anomaly', ?, '{}', ''::BLOB, 0, ?)",
            [unit, f'{{"action_timestamp": {stamp}}}', i],
        )
    got = dict(con.sql("SELECT event_id, epoch(action_time) FROM anomalies").fetchall())
    assert got == pytest.approx({"s": 1795860000, "ms": 1795860000.123, "us": 1795860000.123456})


def test_every_view_has_an_order_by():
    for view in VIEWS:
        assert "ORDER BY" in view.sql.upper(), view.name
