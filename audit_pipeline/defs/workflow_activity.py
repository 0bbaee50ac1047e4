"""``slack_workflow_activity``: the second audited source, hourly, beside ``slack_audit_events``.

Each partition syncs one hour of ``admin.apps.activities.list`` (workflow runs, steps,
approvals) into the same ledger, with the lookback for late records; ``audit_ledger``
depends on it, so its verification and checks cover both sources. The source has its own
token (``SLACK_ACTIVITIES_TOKEN``, bound through ``EnvVar`` only when it is set): without
it the asset stays in the lineage, out of the hourly job, and a manual materialization
fails saying the source is disabled.
"""

# No ``from __future__ import annotations``: Dagster reads the ``config`` annotation.

from collections import Counter
from typing import Any

import dagster as dg
from pydantic import Field

from audit_pipeline.defs.assets import (
    BACKFILL_HOURS_PER_RUN,
    FRESHNESS_HOURS,
    SyncConfig,
    _beta_apis,
    hour_metadata,
    raw_hourly_asset,
)
from audit_pipeline.defs.partitions import hourly_partition, hours_of_window, partition_key_for_hour
from audit_pipeline.defs.range_sync import HourSync
from audit_pipeline.defs.resources import LedgerResource
from audit_pipeline.defs.schedules import ACTIVITIES_ENABLED, ACTIVITIES_TOKEN_ENV
from audit_pipeline.defs.witnesses import WitnessSetResource
from audit_pipeline.ingest import HOUR
from audit_pipeline.ingest_activities import sync_activity_hours
from audit_pipeline.lake.activities import ACTIVITY_COLUMN_DOCS, ACTIVITY_SCHEMA
from audit_pipeline.ledger.manifest import source_name
from audit_pipeline.slack.activities_client import (
    SOURCE_NAME,
    ActivitiesApiSettings,
    ActivitiesDisabled,
    ActivitySource,
)

ACTIVITIES_POOL = "slack_activities_api"  # its own Tier 3 budget, not the audit logs'

ACTIVITY_TABLE_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn(
            name=f.name,
            type=str(f.type),
            description=ACTIVITY_COLUMN_DOCS.get(f.name),
            constraints=dg.TableColumnConstraints(nullable=f.nullable),
        )
        for f in ACTIVITY_SCHEMA
    ]
)
DESCRIPTION = (
    "Every workflow and function activity of one UTC hour (runs, steps, approvals, forms, "
    "messages, custom functions) read from admin.apps.activities.list and committed exactly "
    "once, byte for byte, to the same signed ledger as the audit events (source "
    "slack_app_activities, Parquet under lake/source=slack_app_activities/). Identity: "
    "SHA-256 of the activity's exact bytes and its occurrence in the hour. Needs "
    f"{ACTIVITIES_TOKEN_ENV} (scope admin.app_activities:read)"
    + ("." if ACTIVITIES_ENABLED else f"; disabled: {ACTIVITIES_TOKEN_ENV} is not set.")
)


class SlackActivitiesResource(dg.ConfigurableResource):
    """SlackActivitiesResource reaches admin.apps.activities.list (``SLACK_ACTIVITIES_*``)."""

    token: str | None = Field(default=None, description="User token, admin.app_activities:read.")
    base_url: str | None = Field(default=None, description="Web API root (default Slack's).")
    page_size: int | None = Field(default=None, description="Activities per page, 1..1000.")
    max_calls_per_minute: float | None = Field(default=None, description="Own request ceiling.")

    def source(self) -> ActivitySource:
        settings = ActivitiesApiSettings.from_env(
            token=self.token,
            base_url=self.base_url,
            page_size=self.page_size,
            max_calls_per_minute=self.max_calls_per_minute,
        )
        return ActivitySource(settings)


