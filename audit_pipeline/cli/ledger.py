"""Ledger commands: ``keys``, ``verify``, ``checkpoint``, ``prove`` and ``verify-proof``.

Results go to stdout (a vkey, a checkpoint, a proof, one JSON report); verdicts, progress
and notes go to stderr, so ``--json`` output can be piped. Exit codes: 0 intact, 1
integrity findings (gaps and truncation included) or a proof that fails, 2 usage or
configuration error, 3 could not complete.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audit_pipeline.cli.object_store import (
    init_object_store_key,
    object_store_arg,
    object_store_checkpoint,
    object_store_keyring,
    object_store_reader,
    object_store_url,
    verify_on_object_store,
)
from audit_pipeline.cli.preflight import input_file, output_file, readable_dir, usable_dir
from audit_pipeline.cli.progress import LONG_WORK_SECONDS, Progress
from audit_pipeline.cli.witness import add_witness_options, witness_keys
from audit_pipeline.errors import AuditPipelineError, ConfigurationError
from audit_pipeline.ledger.canonical import parse_json_strict
from audit_pipeline.ledger.checkpoint import open_checkpoint
from audit_pipeline.ledger.commit import Ledger
from audit_pipeline.ledger.keys import (
    DEFAULT_KEY_NAME,
    SIGNING_KEY_ENV,
    Keyring,
    default_signing_key_path,
    init_key,
    keyring_file,
    load_keyring,
    load_signing_key,
    load_trusted_keys,
    log_size,
    parse_trusted_keys,
    revoke_key,
    rotate_key,
)
from audit_pipeline.ledger.layout import (
    DATA_DIR_ENV,
    LEDGER,
    format_hour,
    resolve_data_dir,
)
from audit_pipeline.ledger.proofs import (
    AmbiguousEventError,
    EventNotFoundError,
    load_proof,
    proof_bytes,
    prove_event,
    verify_event_proof,
)
from audit_pipeline.ledger.signer_state import (
    SIGNER_STATE_ENV,
    load_signer_state,
    reset_signer_state,
    signer_state_path,
)

if TYPE_CHECKING:
    from audit_pipeline.ledger.verify import VerifyReport

VERIFY_TRIGGER = "audit-pipeline verify"
EXIT_CODES = (
    "exit codes: 0 ok/intact, 1 integrity findings or invalid proof, "
    "2 usage/configuration error, 3 could not complete"
)


class NothingToShowError(AuditPipelineError):
    """The ledger has nothing of the kind asked for yet (exit code 3)."""


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _parser(subparsers: argparse._SubParsersAction, name: str, **kwargs: Any):
    return subparsers.add_parser(
        name, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXIT_CODES, **kwargs
    )


def _data_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", metavar="DIR", help=f"data directory (default: ${DATA_DIR_ENV}, else ./data)"
    )


def _key_file_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key-file",
        metavar="PATH",
        help=f"private signing key (default: ${SIGNING_KEY_ENV}, else "
        "$XDG_CONFIG_HOME/audit-pipeline/signing-key)",
    )


def _key_path(args: argparse.Namespace) -> Path:
    return Path(args.key_file).expanduser() if args.key_file else default_signing_key_path()


def _ledger_dir(args: argparse.Namespace) -> Path:
    data_dir = readable_dir(resolve_data_dir(args.data_dir))
    if not (data_dir / LEDGER).is_dir():
        raise ConfigurationError(f"no ledger in {data_dir} (pass --data-dir or set {DATA_DIR_ENV})")
    return data_dir


def parse_time(text: str) -> int:
    """parse_time reads Unix seconds or an ISO 8601 time (UTC unless it says otherwise)."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigurationError(
            f"not a time: {text!r} (use Unix seconds or ISO 8601, e.g. 2026-11-28T13:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _iso(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- keys --------------------------------------------------------------------------------


def _keys_init(args: argparse.Namespace) -> int:
    if (url := object_store_arg(args.data_dir)) is not None:
        return init_object_store_key(url, _key_path(args), name=args.name)
    data_dir = usable_dir(resolve_data_dir(args.data_dir))
    key_path = _key_path(args)
    usable_dir(key_path.parent, what="signing key directory")
    signer, created, added = init_key(data_dir, key_path, name=args.name, now=int(time.time()))
    _err(
        f"{'created' if created else 'using existing'} signing key {key_path} (mode 0600; "
        "keep it out of the data directory and out of version control)"
    )
    where = keyring_file(data_dir)
    _err(f"{'added to' if added else 'already in'} the keyring {where}")
    print(signer.vkey)
    return 0


