"""After a commit: ask every configured witness to cosign the new checkpoint.

Per witness: submit ``old <size>`` (the size it last cosigned for us, a hint kept in
``ledger/witnessed/hints.json``, or beside the signer state for an object store) with the
consistency proof from there; a 409 ``text/x.tlog.size`` answer tells its real size, and
the request is made once more with a proof from that size. Returned cosignature lines are
verified with the witness's key before they are kept in
``ledger/witnessed/<size>.checkpoint`` beside the plain checkpoint (an object store: one
record per round, see ``records.py``).

Outcomes: ``cosigned``; ``unreachable`` (network, 5xx: the data is committed anyway and the
next commit catches the witness up); ``refused`` (400/403/404: configuration); and
``inconsistent`` (409 on a same-size other root, 422, or a witness that has cosigned a
larger tree than the log holds): the log contradicts what the witness saw, an integrity
alarm, recorded in ``ledger/witnessed/refusals.jsonl`` (an object store: one object per
refusal under ``ledger/witnessed/refusals/``) and never retried away.
"""

from __future__ import annotations

import base64
import http.client
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from audit_pipeline.ledger import merkle
from audit_pipeline.ledger.checkpoint import Checkpoint, parse_checkpoint
from audit_pipeline.ledger.commit import Ledger
from audit_pipeline.ledger.cosignature import cosignatures, with_cosignatures
from audit_pipeline.ledger.errors import InvalidProofError, LedgerError
from audit_pipeline.ledger.note import split_note
from audit_pipeline.ledger.tiles import stored_log
from audit_pipeline.witness.config import WitnessEndpoint, WitnessPolicy
from audit_pipeline.witness.records import RoundRecords, records_for

log = logging.getLogger(__name__)

SIZE_CONTENT_TYPE = "text/x.tlog.size"
COSIGNED, REFUSED, INCONSISTENT, UNREACHABLE = "cosigned", "refused", "inconsistent", "unreachable"


@dataclass(frozen=True)
class WitnessOutcome:
    """WitnessOutcome: what one witness answered for one checkpoint."""

    label: str
    status: str
    detail: str
    tree_size: int
    witness_size: int | None = None
    lines: tuple[str, ...] = ()
    timestamp: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "witness": self.label,
            "status": self.status,
            "detail": self.detail,
            "tree_size": self.tree_size,
            "witness_size": self.witness_size,
            "cosigned_at": self.timestamp,
        }


@dataclass(frozen=True)
class WitnessRound:
    """WitnessRound: every witness's outcome for the checkpoint of ``tree_size``."""

    tree_size: int
    quorum: int
    outcomes: tuple[WitnessOutcome, ...] = field(default=())

    @property
    def cosigned(self) -> list[WitnessOutcome]:
        return [o for o in self.outcomes if o.status == COSIGNED]

    @property
    def alarms(self) -> list[WitnessOutcome]:
        return [o for o in self.outcomes if o.status == INCONSISTENT]

    @property
    def met(self) -> bool:
        return len(self.cosigned) >= self.quorum

    def to_dict(self) -> dict[str, Any]:
        return {
            "tree_size": self.tree_size,
            "quorum": self.quorum,
            "cosignatures": len(self.cosigned),
            "met": self.met,
            "outcomes": [o.to_dict() for o in self.outcomes],
        }

    def summary(self) -> str:
        head = (
            f"witnesses: checkpoint {self.tree_size} cosigned by {len(self.cosigned)}/"
            f"{len(self.outcomes)} (quorum {self.quorum}" + (", met)" if self.met else ", NOT met)")
        )
        lines = [head]
        for o in self.outcomes:
            if o.status != COSIGNED:
                lines.append(f"  {o.label}: {o.status}: {o.detail}")
        if self.alarms:
            lines.append(
                "  INTEGRITY ALARM: a witness holds a history this log no longer extends "
                "(truncated, rolled back or forked); run 'audit-pipeline verify'"
            )
        return "\n".join(lines)


Post = Callable[[str, bytes, float], tuple[int, str, bytes]]


def http_post(url: str, body: bytes, timeout: float) -> tuple[int, str, bytes]:
    """http_post returns (status, content type, body); OSError when nobody answers (or
    answers something that is not HTTP)."""
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "text/plain"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()
    except (http.client.HTTPException, ValueError) as exc:
        raise OSError(f"not an HTTP answer: {exc}") from exc


def submission(old: int, proof: Sequence[bytes], checkpoint: bytes) -> bytes:
    """submission encodes an add-checkpoint request body."""
    lines = b"".join(base64.b64encode(h) + b"\n" for h in proof)
    return b"old %d\n" % old + lines + b"\n" + checkpoint


def witness_latest(
    ledger: Ledger,
    policy: WitnessPolicy,
    *,
    timeout: float = 10.0,
    post: Post = http_post,
    clock: Callable[[], float] = time.time,
) -> WitnessRound | None:
    """witness_latest asks every witness of ``policy`` to cosign the ledger's latest
    checkpoint and stores what they returned; None when there is nothing to witness."""
    checkpoint = ledger.latest_checkpoint()
    if not policy or checkpoint is None:
        return None
    cp = parse_checkpoint(split_note(checkpoint)[0])
    leaves = _LogAt(ledger, cp)
    records = records_for(ledger)
    hints = records.hints()

    def ask(endpoint: WitnessEndpoint) -> WitnessOutcome:
        return _ask(endpoint, cp, checkpoint, leaves, hints.get(endpoint.label, 0), timeout, post)

    with ThreadPoolExecutor(max_workers=max(1, len(policy.witnesses))) as pool:
        outcomes = tuple(pool.map(ask, policy.witnesses))
    now = int(clock())
    keys = {e.label: e.key for e in policy.witnesses}
    fresh: dict[str, int] = {}
    for o in outcomes:
        if o.status == COSIGNED:
            fresh[o.label] = cp.tree_size
        elif o.witness_size is not None:
            fresh[o.label] = o.witness_size
    records.keep(
        RoundRecords(
            checkpoint,
            cp.tree_size,
            [(keys[o.label], line) for o in outcomes for line in o.lines],
            fresh,
            [_refusal(o, now) for o in outcomes if o.status in (REFUSED, INCONSISTENT)],
        )
    )
    return WitnessRound(cp.tree_size, policy.quorum, outcomes)