def build_slack_workflow_activity(
    *,
    partitions_def: dg.TimeWindowPartitionsDefinition = hourly_partition,
    backfill_hours_per_run: int = BACKFILL_HOURS_PER_RUN,
) -> dg.AssetsDefinition:
    """build_slack_workflow_activity makes the hourly workflow activity asset."""

    with _beta_apis():

        @dg.asset(
            **raw_hourly_asset(
                name="slack_workflow_activity",
                partitions_def=partitions_def,
                backfill_hours_per_run=backfill_hours_per_run,
                pool=ACTIVITIES_POOL,
                api="slack_app_activities_api",
                column_schema=ACTIVITY_TABLE_SCHEMA,
                freshness_hours=FRESHNESS_HOURS,
                description=DESCRIPTION,
            )
        )
        def slack_workflow_activity(
            context: dg.AssetExecutionContext,
            config: SyncConfig,
            slack_activities: SlackActivitiesResource,
            ledger: LedgerResource,
            witnesses: WitnessSetResource,
        ) -> dg.MaterializeResult:
            start, end = hours_of_window(context.partition_time_window)
            try:
                source = slack_activities.source()
            except ActivitiesDisabled as exc:
                raise dg.Failure(description=str(exc)) from None
            writer = ledger.writer()
            # The witnesses cosign every checkpoint, whichever source's commit made it.
            witnessing = witnesses.after_commit(writer, progress=context.log.info)
            # Hour by hour (the lookback with the first): each partition gets its own
            # metadata, and an hour that fails costs only that hour.
            committed: list[HourSync] = []
            failed: list[str] = []
            for hour in range(start, end, HOUR):
                report = sync_activity_hours(
                    start=hour,
                    end=hour + HOUR,
                    source=source,
                    ledger=writer,
                    run_id=context.run.run_id,
                    lookback_hours=config.lookback_hours if hour == start else 0,
                    progress=context.log.info,
                    on_commit=witnessing if witnessing.policy else None,
                )
                if report.failed:
                    failed += [f"{f.hour}: {f.message}" for f in report.failed]
                    continue
                committed.append(HourSync(hour, report))
            rows = Counter[int]()
            for m in writer.manifests():
                hour = m.manifest.window_start
                if start <= hour < end and source_name(m.manifest) == SOURCE_NAME:
                    rows[hour] += m.manifest.event_count
            per_hour = {}
            for synced in committed:
                metadata: dict[str, Any] = hour_metadata(
                    HourSync(synced.hour, synced.report, rows[synced.hour])
                )
                metadata["dagster/column_schema"] = ACTIVITY_TABLE_SCHEMA
                metadata.pop("actions", None)
                per_hour[partition_key_for_hour(synced.hour)] = metadata
            for alarm in witnessing.alarms:
                # An integrity alarm: ledger_witnesses_agree fails on it (refusals are kept).
                context.log.error(f"witness {alarm.label} refused: {alarm.detail}")
            if not failed:
                for key, metadata in per_hour.items():
                    context.add_asset_metadata(metadata, partition_key=key)
                return dg.MaterializeResult()
            for key, metadata in per_hour.items():  # only the committed hours
                context.log_event(
                    dg.AssetMaterialization(
                        asset_key=context.asset_key, partition=key, metadata=metadata
                    )
                )
            raise dg.Failure(
                description=f"{len(failed)} of {(end - start) // HOUR} hours of workflow "
                "activities could not be committed (a page the API sent cannot be parsed; raw "
                "pages kept in the data directory; the others were committed): "
                + "; ".join(failed[:5]),
                metadata={"hours_failed": dg.MetadataValue.json(failed)},
            )

    return slack_workflow_activity


with _beta_apis():
    (slack_workflow_activity,) = dg.with_source_code_references([build_slack_workflow_activity()])


@dg.definitions
def activities_resources() -> dg.Definitions:
    """The asset, and its resource (a module with a ``Definitions`` contributes only
    those): the activities token is bound only when its variable is set, never the audit
    one."""
    token = dg.EnvVar(ACTIVITIES_TOKEN_ENV) if ACTIVITIES_ENABLED else None
    return dg.Definitions(
        assets=[slack_workflow_activity],
        resources={"slack_activities": SlackActivitiesResource(token=token)},
    )
