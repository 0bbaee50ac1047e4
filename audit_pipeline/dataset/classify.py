"""Which auditor view each action belongs to: the real ``/actions`` catalogue, by category.

Every action of Slack's catalogue (``slack/catalogue/actions.json``) is assigned to the
views by its catalogue category, and actions Slack adds later (which the API sends without
notice) by name pattern and entity type, so a new ``ekm_*`` or ``app_*`` action lands in
the right view on the day it appears. An action may belong to several views (an anomaly
about searches is in ``anomalies`` and ``data_access``). Actions that no auditor view
covers (messages, huddles, channel membership, usergroups, lists, CRM and sales tools) are
in the catch-all view ``other_events``: :data:`CATCH_ALL_CATEGORIES` documents which.

Each view's SQL is generated from these rules, so an auditor reading the view's definition
(``SELECT sql FROM duckdb_views()``) sees exactly which actions and patterns it covers.
Patterns are RE2 regular expressions over the action name, as DuckDB evaluates them.
"""

from __future__ import annotations

from dataclasses import dataclass

from audit_pipeline.slack.catalogue import action_categories

LOGIN_ACTIONS = ("user_login", "user_login_failed")

SSO_ACTIONS = (
    "pref.sso_setting_changed",
    "pref.sso_sync_with_provider",
    "idp_configuration_added",
    "idp_configuration_deleted",
    "idp_prod_configuration_updated",
    "idp_test_configuration_updated",
)
TWO_FACTOR_ACTIONS = ("pref.two_factor_auth_changed", "pref.two_factor_prevent_sms_changed")
ROLE_ACTIONS = (
    "role_change_to_admin",
    "role_change_to_owner",
    "role_change_to_user",
    "role_change_to_guest",
    "owner_transferred",
    "org_owner_created",
    "service_owner_transferred",
    "role_assigned",
    "role_removed",
    "role_created",
    "role_updated",
    "role_deleted",
    "permissions_assigned",
    "permissions_removed",
)
APP_INSTALL_ACTIONS = (
    "app_installed",
    "org_app_installed",
    "org_app_workspace_added",
    "org_app_upgraded_to_org_install",
    "child_app_auto_installed",
    "cli_app_install",
)
APP_UNINSTALL_ACTIONS = (
    "app_uninstalled",
    "org_app_uninstalled",
    "org_app_workspace_removed",
    "app_deleted",
    "cli_app_delete",
)
FILE_BLOCKED_ACTIONS = ("file_downloaded_blocked", "file_download_blocked")
WORKFLOW_ACTIONS = ("featured_workflow_added", "featured_workflow_removed")

# Catalogue categories whose actions no auditor view covers: they are in other_events.
CATCH_ALL_CATEGORIES = frozenset(
    {
        "channel",
        "huddle",
        "list",
        "message",
        "sales_elevate",
        "salesforce_mcp_server",
        "slack_first_crm",
        "subteam",
        "template",
    }
)


def catalogue_actions(*categories: str) -> tuple[str, ...]:
    """catalogue_actions: every action the real catalogue lists under these categories."""
    by_category = action_categories()
    return tuple(sorted({a for c in categories for a in by_category.get(c, ())}))


@dataclass(frozen=True)
class ViewRule:
    """Which events a view holds, and the label its ``category`` column gives each one.

    An event is in the view when its action is listed, matches ``pattern``, or its entity
    type is listed, and it matches no ``exclude`` pattern. ``labels`` are tried in order
    (the first whose regexp matches the action wins); ``default`` otherwise.
    """

    actions: tuple[str, ...]
    pattern: str | None = None
    entity_types: tuple[str, ...] = ()
    exclude: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    default: str = "other"

    def where(self) -> str:
        """The SQL condition over ``action`` and ``entity_type``."""
        parts = [f"action IN {_in(self.actions)}"] if self.actions else []
        if self.pattern:
            parts.append(f"regexp_matches(action, {_quote(self.pattern)})")
        if self.entity_types:
            parts.append(f"entity_type IN {_in(self.entity_types)}")
        condition = "(" + " OR ".join(parts) + ")"
        if self.exclude:
            condition += f" AND NOT regexp_matches(action, {_quote(self.exclude)})"
        return condition

    def label(self) -> str:
        """The SQL expression of the category label."""
        if not self.labels:
            return _quote(self.default)
        cases = " ".join(
            f"WHEN regexp_matches(action, {_quote(regexp)}) THEN {_quote(name)}"
            for name, regexp in self.labels
        )
        return f"CASE {cases} ELSE {_quote(self.default)} END"


def exactly(names: tuple[str, ...]) -> str:
    """A regexp matching exactly these action names."""
    return "^(" + "|".join(n.replace(".", "\\.") for n in names) + ")$"


LOGINS = ViewRule(LOGIN_ACTIONS, pattern=r"^user_login(_failed)?$")

