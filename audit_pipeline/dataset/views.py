"""The views that answer the questions auditors ask first, as SQL over ``audit_events``.

Action names come from Slack's ``GET /actions`` catalogue (``slack/catalogue/actions.json``).
The lists below are explicit on purpose: an auditor reading a view's definition
(``SELECT sql FROM duckdb_views()``) sees exactly which actions it covers. Values inside
``details`` keep Slack's shapes (string, list, object or bool), so they are exposed as
JSON, not forced into one SQL type.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import duckdb

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
    "role_assigned",
    "role_removed",
    "role_created",
    "role_updated",
    "role_deleted",
    "permissions_assigned",
    "permissions_removed",
)
PREFERENCE_ACTIONS = ("prefs_setting_changed",)  # plus every ``pref.*`` action

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
APP_SCOPE_ACTIONS = (
    "app_scopes_expanded",
    "app_resources_granted",
    "bot_token_upgraded",
    "bot_token_downgraded",
)
APP_APPROVAL_ACTIONS = ("app_approved", "app_restricted", "app_removed_from_whitelist")

FILE_DOWNLOAD_ACTIONS = ("file_downloaded",)
FILE_BLOCKED_ACTIONS = ("file_downloaded_blocked", "file_download_blocked")
FILE_PUBLIC_LINK_ACTIONS = ("file_public_link_created", "file_public_link_revoked")
FILE_SHARE_ACTIONS = ("file_shared",)

WORKFLOW_ACTIONS = (
    "workflow_created",
    "workflow_deleted",
    "workflow_published",
    "workflow_unpublished",
    "workflow_modified",
    "workflow_responses_csv_download",
    "workflow_v2_published",
    "workflow_trigger_permission_set",
    "workflow_trigger_permission_added",
    "workflow_trigger_permission_removed",
    "workflow_trigger_suspicious_keyword",
    "workflow_ai_answer_suspicious_prompt",
    "featured_workflow_added",
    "featured_workflow_removed",
)


def _in(names: Iterable[str]) -> str:
    quoted = ", ".join("'" + n.replace("'", "''") + "'" for n in names)
    return f"({quoted})"


def coverage_sql(source: str) -> str:
    """coverage_sql: the hours of one source's batches (``source.name`` in the manifest;
    absent means the audit logs), gaps included."""
    batches = (
        "(SELECT * FROM batches WHERE coalesce(source->>'$.name', 'slack_audit_logs') = "
        f"'{source}')"
    )
    return f"""
        WITH span AS (SELECT min(window_start) AS first, max(window_start) AS last
                      FROM {batches}),
        hours AS (
            SELECT unnest(generate_series(first, last, INTERVAL 1 HOUR)) AS hour FROM span
            WHERE first IS NOT NULL
        ),
        per_window AS (
            SELECT window_start, count(*) AS batches,
                   list(kind ORDER BY sequence) AS kinds,
                   sum(event_count - quarantined) AS events,
                   sum(quarantined) AS quarantined
            FROM {batches} GROUP BY window_start
        )
        SELECT h.hour, w.window_start IS NOT NULL AS committed,
               coalesce(w.batches, 0) AS batches, coalesce(w.kinds, []) AS kinds,
               coalesce(w.events, 0) AS events, coalesce(w.quarantined, 0) AS quarantined
        FROM hours AS h LEFT JOIN per_window AS w ON w.window_start = h.hour
        """


@dataclass(frozen=True)
class View:
    name: str
    comment: str
    sql: str


_USER_LABEL = "coalesce(actor_user_name, actor_user_email, actor_user_id)"

VIEWS: tuple[View, ...] = (
    View(
        "login_events",
        "Every login and failed login: who, from which IP address and user agent, when.",
        f"""
        SELECT date_create, event_id, action, action = 'user_login' AS succeeded,
               CASE WHEN entity_type = 'user' THEN entity_id ELSE actor_user_id END AS user_id,
               CASE WHEN entity_type = 'user' THEN coalesce(entity_name, actor_user_name)
                    ELSE actor_user_name END AS user_name,
               actor_user_email AS user_email, ip_address, user_agent, session_id,
               CASE WHEN action = 'user_login_failed' THEN details->>'$.reason' END
                   AS failure_reason,
               location_type, location_id, location_name
        FROM audit_events WHERE action IN {_in(LOGIN_ACTIONS)}
        """,
    ),
    View(
        "logins_by_source",
        "Logins and failed logins per user, IP address and user agent, first and last seen.",
        """
        SELECT user_id, any_value(user_name) AS user_name, any_value(user_email) AS user_email,
               ip_address, user_agent,
               count(*) FILTER (WHERE succeeded) AS logins,
               count(*) FILTER (WHERE NOT succeeded) AS failed_logins,
               min(date_create) AS first_seen, max(date_create) AS last_seen
        FROM login_events GROUP BY user_id, ip_address, user_agent
        """,
    ),
    View(
        "logins_by_user",
        "Per user: logins, failed logins, and how many distinct IP addresses and user agents.",
        """
        SELECT user_id, any_value(user_name) AS user_name, any_value(user_email) AS user_email,
               count(*) FILTER (WHERE succeeded) AS logins,
               count(*) FILTER (WHERE NOT succeeded) AS failed_logins,
               count(DISTINCT ip_address) AS ip_addresses,
               count(DISTINCT user_agent) AS user_agents,
               min(date_create) AS first_seen, max(date_create) AS last_seen
        FROM login_events GROUP BY user_id
        """,
    ),
    View(
        "admin_changes",
        "Administrative changes: every pref.* setting, role changes, SSO and 2FA settings; "
        "category is sso, two_factor, role or preference; values as Slack sent them (JSON).",
        f"""
        SELECT date_create, event_id,
               CASE WHEN action IN {_in(SSO_ACTIONS)} THEN 'sso'
                    WHEN action IN {_in(TWO_FACTOR_ACTIONS)} THEN 'two_factor'
                    WHEN action IN {_in(ROLE_ACTIONS)} THEN 'role'
                    ELSE 'preference' END AS category,
               action, actor_user_id, {_USER_LABEL} AS actor, actor_user_email,
               entity_type, entity_id, entity_name,
               details->>'$.name' AS setting,
               details->'$.previous_value' AS previous_value,
               details->'$.new_value' AS new_value,
               location_type, location_id, location_name, ip_address, user_agent, details
        FROM audit_events
        WHERE starts_with(action, 'pref.')
           OR action IN {_in(SSO_ACTIONS + TWO_FACTOR_ACTIONS + ROLE_ACTIONS + PREFERENCE_ACTIONS)}
        """,
    ),
    View(
        "app_changes",
        "App installs, uninstalls, approvals and scope changes, with the scopes Slack "
        "reported on the app and in details (JSON lists).",
        f"""
        SELECT date_create, event_id,
               CASE WHEN action IN {_in(APP_INSTALL_ACTIONS)} THEN 'install'
                    WHEN action IN {_in(APP_UNINSTALL_ACTIONS)} THEN 'uninstall'
                    WHEN action IN {_in(APP_SCOPE_ACTIONS)} THEN 'scopes'
                    WHEN action IN {_in(APP_APPROVAL_ACTIONS)} THEN 'approval'
                    ELSE 'other' END AS change,
               action, actor_user_id, {_USER_LABEL} AS actor,
               entity_id AS app_id, entity_name AS app_name,
               coalesce(details->'$.scopes', raw_json->'$.entity.app.scopes') AS scopes,
               coalesce(details->'$.bot_scopes', raw_json->'$.entity.app.bot_scopes')
                   AS bot_scopes,
               coalesce(details->'$.new_scopes', details->'$.new_scope') AS new_scopes,
               coalesce(details->'$.previous_scopes', details->'$.previous_scope')
                   AS previous_scopes,
               CAST(raw_json->>'$.entity.app.is_distributed' AS BOOLEAN) AS is_distributed,
               CAST(raw_json->>'$.entity.app.is_directory_approved' AS BOOLEAN)
                   AS is_directory_approved,
               location_type, location_id, location_name, details
        FROM audit_events
        WHERE action IN {
            _in(
                APP_INSTALL_ACTIONS
                + APP_UNINSTALL_ACTIONS
                + APP_SCOPE_ACTIONS
                + APP_APPROVAL_ACTIONS
            )
        }
        """,
    ),
    View(
        "file_events",
        "File downloads (and blocked downloads), public links and shares, per event.",
        f"""
        SELECT date_create, event_id,
               CASE WHEN action IN {_in(FILE_DOWNLOAD_ACTIONS)} THEN 'download'
                    WHEN action IN {_in(FILE_BLOCKED_ACTIONS)} THEN 'download_blocked'
                    WHEN action = 'file_public_link_created' THEN 'public_link_created'
                    WHEN action = 'file_public_link_revoked' THEN 'public_link_revoked'
                    ELSE 'shared' END AS activity,
               action, actor_user_id, {_USER_LABEL} AS actor, actor_user_email,
               entity_id AS file_id, entity_name AS file_name,
               raw_json->>'$.entity.file.filetype' AS filetype,
               ip_address, user_agent, location_type, location_id, location_name, details
        FROM audit_events
        WHERE action IN {
            _in(
                FILE_DOWNLOAD_ACTIONS
                + FILE_BLOCKED_ACTIONS
                + FILE_PUBLIC_LINK_ACTIONS
                + FILE_SHARE_ACTIONS
            )
        }
        """,
    ),
    View(
        "file_activity_by_user",
        "Per user: file downloads, blocked downloads, public links created and revoked.",
        """
        SELECT actor_user_id, any_value(actor) AS actor, any_value(actor_user_email) AS email,
               count(*) FILTER (WHERE activity = 'download') AS downloads,
               count(DISTINCT file_id) FILTER (WHERE activity = 'download') AS files_downloaded,
               count(*) FILTER (WHERE activity = 'download_blocked') AS downloads_blocked,
               count(*) FILTER (WHERE activity = 'public_link_created') AS public_links_created,
               count(*) FILTER (WHERE activity = 'public_link_revoked') AS public_links_revoked,
               count(*) FILTER (WHERE activity = 'shared') AS shares,
               min(date_create) AS first_seen, max(date_create) AS last_seen
        FROM file_events GROUP BY actor_user_id
        """,
    ),
    View(
        "anomalies",
        "Slack's anomaly events with their reasons (a list: asn, ip_address, tor, ...); "
        "action_time is when the flagged action happened (details.action_timestamp, in "
        "microseconds), date_create when Slack detected it.",
        """
        SELECT date_create, event_id, actor_user_id,
               coalesce(actor_user_name, actor_user_email, actor_user_id) AS actor,
               actor_user_email,
               CASE json_type(details->'$.reason')
                    WHEN 'ARRAY' THEN CAST(details->'$.reason' AS VARCHAR[])
                    WHEN 'VARCHAR' THEN [details->>'$.reason']
                    ELSE CAST([] AS VARCHAR[]) END AS reasons,
               to_timestamp(TRY_CAST(details->>'$.action_timestamp' AS BIGINT) / 1000000)
                   AS action_time,
               details->>'$.ip_address' AS anomaly_ip_address,
               details->>'$.location' AS anomaly_location,
               entity_type, entity_id, entity_name, ip_address, user_agent,
               location_type, location_id, location_name, details
        FROM audit_events WHERE action = 'anomaly'
        """,
    ),
    View(
        "anomaly_reasons",
        "One row per anomaly and reason: count by reason with GROUP BY reason.",
        """
        SELECT a.date_create, a.event_id, a.actor_user_id, a.actor, r.reason
        FROM anomalies AS a, unnest(a.reasons) AS r(reason)
        """,
    ),
    View(
        "workflow_changes",
        "Who created, published, changed or deleted which workflow (Workflow Builder "
        "workflow and workflow_v2), with the app, trigger and permission details.",
        f"""
        SELECT date_create, event_id, action, entity_type AS workflow_type,
               actor_user_id, {_USER_LABEL} AS actor, actor_user_email,
               entity_id AS workflow_id, entity_name AS workflow_name,
               coalesce(raw_json->>'$.entity.workflow_v2.app_id', context_app_id) AS app_id,
               raw_json->>'$.entity.workflow_v2.callback_id' AS callback_id,
               raw_json->>'$.entity.workflow_v2.updated_by' AS updated_by,
               raw_json->>'$.entity.workflow_v2.trigger_name' AS trigger_name,
               location_type, location_id, location_name, details
        FROM audit_events
        WHERE entity_type IN ('workflow', 'workflow_v2') OR action IN {_in(WORKFLOW_ACTIONS)}
        """,
    ),
    View(
        "events_per_hour",
        "Event count per UTC hour (hours with no events are absent here; see coverage).",
        """
        SELECT time_bucket(INTERVAL 1 HOUR, date_create) AS hour, count(*) AS events
        FROM audit_events GROUP BY hour
        """,
    ),
    View(
        "top_actions",
        "Actions by number of events, with the first and last time each was seen.",
        """
        SELECT action, count(*) AS events, count(DISTINCT actor_user_id) AS actors,
               min(date_create) AS first_seen, max(date_create) AS last_seen
        FROM audit_events GROUP BY action
        """,
    ),
    View(
        "coverage",
        "One row per UTC hour from the first committed window to the last of the audit logs "
        "source: its batches (hour, late, empty), events and quarantined rows; committed is "
        "false for a gap. (Workflow activity batches: workflow_coverage.)",
        coverage_sql("slack_audit_logs"),
    ),
    View(
        "gaps",
        "UTC hours inside the covered span that have no committed batch (should be none).",
        "SELECT hour FROM coverage WHERE NOT committed",
    ),
    View(
        "verification_findings",
        "Each finding of each verification run, one row per finding.",
        """
        SELECT r.run_id, r.verified_at, r.trigger, f.finding->>'$.code' AS code,
               f.finding->>'$.location' AS location, f.finding->>'$.detail' AS detail,
               f.finding->>'$.expected' AS expected, f.finding->>'$.actual' AS actual
        FROM verification_runs AS r,
             unnest(CAST(coalesce(r.report->'$.findings', '[]') AS JSON[])) AS f(finding)
        """,
    ),
)


def create_views(con: duckdb.DuckDBPyConnection) -> None:
    """create_views defines every view in VIEWS, with its comment."""
    for view in VIEWS:
        con.execute(f"CREATE VIEW {view.name} AS {view.sql}")
        comment = view.comment.replace("'", "''")
        con.execute(f"COMMENT ON VIEW {view.name} IS '{comment}'")