def _keys_rotate(args: argparse.Namespace) -> int:
    data_dir = _ledger_dir(args)
    now = int(time.time())
    old, new = rotate_key(data_dir, _key_path(args), now=now, name=args.name)
    _err(
        f"rotated: {old.name}+{old.key_hash:08x} signs until {_iso(now)}; "
        f"{new.name}+{new.key_hash:08x} signs from then on (key file {_key_path(args)})"
    )
    print(new.vkey)
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    data_dir = _ledger_dir(args)
    at = parse_time(args.at) if args.at else int(time.time())
    key_path = _key_path(args)
    signer = load_signing_key(key_path) if key_path.exists() else None
    if signer is not None and load_keyring(data_dir).find(signer.name, signer.key_hash) is None:
        signer = None  # a key this keyring does not trust cannot vouch for its entries
    key = revoke_key(data_dir, args.key, at=at, at_size=args.at_size, signer=signer)
    _err(
        f"revoked {key.name}+{key.key_id} from batch {key.revoked_at_size} on (and from "
        f"{_iso(at)}): its signatures on batches from there fail verification with "
        "key_revoked, whatever time they claim; "
        + (
            f"entry signed by {signer.name}+{signer.key_hash:08x}"
            if signer
            else "entry unsigned (no signing key)"
        )
    )
    return 0


def _keys_restart_signer(args: argparse.Namespace) -> int:
    from audit_pipeline.lake import PARQUET_FORMAT

    state_path = Path(args.state).expanduser() if args.state else signer_state_path(_key_path(args))
    adopt = None
    if (url := object_store_arg(args.data_dir)) is not None:
        data_dir: Any = url  # the state is local; the store is only read
        adopt = object_store_checkpoint(url)
    else:
        data_dir = resolve_data_dir(args.data_dir)
        if (data_dir / LEDGER).is_dir():
            adopt = Ledger(data_dir, file_format=PARQUET_FORMAT).latest_checkpoint()
        if adopt is not None:
            open_checkpoint(adopt, load_keyring(data_dir).verifiers())
    previous = load_signer_state(state_path)
    state = reset_signer_state(state_path, reason=args.reason, now=int(time.time()), adopt=adopt)
    forgot = f"size {previous.size} of {previous.origin}" if previous else "nothing"
    continues = f"size {state.size} of {state.origin} ({data_dir})" if adopt else "no log yet"
    _err(
        f"signer restarted on purpose ({args.reason!r}): forgot {forgot}; continues from "
        f"{continues}; recorded in {state_path} ({len(state.resets)} restarts so far)"
    )
    return 0


def _keys_public(args: argparse.Namespace) -> int:
    """_keys_public prints vkeys, one a line: the data directory's keyring (every key that
    signed or signs its log, for an auditor's --trusted-keys) or the signing key's."""
    if args.data_dir is None:
        print(load_signing_key(_key_path(args)).vkey)
        return 0
    if args.key_file:
        raise ConfigurationError("give --data-dir (its keyring) or --key-file, not both")
    keyring, size = _keyring_and_size(args)
    now = int(time.time())
    print(f"# public keys of {keyring.source}, one a line (for --trusted-keys / --public-key)")
    for key in keyring.keys:
        print(f"# {key.name}+{key.key_id}: {_validity(key, now, size)}")
        print(key.public_line())
    return 0


def _validity(key: Any, now: int, size: int | None) -> str:
    text = f"valid from {_iso(key.valid_from)}"
    if key.valid_until is not None:
        text += f" until {_iso(key.valid_until)}"
    if key.revoked_at is not None:
        text += f", revoked at {_iso(key.revoked_at)}"
    return f"{text}, batches {_batches(key)} ({key.status_at(now, size)} now)"


def _batches(key: Any) -> str:
    """_batches: the log positions (batch sequence numbers) the key may sign, e.g. ``0..41``."""
    ends = (s for s in (key.valid_until_size, key.revoked_at_size) if s is not None)
    end = min(ends, default=None)
    return f"{key.valid_from_size or 0}..{'' if end is None else end - 1}"


