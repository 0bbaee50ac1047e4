"""The Audit Logs API catalogue: action names, entity schemas and which entity an action targets.

``catalogue/actions.json`` and ``catalogue/schemas.json`` are verbatim copies of real
``GET /audit/v1/actions`` and ``GET /audit/v1/schemas`` responses (August 2026): the emulator
serves their bytes unchanged and the generator draws every action name from them. Slack adds
names without notice, so consumers must never reject an action that is missing here.

The entity type of an action is not part of either response; ``entity_types_for`` gives a
plausible mapping derived from the action's category and name (``user_login`` -> ``user``,
``pref.*`` -> ``workspace`` or ``enterprise``, ``workflow_*`` -> ``workflow``/``workflow_v2``).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

# Where a category's actions point. Categories without a published schema map to entity
# types the SDK models do not know, as the live API does for newer features.
_CATEGORY_ENTITY_TYPES: dict[str, tuple[str, ...]] = {
    "workspace_or_org": ("workspace", "enterprise"),
    "user": ("user",),
    "file": ("file",),
    "channel": ("channel",),
    "app": ("app",),
    "workflow_builder": ("workflow",),
    "message": ("message",),
    "barrier": ("barrier",),
    "huddle": ("huddle",),
    "anomaly": ("user",),
    "slack_cli": ("app",),
    "subteam": ("usergroup",),
    "role": ("role",),
    "account_type_role": ("account_type_role",),
    "app_approval_automation_rule": ("app_approval_automation_rule",),
    "workflow_v2": ("workflow_v2",),
    "canvas": ("canvas",),
    "function": ("function",),
    "sales_elevate": ("workspace",),
    "native_dlp": ("native_dlp_rule",),
    "template": ("template",),
    "list": ("list",),
    "slack_first_crm": ("workspace",),
    "legal_hold": ("legal_hold_policy",),
    "salesforce_mcp_server": ("salesforce_mcp_server",),
}

# A name listed in several categories takes the most specific one; the organization-wide
# bucket is the least specific.
_CATEGORY_RANK = {"workspace_or_org": 0, "account_type_role": 2, "file": 2}

# Name prefixes inside ``workspace_or_org`` that clearly target one of the two.
_ENTERPRISE_PREFIXES = (
    "organization_",
    "org_",
    "enterprise_",
    "approved_orgs_",
    "ekm_",
    "idp_",
    "domain_",
    "seamless_auth_org_",
    "ip_allowlist_",
    "intune_",
)
_WORKSPACE_PREFIXES = ("workspace_", "team_", "team.", "emoji_")

_CLI_USER_ACTIONS = frozenset({"cli_login", "cli_logout"})


def _read(name: str) -> bytes:
    return (resources.files("audit_pipeline.slack") / "catalogue" / name).read_bytes()


@cache
def actions_body() -> bytes:
    """actions_body returns the bytes of the recorded ``GET /actions`` response."""
    return _read("actions.json")


@cache
def schemas_body() -> bytes:
    """schemas_body returns the bytes of the recorded ``GET /schemas`` response."""
    return _read("schemas.json")


@cache
def action_categories() -> dict[str, tuple[str, ...]]:
    """action_categories returns category -> action names, in the response's order."""
    raw = json.loads(actions_body())["actions"]
    return {category: tuple(names) for category, names in raw.items()}


@cache
def action_names() -> tuple[str, ...]:
    """action_names returns every distinct action name, first occurrence order."""
    seen: dict[str, None] = {}
    for names in action_categories().values():
        for name in names:
            seen.setdefault(name, None)
    return tuple(seen)


@cache
def known_actions() -> frozenset[str]:
    """known_actions is the set the emulator accepts in the ``action`` filter."""
    return frozenset(action_names())


@cache
def schema_entity_types() -> frozenset[str]:
    """schema_entity_types returns the entity ``type`` values ``GET /schemas`` describes."""
    return frozenset(item["type"] for item in json.loads(schemas_body())["schemas"])


@cache
def _primary_category() -> dict[str, str]:
    best: dict[str, str] = {}
    for category, names in action_categories().items():
        rank = _CATEGORY_RANK.get(category, 1)
        for name in names:
            current = best.get(name)
            if current is None or rank > _CATEGORY_RANK.get(current, 1):
                best[name] = category
    return best


def category_of(action: str) -> str | None:
    """category_of returns the most specific category listing ``action``, or None if unknown."""
    return _primary_category().get(action)


@cache
def entity_types_for(action: str) -> tuple[str, ...]:
    """entity_types_for returns the entity types an ``action`` plausibly targets (first = usual).

    Unknown names map to ``("workspace",)`` so replayed exports with new actions still work.
    """
    category = category_of(action)
    if category is None:
        return ("workspace",)
    if category == "workspace_or_org":
        if action.startswith("pref."):
            return ("workspace", "enterprise")
        if action.startswith(_ENTERPRISE_PREFIXES):
            return ("enterprise",)
        if action.startswith(_WORKSPACE_PREFIXES):
            return ("workspace",)
        return ("enterprise", "workspace")
    if category == "slack_cli" and action in _CLI_USER_ACTIONS:
        return ("user",)
    return _CATEGORY_ENTITY_TYPES.get(category, ("workspace",))
