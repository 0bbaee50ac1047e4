"""Helpers for what commands print to people."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default once: not when it is None, nor when its help already
    says what the default is ("(default: a week before --end)")."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or "default" in text:
            return text
        return super()._get_help_string(action)


def invoked_as(argv0: str | None = None) -> str:
    """invoked_as is how to type this command again from the current directory: plain
    ``audit-pipeline`` when that is the one on PATH, else the path it was run by (after
    ``make demo`` that is ``.venv/bin/audit-pipeline``, which is not on PATH)."""
    argv0 = argv0 if argv0 is not None else sys.argv[0]
    script = Path(argv0)
    if script.name != "audit-pipeline" or not script.is_file():
        return f"{shlex.quote(sys.executable)} -m audit_pipeline.cli"
    on_path = shutil.which("audit-pipeline")
    if on_path and Path(on_path).resolve() == script.resolve():
        return "audit-pipeline"
    relative = os.path.relpath(script.absolute(), Path.cwd())
    shown = relative if not relative.startswith("..") else str(script.absolute())
    return shlex.quote(shown)
