"""One witness served from this process, for ``make demo`` and ``make dev``.

A real deployment runs ``audit-pipeline witness serve`` on another machine or account; the
demo runs one beside the pipeline so the whole flow (cosign, store, verify, report) is
visible out of the box. Its key and state live in their own directory (``data/witness``),
not in the data directory it witnesses.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from audit_pipeline.ledger.note import Verifier, Verifiers
from audit_pipeline.witness.config import WitnessEndpoint
from audit_pipeline.witness.keys import create_witness_key, load_witness_key
from audit_pipeline.witness.server import Witness, serve_in_thread
from audit_pipeline.witness.state import WitnessState

LOCAL_WITNESS_NAME = "witness.demo.localhost/w1"


@contextlib.contextmanager
def running_local_witness(
    root: Path, origin: str, log_key: Verifier, *, forget: bool = False
) -> Iterator[WitnessEndpoint]:
    """running_local_witness serves a witness for ``origin`` on a free loopback port.
    ``forget`` drops its memory of the log first (the demo ledger was started afresh)."""
    root = Path(root)
    key = root / "witness-key"
    signer = load_witness_key(key) if key.exists() else create_witness_key(key, LOCAL_WITNESS_NAME)
    if forget:
        shutil.rmtree(root / "state", ignore_errors=True)
    witness = Witness(signer, {origin: Verifiers([log_key])}, WitnessState(root / "state"))
    server = serve_in_thread(witness)
    host, port = server.server_address[:2]
    try:
        yield WitnessEndpoint("local", f"http://{host}:{port}", signer.key)
    finally:
        server.shutdown()
        server.server_close()
