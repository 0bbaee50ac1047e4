"""Anchors: tree sizes of the ledger vouched for outside the data directory.

The checkpoint ``audit_ledger`` recorded in Dagster's event log is what the next
verification proves consistency against, but an operator can wipe that record (``dagster
asset wipe``) or report an older one. So it is never the only anchor: every source that
has seen the log at some size is compared with it, and the comparison is part of
``ledger_consistent_with_recorded_checkpoint``:

- the checkpoints ``slack_audit_events`` recorded after each commit (same event log,
  other rows: a rollback of the ledger record alone shows);
- :func:`signer_state_anchor`: the signer's own record beside the private key
  (``audit_pipeline/ledger/signer_state.py``);
- the tree sizes tagged on the runs that verified (run records survive an asset wipe);
- :func:`witness_anchors`: the newest checkpoint the configured witnesses cosigned (with
  their quorum, cosignatures verified with their keys by the verification): a file an
  insider can delete but not forge; the witnesses themselves keep it on their machines.

The recorded checkpoint missing for a non-empty ledger, smaller than any anchor, or
unreadable, and recorded state that cannot be true (a last full verification in the
future) are each a problem that fails the check; see :func:`review_anchors`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from audit_pipeline.ingest import format_hour
from audit_pipeline.ledger import Checkpoint, LedgerError, parse_checkpoint
from audit_pipeline.ledger.signer_state import load_signer_state
from audit_pipeline.ledger.witnessed import WitnessVerdict

EVENTS_ASSET = dg.AssetKey("slack_audit_events")
RECORDED_SOURCE = "dagster: audit_ledger's recorded checkpoint"
EVENTS_SOURCE = "dagster: checkpoint recorded by slack_audit_events after a commit"
# How many of the newest slack_audit_events materializations are read for their checkpoint.
EVENTS_RECORDS_READ = 200
# Clock skew tolerated before a recorded time counts as "in the future".
CLOCK_SKEW_SECONDS = 300
# Tags on each run whose audit_ledger verified and recorded a checkpoint. Run records are
# not touched by an asset wipe, so they show that this instance has verified before.
VERIFIED_TAG = "audit_pipeline/ledger_verified"
VERIFIED_SIZE_TAG = "audit_pipeline/ledger_verified_tree_size"
RUNS_SOURCE = "dagster: run tags of the runs that verified the ledger"
RUN_RECORDS_READ = 50
SIGNER_SOURCE = "signer state: the newest checkpoint the signing key signed"


def impossible_time(recorded: float | None, now: float) -> bool:
    """impossible_time: a recorded time that cannot be true (in the future, or not a finite
    number, which compares false with everything and so would pass for recent): the record
    was rewritten."""
    return recorded is not None and not (
        math.isfinite(recorded) and recorded <= now + CLOCK_SKEW_SECONDS
    )


@dataclass(frozen=True)
class Anchor:
    """Anchor is one tree size of this ledger seen by a source the data directory is not."""

    source: str
    tree_size: int

    def to_json(self) -> dict[str, object]:
        return {"source": self.source, "tree_size": self.tree_size}


def checkpoint_body(signed: bytes) -> Checkpoint | None:
    """checkpoint_body parses the text of a signed checkpoint (its signature unchecked)."""
    text, sep, _ = signed.decode("utf-8", "replace").partition("\n\n")
    try:
        return parse_checkpoint(text + "\n") if sep else None
    except LedgerError:
        return None


def checkpoint_tree_size(signed: bytes) -> int | None:
    body = checkpoint_body(signed)
    return None if body is None else body.tree_size


def events_anchors(
    instance: dg.DagsterInstance, *, before_storage_id: int | None = None
) -> list[Anchor]:
    """events_anchors is the largest checkpoint the newest syncs recorded (0 or 1 anchor);
    ``before_storage_id``: only syncs recorded before that event (before a ledger record)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=EVENTS_ASSET, before_storage_id=before_storage_id),
        limit=EVENTS_RECORDS_READ,
    ).records
    sizes = []
    for record in records:
        materialization = record.asset_materialization
        value = materialization.metadata.get("checkpoint") if materialization else None
        if isinstance(value, dg.TextMetadataValue):
            size = checkpoint_tree_size(value.value.encode())
            if size is not None:
                sizes.append(size)
    return [Anchor(EVENTS_SOURCE, max(sizes))] if sizes else []


def verified_runs_anchors(instance: dg.DagsterInstance) -> list[Anchor]:
    """verified_runs_anchors is the largest size the newest verifying runs were tagged with."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(tags={VERIFIED_TAG: "true"}), limit=RUN_RECORDS_READ
    )
    sizes = []
    for record in records:
        raw = record.dagster_run.tags.get(VERIFIED_SIZE_TAG, "")
        if raw.isdigit():
            sizes.append(int(raw))
    return [Anchor(RUNS_SOURCE, max(sizes))] if sizes else []


def verified_run_tags(tree_size: int) -> dict[str, str]:
    return {VERIFIED_TAG: "true", VERIFIED_SIZE_TAG: str(tree_size)}


def committed_by_this_instance(instance: dg.DagsterInstance, run_ids: set[str]) -> bool:
    """committed_by_this_instance: every batch's run is a run this instance knows."""
    if not run_ids:
        return False
    known = instance.get_run_records(filters=dg.RunsFilter(run_ids=sorted(run_ids)))
    return {r.dagster_run.run_id for r in known} == run_ids


def signer_state_anchor(state_path: Path | None) -> Anchor | None:
    """signer_state_anchor is the size in the signer's state beside the private key
    (``ledger/signer_state.py``: ``$AUDIT_SIGNER_STATE``, else the key's path + ``.state``).

    None when there is no state (no key here, or nothing signed yet); an unreadable state
    is a configuration error the run reports, never an anchor quietly dropped.
    """
    if state_path is None:
        return None
    state = load_signer_state(state_path)
    if state is None or state.size == 0:
        return None
    return Anchor(SIGNER_SOURCE, state.size)


