"""``audit-pipeline sync-activities``: workflow runs from ``admin.apps.activities.list``.

The second audited source, committed to the same ledger as the audit logs. Its token comes
from ``SLACK_ACTIVITIES_TOKEN`` only (scope ``admin.app_activities:read``); without it the
command stops with exit 2 and says so. It never uses ``SLACK_AUDIT_TOKEN``.
"""

from __future__ import annotations

import argparse

from audit_pipeline.cli.sync import add_range_options, run_source_sync
from audit_pipeline.ingest_activities import sync_activity_hours
from audit_pipeline.slack.activities_client import (
    SOURCE_NAME,
    ActivitiesApiSettings,
    ActivitySource,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    sync = subparsers.add_parser(
        "sync-activities",
        help="sync workflow runs of hours [START, END) from admin.apps.activities.list",
        description=(
            "Read every workflow and function activity of the UTC hours [START, END) (plus a "
            "lookback of committed hours, for late records) from admin.apps.activities.list "
            "and commit them to the same ledger as the audit logs (source "
            "slack_app_activities). The token comes from SLACK_ACTIVITIES_TOKEN only."
        ),
    )
    add_range_options(sync)
    group = sync.add_argument_group("API (defaults from SLACK_ACTIVITIES_* variables)")
    group.add_argument("--base-url", help="Web API base URL (Slack's https://slack.com/api/)")
    group.add_argument("--page-size", type=int, help="activities per page, 1..1000")
    group.add_argument("--timeout", type=float, help="seconds per request (default 30)")
    group.add_argument("--max-retries", type=int, help="retry budget per request (default 8)")
    group.add_argument(
        "--max-calls-per-minute",
        type=float,
        help="our ceiling inside the method's own Tier 3 budget (default 40; 0 = none)",
    )
    sync.set_defaults(func=run_sync_activities)


def run_sync_activities(args: argparse.Namespace) -> int:
    return run_source_sync(
        args, ActivitiesApiSettings, ActivitySource, sync_activity_hours, SOURCE_NAME
    )
