"""`sync --data-dir s3://...` against a real SeaweedFS: the demo flow, secrets, races, crashes.

The emulator serves a few hours; ``keys init`` and ``sync`` commit them to the bucket with
create-only, checksummed, COMPLIANCE-retained writes; ``verify`` reads them back through
S3 only. Committers in separate processes (separate signer states, one key) race for the
same manifests; a commit killed at each step leaves the store in a state the next commit
and the verifier handle.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import pytest

from audit_pipeline.cli import main
from audit_pipeline.lake import PARQUET_FORMAT, read_batch_table
from audit_pipeline.ledger.commit import LedgerStateError
from audit_pipeline.ledger.keys import create_signing_key, load_signing_key
from audit_pipeline.ledger.layout import HOUR, batch_data_path
from audit_pipeline.ledger.object_ledger import STAGED, ConcurrentWindowError, ObjectStoreLedger
from audit_pipeline.ledger.signer_state import signer_state_path
from audit_pipeline.ledger.storage import ObjectExistsError
from audit_pipeline.slack.emulator import Emulator, running_emulator
from audit_pipeline.store.ledger import open_ledger, reading_ledger
from audit_pipeline.store.s3 import S3ObjectStore
from audit_pipeline.store.settings import S3Settings
from tests.cli.test_verify_history_prove import H0 as DATA_H0
from tests.cli.test_verify_history_prove import commit_hour
from tests.store.conftest import REGION

pytestmark = pytest.mark.e2e

H0 = 1_795_824_000  # 2026-11-28T00:00Z
HOURS = 3


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with running_emulator(
        rate_limit_per_min=0, start=H0, end=H0 + HOURS * HOUR, events_per_hour=60, seed=11
    ) as emu:
        yield emu


@pytest.fixture
def env(monkeypatch, seaweed, emulator, tmp_path: Path) -> dict[str, str]:
    values = {
        "AWS_ENDPOINT_URL": seaweed.endpoint_url,
        "AWS_ACCESS_KEY_ID": seaweed.pipeline.access_key_id,
        "AWS_SECRET_ACCESS_KEY": seaweed.pipeline.secret_access_key,
        "AWS_REGION": REGION,
        "AUDIT_RETENTION_DAYS": "1",
        "AUDIT_SIGNING_KEY": str(tmp_path / "keys" / "signing-key"),
        "SLACK_AUDIT_TOKEN": emulator.token,
        "SLACK_AUDIT_BASE_URL": emulator.base_url,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    for name in ("AUDIT_DATA_DIR", "AUDIT_WITNESSES", "AUDIT_SIGNER_STATE"):
        monkeypatch.delenv(name, raising=False)
    return values


def _open_reader(url: str):
    return reading_ledger(S3Settings.from_env(url), file_format=PARQUET_FORMAT)


def hour_text(index: int) -> str:
    return f"2026-11-28T{index:02d}"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def sync(capsys, url: str, start: int, end: int) -> tuple[int, dict, str]:
    code, out, err = run(
        capsys,
        "sync",
        "--start",
        hour_text(start),
        "--end",
        hour_text(end),
        "--data-dir",
        url,
        "--json",
        "--max-calls-per-minute",
        "0",
    )
    return code, json.loads(out) if out else {}, err


def test_the_demo_flow_over_s3(capsys, env, tmp_path, data_url, store) -> None:
    code, out, err = run(capsys, "keys", "init", "--data-dir", data_url)
    assert code == 0, err
    assert "stays on this machine" in err and out.startswith("audit-pipeline+")
    code, doc, err = sync(capsys, data_url, 0, HOURS)
    assert code == 0, err
    assert [b["sequence"] for b in doc["batches"]] == [0, 1, 2]
    assert doc["events_committed"] > 0 and doc["checkpoint"]

    code, out, err = run(capsys, "verify", "--data-dir", data_url, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (
        report["ok"]
        and report["tree_size"] == 3
        and report["checked"]["events"] == doc["events_committed"]
    )
    assert report["object_store"]["objects_pinned"] == 3 + 3 + 3 + 3  # + the intents
    assert report["checkpoint"] == doc["checkpoint"]

    # anchored, incremental and ranged, all through S3
    key_file = Path(env["AUDIT_SIGNING_KEY"])
    trusted = tmp_path / "trusted-keyring.json"
    trusted.write_bytes(store.get("ledger/keys/keyring.json"))
    anchors = ["--trusted-keys", str(trusted), "--signer-state", str(signer_state_path(key_file))]
    for extra, check in (
        (["--max-lag", "100000"], lambda r: r["anchored"] and not r["not_ruled_out"]),
        (["--incremental"], lambda r: r["incremental_from"] == 3),
        (["--range", hour_text(1), hour_text(2)], lambda r: r["data_range"]),
    ):
        code, out, err = run(capsys, "verify", "--data-dir", data_url, "--json", *anchors, *extra)
        assert code == 0 and check(json.loads(out)), err
    # the latest checkpoint, and an offline proof of one event, read through S3
    code, out, err = run(capsys, "checkpoint", "--data-dir", data_url)
    assert code == 0 and out == doc["checkpoint"], err
    reader = _open_reader(data_url)
    second = reader.storage.regular_path(reader.manifests()[1].manifest.data.path)
    event_id = read_batch_table(second).column("event_id")[0].as_py()
    proof = tmp_path / "proof.json"
    code, _, err = run(capsys, "prove", event_id, "--data-dir", data_url, "--out", str(proof))
    assert code == 0 and "batch 1" in err, err
    code, _, err = run(capsys, "verify-proof", str(proof), "--public-key", str(trusted))
    assert code == 0, err

    # the auditors' dataset: built locally from a verified, hash-checked copy
    database = tmp_path / "auditor" / "audit.duckdb"
    database.parent.mkdir()
    code, out, err = run(
        capsys, "dataset", "build", "--data-dir", data_url, "--database", str(database), "--json"
    )
    assert code == 0, err
    built = json.loads(out)
    assert built["events"] == doc["events_committed"] and built["batches"] == 3
    assert "verified with its versions" in err
    code, out, err = run(
        capsys, "query", "--database", str(database), "SELECT count(*) AS n FROM audit_events"
    )
    assert code == 0 and str(doc["events_committed"]) in out, err
    code, _, err = run(capsys, "verify", str(database.with_name("audit.ledger")))
    assert code == 0, err  # the local copy is a data directory like any other

    # the report and an evidence bundle, each from a copy verified with the store's versions
    code, _, err = run(
        capsys,
        "report",
        "--data-dir",
        data_url,
        "--database",
        str(database),
        "--out",
        str(tmp_path / "report.html"),
    )
    assert code == 0 and (tmp_path / "report.html").stat().st_size > 0, err
    bundle = tmp_path / "evidence.zip"
    code, _, err = run(
        capsys,
        "export-evidence",
        "--data-dir",
        data_url,
        "--start",
        hour_text(1),
        "--end",
        hour_text(2),
        "--out",
        str(bundle),
    )
    assert code == 0, err
    code, _, err = run(capsys, "verify", str(bundle), "--range", hour_text(1), hour_text(2))
    assert code == 0, err

    # again: nothing new for the hours held
    code, again, err = sync(capsys, data_url, 0, HOURS)
    assert code == 0 and again["events_committed"] == 0, err
    assert len(store.list_keys("ledger/manifests/")) == 3

    # the bucket holds records only: no key, no signer state, no token, no credentials
    secrets_ = [
        key_file.read_bytes().strip(),
        env["SLACK_AUDIT_TOKEN"].encode(),
        env["AWS_SECRET_ACCESS_KEY"].encode(),
    ]
    for key in store.list_keys(""):
        body = store.get(key)
        assert not any(secret in body for secret in secrets_), key
        assert "signer" not in key and "signing-key" not in key
    assert signer_state_path(key_file).is_file()  # beside the key, on this machine
    assert not (Path.cwd() / "s3:").exists()


def test_a_bucket_without_object_lock_is_refused_before_anything(
    capsys, env, seaweed, store
) -> None:
    store.client.create_bucket(Bucket="plain-bucket")
    code, _, err = run(capsys, "keys", "init", "--data-dir", "s3://plain-bucket/x")
    assert code == 2 and "does not have Object Lock enabled" in err
    assert not Path(env["AUDIT_SIGNING_KEY"]).exists()  # nothing made for a refused store
    create_signing_key(Path(env["AUDIT_SIGNING_KEY"]), "audit-pipeline")
    code, _, err = sync(capsys, "s3://plain-bucket/x", 0, 1)
    assert code == 2 and "Object Lock" in err and len(err.strip().splitlines()) == 1


# -- racing committers and crashes: ObjectStoreLedger directly -------------------------


def _open(settings: S3Settings, key_path: Path, state_dir: Path) -> ObjectStoreLedger:
    return open_ledger(
        settings,
        file_format=PARQUET_FORMAT,
        signer=load_signing_key(key_path),
        key_path=key_path,
        signer_state=state_dir / "signer-state",
        origin="test.example/s3",
    )


def _committed(keyed: tuple[S3Settings, Path], state_dir: Path, *hours: int) -> ObjectStoreLedger:
    """_committed is a committer on the test's store that has committed ``hours``."""
    ledger = _open(*keyed, state_dir)
    for hour in hours:
        commit_hour(ledger, hour)
    return ledger


