"""Witnesses: what two local witnesses (``audit-pipeline witness serve``, each in its own
process) cost a commit, and what checking their cosignatures costs ``verify``.

The month prefix of the history is first witnessed hour by hour (every prefix checkpoint
signed and submitted with its consistency proof, as hourly commits would have), so the
verifier checks a month of cosigned checkpoints. Then each repeat commits one more hour
and asks both witnesses, timing the two apart.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from audit_pipeline.lake import PARQUET_FORMAT
from audit_pipeline.ledger import Ledger, load_signing_key, merkle
from audit_pipeline.ledger.checkpoint import Checkpoint, sign_checkpoint
from audit_pipeline.ledger.cosignature import WitnessSigner, with_cosignatures
from audit_pipeline.ledger.witnessed import check_witnessed, witnessed_path
from audit_pipeline.witness.committer import http_post, submission, witness_latest
from audit_pipeline.witness.config import make_policy, parse_witnesses
from benchmarks.common import BenchmarkError, Section, fmt_s, median, timed
from benchmarks.config import Sizes
from benchmarks.ledgers import ORIGIN, BuiltLedger, prefix_copy
from benchmarks.verify import _verified, add_hour


def _start(root: Path, name: str, log: str) -> tuple[subprocess.Popen, str, str]:
    root.mkdir(parents=True, exist_ok=True)
    key = root / "key"
    key.write_text(WitnessSigner.generate(name).private_key_text + "\n")
    key.chmod(0o600)
    cmd = [sys.executable, "-m", "audit_pipeline.cli", "witness", "serve", "--state"]
    cmd += [str(root / "state"), "--key", str(key), "--port", "0", "--log", log]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    vkey = proc.stdout.readline().split()[1]
    listening = proc.stdout.readline()
    if not listening.startswith("listening on "):
        proc.kill()
        raise BenchmarkError("a witness did not start")
    return proc, listening.split()[2], vkey


def _witness_history(ledger: Ledger, urls: list[str]) -> None:
    """Sign and submit the checkpoint of every prefix size, as hourly commits would have."""
    signer = ledger.signer
    leaves = [m.leaf_hash for m in ledger.manifests()]
    for size in range(1, len(leaves) + 1):
        cp = sign_checkpoint(Checkpoint(ORIGIN, size, merkle.root_hash(leaves[:size])), signer)
        proof = merkle.prove_consistency(size - 1, size, leaves) if size > 1 else []
        lines = []
        for url in urls:
            status, _, body = http_post(
                f"{url}/add-checkpoint", submission(size - 1, proof, cp), 10.0
            )
            if status != 200:
                raise BenchmarkError(f"witness {url} answered {status} for size {size}")
            lines.append(body.decode())
        ledger.storage.replace(witnessed_path(size), with_cosignatures(cp, lines))


def run(sizes: Sizes, work: Path, year: BuiltLedger, say: Callable[[str], None]) -> Section:
    section = Section("witnesses")
    month = prefix_copy(year, work / "witnessed-month", sizes.month_hours)
    signer = load_signing_key(month.key_path)
    log = f"{ORIGIN}={signer.vkey}"
    started = [_start(work / f"witness-{i}", f"witness.bench/w{i}", log) for i in (1, 2)]
    try:
        urls = [url for _, url, _ in started]
        policy = make_policy(
            parse_witnesses(
                "\n".join(f"w{i} {url} {vkey}" for i, (_, url, vkey) in enumerate(started, 1)),
                source="benchmark",
            ),
            None,
        )
        ledger = Ledger(month.data_dir, file_format=PARQUET_FORMAT, signer=signer)
        say(f"witnesses: cosigning {sizes.month_hours} hourly checkpoints")
        seconds, _ = timed(lambda: _witness_history(ledger, urls))
        section.row(
            "history cosigned by 2 witnesses",
            fmt_s(seconds),
            f"{sizes.month_hours} checkpoints, {seconds / sizes.month_hours * 1000:.1f} ms each",
        )
        commits, rounds = [], []
        for _ in range(max(3, sizes.verify_repeats)):
            commits.append(add_hour(month, sizes.events_per_hour))
            month.hours += 1
            took, round_ = timed(lambda: witness_latest(ledger, policy))
            if round_ is None or not round_.met:
                raise BenchmarkError(f"witnesses did not cosign: {round_ and round_.summary()}")
            rounds.append(took)
        commit, asked = median(commits), median(rounds)
        section.row(
            "commit: ledger / witnesses (2, local)",
            f"{fmt_s(commit)} / {fmt_s(asked)}",
            f"witnesses add {asked / commit * 100:.0f}% to a commit of "
            f"{sizes.events_per_hour:,} events (median of {len(commits)})",
        )
        keys = policy.keys
        plains, withs = [], []
        for _ in range(3):  # alternated, so drift on a shared machine hits both alike
            plains.append(timed(lambda: _verified(month.data_dir))[0])
            withs.append(timed(lambda: _verified(month.data_dir, witness_keys=keys))[0])
        plain, witnessed = median(plains), median(withs)
        section.row(
            "full verify: without / with witness keys",
            f"{fmt_s(plain)} / {fmt_s(witnessed)}",
            f"{month.hours} batches, {month.hours} cosigned checkpoints x 2 witnesses "
            f"(+{(witnessed - plain) * 1000:.0f} ms, median of 3)",
        )
        leaves = [m.leaf_hash for m in ledger.manifests()]
        roots = {n: merkle.root_hash(leaves[:n]) for n in range(1, len(leaves) + 1)}
        checks = []
        for _ in range(3):
            took, verdict = timed(
                lambda: check_witnessed(
                    ledger.storage, keys, 2, origin=ORIGIN, size=len(leaves), root_at=roots.get
                )
            )
            if not verdict.met:
                raise BenchmarkError("the witness check failed on the witnessed month")
            checks.append(took)
        section.row(
            "the witness part of verify alone",
            f"{median(checks) * 1000:.0f} ms",
            f"{len(leaves)} witnessed checkpoints read and compared with the log, the latest's "
            "2 cosignatures checked (median of 3)",
        )
        section.notes.append(
            "Witnesses run as `audit-pipeline witness serve` processes on loopback: a commit "
            "pays two HTTP round trips (in parallel) plus a consistency proof and the "
            "cosignature checks; remote witnesses add their network latency."
        )
    finally:
        for proc, _, _ in started:
            proc.kill()
            proc.wait(timeout=10)
            proc.stdout.close()
    return section