def _keyring_and_size(args: argparse.Namespace) -> tuple[Keyring, int]:
    """_keyring_and_size: the data directory's keyring and its log's size (a local
    directory, or an ``s3://`` one read with reader credentials)."""
    if (url := object_store_arg(args.data_dir)) is not None:
        return object_store_keyring(url)
    data_dir = _ledger_dir(args)
    return load_keyring(data_dir), log_size(data_dir)


def _keys_list(args: argparse.Namespace) -> int:
    keyring, size = _keyring_and_size(args)
    now = int(time.time())
    if args.json:
        rows = [
            {
                **k.to_dict(),
                "name": k.name,
                "key_id": k.key_id,
                "status_now": k.status_at(now, size),
            }
            for k in keyring.keys
        ]
        print(json.dumps({"keyring": keyring.source, "keys": rows}, indent=2))
        return 0
    print(
        f"{'VALID FROM':<21} {'VALID UNTIL':<21} {'REVOKED AT':<21} {'BATCHES':<12} "
        f"{'NOW':<18} VKEY"
    )
    for k in keyring.keys:
        batches = _batches(k)
        print(
            f"{_iso(k.valid_from):<21} {_iso(k.valid_until):<21} {_iso(k.revoked_at):<21} "
            f"{batches:<12} {k.status_at(now, size):<18} {k.vkey}"
        )
    return 0


# -- verify, checkpoint ------------------------------------------------------------------


def _verify(args: argparse.Namespace) -> int:
    """_verify checks a data directory, a bundle directory or a zipped bundle."""
    from audit_pipeline.dataset import evidence

    if args.location and args.data_dir:
        raise ConfigurationError("give the data directory or bundle once: DIR or --data-dir DIR")
    args.data_dir = args.location or args.data_dir
    where = Path(args.data_dir) if args.data_dir else None
    if (
        where is not None
        and object_store_url(args) is None
        and where.is_file()
        and where.suffix.lower() == ".zip"
    ):
        with evidence.unpacked_bundle(where) as unpacked:
            _err(f"reading the zipped evidence bundle {where} (unpacked to a temporary directory)")
            args.data_dir = str(unpacked)
            return _verify_dir(args)
    return _verify_dir(args)


def _verify_dir(args: argparse.Namespace) -> int:
    from audit_pipeline.dataset import evidence
    from audit_pipeline.lake import PARQUET_FORMAT

    url = object_store_url(args)
    data_dir = _ledger_dir(args) if url is None else Path()
    keyring = load_trusted_keys(Path(args.trusted_keys)) if args.trusted_keys else None
    trusted = None
    if args.trusted_checkpoint:
        trusted = input_file(args.trusted_checkpoint, "trusted checkpoint")
    if args.signer_state:
        if trusted is not None:
            raise ConfigurationError("pass --trusted-checkpoint or --signer-state, not both")
        state = load_signer_state(Path(args.signer_state).expanduser())
        if state is None or not state.size:
            raise ConfigurationError(f"no signed checkpoint in signer state {args.signer_state}")
        trusted = state.checkpoint.encode()
        _err(f"trusted checkpoint: size {state.size} from the signer state {args.signer_state}")
    if args.incremental and trusted is None:
        raise ConfigurationError("--incremental needs --trusted-checkpoint FILE")
    if args.jobs < 1:
        raise ConfigurationError(f"--jobs must be at least 1, got {args.jobs}")
    if args.max_lag is not None and not 0 <= args.max_lag < 1e9:  # NaN fails this too
        raise ConfigurationError(f"--max-lag must be a number of hours >= 0, got {args.max_lag}")
    data_range = None
    if args.range:
        from audit_pipeline.ledger.verify import check_data_range

        data_range = check_data_range((parse_time(args.range[0]), parse_time(args.range[1])))
    options: dict[str, Any] = {
        "keyring": keyring,
        "trusted_checkpoint": trusted,
        "incremental": args.incremental,
        "jobs": args.jobs,
        "depth": args.depth,
        "max_lag": int(args.max_lag * 3600) if args.max_lag is not None else None,
        "data_range": data_range,
        # a bar on a terminal; elsewhere lines once the work runs long (or with -v)
        "progress": Progress(quiet_for=0.0 if args.verbose else LONG_WORK_SECONDS),
    }
    if args.witness_key:
        options["witness_keys"] = witness_keys(args.witness_key)
        options["witness_quorum"] = args.witness_quorum
    if url is not None:
        return verify_on_object_store(args, url, options)
    bundle = evidence.is_bundle(data_dir)
    if bundle:
        report = evidence.verify_bundle(data_dir, **options)
    else:
        from audit_pipeline.ledger.verify import verify_ledger

        report = verify_ledger(data_dir, file_format=PARQUET_FORMAT, **options)
    if report.data_range is not None:
        start, end = report.data_range
        source = (
            "--range"
            if data_range is not None
            else f"the bundle's {evidence.EVIDENCE_FILE}, which is not signed (pass --range "
            "START END to check the hours you asked for)"
        )
        _err(f"data range {format_hour(start)}..{format_hour(end)} from {source}")
    _err(report.summary())
    _record(args, data_dir, report, bundle)
    sealed = None if bundle else _dataset_seal(data_dir)
    rows: list[str] | None = None
    if sealed is not None:
        _err(sealed.line())
        rows = _dataset_rows(data_dir, sealed) if sealed.ok and report.intact else None
        if rows:
            _err("  DATASET ROWS DIFFER from the verified data files (edited and sealed again?): "
                 + "; ".join(rows))  # fmt: skip
    if args.json:
        doc = report.to_json()
        doc["dataset"] = None if sealed is None else {**sealed.to_dict(), "rows_differ": rows}
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    return 0 if report.ok and (sealed is None or sealed.ok) and not rows else 1