def _committer(settings: S3Settings, key_path: str, state_dir: str, hour: int, start) -> None:
    """One process: its own signer state, the shared key, one hour to commit."""
    ledger = _open(settings, Path(key_path), Path(state_dir))
    start.wait()
    commit_hour(ledger, hour)
    commit_hour(ledger, 0)  # every process also offers hour 0: committed once


@pytest.fixture
def keyed(capsys, env, data_url) -> tuple[S3Settings, Path]:
    code, _, err = run(capsys, "keys", "init", "--data-dir", data_url)
    assert code == 0, err
    return S3Settings.from_env(data_url), Path(env["AUDIT_SIGNING_KEY"])


def test_eight_committers_in_separate_processes_make_one_linear_chain(
    capsys, keyed, tmp_path, data_url, store, monkeypatch
) -> None:
    settings, key_path = keyed
    # A spawned process imports its target by module name; pytest's importlib mode does not
    # put the repository on sys.path, and the child starts from the parent's sys.path.
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [
        context.Process(
            target=_committer,
            args=(settings, str(key_path), str(tmp_path / f"state-{n}"), n + 1, start),
        )
        for n in range(8)
    ]
    for n, worker in enumerate(workers):
        (tmp_path / f"state-{n}").mkdir()
        worker.start()
    start.set()
    for worker in workers:
        worker.join(180)
        assert worker.exitcode == 0
    ledger = _open(settings, key_path, tmp_path)
    chain = ledger.manifests()
    assert len(chain) == 9
    hours = sorted(m.manifest.window_start for m in chain)
    assert hours == [DATA_H0 + h * HOUR for h in range(9)]  # each hour once: no duplicates
    assert all(m.manifest.kind == "hour" for m in chain)
    code, out, err = run(capsys, "verify", "--data-dir", data_url, "--json")
    report = json.loads(out)
    assert code == 0, err
    assert report["tree_size"] == 9 and report["checked"]["events"] == 27
    # losers' data objects, if any, are leftovers vouched for by their intents
    assert {n["code"] for n in report["notices"]} <= {"uncommitted_leftover"}
    assert_pinned(chain, store)


