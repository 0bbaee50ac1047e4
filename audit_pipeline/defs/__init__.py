"""The Dagster layer: every module here is loaded by ``audit_pipeline.definitions``.

Deployment settings are environment variables read once when the code location loads
(never at run time, never over the network), so the UI shows exactly what a run will use:

==================================  ==========================================  ==============
variable                            meaning                                     default
==================================  ==========================================  ==============
``AUDIT_START_HOUR``                first hourly partition (UTC)                2026-01-01T00
``AUDIT_SYNC_MINUTE``               minute past the hour the schedule syncs     5
                                    the hour just closed (the settle delay)
``AUDIT_BACKFILL_HOURS_PER_RUN``    hours one backfill run syncs                24
``AUDIT_GAP_FILL_MAX_RUNS``         runs the gap-filling sensor asks per tick   24
``AUDIT_GAP_FILL_RETRY_MINUTES``    first retry of a failed hour (doubles each  10
                                    attempt)
``AUDIT_GAP_FILL_MAX_ATTEMPTS``     attempts per hour before the sensor leaves  6
                                    it to a person (and names it)
``AUDIT_AUTOMATION``                ``on``: schedule and gap-filling sensor     on
                                    start running; ``off``: they start stopped
``AUDIT_FRESHNESS_HOURS``           newest hour older than this fails           2
                                    ``ledger_fresh``
``AUDIT_FULL_VERIFY_HOURS``         hours between full verifications (others    24
                                    check only what is new since the recorded
                                    checkpoint)
``AUDIT_COVERAGE_TOLERANCE_HOURS``  missing hours ``ledger_covers_every_hour``  6
                                    shows as a warning; more block the dataset
``AUDIT_SLACK_CHANNEL``             channel for failure alerts (alerts are off  unset
                                    unless it and the bot token are set)
``AUDIT_SLACK_CHECKPOINT_CHANNEL``  channel that witnesses each new checkpoint  unset
``AUDIT_SLACK_API_URL``             Slack Web API root                          slack.com/api
``AUDIT_DAGSTER_URL``               UI address used in alert links              127.0.0.1:3000
==================================  ==========================================  ==============

Run-time settings are read by the resources in ``resources.py``: ``AUDIT_DATA_DIR``,
``AUDIT_SIGNING_KEY``, ``AUDIT_LOG_ORIGIN`` and the ``SLACK_AUDIT_*`` API settings, the same
variables the command line reads, and ``AUDIT_TRUSTED_KEYS``: the public keys (keyring JSON
or vkeys) signatures are checked against, a file outside the data directory (refused
inside it), as ``verify --trusted-keys``. Unset, ``ledger_keys_anchored`` fails and blocks.

The values of secrets (``SLACK_AUDIT_TOKEN``, ``AUDIT_SLACK_BOT_TOKEN``) are never read here:
resources take them through ``dagster.EnvVar``, resolved only inside a run or sensor tick.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from audit_pipeline.errors import ConfigurationError

__all__ = ["env_flag", "env_int"]


def env_int(
    name: str,
    default: int,
    *,
    minimum: int,
    maximum: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """env_int reads an integer setting, naming the variable when its value is unusable."""
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ConfigurationError(f"{name} must be {bounds}, got {value}")
    return value


def env_flag(name: str, default: bool, *, environ: Mapping[str, str] | None = None) -> bool:
    """env_flag reads an on/off setting (on, off, true, false, 1, 0, yes, no)."""
    raw = (os.environ if environ is None else environ).get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("on", "true", "1", "yes"):
        return True
    if raw in ("off", "false", "0", "no"):
        return False
    raise ConfigurationError(f"{name} must be on or off, got {raw!r}")
