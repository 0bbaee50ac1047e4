"""The ``audit-pipeline`` command line: ``main(argv) -> exit code``.

Each sub-command lives in its own module exposing ``register(subparsers)``; the module
adds one or more parsers and sets ``func`` to a callable taking the parsed namespace and
returning an exit code. Errors are mapped to exit codes once, in ``cli.errors``.

Exit codes: 0 success / verified, 1 integrity findings, 2 usage or configuration error,
3 could not complete (I/O, network).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from audit_pipeline import __version__
from audit_pipeline.cli.errors import PIPELINE_MODULES, register_unavailable, run_command
from audit_pipeline.cli.object_store import refuse_unwired

# Modules that contribute sub-commands, in --help order.
COMMAND_MODULES = (
    "audit_pipeline.cli.emulator",
    "audit_pipeline.cli.sync",
    "audit_pipeline.cli.activities",
    "audit_pipeline.cli.ledger",
    "audit_pipeline.cli.dataset",
    "audit_pipeline.cli.dev",
    "audit_pipeline.cli.stack",
    "audit_pipeline.cli.witness",
)

# What each module offers, to name the commands a verifier-only install cannot run.
PIPELINE_COMMANDS = {
    "audit_pipeline.cli.emulator": ("emulator",),
    "audit_pipeline.cli.sync": ("sync", "demo"),
    "audit_pipeline.cli.dataset": ("dataset", "query", "export-evidence", "report"),
    "audit_pipeline.cli.dev": ("dev",),
}

# Which module registers each command: running one imports only its module (start-up of
# `audit-pipeline prove` is part of its measured latency); --help imports them all.
COMMAND_OWNERS = {
    "emulator": "audit_pipeline.cli.emulator",
    "sync": "audit_pipeline.cli.sync",
    "demo": "audit_pipeline.cli.sync",
    "sync-activities": "audit_pipeline.cli.activities",
    "checkpoint": "audit_pipeline.cli.ledger",
    "keys": "audit_pipeline.cli.ledger",
    "prove": "audit_pipeline.cli.ledger",
    "verify": "audit_pipeline.cli.ledger",
    "verify-proof": "audit_pipeline.cli.ledger",
    "dataset": "audit_pipeline.cli.dataset",
    "export-evidence": "audit_pipeline.cli.dataset",
    "query": "audit_pipeline.cli.dataset",
    "report": "audit_pipeline.cli.dataset",
    "dev": "audit_pipeline.cli.dev",
    "stack": "audit_pipeline.cli.stack",
    "witness": "audit_pipeline.cli.witness",
}

EPILOG = "exit codes: 0 ok, 1 integrity findings, 2 usage/configuration error, 3 could not complete"


def _parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
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
    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    owner = COMMAND_OWNERS.get(words[0]) if words else None
    for name in COMMAND_MODULES if owner is None else (owner,):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] not in PIPELINE_MODULES:
                raise
            # a verifier-only install (no [pipeline] extra): say what is missing when used
            register_unavailable(subparsers, PIPELINE_COMMANDS.get(name, ()), exc)
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser(argv)
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:
        # slack-sdk logs every failed attempt at ERROR; the command reports the outcome once
        logging.getLogger("audit_pipeline.slack_sdk").setLevel(logging.CRITICAL)
    return run_command(args, refuse_unwired(args.func))


if __name__ == "__main__":
    sys.exit(main())