STEPS = ["data_written", "intent_written", "data_linked", "manifest_written"]


class Crash(Exception):
    pass


def crash_at(step: str):
    """crash_at is a commit step hook that dies at ``step``."""

    def hook(name: str) -> None:
        if name == step:
            raise Crash(name)

    return hook


@pytest.mark.parametrize("step", STEPS)
def test_a_commit_killed_at_each_step_recovers(capsys, keyed, tmp_path, data_url, step) -> None:
    settings, key_path = keyed
    first = _open(settings, key_path, tmp_path)
    commit_hour(first, 0)

    crashing = _open(settings, key_path, tmp_path)
    crashing._step = crash_at(step)  # type: ignore[method-assign]
    with pytest.raises(Crash):
        commit_hour(crashing, 1)

    # what the crash left verifies: a leftover at most, never a batch
    code, out, err = run(capsys, "verify", "--data-dir", data_url, "--json")
    report = json.loads(out)
    assert code == 0, err
    committed = step == "manifest_written"
    assert report["tree_size"] == (2 if committed else 1)
    leftovers = [n for n in report["notices"] if n["code"] == "uncommitted_leftover"]
    assert len(leftovers) == (1 if step == "data_linked" else 0)

    # a fresh committer (another process would do the same) finishes the hour exactly once
    again = _open(settings, key_path, tmp_path)
    commit_hour(again, 1)
    commit_hour(again, 2)
    chain = again.manifests()
    per_hour = [m.manifest.window_start for m in chain]
    assert per_hour == [DATA_H0, DATA_H0 + HOUR, DATA_H0 + 2 * HOUR]
    assert sum(m.manifest.event_count for m in chain) == 9
    code, out, err = run(capsys, "verify", "--data-dir", data_url, "--json")
    report = json.loads(out)
    assert code == 0 and report["tree_size"] == 3, err
    assert report["checkpoint"] is not None
    assert_pinned(chain, S3ObjectStore(settings))