def _dataset_rows(data_dir: Path, sealed: Any) -> list[str] | None:
    """_dataset_rows re-derives the dataset's rows from the verified files: the seal beside
    it is no anchor against whoever can rewrite both (None: not compared, and said why)."""
    try:
        from audit_pipeline.dataset.contents import check_dataset_rows
    except ModuleNotFoundError:
        _err("  dataset rows not compared with the data files: DuckDB is not installed here")
        return None
    _err("  comparing the dataset's rows with the verified data files")
    return check_dataset_rows(sealed.path, data_dir, sealed.seal.tree_size)


def _dataset_seal(data_dir: Path) -> Any:
    """_dataset_seal checks the auditors' dataset against its seal, when there is one."""
    from audit_pipeline.dataset.seal import check_seal, dataset_path  # no DuckDB needed

    path = dataset_path(data_dir)
    # lexists: a link, FIFO or directory in the dataset's place is reported, not skipped
    return check_seal(path, data_dir) if os.path.lexists(path) else None


def _record(args: argparse.Namespace, data_dir: Path, report: VerifyReport, bundle: bool) -> None:
    """_record appends the run to the data directory's verification history, if it may."""
    from audit_pipeline.dataset import history

    if args.no_record:
        return
    if bundle:
        _err("not recorded in a verification history: this is an evidence bundle")
        return
    if not os.access(data_dir, os.W_OK):
        _err(f"not recorded in the verification history: {data_dir} is not writable")
        return
    try:
        run = history.record(data_dir, report, trigger=VERIFY_TRIGGER)
    except history.HistoryError as exc:
        _err(f"not recorded in the verification history: {exc}")
        return
    _err(f"recorded as run {run.run_id} in {history.runs_log_path(data_dir)}")


def _checkpoint(args: argparse.Namespace) -> int:
    from audit_pipeline.lake import PARQUET_FORMAT

    url = object_store_arg(args.data_dir)
    data_dir = url or _ledger_dir(args)
    ledger = object_store_reader(url) if url else Ledger(data_dir, file_format=PARQUET_FORMAT)
    latest = ledger.latest_checkpoint()
    if latest is None:
        raise NothingToShowError(f"no checkpoint in {data_dir} yet: nothing has been committed")
    checkpoint, _ = open_checkpoint(latest, ledger.keyring().verifiers())
    sys.stdout.write(latest.decode("utf-8"))
    _err(f"checkpoint of {checkpoint.origin}: {checkpoint.tree_size} batches")
    return 0


# -- prove, verify-proof -----------------------------------------------------------------


