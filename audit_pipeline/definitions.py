"""The ``audit_pipeline`` code location: every module under ``defs/``, merged once.

``dagster dev -w workspace.yaml``, ``dg dev`` and ``dg check defs`` all load this module;
``[tool.dg.project] code_location_name`` in pyproject.toml keeps the location's name
``audit_pipeline`` whichever way it is launched (schedule state and run history are keyed
by it). New modules under ``defs/`` are picked up without being listed here.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import dagster as dg

# backfill_policy and FreshnessPolicy are flagged beta/preview in 1.13; both are used on
# purpose, and the warnings would otherwise repeat on every load of the code location.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
