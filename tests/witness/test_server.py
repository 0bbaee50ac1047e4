"""C2SP tlog-witness conformance: every answer of POST /add-checkpoint, over real HTTP.

The server runs in a thread of the test process for the status-code table and the race
(the protocol is the same socket either way); the SIGKILL test runs it in its own process.
Cosignatures returned are checked with the test's own verifier (see test_cosignature).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import importlib.util
import random
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_pipeline.ledger import merkle
from audit_pipeline.ledger.checkpoint import Checkpoint, sign_checkpoint
from audit_pipeline.ledger.cosignature import WitnessSigner
from audit_pipeline.ledger.note import Signer, Verifiers, generate_key
from audit_pipeline.witness.server import Witness, serve_in_thread
from audit_pipeline.witness.state import WitnessState

ORIGIN = "test.example/witnessed-log"
LEAVES = [merkle.leaf_hash(b"entry %d" % i) for i in range(64)]

_spec = importlib.util.spec_from_file_location(
    "_cosig_tests", Path(__file__).parents[1] / "ledger" / "test_cosignature.py"
)
_cosig = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cosig)
independent_open = _cosig.independent_open


def checkpoint(signer: Signer, size: int, leaves: list[bytes] = LEAVES, origin=ORIGIN) -> bytes:
    return sign_checkpoint(Checkpoint(origin, size, merkle.root_hash(leaves[:size])), signer)


def body(old: int, new: int, cp: bytes, leaves: list[bytes] = LEAVES) -> bytes:
    proof = merkle.prove_consistency(old, new, leaves) if 0 < old < new else []
    lines = b"".join(base64.b64encode(h) + b"\n" for h in proof)
    return b"old %d\n" % old + lines + b"\n" + cp


def post(url: str, payload: bytes) -> tuple[int, str, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("POST", "/add-checkpoint", body=payload)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        conn.close()


@pytest.fixture
def log_signer() -> Signer:
    return Signer.from_private_key(generate_key("test.example/log")[0])


@pytest.fixture
def witness(tmp_path: Path, log_signer: Signer):
    signer = WitnessSigner.generate("witness.test/w1")
    w = Witness(signer, {ORIGIN: Verifiers([log_signer.verifier])}, WitnessState(tmp_path / "s"))
    server = serve_in_thread(w)
    host, port = server.server_address[:2]
    w.url = f"http://{host}:{port}"
    yield w
    server.shutdown()
    server.server_close()


def stored_size(w: Witness) -> int:
    raw = w.state.latest(ORIGIN)
    return 0 if raw is None else int(raw.split(b"\n")[1])


def test_first_submission_is_cosigned_and_verifies_independently(witness, log_signer) -> None:
    cp = checkpoint(log_signer, 5)
    status, _, answer = post(witness.url, body(0, 5, cp))
    assert status == 200
    lines = answer.decode().splitlines(keepends=True)
    assert len(lines) == 1 and lines[0].startswith("\u2014 witness.test/w1 ")
    found = independent_open(cp + answer, {"witness.test/w1": witness.signer.public_key})
    assert abs(found["witness.test/w1"] - time.time()) < 60
    assert witness.state.latest(ORIGIN) == cp


def test_consistent_growth_then_every_refusal(witness, log_signer) -> None:
    url = witness.url
    assert post(url, body(0, 4, checkpoint(log_signer, 4)))[0] == 200
    assert post(url, body(4, 9, checkpoint(log_signer, 9)))[0] == 200
    # 409 + text/x.tlog.size: the old size is not what it cosigned last
    status, ctype, answer = post(url, body(4, 12, checkpoint(log_signer, 12)))
    assert (status, ctype, answer) == (409, "text/x.tlog.size", b"9\n")
    status, ctype, answer = post(url, body(0, 12, checkpoint(log_signer, 12)))
    assert (status, ctype, answer) == (409, "text/x.tlog.size", b"9\n")
    # 400: old size larger than the checkpoint's
    assert (
        post(
            url,
            body(10, 9, checkpoint(log_signer, 9))[0:0] + b"old 10\n\n" + checkpoint(log_signer, 9),
        )[0]
        == 400
    )
    # 400: not a request body at all
    assert post(url, b"hello\n")[0] == 400
    assert post(url, b"old 09\n\n" + checkpoint(log_signer, 9))[0] == 400
    # 404: a log it does not follow
    assert post(url, body(0, 3, checkpoint(log_signer, 3, origin="other.example/log")))[0] == 404
    # 403: signed by a key it does not trust (the right name, another key)
    forger = Signer.from_private_key(generate_key("test.example/log")[0])
    assert post(url, body(9, 12, checkpoint(forger, 12)))[0] == 403
    # 409 (not a size answer): same size, another root
    forked = [merkle.leaf_hash(b"forked %d" % i) for i in range(64)]
    status, ctype, _ = post(url, body(9, 9, checkpoint(log_signer, 9, forked), forked))
    assert status == 409 and ctype != "text/x.tlog.size"
    # 422: the consistency proof does not lead from its root to the new one
    assert post(url, body(9, 12, checkpoint(log_signer, 12, forked), forked))[0] == 422
    tampered = bytearray(body(9, 12, checkpoint(log_signer, 12)))
    tampered[8] ^= 0x01  # a bit of the first proof hash's base64
    assert post(url, bytes(tampered))[0] in (400, 422)
    # the state never moved on any refusal; the same checkpoint again is cosigned again
    assert stored_size(witness) == 9
    assert post(url, body(9, 9, checkpoint(log_signer, 9)))[0] == 200
    assert post(url, body(9, 12, checkpoint(log_signer, 12)))[0] == 200
    assert stored_size(witness) == 12
    # refusals with a valid log signature are kept as evidence; the forger's is not
    reasons = [p.read_bytes().split(b"\n")[:2] for p in witness.state.evidence()]
    statuses = [r[0] for r in reasons]
    assert statuses.count(b"status 422") == 2 and b"status 400" in statuses
    assert any(b"other root" in r[1] for r in reasons)
    assert all(forger.vkey.encode() not in p.read_bytes() for p in witness.state.evidence())


def test_proof_must_be_empty_from_zero(witness, log_signer) -> None:
    cp = checkpoint(log_signer, 8)
    bad = b"old 0\n" + base64.b64encode(LEAVES[0]) + b"\n\n" + cp
    assert post(witness.url, bad)[0] == 422
    assert stored_size(witness) == 0


def test_racing_submissions_never_roll_the_state_back(witness, log_signer) -> None:
    """Clients learn the witness's size from 409 and retry; whatever the interleaving, the
    stored size ends at the largest submitted and each 200 was for a size >= all before."""
    sizes = list(range(2, 40))
    random.Random(7).shuffle(sizes)
    cosigned: list[int] = []
    lock = threading.Lock()

    def client(size: int) -> None:
        old = 0
        cp = checkpoint(log_signer, size)
        for _ in range(50):
            if old > size:
                return
            status, _, answer = post(witness.url, body(old, size, cp))
            if status == 200:
                with lock:
                    cosigned.append(size)
                return
            assert status == 409, (status, answer)
            old = int(answer)

    threads = [threading.Thread(target=client, args=(s,)) for s in sizes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stored_size(witness) == max(sizes)
    assert max(cosigned) == max(sizes)
    # the order the witness cosigned in is increasing: it never went back to a smaller tree
    assert cosigned == sorted(cosigned)


@pytest.mark.e2e
def test_sigkill_mid_update_leaves_old_or_new(tmp_path: Path, log_signer, start_witness) -> None:
    valid = {checkpoint(log_signer, n) for n in range(1, 64)}
    last_acknowledged = 0
    for round_ in range(4):
        w = start_witness(tmp_path / "w", "witness.test/killed", [f"{ORIGIN}={log_signer.vkey}"])
        stop = threading.Event()
        acked: list[int] = []

        def submit(w=w, stop=stop, acked=acked) -> None:
            old = 0
            for size in range(1, 64):
                if stop.is_set():
                    return
                try:
                    status, _, answer = post(w.url, body(old, size, checkpoint(log_signer, size)))
                except OSError:
                    return
                if status == 409:
                    old = int(answer)
                    if old >= size:
                        continue
                    status, _, answer = post(w.url, body(old, size, checkpoint(log_signer, size)))
                if status == 200:
                    acked.append(size)
                    old = size

        thread = threading.Thread(target=submit)
        thread.start()
        time.sleep(0.05 + 0.07 * round_)
        w.kill()
        stop.set()
        thread.join()
        files = list((w.state / "logs").glob("*.checkpoint"))
        digest = hashlib.sha256(ORIGIN.encode()).hexdigest()
        assert [f.name for f in files] in ([], [f"{digest}.checkpoint"])
        if files:
            raw = files[0].read_bytes()
            assert raw in valid, "the state is neither an old nor a new checkpoint"
            size = int(raw.split(b"\n")[1])
            # persisted before answering: nothing acknowledged is missing
            assert size >= max(acked, default=0) and size >= last_acknowledged
            last_acknowledged = size


def test_the_spec_example_request_parses() -> None:
    """c2sp.org/tlog-witness's example request body, byte for byte."""
    from audit_pipeline.witness.server import parse_submission

    example = (
        "old 20852014\n"
        "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n"
        "jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n"
        "5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n"
        "/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n"
        "\n"
        "example.com/behind-the-sofa\n"
        "20852163\n"
        "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        "\n"
        "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URY"
        "N7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
        "\u2014 example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum"
        "2Wks+49/V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=\n"
    ).encode()
    sub = parse_submission(example)
    assert sub.old_size == 20852014 and len(sub.proof) == 4
    assert sub.proof[0] == base64.b64decode("PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=")
    assert sub.note.startswith(b"example.com/behind-the-sofa\n20852163\n")
    assert sub.note.endswith(b"qbSzm9Q=\n")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_body_parses_or_is_a_bad_request(body_bytes: bytes) -> None:
    from audit_pipeline.ledger.errors import LedgerError
    from audit_pipeline.witness.server import parse_submission

    with contextlib.suppress(LedgerError):  # anything else (a crash: a 500) fails the test
        parse_submission(body_bytes)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**63), st.lists(st.binary(min_size=32, max_size=32), max_size=63))
def test_submissions_round_trip(old: int, proof: list[bytes]) -> None:
    from audit_pipeline.witness.committer import submission
    from audit_pipeline.witness.server import parse_submission

    note = b"origin\n1\n" + base64.b64encode(bytes(32)) + b"\n\n\xe2\x80\x94 k AAAA\n"
    sub = parse_submission(submission(old, proof, note))
    assert (sub.old_size, sub.proof, sub.note) == (old, proof, note)
