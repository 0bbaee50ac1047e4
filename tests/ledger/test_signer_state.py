"""The signer keeps its last signed checkpoint outside the data directory and cannot be made
to fork: truncation and rewritten history are refused before anything is written; a
deliberate restart is recorded; the state survives a kill at every step of its update."""

from __future__ import annotations

import multiprocessing
import os
import signal
import stat
from pathlib import Path

import pytest

from audit_pipeline.ledger.commit import Ledger
from audit_pipeline.ledger.layout import checkpoint_path, manifest_path
from audit_pipeline.ledger.signer_state import (
    SignerRefusal,
    SignerStateError,
    load_signer_state,
    reset_signer_state,
    signer_state_path,
)

STATE_STEPS = ["state_half_written", "state_written", "state_synced", "state_replaced"]


@pytest.fixture
def state_path(key_path: Path) -> Path:
    return signer_state_path(key_path, {})


@pytest.fixture
def guarded(six_hours: Ledger, state_path: Path, lh) -> Ledger:
    """The six-hour ledger opened with a signer state, after one commit recorded it."""
    ledger = Ledger(
        six_hours.data_dir,
        file_format=lh.JSONL,
        signer=six_hours.signer,
        clock=six_hours.clock,
        signer_state=state_path,
    )
    lh.commit(ledger, 6)
    return ledger


def _delete_batch(data_dir: Path, seq: int) -> None:
    for rel in (manifest_path(seq), checkpoint_path(seq + 1)):
        (data_dir / rel).unlink()
    for path in (data_dir / "lake").rglob(f"{seq:08d}-*"):
        path.unlink()


def test_state_records_the_newest_signed_checkpoint(guarded: Ledger, state_path: Path) -> None:
    state = load_signer_state(state_path)
    assert state is not None
    assert (state.origin, state.size) == (guarded.manifests()[0].manifest.origin, 8)
    assert state.checkpoint.encode() == guarded.latest_checkpoint()
    assert stat.S_IMODE(state_path.stat().st_mode) == 0o600
    assert signer_state_path(Path("/k/signing-key"), {"AUDIT_SIGNER_STATE": "/s"}) == Path("/s")


@pytest.mark.parametrize(("lost", "said"), [((7,), "1 batch:"), ((7, 6), "2 batches:")])
def test_truncated_log_is_refused_naming_the_batches_lost(
    guarded: Ledger, lh, lost: tuple[int, ...], said: str
) -> None:
    data_dir = guarded.data_dir
    for seq in lost:
        _delete_batch(data_dir, seq)
    fresh = Ledger(
        data_dir,
        file_format=lh.JSONL,
        signer=guarded.signer,
        clock=guarded.clock,
        signer_state=guarded.signer_state,
    )
    with pytest.raises(SignerRefusal, match=f"truncated by {said}"):
        lh.commit(fresh, 7)
    assert not (data_dir / manifest_path(min(lost))).exists()
    assert not (data_dir / checkpoint_path(min(lost) + 1)).exists()


def test_rewritten_log_is_refused_as_a_fork(guarded: Ledger, tmp_path: Path, lh) -> None:
    # The insider rebuilds the log from scratch (same origin, same key: the key is on the
    # signer's machine, the directory is theirs) with other events and more batches.
    forged = tmp_path / "forged"
    forged.mkdir()
    (forged / "ledger" / "keys").mkdir(parents=True)
    (forged / "ledger" / "keys" / "keyring.json").write_bytes(
        (guarded.data_dir / "ledger" / "keys" / "keyring.json").read_bytes()
    )
    unguarded = Ledger(
        forged, file_format=lh.JSONL, signer=guarded.signer, origin=lh.ORIGIN, clock=lh.Clock()
    )
    for h in range(9):
        lh.commit(unguarded, h, lh.make_events(h, 2, prefix="forged"))
    victim = Ledger(
        forged,
        file_format=lh.JSONL,
        signer=guarded.signer,
        clock=lh.Clock(lh.CLOCK_START + 9000),
        signer_state=guarded.signer_state,
    )
    with pytest.raises(SignerRefusal, match="fork at size 8"):
        lh.commit(victim, 9)
    assert victim.tree_size() == 9


