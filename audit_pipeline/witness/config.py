"""Which witnesses the pipeline asks, and the quorum it needs (``AUDIT_WITNESSES``).

``AUDIT_WITNESSES`` holds entries ``<name> <URL> <witness vkey>`` separated by newlines or
``;``, or is the path of a file with one entry a line (``#`` starts a comment).
``AUDIT_WITNESS_QUORUM`` is how many must cosign each checkpoint (default: all of them).
The URL is the witness's submission prefix: the pipeline POSTs to ``<URL>/add-checkpoint``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ledger.cosignature import WitnessKey
from audit_pipeline.ledger.errors import LedgerError
from audit_pipeline.ledger.layout import read_named_file

WITNESSES_ENV = "AUDIT_WITNESSES"
QUORUM_ENV = "AUDIT_WITNESS_QUORUM"


@dataclass(frozen=True)
class WitnessEndpoint:
    """WitnessEndpoint is one witness the committer asks: a label, its URL and its key."""

    label: str
    url: str
    key: WitnessKey


@dataclass(frozen=True)
class WitnessPolicy:
    """WitnessPolicy is the witness set and the quorum of cosignatures a checkpoint needs."""

    witnesses: tuple[WitnessEndpoint, ...]
    quorum: int

    @property
    def keys(self) -> list[WitnessKey]:
        return [w.key for w in self.witnesses]

    def __bool__(self) -> bool:
        return bool(self.witnesses)


def parse_witnesses(text: str, *, source: str) -> list[WitnessEndpoint]:
    """parse_witnesses reads ``name URL vkey`` entries (newline or ';' separated)."""
    out: list[WitnessEndpoint] = []
    entries = [e.split("#", 1)[0].strip() for e in text.replace(";", "\n").splitlines()]
    for n, entry in enumerate((e for e in entries if e), 1):
        parts = entry.split()
        if len(parts) != 3:
            raise ConfigurationError(f"{source}: witness entry {n} is not 'name URL vkey'")
        label, url, vkey = parts
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise ConfigurationError(f"{source}: witness {label}: URL must be http(s)://host...")
        try:
            key = WitnessKey.from_vkey(vkey)
        except LedgerError as exc:
            raise ConfigurationError(f"{source}: witness {label}: {exc}") from None
        out.append(WitnessEndpoint(label, url.rstrip("/"), key))
    labels = [w.label for w in out]
    if len(set(labels)) != len(labels):
        raise ConfigurationError(f"{source}: two witnesses share a name")
    if len({(w.key.name, w.key.key_id) for w in out}) != len(out):
        raise ConfigurationError(f"{source}: two witnesses share a key")
    return out


def make_policy(witnesses: Sequence[WitnessEndpoint], quorum: int | None) -> WitnessPolicy:
    q = len(witnesses) if quorum is None else quorum
    if witnesses and not 1 <= q <= len(witnesses):
        raise ConfigurationError(f"witness quorum must be 1..{len(witnesses)}, got {q}")
    return WitnessPolicy(tuple(witnesses), q)


def policy_from_env(environ: Mapping[str, str] | None = None) -> WitnessPolicy:
    """policy_from_env reads AUDIT_WITNESSES / AUDIT_WITNESS_QUORUM (empty policy if unset)."""
    env = os.environ if environ is None else environ
    value = env.get(WITNESSES_ENV, "").strip()
    source = WITNESSES_ENV
    if value and "\n" not in value and ";" not in value and " " not in value:
        path = Path(value).expanduser()
        try:
            value, source = read_named_file(path).decode("utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as exc:
            cause = getattr(exc, "strerror", None) or exc
            raise ConfigurationError(f"{WITNESSES_ENV}: cannot read {path}: {cause}") from None
    quorum_text = env.get(QUORUM_ENV, "").strip()
    try:
        quorum = int(quorum_text) if quorum_text else None
    except ValueError:
        raise ConfigurationError(f"{QUORUM_ENV} must be a number, got {quorum_text!r}") from None
    return make_policy(parse_witnesses(value, source=source) if value else [], quorum)