WITNESS_SOURCE = "witnesses: newest checkpoint cosigned by the quorum"


def witness_anchors(verdict: WitnessVerdict | None) -> list[Anchor]:
    """witness_anchors: the size of the newest checkpoint the witnesses' quorum cosigned,
    as the verification found it with the configured witness keys (none without them)."""
    if verdict is None or not verdict.met or verdict.latest_size <= 0:
        return []
    return [Anchor(WITNESS_SOURCE, verdict.latest_size)]


def external_anchors(
    instance: dg.DagsterInstance,
    *,
    signer_state: Path | None = None,
    witnesses: WitnessVerdict | None = None,
) -> list[Anchor]:
    """external_anchors collects every anchor besides audit_ledger's own record, as of now."""
    signer = signer_state_anchor(signer_state)
    return [
        *events_anchors(instance),
        *verified_runs_anchors(instance),
        *([signer] if signer else []),
        *witness_anchors(witnesses),
    ]


@dataclass(frozen=True)
class AnchorReview:
    """AnchorReview is what the anchors say about the recorded state and the ledger."""

    recorded_size: int | None
    anchors: tuple[Anchor, ...]
    record_problems: tuple[str, ...]  # the record is absent, shrunk or impossible
    ledger_problems: tuple[str, ...]  # the ledger is smaller than an anchor has seen
    adopted: tuple[str, ...] = ()  # record problems a person accepted (adopt_unrecorded_ledger)

    @property
    def problems(self) -> tuple[str, ...]:
        return self.record_problems + self.ledger_problems

    @property
    def newest(self) -> Anchor | None:
        return max(self.anchors, key=lambda a: a.tree_size, default=None)


def review_anchors(
    *,
    recorded_checkpoint: bytes | None,
    last_full_verification: float | None,
    anchors_before_record: Sequence[Anchor],
    anchors: Sequence[Anchor],
    ledger_size: int,
    first_verification_here: bool,
    now: float,
    adopt: bool = False,
) -> AnchorReview:
    """review_anchors lists every reason the recorded state cannot be trusted as it is.

    The record is compared with ``anchors_before_record`` (what was seen before it was
    written: it must cover all of it), the ledger with ``anchors`` (everything seen up to
    now). A missing record is fine only for the first verification of a ledger this
    instance's own runs committed (a new deployment); a ledger with batches and no record
    is otherwise one whose record was wiped, or one this instance never committed to.
    ``adopt`` (a person's decision in the run config) accepts the record's
    problems, never the ledger's.
    """
    record: list[str] = []
    recorded_size = (
        None if recorded_checkpoint is None else checkpoint_tree_size(recorded_checkpoint)
    )
    if recorded_checkpoint is None:
        if ledger_size > 0 and not first_verification_here:
            record.append(
                f"Dagster holds no recorded checkpoint for a ledger of {ledger_size} batches: "
                "the audit_ledger record was wiped (or this instance never verified this "
                "ledger); verify it another way, then launch audit_ledger with "
                "adopt_unrecorded_ledger: true"
            )
    elif recorded_size is None:
        record.append("the recorded checkpoint cannot be read: the record was rewritten")
    before = max(anchors_before_record, key=lambda a: a.tree_size, default=None)
    if before is not None and recorded_size is not None and recorded_size < before.tree_size:
        record.append(
            f"the recorded checkpoint has tree size {recorded_size}, smaller than the "
            f"{before.tree_size} seen earlier by {before.source}: the record was rolled back "
            "or rewritten"
        )
    if impossible_time(last_full_verification, now):
        when = (
            format_hour(int(last_full_verification) // 3600 * 3600)
            if math.isfinite(last_full_verification)
            else repr(last_full_verification)
        )
        record.append(
            f"the recorded last full verification ({when}) is in the future or not a time: "
            "the record was rewritten (a full verification was run instead)"
        )
    ledger: list[str] = []
    newest = max(anchors, key=lambda a: a.tree_size, default=None)
    if newest is not None and ledger_size < newest.tree_size:
        ledger.append(
            f"the ledger has {ledger_size} batches but {newest.source} saw {newest.tree_size}: "
            "newest batches removed or the log rolled back"
        )
    if adopt:
        return AnchorReview(recorded_size, tuple(anchors), (), tuple(ledger), tuple(record))
    return AnchorReview(recorded_size, tuple(anchors), tuple(record), tuple(ledger))


def anchor_metadata(review: AnchorReview) -> dict[str, object]:
    """anchor_metadata is what the consistency check shows about the anchors."""
    metadata: dict[str, object] = {
        "recorded_checkpoint_size": (
            "none recorded" if review.recorded_size is None else review.recorded_size
        ),
        "anchors": dg.MetadataValue.json([a.to_json() for a in review.anchors]),
        "anchors_unavailable": dg.MetadataValue.json(
            [s for s, present in _hooks_present(review.anchors) if not present]
        ),
    }
    if review.problems:
        metadata["anchor_problems"] = dg.MetadataValue.json(list(review.problems))
    if review.adopted:
        metadata["adopted_despite"] = dg.MetadataValue.json(list(review.adopted))
    return metadata


def _hooks_present(anchors: Iterable[Anchor]) -> list[tuple[str, bool]]:
    sources = {a.source for a in anchors}
    return [
        ("signer state (no state file beside the signing key)", SIGNER_SOURCE in sources),
        (
            "witnesses (none configured, or no checkpoint with their quorum yet)",
            any(s.startswith("witness") for s in sources),
        ),
    ]