def _refusal(o: WitnessOutcome, now: int) -> dict[str, Any]:
    return {
        **o.to_dict(),
        "inconsistent": o.status == INCONSISTENT,
        "time": now,
        "time_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
    }


class _LogAt:
    """The log at the checkpoint's size, from its hash tiles when they reproduce its signed
    root, else from every manifest (see ``ledger/tiles.py``)."""

    def __init__(self, ledger: Ledger, cp: Checkpoint) -> None:
        self.storage, self.cp = ledger.storage, cp
        self.log = stored_log(self.storage, cp.tree_size)
        if self.log.root() != cp.root_hash:
            self.log = stored_log(self.storage, cp.tree_size, use_tiles=False)

    def consistency(self, old: int) -> list[bytes]:
        """A consistency proof from ``old``, checked against the signed root before it is
        sent (a tile the root does not use could be wrong: then every manifest is read)."""
        proof = self.log.consistency_proof(old)
        try:
            merkle.verify_consistency(
                old, self.cp.tree_size, proof, self.log.root(old), self.cp.root_hash
            )
        except InvalidProofError:
            if self.log.full == 0:
                raise
            self.log = stored_log(self.storage, self.cp.tree_size, use_tiles=False)
            return self.consistency(old)
        return proof


def _ask(
    endpoint: WitnessEndpoint,
    cp: Checkpoint,
    checkpoint: bytes,
    leaves: _LogAt,
    old: int,
    timeout: float,
    post: Post,
) -> WitnessOutcome:
    url = f"{endpoint.url}/add-checkpoint"
    size = cp.tree_size

    def outcome(status: str, detail: str, **kw: Any) -> WitnessOutcome:
        return WitnessOutcome(endpoint.label, status, detail, size, **kw)

    old = old if 0 <= old <= size else 0
    for attempt in range(2):
        proof = leaves.consistency(old) if 0 < old < size else []
        try:
            status, content_type, body = post(url, submission(old, proof, checkpoint), timeout)
        except OSError as exc:
            return outcome(UNREACHABLE, f"{url}: {getattr(exc, 'reason', exc)}")
        text = body.decode("utf-8", "replace").strip()
        if status == 200:
            return _cosigned(endpoint, checkpoint, body, outcome)
        if status == 409 and content_type.split(";")[0].strip() == SIZE_CONTENT_TYPE:
            try:
                theirs = int(text)
            except ValueError:
                return outcome(REFUSED, f"409 with an unreadable size {text[:40]!r}")
            if theirs > size:
                return outcome(
                    INCONSISTENT,
                    f"it has cosigned a tree of {theirs} batches, the log now holds {size}",
                    witness_size=theirs,
                )
            if attempt == 0 and theirs != old:
                old = theirs
                continue
            return outcome(REFUSED, f"409: it keeps answering size {theirs}", witness_size=theirs)
        if status == 409:
            return outcome(
                INCONSISTENT,
                f"409: it cosigned another root for {size} batches ({text[:120]})",
                witness_size=size,
            )
        if status == 422:
            return outcome(
                INCONSISTENT,
                f"422: the log does not extend the {old} batches it cosigned ({text[:120]})",
                witness_size=old,
            )
        if status in (400, 403, 404):
            return outcome(REFUSED, f"{status}: {text[:200]}")
        return outcome(UNREACHABLE, f"HTTP {status}: {text[:200]}")
    raise AssertionError("unreachable")


def _cosigned(
    endpoint: WitnessEndpoint,
    checkpoint: bytes,
    body: bytes,
    outcome: Callable[..., WitnessOutcome],
) -> WitnessOutcome:
    try:
        lines = body.decode("utf-8").splitlines(keepends=True)
        found = cosignatures(with_cosignatures(checkpoint, lines), [endpoint.key])
    except (LedgerError, UnicodeDecodeError) as exc:
        return outcome(REFUSED, f"200 but the answer is not signature lines: {exc}")
    if not found.valid:
        return outcome(REFUSED, f"200 but no cosignature verifies with {endpoint.key.vkey}")
    best = found.valid[0]
    return outcome(COSIGNED, "cosigned", lines=(best.line,), timestamp=best.timestamp)


class CommitWitnessing:
    """CommitWitnessing is the after-commit hook: it asks the witnesses after each commit
    and keeps every round, so the caller can report them and raise the alarm."""

    def __init__(
        self,
        ledger: Ledger,
        policy: WitnessPolicy,
        *,
        progress: Callable[[str], None] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.ledger = ledger
        self.policy = policy
        self.progress = progress
        self.timeout = timeout
        self.rounds: list[WitnessRound] = []

    def __call__(self, _committed: object = None) -> WitnessRound | None:
        round_ = witness_latest(self.ledger, self.policy, timeout=self.timeout)
        if round_ is not None:
            self.rounds.append(round_)
            if self.progress:
                self.progress(round_.summary())
        return round_

    @property
    def alarms(self) -> list[WitnessOutcome]:
        return [o for r in self.rounds for o in r.alarms]

    @property
    def last(self) -> WitnessRound | None:
        return self.rounds[-1] if self.rounds else None
