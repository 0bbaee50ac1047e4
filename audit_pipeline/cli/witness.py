"""Witness commands: ``witness keys init`` and ``witness serve`` (C2SP tlog-witness).

A witness runs apart from the pipeline (another machine or account) with its own key and
state directory, follows the logs given by ``--log ORIGIN=VKEY`` and cosigns a checkpoint
only after checking it extends the last one it cosigned for that log.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ledger.cosignature import WitnessKey
from audit_pipeline.ledger.errors import LedgerError
from audit_pipeline.ledger.note import Verifier, Verifiers

DEFAULT_PORT = 8766


def parse_log_options(values: list[str]) -> dict[str, Verifiers]:
    """parse_log_options reads ``ORIGIN=VKEY`` options (several keys per origin allowed)."""
    keys: dict[str, list[Verifier]] = defaultdict(list)
    for value in values:
        origin, sep, vkey = value.partition("=")
        if not sep or not origin or not vkey:
            raise ConfigurationError(f"--log wants ORIGIN=VKEY, got {value!r}")
        try:
            keys[origin].append(Verifier.from_vkey(vkey.strip()))
        except LedgerError as exc:
            raise ConfigurationError(f"--log {origin}: {exc}") from None
    return {origin: Verifiers(vs) for origin, vs in keys.items()}


def witness_keys(values: list[str] | None) -> list[WitnessKey]:
    """witness_keys reads ``--witness-key`` values: a vkey, or a file of vkeys one a line."""
    out: list[WitnessKey] = []
    for value in values or []:
        path = Path(value).expanduser()
        texts = [value]
        if "+" not in value and path.is_file():
            texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        for text in (t for t in texts if t and not t.startswith("#")):
            try:
                out.append(WitnessKey.from_vkey(text))
            except LedgerError as exc:
                raise ConfigurationError(f"--witness-key: {exc}") from None
    return out


def add_witness_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--witness-key",
        action="append",
        metavar="VKEY",
        help="a witness's public key (or a file of them); repeatable: the checkpoint must "
        "carry their cosignatures",
    )
    parser.add_argument(
        "--witness-quorum",
        type=int,
        metavar="N",
        help="how many of the --witness-key witnesses must have cosigned (default: all)",
    )


def _keys_init(args: argparse.Namespace) -> int:
    from audit_pipeline.witness.keys import create_witness_key

    signer = create_witness_key(Path(args.key), args.name)
    print(signer.key.vkey)
    print(
        f"witness key written to {args.key} (mode 0600); give out the line above", file=sys.stderr
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    from audit_pipeline.witness.keys import load_witness_key
    from audit_pipeline.witness.server import Witness, make_server
    from audit_pipeline.witness.state import WitnessState

    logs = parse_log_options(args.log)
    signer = load_witness_key(Path(args.key))
    witness = Witness(signer, logs, WitnessState(Path(args.state)))
    try:
        server = make_server(witness, args.host, args.port)
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on {args.host}:{args.port}: {exc}") from None
    host, port = server.server_address[:2]
    print(f"witness {signer.key.vkey}", flush=True)
    print(f"listening on http://{host}:{port} for {', '.join(sorted(logs))}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    witness = subparsers.add_parser(
        "witness",
        help="run a witness that cosigns checkpoints (C2SP tlog-witness)",
        description=__doc__,
        formatter_class=fmt,
    )
    sub = witness.add_subparsers(dest="witness_command", required=True, metavar="WITNESS_COMMAND")
    keys = sub.add_parser("keys", help="the witness's own key")
    keys_sub = keys.add_subparsers(dest="witness_keys_command", required=True, metavar="COMMAND")
    init = keys_sub.add_parser(
        "init", help="create a witness key (mode 0600) and print its public key (vkey)"
    )
    init.add_argument("--key", required=True, metavar="FILE", help="where to write the key")
    init.add_argument("--name", required=True, help="witness name, e.g. witness.example.com/w1")
    init.set_defaults(func=_keys_init)

    serve = sub.add_parser(
        "serve", help="serve POST /add-checkpoint", description=__doc__, formatter_class=fmt
    )
    serve.add_argument("--state", required=True, metavar="DIR", help="the witness's state")
    serve.add_argument("--key", required=True, metavar="FILE", help="the witness's private key")
    serve.add_argument(
        "--log",
        required=True,
        action="append",
        metavar="ORIGIN=VKEY",
        help="a log to follow and its verifier key (repeatable)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address (default %(default)s)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default %(default)s)")
    serve.set_defaults(func=_serve)