def assert_pinned(chain, store: S3ObjectStore) -> None:
    """Every committed manifest with data pins its data object's one version."""
    for signed in chain:
        data = signed.manifest.data
        if data is not None:
            versions = store.list_versions(data.path)
            assert [v.version_id for v in versions] == [signed.manifest.data_version_id]


def test_overwrites_of_committed_objects_are_refused(keyed, tmp_path, store) -> None:
    settings, key_path = keyed
    ledger = _open(settings, key_path, tmp_path)
    commit_hour(ledger, 0)
    data = ledger.manifests()[0].manifest.data
    taken = [data.path, "ledger/manifests/00000000.json", "ledger/checkpoints/00000001.checkpoint"]
    taken += store.list_keys(f"{STAGED}/")
    assert len(taken) == 4
    for key in taken:
        with pytest.raises(ObjectExistsError):
            store.put_new(key, b"forged")
    for key in taken:  # every record the commit made is locked in COMPLIANCE mode
        stored = store.head(key)
        assert stored.lock_mode == "COMPLIANCE" and stored.retain_until is not None
        assert stored.sha256 is not None  # the server verified and keeps its SHA-256


def test_a_race_for_the_same_hour_commits_each_event_once(
    capsys, keyed, tmp_path, data_url, store
) -> None:
    """Two committers build the same hour; the loser finds the hour's data path taken, and
    stops without committing rather than write a batch built for another chain; its intent
    stays (nothing is deleted) and vouches for nothing in the lake."""
    settings, key_path = keyed
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    loser = _open(settings, key_path, tmp_path / "a")
    winner = _open(settings, key_path, tmp_path / "b")

    def race(name: str) -> None:
        if name == "data_written":  # the loser has built its batch: the winner commits first
            commit_hour(winner, 0, n=2)

    loser._step = race  # type: ignore[method-assign]
    with pytest.raises(ConcurrentWindowError):
        commit_hour(loser, 0, n=3)
    chain = winner.manifests()
    assert [m.manifest.kind for m in chain] == ["hour"] and chain[0].manifest.event_count == 2
    code, out, err = run(capsys, "verify", "--data-dir", data_url, "--json")
    report = json.loads(out)
    assert code == 0 and report["notices"] == [], err
    assert len(store.list_keys(f"{STAGED}/")) == 2  # the winner's and the loser's intents
    # the next run commits the rest as a late batch, every event once
    loser._step = lambda name: None  # type: ignore[method-assign]
    commit_hour(_open(settings, key_path, tmp_path / "a"), 0, n=3)
    chain = winner.manifests()
    assert [m.manifest.kind for m in chain] == ["hour", "late"]
    assert sum(m.manifest.event_count for m in chain) == 3
    assert_pinned(chain, store)


def test_a_crashed_commit_rolled_forward_by_another_committer_is_pinned(
    capsys, keyed, tmp_path, data_url, store
) -> None:
    """The crashed committer's data path is what the next one needs: the next one commits
    the crashed batch from its intent, pinned to the data object's version and signed by
    itself, then finds its own events held."""
    settings, key_path = keyed
    commit_hour(_open(settings, key_path, tmp_path), 0)
    (tmp_path / "crashed").mkdir()
    crashing = _open(settings, key_path, tmp_path / "crashed")
    crashing._step = crash_at("data_linked")  # type: ignore[method-assign]
    with pytest.raises(Crash):
        commit_hour(crashing, 1, n=3)
    finisher = _open(settings, key_path, tmp_path)
    commit_hour(finisher, 1, n=2)  # other bytes for the same data path
    chain = finisher.manifests()
    assert [m.manifest.event_count for m in chain] == [3, 3]  # the crashed batch, once
    intents = [k for k in store.list_keys(f"{STAGED}/") if k.startswith(f"{STAGED}/00000001-")]
    intent = store.get(intents[0])
    assert chain[1].raw != intent and b"data_version_id" not in intent
    assert_pinned(chain, store)
    code, out, err = run(capsys, "verify", "--data-dir", data_url, "--json")
    assert code == 0 and json.loads(out)["tree_size"] == 2, err


