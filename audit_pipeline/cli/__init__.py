"""The ``audit-pipeline`` command line: ``main(argv) -> exit code``.

Each sub-command lives in its own module exposing ``register(subparsers)``; the module
adds one or more parsers and sets ``func`` to a callable taking the parsed namespace and
returning an exit code. Errors are caught once here.

Exit codes: 0 success / verified, 1 integrity findings, 2 usage or configuration error,
3 could not complete (I/O, network).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from audit_pipeline import __version__
from audit_pipeline.errors import AuditPipelineError

# Modules that contribute sub-commands, in --help order.
COMMAND_MODULES = (
    "audit_pipeline.cli.emulator",
    "audit_pipeline.cli.sync",
    "audit_pipeline.cli.activities",
    "audit_pipeline.cli.ledger",
    "audit_pipeline.cli.dataset",
    "audit_pipeline.cli.dev",
)

EPILOG = "exit codes: 0 ok, 1 integrity findings, 2 usage/configuration error, 3 could not complete"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audit-pipeline",
        description="Tamper-evident Slack audit logs: sync, verify, prove, query.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (repeat for debug)"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except AuditPipelineError as exc:
        print(f"audit-pipeline {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"audit-pipeline {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
