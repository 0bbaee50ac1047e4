"""prove with the event's hour reads only that hour's batches, late ones included."""

from __future__ import annotations

from audit_pipeline.lake import (
    PARQUET_FORMAT,
    events_from_table,
    normalize_entries,
    write_batch_file,
)
from audit_pipeline.ledger import Ledger, prove_event, verify_event_proof
from audit_pipeline.ledger.keys import init_key, load_keyring

H = 1795860000
HOUR = 3600


def entry(event_id: str, second: int) -> dict:
    return {"id": event_id, "date_create": second, "action": "user_login"}


def commit(ledger, window: int, entries: list[dict]) -> None:
    table = normalize_entries(entries, window_start=window, window_end=window + HOUR).table
    ledger.commit_batch(
        window_start=window,
        window_end=window + HOUR,
        events=events_from_table(table),
        write_data=lambda _events, path: write_batch_file(table, path),
        source={"test": True},
        run_id="prove-by-hour",
    )


def test_late_batch_found_by_hour_and_stray_files_ignored(tmp_path):
    data_dir = tmp_path / "data"
    signer, _, _ = init_key(data_dir, tmp_path / "key", name="hour-test", now=H - 86_400)
    ledger = Ledger(data_dir, file_format=PARQUET_FORMAT, signer=signer, origin="test/hours")
    commit(ledger, H, [entry("a", H + 1)])
    commit(ledger, H + HOUR, [entry("b", H + HOUR + 1)])
    commit(ledger, H, [entry("late", H + 7)])  # a late batch for H
    hour_dir = ledger.data_dir / "lake" / "date=2026-11-28" / "hour=10"
    (hour_dir / "00000099-hour.parquet").write_bytes(b"not ours")  # never read: no manifest 99
    proof = prove_event(ledger.data_dir, "late", file_format=PARQUET_FORMAT, window_start=H)
    assert proof["log_index"] == 2
    verified = verify_event_proof(proof, load_keyring(ledger.data_dir))
    assert verified.event["id"] == "late"
    first = prove_event(ledger.data_dir, "a", file_format=PARQUET_FORMAT, window_start=H)
    assert first["log_index"] == 0
