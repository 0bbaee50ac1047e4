"""hourly_sync_schedule: a few minutes past every hour, sync the hour that just closed.

The job is the events asset and everything downstream of it (the ledger verification,
its checks, the auditor dataset), so each hourly run ends with a verified ledger; its
partitions are the events asset's ``hourly_partition``.

Dagster does not catch up ticks missed while the daemon was down (dagster-io/dagster
issue 10335: a schedule built from a partitioned job has no partition set, so only the
newest missed tick runs). ``missing_hours_sensor`` in ``sensors.py`` closes that gap.
"""

from __future__ import annotations

import os

import dagster as dg

from audit_pipeline.defs import env_flag, env_int

SYNC_MINUTE = env_int("AUDIT_SYNC_MINUTE", 5, minimum=0, maximum=59)
AUTOMATION_ON = env_flag("AUDIT_AUTOMATION", True)
AUTOMATION_STATUS = (
    dg.DefaultScheduleStatus.RUNNING if AUTOMATION_ON else dg.DefaultScheduleStatus.STOPPED
)

# The workflow activity source (defs/workflow_activity.py) joins the hourly job, and the
# coverage it must keep, only when its own token is configured: the variable's presence is
# read here, never its value (a missing token disables the source; it never borrows
# SLACK_AUDIT_TOKEN).
ACTIVITIES_TOKEN_ENV = "SLACK_ACTIVITIES_TOKEN"
ACTIVITIES_ENABLED = bool(os.environ.get(ACTIVITIES_TOKEN_ENV, "").strip())
SYNC_ASSETS = ("slack_audit_events",) + (("slack_workflow_activity",) if ACTIVITIES_ENABLED else ())
COVERED_SOURCES = ("slack_audit_logs",) + (("slack_app_activities",) if ACTIVITIES_ENABLED else ())
SYNC_SELECTION = dg.AssetSelection.assets(*SYNC_ASSETS).downstream()

hourly_sync_job = dg.define_asset_job(
    "hourly_sync",
    selection=SYNC_SELECTION,
    description="Sync one hour of Slack audit events (and of workflow activities when "
    "SLACK_ACTIVITIES_TOKEN is set), then verify the ledger and publish.",
    tags={"audit_pipeline/job": "hourly_sync"},
)

hourly_sync_schedule = dg.build_schedule_from_partitioned_job(
    hourly_sync_job,
    name="hourly_sync_schedule",
    minute_of_hour=SYNC_MINUTE,
    description=(
        f"At {SYNC_MINUTE} minutes past every hour (UTC), sync the hour that just closed "
        "(set by AUDIT_SYNC_MINUTE)."
    ),
    default_status=AUTOMATION_STATUS,
)
