"""Proofs: ``prove`` and ``verify-proof`` latency and proof size on the year ledger."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from audit_pipeline.ingest import format_hour
from audit_pipeline.lake import PARQUET_FORMAT
from audit_pipeline.ledger import Ledger, load_keyring, prove_event, verify_event_proof
from audit_pipeline.ledger.proofs import proof_bytes
from benchmarks.common import (
    BenchmarkError,
    Section,
    fmt_ms,
    median,
    module_argv,
    run_child,
    timed,
)
from benchmarks.config import Sizes
from benchmarks.ledgers import BuiltLedger
from benchmarks.profiles import PROVE_PARTS, breakdown, profile_call


def _sample_events(year: BuiltLedger, count: int) -> list[tuple[str, int]]:
    """``count`` (event id, hour) pairs from batches spread over the year."""
    chain = Ledger(year.data_dir, file_format=PARQUET_FORMAT).manifests()
    with_data = [m for m in chain if m.manifest.data is not None]
    rng = random.Random(11)
    picked = []
    for signed in rng.sample(with_data, min(count, len(with_data))):
        records = PARQUET_FORMAT.read_events(year.data_dir / signed.manifest.data.path)
        picked.append((rng.choice(records).event_id, signed.manifest.window_start))
    return picked


def run(
    sizes: Sizes,
    work: Path,
    year: BuiltLedger,
    say: Callable[[str], None],
    profile: bool = False,
) -> Section:
    section = Section("proofs")
    keyring = load_keyring(year.data_dir)
    events = _sample_events(year, sizes.proof_repeats)
    say(f"proofs: proving and verifying {len(events)} events")
    prove_s, verify_s, sizes_b = [], [], []
    for event_id, hour in events:
        seconds, proof = timed(
            lambda event_id=event_id, hour=hour: prove_event(
                year.data_dir, event_id, file_format=PARQUET_FORMAT, window_start=hour
            )
        )
        prove_s.append(seconds)
        raw = proof_bytes(proof)
        sizes_b.append(len(raw))
        seconds, verified = timed(lambda raw=raw: verify_event_proof(raw, keyring))
        if verified.event_id != event_id:
            raise BenchmarkError(f"proof of {event_id} verified as {verified.event_id}")
        verify_s.append(seconds)
    event_id, hour = events[len(events) // 2]
    if profile:
        found = profile_call(
            "prove-in-a-year",
            lambda: prove_event(
                year.data_dir, event_id, file_format=PARQUET_FORMAT, window_start=hour
            ),
        )
        section.extra["profiles"] = [
            {
                "title": f"prove with the hour known, {year.hours:,} batches",
                "rows": breakdown(found["session"], PROVE_PARTS),
                "path": found["path"],
                "duration": found["duration"],
            }
        ]
    unhinted, _ = timed(lambda: prove_event(year.data_dir, event_id, file_format=PARQUET_FORMAT))
    cli = run_child(
        module_argv("audit_pipeline.cli", "prove", event_id, f"--hour={format_hour(hour)}",
                    f"--data-dir={year.data_dir}", f"--out={work / 'proof.json'}")
    )  # fmt: skip
    section.check(
        "prove (event's hour known)",
        fmt_ms(median(prove_s)),
        median(prove_s) < 0.05,
        "< 50 ms in process",
        f"max {fmt_ms(max(prove_s))} over {len(prove_s)} events; without the hour "
        f"{fmt_ms(unhinted)}",
    )
    section.check(
        "`audit-pipeline prove --hour`, end to end",
        fmt_ms(cli.seconds),
        cli.seconds < 0.5,
        "< 0.5 s",
        "one process: start-up, imports, proof written",
    )
    section.check(
        "verify-proof",
        fmt_ms(median(verify_s)),
        median(verify_s) < 0.01,
        "< 10 ms",
        f"max {fmt_ms(max(verify_s))}",
    )
    section.check(
        "proof size",
        f"{median(sizes_b):,.0f} B",
        max(sizes_b) < 4096,
        "< 4 KB",
        f"max {max(sizes_b):,} B (canonical JSON file, event included)",
    )
    section.notes.append(
        f"Events sampled from {len(events)} batches across the {year.hours:,}-batch ledger; "
        "proofs against its latest checkpoint, verified with the keyring's public keys. "
        "`prove` is given the event's hour, as an auditor reading it from the dataset would; "
        "without it every batch is searched newest first."
    )
    section.extra.update({"prove": median(prove_s), "verify": median(verify_s)})
    return section
