"""The package's own copy of the API catalogue, and the action -> entity type mapping."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from audit_pipeline.slack import catalogue


def test_catalogue_is_the_recorded_actions_response():
    doc = json.loads(catalogue.actions_body())
    assert list(doc) == ["actions"]
    categories = catalogue.action_categories()
    assert len(categories) == 25
    assert sum(len(names) for names in categories.values()) == 770
    assert len(catalogue.action_names()) == 762  # some names sit in two categories
    assert catalogue.known_actions() == set(catalogue.action_names())
    assert {"user_login", "anomaly", "pref.sso_setting_changed"} <= catalogue.known_actions()


def test_schemas_list_repeated_types_with_different_fields():
    doc = json.loads(catalogue.schemas_body())
    types = [item["type"] for item in doc["schemas"]]
    assert types.count("workflow_v2") == 3 and types.count("app") == 3
    assert {"user", "account_type_role", "legal_hold_policy"} <= catalogue.schema_entity_types()


def test_catalogue_files_ship_inside_the_package():
    package_dir = Path(str(resources.files("audit_pipeline.slack")))
    for name in ("actions.json", "schemas.json"):
        assert (package_dir / "catalogue" / name).is_file()
    assert "shared" not in package_dir.parts


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("user_login", ("user",)),
        ("file_downloaded", ("file",)),
        ("pref.sso_setting_changed", ("workspace", "enterprise")),
        ("organization_created", ("enterprise",)),
        ("emoji_added", ("workspace",)),
        ("workflow_created", ("workflow",)),
        ("workflow_v2_published", ("workflow_v2",)),
        ("role_assigned", ("role",)),
        ("permissions_assigned", ("account_type_role",)),  # also listed under "message"
        ("role_change_to_admin", ("user",)),
        ("anomaly", ("user",)),
        ("huddle_started", ("huddle",)),
        ("slack_ai_file_summary_generated", ("file",)),  # also under "workspace_or_org"
        ("cli_login", ("user",)),
        ("cli_app_deploy", ("app",)),
        ("native_dlp_rule_created", ("native_dlp_rule",)),
        ("an_action_slack_added_yesterday", ("workspace",)),
    ],
)
def test_entity_types_for(action, expected):
    assert catalogue.entity_types_for(action) == expected


def test_every_action_has_an_entity_type_and_some_are_unknown_to_the_schemas():
    used = {t for name in catalogue.action_names() for t in catalogue.entity_types_for(name)}
    assert all(isinstance(t, str) and t for t in used)
    unknown = used - catalogue.schema_entity_types()
    assert {"huddle", "list", "function", "native_dlp_rule"} <= unknown
