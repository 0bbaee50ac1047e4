"""``audit_dataset``: the auditors' DuckDB file, rebuilt after every verified ledger update.

It runs after ``audit_ledger`` and verifies again itself, incrementally from the checkpoint
``audit_ledger`` last recorded as verified (cheap: only batches after it are re-checked),
so the dataset is built from a verification of the ledger *as it is now*, not as it was
when the upstream step ran. The build reads only files the verified manifests list,
hash-checks their bytes, and swaps the new file in by rename, so notebooks holding the
old file open are never blocked. It is incremental: the previous file's rows are kept when
it was built from a prefix of the verified chain, so an hourly run reads only the new
batches (``full_rebuild`` reads every data file again). A ledger with findings fails this
asset and leaves the last good dataset in place; every verification lands in the history
the dataset carries. The published file's SHA-256 is recorded in the materialization
(``dataset_sha256``): a dataset edited and resealed in the data directory disagrees with
it and is rebuilt in full.
"""

# No ``from __future__ import annotations``: Dagster reads the config parameter's
# annotation without resolving strings, so it must be the class itself.
import time

import dagster as dg
from pydantic import Field

from audit_pipeline.dataset.schema import (
    EVENT_COLUMNS,
    PROVENANCE_DOCS,
    audit_events_column_types,
)
from audit_pipeline.dataset.seal import read_seal
from audit_pipeline.defs.assets import GROUP, OWNERS
from audit_pipeline.defs.resources import LedgerResource
from audit_pipeline.defs.verification import recorded_verification
from audit_pipeline.defs.witnesses import WitnessSetResource
from audit_pipeline.errors import AuditPipelineError, ConfigurationError
from audit_pipeline.lake import COLUMN_DOCS


class DatasetConfig(dg.Config):
    """Run configuration of ``audit_dataset``."""

    full_verification: bool = Field(
        default=False,
        description="Verify the whole ledger instead of from the last recorded checkpoint.",
    )
    full_rebuild: bool = Field(
        default=False,
        description="Read every data file again instead of keeping the previous dataset's "
        "rows (a full verification together with this re-hashes every committed file).",
    )


_TYPES = audit_events_column_types()
_COLUMNS = dg.TableSchema(
    columns=[
        dg.TableColumn(name, type=_TYPES[name], description=COLUMN_DOCS[name])
        for name in EVENT_COLUMNS
    ]
    + [
        dg.TableColumn(name, type=_TYPES[name], description=doc)
        for name, doc in PROVENANCE_DOCS.items()
    ]
)


@dg.asset(
    name="audit_dataset",
    deps=["audit_ledger"],
    kinds={"duckdb"},
    group_name=GROUP,
    owners=OWNERS,
    tags={"layer": "dataset"},
    metadata={"dagster/column_schema": _COLUMNS},
    description=(
        "DuckDB dataset for auditors (audit_events, batches, checkpoints, "
        "verification_runs, quarantine and audit views), built only from the verified "
        "ledger and replaced atomically. Query it with 'audit-pipeline query'."
    ),
)
def audit_dataset(
    context: dg.AssetExecutionContext,
    config: DatasetConfig,
    ledger: LedgerResource,
    witnesses: WitnessSetResource,
) -> dg.MaterializeResult:
    from audit_pipeline.dataset.build import build_dataset

    trusted = (
        None if config.full_verification else recorded_verification(context.instance).checkpoint
    )
    policy = witnesses.policy()
    witnessed = {"witness_keys": policy.keys, "witness_quorum": policy.quorum}
    try:
        try:
            report = ledger.verify(
                trusted_checkpoint=trusted, incremental=trusted is not None, **witnessed
            )
        except ConfigurationError as exc:
            if trusted is None:
                raise
            context.log.warning(f"recorded checkpoint unusable ({exc}); verifying fully")
            trusted = None
            report = ledger.verify(trusted_checkpoint=None, incremental=False, **witnessed)
    except AuditPipelineError as exc:
        raise dg.Failure(
            description=f"the ledger could not be verified for the dataset: {exc}",
            metadata={"error": type(exc).__name__},
        ) from None
    if not report.trusted_keys:
        # Run alone (outside hourly_sync, where ledger_keys_anchored blocks it), the dataset
        # still refuses to publish what only the data directory's own keyring vouches for.
        raise dg.Failure(
            description="the keys are unanchored: signatures verified only with the data "
            "directory's own keyring; set AUDIT_TRUSTED_KEYS to a keys file kept elsewhere",
            metadata={"keyring": report.keyring_source},
        )
    try:
        data_dir, database, copied = ledger.dataset_source()
    except AuditPipelineError as exc:
        raise dg.Failure(
            description=f"the dataset was not built (the previous one stays): {exc}",
            metadata={"error": type(exc).__name__},
        ) from None
    full = config.full_rebuild or _seal_rewritten(context, database)
    try:
        result = build_dataset(
            data_dir,
            database=database,
            # a copy of an object store is verified again, extending what was just verified
            report=None if copied else report,
            keyring=ledger.trusted_keyring(),
            trusted_checkpoint=report.checkpoint if copied else None,
            **(witnessed if copied else {}),
            trigger=f"dagster run {context.run.run_id}",
            progress=context.log.info,
            full=full,
            # the digest recorded outside the data directory vouches for the previous file
            anchored_digest=recorded_digest(context),
        )
    except AuditPipelineError as exc:
        raise dg.Failure(
            description=f"the dataset was not built (the previous one stays): {exc}",
            metadata={"error": type(exc).__name__},
        ) from None
    sealed = read_seal(result.path)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(result.path)),
            "dagster/row_count": result.events,
            "dagster/column_schema": _COLUMNS,
            "events": result.events,
            "quarantined": result.quarantined,
            "batches": result.batches,
            "data_files": result.data_files,
            "tree_size": result.tree_size,
            "root_hash": result.root_hash or "",
            "verification": "full"
            if trusted is None
            else f"incremental from {report.incremental_from}",
            "verification_run_id": result.verification_run_id,
            "verified_at": dg.MetadataValue.timestamp(time.time()),
            "dataset_sha256": sealed.dataset_sha256,
            "anchored": report.anchored,
            "build": result.mode,
            "build_reason": result.reason,
            "data_files_read": result.files_read,
            "build_seconds": round(result.seconds, 3),
        }
    )


def _seal_rewritten(context: dg.AssetExecutionContext, path) -> bool:
    """_seal_rewritten compares the dataset's seal with the digest Dagster's event log
    recorded when this asset last published it: the event log is outside the data
    directory, so a file edited *and* resealed there is caught and rebuilt in full."""
    recorded = recorded_digest(context)
    if recorded is None or not path.exists():
        return False
    try:
        current = read_seal(path).dataset_sha256
    except ValueError:
        return False  # no usable seal: the build itself will not reuse the file
    if current != recorded:
        context.log.warning(
            f"the dataset's seal says {current}, but this asset last published {recorded}:"
            " the dataset and its seal were rewritten; rebuilding in full"
        )
        return True
    return False


def recorded_digest(context: dg.AssetExecutionContext) -> str | None:
    """recorded_digest: the dataset SHA-256 this asset recorded when it last published."""
    event = context.instance.get_latest_materialization_event(context.asset_key)
    materialization = event.asset_materialization if event else None
    recorded = materialization.metadata.get("dataset_sha256") if materialization else None
    return None if recorded is None else str(recorded.value)