def test_verify_audits_a_data_object_against_the_version_its_manifest_pins(
    capsys, keyed, tmp_path, data_url, store
) -> None:
    """A manifest whose pin is not the data object's version: the pin is what is audited
    (with the first-version rule, this store would look clean)."""
    settings, key_path = keyed
    ledger = _open(settings, key_path, tmp_path)
    commit_hour(ledger, 0)
    other = store.head("ledger/manifests/00000000.json").version_id  # a real, foreign id
    pin = ObjectStoreLedger._pinned
    ledger._pinned = lambda intent, _: pin(ledger, intent, other)  # type: ignore[method-assign]
    commit_hour(ledger, 1)
    target = ledger.manifests()[1].manifest.data.path
    code, out, err = run(capsys, "verify", "--data-dir", data_url, "--json")
    report = json.loads(out)
    assert code == 1, err
    found = {(f["code"], f["location"]) for f in report["findings"]}
    assert found == {
        ("pinned_version_missing", target),
        ("current_version_differs", target),
        ("extra_version", target),
    }


def test_a_new_version_with_the_same_bytes_differs_from_the_pin(
    capsys, keyed, tmp_path, seaweed, data_url, store
) -> None:
    ledger = _committed(keyed, tmp_path, 0)
    signed = ledger.manifests()[0]
    data = signed.manifest.data
    client = store.client  # the pipeline's own credentials, without If-None-Match
    client.put_object(
        Bucket=store.location.bucket, Key=store.location.key(data.path), Body=store.get(data.path)
    )
    code, out, err = run(capsys, "verify", "--data-dir", data_url, "--json")
    report = json.loads(out)
    assert code == 1, err
    by_code = {f["code"]: f for f in report["findings"]}
    assert set(by_code) == {"current_version_differs", "extra_version"}
    assert (
        f"pinned {signed.manifest.data_version_id}" in by_code["current_version_differs"]["detail"]
    )


def test_a_data_path_taken_by_an_object_no_intent_describes_stops_the_commit(
    keyed, tmp_path, store
) -> None:
    """Nothing can be rolled forward and nothing deleted: the commit stops and says why,
    rather than rebasing onto the same head until it gives up."""
    settings, key_path = keyed
    ledger = _open(settings, key_path, tmp_path)
    commit_hour(ledger, 0)
    taken = batch_data_path(DATA_H0 + HOUR, 1, "hour", PARQUET_FORMAT.suffix)
    store.put_new(taken, b"planted before the commit")
    with pytest.raises(LedgerStateError, match="no signed intent of batch 1"):
        commit_hour(ledger, 1)
    assert len(ledger.manifests()) == 1


def test_key_and_query_commands_read_the_store(
    capsys, keyed, monkeypatch, seaweed, tmp_path, data_url
) -> None:
    _committed(keyed, tmp_path, 0, 1)
    vkey = load_signing_key(keyed[1]).vkey
    database = tmp_path / "auditor" / "audit.duckdb"
    database.parent.mkdir()
    code, _, err = run(
        capsys, "dataset", "build", "--data-dir", data_url, "--database", str(database)
    )
    assert code == 0, err

    # reading commands need no more than the reader's credentials
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.reader.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.reader.secret_access_key)
    code, out, err = run(capsys, "keys", "list", "--data-dir", data_url, "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert listed["keyring"] == f"{data_url}/ledger/keys/keyring.json"
    assert [(k["vkey"], k["status_now"]) for k in listed["keys"]] == [(vkey, "valid")]
    code, out, err = run(capsys, "keys", "public", "--data-dir", data_url)
    assert code == 0 and f"\n{vkey} valid_from_size=0 " in out and "batches 0.." in out, err
    sql = "SELECT count(*) AS n FROM audit_events"
    code, out, err = run(capsys, "query", "--data-dir", data_url, "--database", str(database), sql)
    assert code == 0 and "6" in out and "matches its seal" in err, err
    code, out, err = run(capsys, "query", "--data-dir", data_url, sql)
    assert code == 2 and "give --database FILE" in err and not out
    code, _, err = run(
        capsys, "keys", "restart-signer", "--data-dir", data_url, "--reason", "new machine"
    )
    assert code == 0 and "continues from size 2" in err, err

    # keyring changes cannot be write-once: refused in one line with what to do instead
    for argv in (["rotate"], ["revoke", vkey]):
        code, out, err = run(capsys, "keys", *argv, "--data-dir", data_url)
        assert code == 2 and not out and len(err.strip().splitlines()) == 1
        assert "created once" in err and "--trusted-keys" in err and "new log" in err