def _prove(args: argparse.Namespace) -> int:
    from audit_pipeline.lake import PARQUET_FORMAT

    url = object_store_arg(args.data_dir)
    reader = object_store_reader(url) if url else None
    data_dir = _ledger_dir(args) if url is None else Path()
    if args.out and args.out != "-":
        output_file(Path(args.out), what="proof")
    window = None
    if args.hour:
        moment = parse_time(args.hour)
        window = moment - moment % 3600
    proof = None
    how = "batch given" if args.batch is not None else "searched newest first"
    if window is not None and args.batch is None:
        how = "searched the given hour"
    if args.batch is None and window is None and reader is None:
        hints, how = _dataset_batches(data_dir, args.event_id)
        for hint in hints:
            try:
                proof = prove_event(
                    data_dir, args.event_id, file_format=PARQUET_FORMAT, batch_hint=hint
                )
                break
            except EventNotFoundError:
                how = f"not in batch {hint} as the dataset says (stale?); searched newest first"
    if proof is None:
        proof = prove_event(
            data_dir,
            args.event_id,
            file_format=PARQUET_FORMAT,
            batch_hint=args.batch,
            window_start=window,
            ledger=reader,
        )
    data = proof_bytes(proof)
    if args.out and args.out != "-":
        Path(args.out).write_bytes(data)
        where = args.out
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        where = "stdout"
    _err(
        f"proof of event {args.event_id}: batch {proof['log_index']} ({how}), event "
        f"{proof['event_index']}; {len(data)} bytes written to {where}"
    )
    return 0


def _dataset_batches(data_dir: Path, event_id: str) -> tuple[list[int], str]:
    """_dataset_batches looks the event up in the auditors' dataset (indexed by event id)
    so ``prove`` reads one batch instead of scanning them all; the batches it names are
    only hints (``prove_event`` checks the batch against its manifest). Returns the batch
    numbers, newest first, and how the batch was found, for the user."""
    import duckdb

    from audit_pipeline.dataset.build import dataset_path
    from audit_pipeline.dataset.query import open_dataset

    path = dataset_path(data_dir)
    if not path.is_file():
        return [], f"no dataset at {path}; searched newest first"
    try:
        con = open_dataset(path, sealed=False)  # a hint only: the batch is checked anyway
    except AuditPipelineError as exc:
        return [], f"dataset unusable ({exc}); searched newest first"
    try:
        rows = con.execute(
            "SELECT batch_sequence, epoch(date_create)::BIGINT // 3600 * 3600 FROM audit_events "
            "WHERE event_id = $id UNION SELECT batch_sequence, "
            "epoch(date_create)::BIGINT // 3600 * 3600 FROM quarantine WHERE event_id = $id",
            {"id": event_id},
        ).fetchall()
    except duckdb.Error as exc:
        return [], f"dataset unusable ({str(exc).splitlines()[0]}); searched newest first"
    finally:
        con.close()
    if not rows:
        return [], f"not in the dataset {path}; searched newest first"
    hours = sorted({int(r[1]) for r in rows})
    if len(hours) > 1:
        raise AmbiguousEventError(event_id, hours)
    return sorted((int(r[0]) for r in rows), reverse=True), f"located through {path}"


def _public_keys(value: str) -> Keyring:
    path = Path(value).expanduser()
    if path.exists():  # a FIFO or device is named as such by load_trusted_keys
        return load_trusted_keys(path)
    if value.count("+") < 2:  # a vkey is name+hash+key; anything else names a file
        raise ConfigurationError(
            f"--public-key {value}: file not found (give a vkey name+hash+key, or a file of "
            "vkeys or a keyring)"
        )
    return parse_trusted_keys(value.encode(), source="--public-key")