ADMIN = ViewRule(
    tuple(
        sorted(
            set(
                catalogue_actions(
                    "workspace_or_org",
                    "user",
                    "role",
                    "account_type_role",
                    "barrier",
                    "native_dlp",
                    "legal_hold",
                )
            )
            - set(LOGIN_ACTIONS)
            | set(SSO_ACTIONS + TWO_FACTOR_ACTIONS + ROLE_ACTIONS + ("prefs_setting_changed",))
        )
    ),
    pattern=(
        r"^pref\.|sso|saml|(^|_)idp_|two_factor|2fa|passkey|password|auth_policy|session"
        r"|logout|(^|_)role(_|$)|owner|legal_hold|barrier|dlp|(^|_)ekm(_|$)|intune|mdm"
        r"|device|^(organization|workspace|enterprise)_|converted_to_(public|private)"
        r"|group_converted_to_channel|channel_type_conversion"
    ),
    entity_types=(
        "workspace",
        "enterprise",
        "role",
        "account_type_role",
        "barrier",
        "native_dlp_rule",
        "legal_hold_policy",
    ),
    exclude=exactly(LOGIN_ACTIONS),
    labels=(
        ("sso", exactly(SSO_ACTIONS) + r"|sso|saml|(^|_)idp_"),
        ("two_factor", exactly(TWO_FACTOR_ACTIONS) + "|two_factor|2fa"),
        ("authentication", "passkey|password|auth_policy"),
        ("sessions", "session|logout"),
        ("legal_hold", "legal_hold"),
        ("information_barrier", "barrier"),
        ("dlp", "dlp"),
        ("ekm", "(^|_)ekm(_|$)"),
        ("device_management", "intune|mdm|device|mobile"),
        (
            "org_lifecycle",
            r"^(organization|workspace|enterprise)_(created|deleted|renamed|archived"
            r"|unarchived|accepted_migration|declined_migration)",
        ),
        (
            "channel_visibility",
            "converted_to_(public|private)|group_converted_to_channel|channel_type_conversion",
        ),
        ("role", exactly(ROLE_ACTIONS) + r"|(^|_)role(_|$)|owner|^permissions_"),
        ("user_account", exactly(catalogue_actions("user")) + "|^(user|guest)_"),
    ),
    default="preference",
)

APPS = ViewRule(
    tuple(
        sorted(
            set(catalogue_actions("app", "app_approval_automation_rule", "slack_cli", "function"))
            | set(APP_INSTALL_ACTIONS + APP_UNINSTALL_ACTIONS)
        )
    ),
    pattern=r"^(app|apps|org_app|child_app|bot_token|cli_app|agentforce|function)_",
    entity_types=("app", "function"),
    labels=(
        ("uninstall", exactly(APP_UNINSTALL_ACTIONS) + "|uninstall"),
        ("install", exactly(APP_INSTALL_ACTIONS) + "|install"),
        ("scopes", "scope|resources_|token"),
        ("approval", "approv|restrict|allowlist|whitelist"),
        ("collaborator", "collaborator"),
        ("manifest", "manifest"),
    ),
)

FILES = ViewRule(
    catalogue_actions("file", "canvas"),
    pattern=r"^(file|canvas)_|_(file|canvas)_",
    entity_types=("file", "canvas"),
    labels=(
        ("download_blocked", exactly(FILE_BLOCKED_ACTIONS) + "|blocked"),
        ("malicious_content", "malicious"),
        ("public_link_created", "public_link_created"),
        ("public_link_revoked", "public_link_revoked"),
        ("download", "download"),
        ("shared", "^file_shared$|shared$"),
        ("upload", "upload"),
        ("canvas", "canvas"),
    ),
)

ANOMALIES = ViewRule(catalogue_actions("anomaly"), pattern=r"(^|_)anomaly$")

WORKFLOWS = ViewRule(
    tuple(sorted(set(catalogue_actions("workflow_builder", "workflow_v2") + WORKFLOW_ACTIONS))),
    pattern="workflow",
    entity_types=("workflow", "workflow_v2"),
)

DATA_ACCESS = ViewRule(
    (),
    pattern=r"^[^.]*((^|_)exports?(_|$)|searched|(^|_)search(_|$)|_csv_download)",
    labels=(("export", "export|_csv_download"), ("search", "search")),
)

# The view each rule defines (the catch-all other_events is everything none of them holds).
RULES: dict[str, ViewRule] = {
    "login_events": LOGINS,
    "admin_changes": ADMIN,
    "app_changes": APPS,
    "file_events": FILES,
    "anomalies": ANOMALIES,
    "workflow_changes": WORKFLOWS,
    "data_access": DATA_ACCESS,
}


def catch_all_where() -> str:
    """The condition of other_events: in no view of RULES."""
    return "NOT (" + " OR ".join(rule.where() for rule in RULES.values()) + ")"


def _in(names: tuple[str, ...]) -> str:
    return "(" + ", ".join(_quote(n) for n in names) + ")"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
