"""``s3://`` data directories on the command line: which commands take one, and verify's.

Only ``verify`` reads an object-store data directory so far; every other command that
takes a data directory refuses an ``s3://`` one (``--data-dir`` or ``$AUDIT_DATA_DIR``)
with one line and exit code 2 before it does anything, rather than reading ``s3:`` as a
local relative path.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from audit_pipeline.cli.errors import command_name
from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ledger.layout import DATA_DIR_ENV, format_hour, is_object_store_url

COMMANDS_ON_OBJECT_STORE = frozenset({"verify"})

Command = Callable[[argparse.Namespace], int | None]


def object_store_url(args: argparse.Namespace) -> str | None:
    """object_store_url is the ``s3://`` data directory a command was given, if any."""
    if not hasattr(args, "data_dir"):
        return None
    chosen = getattr(args, "location", None) or args.data_dir or os.environ.get(DATA_DIR_ENV)
    return str(chosen) if is_object_store_url(chosen) else None


def refuse_unwired(func: Command) -> Command:
    """refuse_unwired wraps a command so it refuses an ``s3://`` data directory unless it
    is one of :data:`COMMANDS_ON_OBJECT_STORE`."""

    def guarded(args: argparse.Namespace) -> int | None:
        url = object_store_url(args)
        name = command_name(args)
        if url is not None and name not in COMMANDS_ON_OBJECT_STORE:
            raise ConfigurationError(
                f"{name} does not work on an object-store data directory ({url}) yet: only "
                "'verify' does; give a local --data-dir"
            )
        return func(args)

    return guarded


def verify_on_object_store(args: argparse.Namespace, url: str, options: dict[str, Any]) -> int:
    """verify_on_object_store runs ``verify`` on an ``s3://`` data directory: the ledger's
    checks on the current versions, then the version audit (exit 1 on any finding)."""
    from audit_pipeline.lake import PARQUET_FORMAT
    from audit_pipeline.store.settings import S3Settings
    from audit_pipeline.store.verification import verify_object_store

    settings = S3Settings.from_env(url)
    report = verify_object_store(settings, file_format=PARQUET_FORMAT, **options)
    if report.data_range is not None:
        start, end = report.data_range
        _err(f"data range {format_hour(start)}..{format_hour(end)} from --range")
    _err(report.summary())
    if not args.no_record:
        _err(
            "not recorded in a verification history: the pipeline writes nothing but ledger "
            "records to an object-store data directory"
        )
    if args.json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    return 0 if report.ok else 1


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