def _verify_proof(args: argparse.Namespace) -> int:
    keys = _public_keys(args.public_key)
    if args.file == "-":
        proof = parse_json_strict(sys.stdin.buffer.read())
    else:
        proof = load_proof(Path(args.file))
    verified = verify_event_proof(
        proof,
        keys,
        witness_keys=witness_keys(args.witness_key),
        witness_quorum=args.witness_quorum,
    )
    _err(verified.summary())
    print(json.dumps(dict(verified.event), indent=2, ensure_ascii=False, sort_keys=True))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    keys = _parser(
        subparsers,
        "keys",
        help="create, rotate, revoke and show the ledger's signing keys",
        description=(
            "The signing key is an Ed25519 key in Go's note format, mode 0600, outside the\n"
            "data directory. Its public key (vkey) goes into the data directory's keyring,\n"
            "ledger/keys/keyring.json, with a validity window. Give auditors the vkey through\n"
            "another channel: they verify with --trusted-keys / --public-key."
        ),
    )
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="KEYS_COMMAND")

    init = _parser(
        keys_sub,
        "init",
        help="create the signing key and trust it in the keyring",
        description="Create the signing key (if absent) and add its public key to\n"
        "the keyring, valid from now. Prints the public key (vkey). Safe to repeat.",
    )
    init.add_argument("--name", default=DEFAULT_KEY_NAME, help="key name (default %(default)s)")
    _key_file_option(init)
    _data_dir_option(init)
    init.set_defaults(func=_keys_init)

    rotate = _parser(
        keys_sub,
        "rotate",
        help="replace the signing key",
        description="Create a new signing key in place of the current one. The old\n"
        "key's window closes now, at the log's current size, and the new key's opens\n"
        "there: batches signed by the old key before it keep verifying. Prints the new\n"
        "public key.",
    )
    rotate.add_argument("--name", help="name of the new key (default: the old key's)")
    _key_file_option(rotate)
    _data_dir_option(rotate)
    rotate.set_defaults(func=_keys_rotate)

    revoke = _parser(
        keys_sub,
        "revoke",
        help="revoke a key from a given time on",
        description="Mark a keyring key revoked from a log position (tree size) on:\n"
        "its signatures on batches at or past it fail verification with key_revoked,\n"
        "whatever time they claim. The entry is signed by the current signing key.",
    )
    revoke.add_argument("key", metavar="KEYID", help="hex key id, name+keyid, or the vkey")
    revoke.add_argument("--at", metavar="TIME", help="Unix seconds or ISO 8601 (default: now)")
    revoke.add_argument(
        "--at-size",
        metavar="N",
        type=int,
        help="log position (tree size) from which it is revoked (default: the log's size now)",
    )
    _key_file_option(revoke)
    _data_dir_option(revoke)
    revoke.set_defaults(func=_keys_revoke)

    restart = _parser(
        keys_sub,
        "restart-signer",
        help="start the signer over on purpose (new data directory, restored backup)",
        description="The signer refuses to sign a checkpoint that does not extend the last\n"
        "one it signed (kept beside the key, in the signer state file). After a deliberate\n"
        "restart, such as restoring a backup, this continues from the data directory's\n"
        "newest checkpoint (or from no log) and records the reason and what was forgotten.",
    )
    restart.add_argument("--reason", required=True, help="why the signer starts over (recorded)")
    restart.add_argument(
        "--state",
        metavar="PATH",
        help=f"signer state file (default: ${SIGNER_STATE_ENV}, else the key file + .state)",
    )
    _key_file_option(restart)
    _data_dir_option(restart)
    restart.set_defaults(func=_keys_restart_signer)

    public = _parser(
        keys_sub,
        "public",
        help="print public keys (vkeys) to hand an auditor",
        description="With --data-dir: every key of that data directory's keyring, one vkey a\n"
        "line followed by its window (log positions and times, which --trusted-keys and\n"
        "--public-key enforce) and its validity as a comment: save it and send it to\n"
        "auditors. Otherwise: the signing key's vkey.",
    )
    _key_file_option(public)
    _data_dir_option(public)
    public.set_defaults(func=_keys_public)

    listing = _parser(keys_sub, "list", help="list the keyring with validity windows")
    listing.add_argument("--json", action="store_true", help="print JSON")
    _data_dir_option(listing)
    listing.set_defaults(func=_keys_list)

    verify = _parser(
        subparsers,
        "verify",
        help="verify the whole ledger and data lake offline",
        description=(
            "Check every manifest (link and signature), sequence continuity, every data file\n"
            "(size, SHA-256; with --depth rows, the default, also rows, leaves, Merkle root),\n"
            "checkpoints, key validity, unreferenced files, duplicate ids, event times and\n"
            "hourly coverage. Every finding is reported.\n"
            "With --trusted-checkpoint FILE (a checkpoint kept elsewhere), an RFC 6962\n"
            "consistency proof shows today's log extends it: catches truncation, rollback and\n"
            "forks. Without --trusted-keys the data directory's own keyring is used, which\n"
            "anyone able to write the directory could edit. An evidence bundle (a directory\n"
            "with EVIDENCE.json, or the .zip export-evidence wrote, read as it is) is checked\n"
            "for the range it claims, or --range START END.\n"
            "Each run is appended to DIR/verification/runs.jsonl (the dataset's\n"
            "verification_runs) unless --no-record, DIR is a bundle or it is not writable."
        ),
    )
    verify.add_argument(
        "location",
        nargs="?",
        metavar="DIR|BUNDLE.zip",
        help="data directory, evidence bundle directory or zipped bundle (same as --data-dir)",
    )
    _data_dir_option(verify)
    verify.add_argument(
        "--trusted-checkpoint",
        metavar="FILE",
        help="signed checkpoint held elsewhere ('-' = stdin)",
    )
    verify.add_argument(
        "--signer-state",
        metavar="FILE",
        help="use the newest checkpoint the signer signed (its state file, beside the "
        "private key) as the trusted checkpoint: catches truncation and rollback on the "
        "signer's host",
    )
    verify.add_argument(
        "--trusted-keys", metavar="FILE", help="keyring JSON or vkeys (one a line) held elsewhere"
    )
    verify.add_argument(
        "--incremental",
        action="store_true",
        help="fully check only batches after --trusted-checkpoint",
    )
    verify.add_argument(
        "--json",
        action="store_true",
        help="print one JSON report (audit_pipeline.verify/v1) on stdout",
    )
    verify.add_argument(
        "--depth",
        choices=("files", "rows"),
        default="rows",
        help="how deep each data file is checked. files: every data file is byte for byte "
        "what a signed manifest pinned (size and SHA-256; bound by hashing), relying on the "
        "check at commit time that its rows match the signed events root. rows (default): "
        "that, and every leaf, the events root, row count, time range, window and id/time "
        "columns re-derived from the rows, and ids across batches: also catches a batch "
        "whose signed manifest never matched its rows (e.g. a key holder signing a lie)",
    )
    verify.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="check data files in N worker processes (default 1; threads at --depth files, "
        "where hashing runs outside the interpreter lock; an object store is read in one "
        "process)",
    )
    verify.add_argument(
        "--max-lag",
        type=float,
        metavar="HOURS",
        help="fail if the newest batch's hour ended more than HOURS ago",
    )
    verify.add_argument(
        "--range",
        nargs=2,
        metavar=("START", "END"),
        help="check data of these whole UTC hours only (END excluded): data files of other "
        "hours may be absent (a partial copy, an evidence bundle); default for a bundle: the "
        "range its EVIDENCE.json claims",
    )
    verify.add_argument(
        "--no-record",
        action="store_true",
        help="do not append this run to the data directory's verification history",
    )
    add_witness_options(verify)
    verify.set_defaults(func=_verify)

    checkpoint = _parser(
        subparsers,
        "checkpoint",
        help="print the latest signed checkpoint",
        description=(
            "Print the latest signed checkpoint (C2SP tlog-checkpoint). Copy it somewhere\n"
            "the ledger's operators cannot change; later, verify --trusted-checkpoint proves\n"
            "the log still extends it."
        ),
    )
    _data_dir_option(checkpoint)
    checkpoint.set_defaults(func=_checkpoint)

    prove = _parser(
        subparsers,
        "prove",
        help="write a self-contained inclusion proof of one event",
        description=(
            "Write a proof that EVENT_ID was recorded: the event, its inclusion proof in its\n"
            "batch, the signed batch manifest, the manifest's inclusion proof in the log and\n"
            "the signed checkpoint. verify-proof checks it offline with only the public key.\n"
            "The event's batch is looked up in the auditors' dataset when there is one\n"
            "(audit-pipeline dataset path); otherwise batches are searched newest first."
        ),
    )
    prove.add_argument("event_id", metavar="EVENT_ID")
    prove.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    prove.add_argument("--batch", type=int, metavar="SEQ", help="the batch holding the event")
    prove.add_argument("--hour", metavar="TIME", help="the event's hour (narrows the search)")
    _data_dir_option(prove)
    prove.set_defaults(func=_prove)

    verify_proof = _parser(
        subparsers,
        "verify-proof",
        help="check an event proof offline",
        description=(
            "Check a proof written by 'prove' with nothing but the log's public key(s): no\n"
            "data directory, no network. Prints the proven event on stdout."
        ),
    )
    verify_proof.add_argument("file", metavar="FILE", help="the proof ('-' = stdin)")
    verify_proof.add_argument(
        "--public-key", required=True, metavar="KEY", help="a vkey, or a file of vkeys or a keyring"
    )
    add_witness_options(verify_proof)
    verify_proof.set_defaults(func=_verify_proof)
