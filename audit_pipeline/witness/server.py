"""The witness HTTP server: C2SP tlog-witness ``POST /add-checkpoint``.

Request body: ``old <size>\\n``, up to 63 base64 consistency-proof hashes one a line, an
empty line, then the signed checkpoint. Answers, checked in this order:

- 400 body does not parse;
- 404 the checkpoint's origin is not a log this witness follows;
- 403 no signature verifies under the log keys it trusts (other keys' lines are ignored);
- 400 old size larger than the checkpoint's size;
- 409 ``text/x.tlog.size`` body ``<size>\\n``: old size is not the size last cosigned;
- 409 same size as the last cosigned checkpoint but a different root;
- 422 the consistency proof does not verify (it must be empty when old is 0);
- 200 one ``cosignature/v1`` line, after the new checkpoint is stored.

Everything from the old-size check to the store runs under the state's lock. A refused
submission whose log signature verified is kept in the state's evidence directory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from audit_pipeline.ledger import merkle
from audit_pipeline.ledger.checkpoint import Checkpoint, parse_checkpoint
from audit_pipeline.ledger.cosignature import WitnessSigner
from audit_pipeline.ledger.errors import LedgerError, UnknownKeyError
from audit_pipeline.ledger.note import Verifiers, b64decode_canonical, open_note, split_note
from audit_pipeline.witness.state import WitnessState

log = logging.getLogger(__name__)

MAX_BODY = 1 << 16
MAX_PROOF_LINES = 63
SIZE_CONTENT_TYPE = "text/x.tlog.size"


@dataclass(frozen=True)
class Answer:
    """Answer is an HTTP status, a body and its content type."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


def _text(status: int, message: str) -> Answer:
    return Answer(status, (message + "\n").encode("utf-8"))


@dataclass(frozen=True)
class Submission:
    old_size: int
    proof: list[bytes]
    note: bytes


def parse_submission(body: bytes) -> Submission:
    """parse_submission splits an add-checkpoint body (LedgerError when malformed)."""
    header, sep, note = body.partition(b"\n\n")
    if not sep:
        raise LedgerError("no empty line before the checkpoint")
    lines = header.split(b"\n")
    first = lines[0].decode("ascii", "replace")
    number = first[4:] if first.startswith("old ") else ""
    if not number.isdigit() or not number.isascii() or (number != "0" and number[0] == "0"):
        raise LedgerError("the first line must be 'old <size>' in canonical decimal")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise LedgerError(f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof = []
    for line in lines[1:]:
        raw = b64decode_canonical(line.decode("ascii", "replace"))
        if raw is None or len(raw) != merkle.HASH_SIZE:
            raise LedgerError("a consistency proof line is not a base64 SHA-256 hash")
        proof.append(raw)
    return Submission(int(number), proof, note)


class Witness:
    """Witness decides add-checkpoint requests: trusted log keys per origin, a cosigning
    key and a state directory."""

    def __init__(
        self, signer: WitnessSigner, logs: Mapping[str, Verifiers], state: WitnessState
    ) -> None:
        self.signer = signer
        self.logs = dict(logs)
        self.state = state

    def add_checkpoint(self, body: bytes) -> Answer:
        try:
            sub = parse_submission(body)
            text, _ = split_note(sub.note)
            cp = parse_checkpoint(text)
        except LedgerError as exc:
            return _text(400, f"bad request: {exc}")
        verifiers = self.logs.get(cp.origin)
        if verifiers is None:
            return _text(404, "unknown log origin")
        try:
            open_note(sub.note, verifiers)
        except UnknownKeyError:
            return _text(403, "no signature by a trusted key of this log")
        except LedgerError as exc:
            return _text(403, f"log signature does not verify: {exc}")
        if sub.old_size > cp.tree_size:
            return self._refuse(400, "old size is larger than the checkpoint size", body)
        with self.state.locked():
            answer = self._check_and_store(sub, cp, body)
        return answer

    def _check_and_store(self, sub: Submission, cp: Checkpoint, body: bytes) -> Answer:
        stored = self.state.latest(cp.origin)
        known = parse_checkpoint(split_note(stored)[0]) if stored is not None else None
        known_size = known.tree_size if known else 0
        if sub.old_size != known_size:
            self.state.keep_evidence(409, f"old size {sub.old_size}, latest {known_size}", body)
            return Answer(409, f"{known_size}\n".encode("ascii"), SIZE_CONTENT_TYPE)
        if known is not None and cp.tree_size == known.tree_size:
            if cp.root_hash != known.root_hash:
                return self._refuse(409, "same size as the latest checkpoint, other root", body)
        elif known is None:
            if sub.proof:
                return self._refuse(422, "old size is 0 but a consistency proof was sent", body)
        else:
            try:
                merkle.verify_consistency(
                    known.tree_size, cp.tree_size, sub.proof, known.root_hash, cp.root_hash
                )
            except LedgerError as exc:
                return self._refuse(422, f"consistency proof does not verify: {exc}", body)
        if known is None or cp.tree_size > known.tree_size:
            self.state.store(cp.origin, sub.note)
        return Answer(200, self.signer.cosign(cp.to_text()).encode("utf-8"))

    def _refuse(self, status: int, reason: str, body: bytes) -> Answer:
        path = self.state.keep_evidence(status, reason, body)
        log.warning("refused a checkpoint (%d %s); evidence in %s", status, reason, path)
        return _text(status, reason)


class _Handler(BaseHTTPRequestHandler):
    server_version = "audit-pipeline-witness"
    protocol_version = "HTTP/1.1"
    witness: Witness

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/add-checkpoint":
            self._send(_text(404, "not found"))
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._send(_text(411, "Content-Length required"))
            return
        if not 0 <= length <= MAX_BODY:
            self._send(_text(413, "request too large"))
            return
        body = self.rfile.read(length)
        try:
            answer = self.witness.add_checkpoint(body)
        except (OSError, LedgerError) as exc:  # its own state unreadable: never cosign
            log.error("witness state unavailable: %s", exc)
            answer = _text(500, "witness state unavailable")
        self._send(answer)

    def do_GET(self) -> None:
        if self.path == "/":
            self._send(_text(200, f"audit-pipeline witness {self.witness.signer.key.vkey}"))
        else:
            self._send(_text(404, "not found"))

    def _send(self, answer: Answer) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, format: str, *args: object) -> None:
        log.info("%s %s", self.address_string(), format % args)


def make_server(witness: Witness, host: str, port: int) -> ThreadingHTTPServer:
    """make_server binds the witness's HTTP server (port 0 picks a free port)."""
    handler = type("WitnessHandler", (_Handler,), {"witness": witness})
    server_class = type("WitnessHTTPServer", (ThreadingHTTPServer,), {"request_queue_size": 128})
    server = server_class((host, port), handler)
    server.daemon_threads = True
    return server


def serve_in_thread(witness: Witness, host: str = "127.0.0.1", port: int = 0):
    """serve_in_thread starts a server in a daemon thread and returns it (tests, benchmarks)."""
    server = make_server(witness, host, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