def test_another_origin_is_refused(guarded: Ledger, tmp_path: Path, lh) -> None:
    other = Ledger(
        tmp_path / "data2",
        file_format=lh.JSONL,
        signer=guarded.signer,
        origin="other.example/log",
        clock=lh.Clock(),
        signer_state=guarded.signer_state,
    )
    with pytest.raises(SignerRefusal, match="last signed log"):
        lh.commit(other, 0)


def test_deliberate_restart_is_recorded_and_then_signs(guarded: Ledger, lh) -> None:
    _delete_batch(guarded.data_dir, 7)
    state = reset_signer_state(
        guarded.signer_state,
        reason="restored last night's backup",
        now=lh.CLOCK_START + 5000,
        adopt=(guarded.data_dir / checkpoint_path(7)).read_bytes(),
    )
    assert state.size == 7
    (reset,) = state.resets
    assert reset["reason"] == "restored last night's backup"
    assert reset["previous"]["size"] == 8
    fresh = Ledger(
        guarded.data_dir,
        file_format=lh.JSONL,
        signer=guarded.signer,
        clock=guarded.clock,
        signer_state=guarded.signer_state,
    )
    assert lh.commit(fresh, 6).sequence == 7
    after = load_signer_state(guarded.signer_state)
    assert after.size == 8 and after.resets == state.resets
    assert lh.verify(guarded.data_dir).ok
    with pytest.raises(Exception, match="reason"):
        reset_signer_state(guarded.signer_state, reason=" ", now=0)


@pytest.mark.parametrize(
    "content",
    [b"", b'{"schema":"audit_pipeline.signer-state/v1","size":3}', b"\x00garbage"],
)
def test_unreadable_state_refuses_to_sign(guarded: Ledger, content: bytes, lh) -> None:
    guarded.signer_state.write_bytes(content)
    with pytest.raises(SignerStateError, match="restart-signer"):
        lh.commit(guarded, 7)


def test_state_that_is_a_link_is_refused(guarded: Ledger, tmp_path: Path, lh) -> None:
    real = tmp_path / "elsewhere.state"
    os.replace(guarded.signer_state, real)
    guarded.signer_state.symlink_to(real)
    with pytest.raises(SignerStateError, match="cannot open"):
        lh.commit(guarded, 7)


def _crashing_commit(data_dir: Path, skey: str, state: Path, point: str, lh) -> None:
    from audit_pipeline.ledger.note import Signer

    class Crashing(Ledger):
        def _step(self, name: str) -> None:
            if name == point:
                os.kill(os.getpid(), signal.SIGKILL)

    ledger = Crashing(
        data_dir,
        file_format=lh.JSONL,
        signer=Signer.from_private_key(skey),
        clock=lh.Clock(lh.CLOCK_START + 2000),
        signer_state=state,
    )
    lh.commit(ledger, 7, lh.make_events(7, 4))
    os._exit(0)


@pytest.mark.e2e
@pytest.mark.parametrize("point", STATE_STEPS)
def test_kill_during_state_update_then_next_commit_completes(
    guarded: Ledger, key_path: Path, point: str, lh
) -> None:
    before = load_signer_state(guarded.signer_state)
    child = multiprocessing.get_context("fork").Process(
        target=_crashing_commit,
        args=(guarded.data_dir, key_path.read_text().strip(), guarded.signer_state, point, lh),
    )
    child.start()
    child.join(30)
    assert child.exitcode == -signal.SIGKILL, f"{point}: never reached"

    after_crash = load_signer_state(guarded.signer_state)  # never half-written
    assert after_crash.size == (9 if point == "state_replaced" else before.size)
    assert lh.verify(guarded.data_dir).ok

    rerun = Ledger(
        guarded.data_dir,
        file_format=lh.JSONL,
        signer=guarded.signer,
        clock=lh.Clock(lh.CLOCK_START + 3000),
        signer_state=guarded.signer_state,
    )
    lh.commit(rerun, 7, lh.make_events(7, 4))
    lh.commit(rerun, 8)
    final = lh.verify(guarded.data_dir)
    assert final.ok and not final.notices, final.summary()
    state = load_signer_state(guarded.signer_state)
    assert state.size == final.tree_size == 10
    assert state.checkpoint.encode() == rerun.latest_checkpoint()
    leftovers = [p for p in guarded.signer_state.parent.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) <= 1  # at most the killed process's own temporary name
