"""Outside anchors: what a verification cannot rule out without them, and which flag closes it.

Everything in the data directory can be rewritten by whoever can write it; with the signing
key they can also re-sign it. Local checks then prove only that the directory agrees with
itself. Each attack below stays invisible until the verifier is given something kept
elsewhere (the "anchor"); ``verify`` lists the ones its run did not rule out, in its summary
and in ``--json`` (``anchored``, ``not_ruled_out``), instead of a bare "OK".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UncheckedAttack:
    """UncheckedAttack is an attack local checks cannot see, and the anchors that expose it."""

    code: str
    attack: str
    closed_by: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {"attack": self.code, "description": self.attack, "closed_by": list(self.closed_by)}

    def line(self) -> str:
        return f"{self.code}: {self.attack} (closed by {' or '.join(self.closed_by)})"


TRUSTED_CHECKPOINT = "--trusted-checkpoint"
TRUSTED_KEYS = "--trusted-keys"
MAX_LAG = "--max-lag"

ATTACKS = (
    UncheckedAttack(
        "tail_truncation",
        "the newest batches deleted together with their checkpoints",
        (TRUSTED_CHECKPOINT, MAX_LAG),
    ),
    UncheckedAttack(
        "rollback",
        "the whole data directory replaced by an older copy of itself",
        (TRUSTED_CHECKPOINT, MAX_LAG),
    ),
    UncheckedAttack(
        "history_rewrite",
        "batches rewritten and re-signed, with new checkpoints, by a holder of the signing key",
        (TRUSTED_CHECKPOINT,),
    ),
    UncheckedAttack(
        "key_substitution",
        "the keyring replaced and the whole log re-signed with a key of the attacker's",
        (TRUSTED_KEYS,),
    ),
    UncheckedAttack(
        "keyring_rollback",
        "a revocation or a closed key window undone by restoring an older keyring entry",
        (TRUSTED_KEYS,),
    ),
)


def not_ruled_out(
    *, trusted_checkpoint: bool, trusted_keys: bool, max_lag: bool
) -> tuple[UncheckedAttack, ...]:
    """not_ruled_out returns the attacks that none of the anchors given closes."""
    given = {TRUSTED_CHECKPOINT: trusted_checkpoint, TRUSTED_KEYS: trusted_keys, MAX_LAG: max_lag}
    return tuple(a for a in ATTACKS if not any(given[flag] for flag in a.closed_by))
