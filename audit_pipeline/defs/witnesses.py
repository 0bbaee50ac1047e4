"""The witness set as a Dagster resource: who cosigns the ledger's checkpoints.

``slack_audit_events`` asks the witnesses after each commit (a witness that is down holds
nothing back: the next commit catches it up); ``audit_ledger`` verifies with their keys, so
two of its checks speak for them: ``ledger_witnesses_agree`` (blocking: a witness cosigned a
history the log no longer extends, or refused because of it) and ``ledger_witness_quorum``
(not blocking: the latest checkpoint lacks the quorum, e.g. a witness is unreachable).
The same on an ``s3://`` data directory, where a round creates its records once
(``witness/records.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg
from pydantic import Field

from audit_pipeline.ledger.commit import Ledger
from audit_pipeline.witness.committer import CommitWitnessing
from audit_pipeline.witness.config import (
    WitnessPolicy,
    make_policy,
    parse_witnesses,
    policy_from_env,
)


class WitnessSetResource(dg.ConfigurableResource):
    """WitnessSetResource: ``witnesses`` None means ``$AUDIT_WITNESSES`` (entries
    ``name URL vkey``, or a file of them) and ``quorum`` None ``$AUDIT_WITNESS_QUORUM``, else
    all of them. No witnesses configured: nothing is asked and nothing is checked."""

    witnesses: str | None = Field(
        default=None, description="Entries 'name URL vkey' separated by ';' or newlines."
    )
    quorum: int | None = Field(default=None, description="Cosignatures each checkpoint needs.")
    timeout_seconds: float = Field(default=10.0, gt=0, description="Per witness request.")

    def policy(self) -> WitnessPolicy:
        if self.witnesses is None:
            base = policy_from_env()
            return base if self.quorum is None else make_policy(base.witnesses, self.quorum)
        return make_policy(parse_witnesses(self.witnesses, source="witnesses"), self.quorum)

    def after_commit(
        self, ledger: Ledger, progress: Callable[[str], None] | None = None
    ) -> CommitWitnessing:
        return CommitWitnessing(
            ledger, self.policy(), progress=progress, timeout=self.timeout_seconds
        )
