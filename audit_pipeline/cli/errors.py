"""One place that turns every failure of a command into an exit code and one line.

The README's contract: 0 ok, 1 integrity findings, 2 usage or configuration error, 3 could
not complete (I/O, environment, network). Errors of the project carry their own text and
code (:class:`~audit_pipeline.errors.AuditPipelineError`); an ``OSError`` is an I/O or
environment problem and is shown as the path and the cause; anything else is reported in
one line too. A traceback is printed only with ``-v``.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable

from audit_pipeline.errors import AuditPipelineError

EXIT_OK = 0
EXIT_INTEGRITY = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3
EXIT_INTERRUPTED = 130


class LocalEnvironmentError(AuditPipelineError):
    """A local precondition does not hold (a path is unusable): the run could not start."""

    exit_code = EXIT_INCOMPLETE


def describe_os_error(exc: OSError) -> str:
    """describe_os_error names the path and the cause, e.g. ``/proc/x: No such file or
    directory`` (no errno numbers, no Python class names)."""
    cause = exc.strerror or str(exc) or type(exc).__name__
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {cause}" if paths else cause


def command_name(args: argparse.Namespace) -> str:
    """command_name is ``keys init`` for a nested command, else the command."""
    words = [args.command]
    for attr in ("keys_command", "dataset_command"):
        sub = getattr(args, attr, None)
        if sub and args.command in ("keys", "dataset"):
            words.append(sub)
    return " ".join(words)


def run_command(args: argparse.Namespace, func: Callable[[argparse.Namespace], int | None]) -> int:
    """run_command runs one command and maps whatever it raises to an exit code."""
    verbose = getattr(args, "verbose", 0) > 0
    name = command_name(args)

    def fail(message: str, code: int) -> int:
        if verbose:
            traceback.print_exc()
        print(f"audit-pipeline {name}: error: {message}", file=sys.stderr, flush=True)
        return code

    try:
        return int(func(args) or 0)
    except AuditPipelineError as exc:
        return fail(str(exc), exc.exit_code)
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in PIPELINE_MODULES:
            return fail(f"unexpected {type(exc).__name__}: {exc}", EXIT_INCOMPLETE)
        return fail(_missing_extra(exc), EXIT_USAGE)
    except BrokenPipeError:
        # the reader (e.g. `| head`) went away: not an error of ours
        _silence_stdout()
        return EXIT_OK
    except OSError as exc:
        return fail(f"cannot complete: {describe_os_error(exc)}", EXIT_INCOMPLETE)
    except RecursionError:
        return fail(
            "cannot complete: input nested too deeply to process (run with -v for details)",
            EXIT_INCOMPLETE,
        )
    except KeyboardInterrupt:
        print(f"audit-pipeline {name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        hint = "" if verbose else " (run with -v for the traceback)"
        return fail(f"unexpected {type(exc).__name__}: {exc}{hint}", EXIT_INCOMPLETE)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


PIPELINE_EXTRA = "pip install 'audit-pipeline[pipeline]'"
# Top-level modules of the [pipeline] extra (pyproject.toml), which the verifier lacks.
PIPELINE_MODULES = frozenset(
    {"dagster", "dagster_webserver", "dagster_dg_cli", "slack_sdk", "duckdb", "boto3", "botocore"}
)


def _missing_extra(exc: ModuleNotFoundError) -> str:
    return (
        f"this command needs the full install (module {exc.name!r} is missing; the plain "
        f"install is the verifier only): {PIPELINE_EXTRA}"
    )


def register_unavailable(
    subparsers: argparse._SubParsersAction, names: tuple[str, ...], exc: ModuleNotFoundError
) -> None:
    """register_unavailable adds commands whose module cannot be imported here (a
    verifier-only install): each accepts any arguments and exits 2 saying what to install."""

    def unavailable(_args: argparse.Namespace) -> int:
        raise exc

    for name in names:
        # no option syntax (prefix_chars nobody types): every argument is taken as it is
        parser = subparsers.add_parser(
            name, help=f"(needs {PIPELINE_EXTRA})", add_help=False, prefix_chars="\x01"
        )
        parser.add_argument("rest", nargs="*")
        parser.set_defaults(func=unavailable)
