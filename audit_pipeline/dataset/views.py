"""The views that answer the questions auditors ask first, as SQL over ``audit_events``.

Which actions each view holds comes from Slack's ``GET /actions`` catalogue by category,
plus name patterns and entity types for actions Slack adds later (``classify.py``); the
generated lists are explicit on purpose: an auditor reading a view's definition
(``SELECT sql FROM duckdb_views()``) sees exactly which actions it covers. Every view has
an ORDER BY that matches its name (time-ordered views by time then id, per-hour views by
hour, ``top_actions`` by count descending), so ``LIMIT`` returns what it says. Values inside
``details`` keep Slack's shapes (string, list, object or bool), so they are exposed as
JSON, not forced into one SQL type.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from audit_pipeline.dataset.classify import (
    ADMIN,
    ANOMALIES,
    APPS,
    DATA_ACCESS,
    FILES,
    LOGINS,
    WORKFLOWS,
    catch_all_where,
)

_ORDER_BY_TIME = "ORDER BY date_create, event_id"


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
        ORDER BY h.hour
        """


@dataclass(frozen=True)
class View:
    name: str
    comment: str
    sql: str


_USER_LABEL = "coalesce(actor_user_name, actor_user_email, actor_user_id)"
# Slack writes details.action_timestamp in microseconds, other producers in seconds or
# milliseconds: read by magnitude (below 1e11 s, 1e14 ms, else us; 1e11 s is year 5138).
_TS = "TRY_CAST(details->>'$.action_timestamp' AS DOUBLE)"
_ACTION_TIME = (
    f"CASE WHEN abs({_TS}) < 1e11 THEN to_timestamp({_TS}) "
    f"WHEN abs({_TS}) < 1e14 THEN to_timestamp({_TS} / 1e3) "
    f"ELSE to_timestamp({_TS} / 1e6) END"
)

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
        FROM audit_events WHERE {LOGINS.where()}
        {_ORDER_BY_TIME}
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
        ORDER BY user_id, ip_address, user_agent
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
        ORDER BY user_id
        """,
    ),
    View(
        "admin_changes",
        "Administrative and security changes: settings (every pref.*), roles and ownership "
        "transfers, SSO, 2FA and authentication policies, sessions, legal holds, information "
        "barriers, DLP, EKM, device management, org/workspace lifecycle, channel visibility "
        "and user accounts (category says which); values as Slack sent them (JSON).",
        f"""
        SELECT date_create, event_id, {ADMIN.label()} AS category,
               action, actor_user_id, {_USER_LABEL} AS actor, actor_user_email,
               entity_type, entity_id, entity_name,
               details->>'$.name' AS setting,
               details->'$.previous_value' AS previous_value,
               details->'$.new_value' AS new_value,
               location_type, location_id, location_name, ip_address, user_agent, details
        FROM audit_events
        WHERE {ADMIN.where()}
        {_ORDER_BY_TIME}
        """,
    ),
    View(
        "app_changes",
        "App installs, uninstalls, approvals and scope changes, with the scopes Slack "
        "reported on the app and in details (JSON lists).",
        f"""
        SELECT date_create, event_id, {APPS.label()} AS change,
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
        WHERE {APPS.where()}
        {_ORDER_BY_TIME}
        """,
    ),
    View(
        "file_events",
        "Files and canvases, per event: downloads (and blocked ones), public links, shares, "
        "uploads, malicious content detected, canvas activity (activity says which).",
        f"""
        SELECT date_create, event_id, {FILES.label()} AS activity,
               action, actor_user_id, {_USER_LABEL} AS actor, actor_user_email,
               entity_id AS file_id, entity_name AS file_name,
               raw_json->>'$.entity.file.filetype' AS filetype,
               ip_address, user_agent, location_type, location_id, location_name, details
        FROM audit_events
        WHERE {FILES.where()}
        {_ORDER_BY_TIME}
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
        ORDER BY actor_user_id
        """,
    ),
    View(
        "anomalies",
        "Slack's anomaly events with their reasons (a list: asn, ip_address, tor, ...); "
        "action_time is when the flagged action happened (details.action_timestamp, read "
        "as seconds, milliseconds or microseconds by its magnitude), date_create when Slack "
        "detected it.",
        f"""
        SELECT date_create, event_id, actor_user_id,
               coalesce(actor_user_name, actor_user_email, actor_user_id) AS actor,
               actor_user_email,
               CASE json_type(details->'$.reason')
                    WHEN 'ARRAY' THEN CAST(details->'$.reason' AS VARCHAR[])
                    WHEN 'VARCHAR' THEN [details->>'$.reason']
                    ELSE CAST([] AS VARCHAR[]) END AS reasons,
               {_ACTION_TIME} AS action_time,
               details->>'$.ip_address' AS anomaly_ip_address,
               details->>'$.location' AS anomaly_location,
               entity_type, entity_id, entity_name, ip_address, user_agent,
               location_type, location_id, location_name, details
        FROM audit_events WHERE {ANOMALIES.where()}
        {_ORDER_BY_TIME}
        """,
    ),
    View(
        "anomaly_reasons",
        "One row per anomaly and reason: count by reason with GROUP BY reason.",
        """
        SELECT a.date_create, a.event_id, a.actor_user_id, a.actor, r.reason
        FROM anomalies AS a, unnest(a.reasons) AS r(reason)
        ORDER BY a.date_create, a.event_id, r.reason
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
        WHERE {WORKFLOWS.where()}
        {_ORDER_BY_TIME}
        """,
    ),
    View(
        "data_access",
        "Data exports (manual, scheduled, channel, audit log and analytics exports and "
        "their downloads) and searches (audit log searches, search tools): kind says which.",
        f"""
        SELECT date_create, event_id, {DATA_ACCESS.label()} AS kind, action,
               actor_user_id, {_USER_LABEL} AS actor, actor_user_email,
               entity_type, entity_id, entity_name, ip_address, user_agent,
               location_type, location_id, location_name, details
        FROM audit_events
        WHERE {DATA_ACCESS.where()}
        {_ORDER_BY_TIME}
        """,
    ),
    View(
        "other_events",
        "The catch-all: events no other auditor view holds (messages, huddles, channel "
        "membership, usergroups, lists, templates, CRM and sales tools, and future actions "
        "that match no view's patterns).",
        f"""
        SELECT date_create, event_id, action, actor_user_id, {_USER_LABEL} AS actor,
               entity_type, entity_id, entity_name, location_type, location_id,
               location_name, details
        FROM audit_events
        WHERE {catch_all_where()}
        {_ORDER_BY_TIME}
        """,
    ),
    View(
        "revisions",
        "Committed events that the API later returned with different content: one row per "
        "revision, linked to the committed version by event_id and its leaf hash (original_* "
        "columns; null only if that version is not in this dataset).",
        """
        SELECT r.date_create, r.raw_json->>'$.revision.of_id' AS event_id,
               r.event_id AS revision_id, r.batch_sequence AS revision_batch,
               r.raw_json->>'$.revision.of_leaf_hash' AS original_leaf_hash,
               o.batch_sequence AS original_batch, o.raw_json AS original,
               r.raw_json->'$.revision.entry' AS revised
        FROM quarantine AS r
        LEFT JOIN audit_events AS o
               ON o.event_id = r.raw_json->>'$.revision.of_id'
              AND lower(hex(o.leaf_hash)) = r.raw_json->>'$.revision.of_leaf_hash'
        WHERE starts_with(r.event_id, 'revision-')
        ORDER BY r.date_create, event_id, revision_id
        """,
    ),
    View(
        "ids_in_several_hours",
        "Event ids committed in more than one UTC hour (each hour's copy is a separate event "
        "in the ledger; 'prove' asks for --hour for them).",
        """
        SELECT event_id, count(*) AS copies,
               list(DISTINCT time_bucket(INTERVAL 1 HOUR, date_create)
                    ORDER BY time_bucket(INTERVAL 1 HOUR, date_create)) AS hours,
               list(batch_sequence ORDER BY batch_sequence) AS batches
        FROM audit_events
        GROUP BY event_id
        HAVING count(DISTINCT time_bucket(INTERVAL 1 HOUR, date_create)) > 1
        ORDER BY event_id
        """,
    ),
    View(
        "events_per_hour",
        "Event count per UTC hour (hours with no events are absent here; see coverage).",
        """
        SELECT time_bucket(INTERVAL 1 HOUR, date_create) AS hour, count(*) AS events
        FROM audit_events GROUP BY hour
        ORDER BY hour
        """,
    ),
    View(
        "top_actions",
        "Actions by number of events, with the first and last time each was seen.",
        """
        SELECT action, count(*) AS events, count(DISTINCT actor_user_id) AS actors,
               min(date_create) AS first_seen, max(date_create) AS last_seen
        FROM audit_events GROUP BY action
        ORDER BY events DESC, action
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
        "SELECT hour FROM coverage WHERE NOT committed ORDER BY hour",
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
        ORDER BY r.verified_at, r.run_id, code, location
        """,
    ),
)


def create_views(con: duckdb.DuckDBPyConnection) -> None:
    """create_views defines every view in VIEWS, with its comment."""
    for view in VIEWS:
        con.execute(f"CREATE VIEW {view.name} AS {view.sql}")
        comment = view.comment.replace("'", "''")
        con.execute(f"COMMENT ON VIEW {view.name} IS '{comment}'")
