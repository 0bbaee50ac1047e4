"""`audit-pipeline verify --data-dir s3://...` against a real SeaweedFS with Object Lock.

A ledger committed locally is copied into the bucket with the pipeline's create-only,
checksummed, COMPLIANCE-retained writes; then the verifier reads it through S3 only and
audits every version. Changes through S3 (with the pipeline's own credentials) and behind
its back (the filer) must show as named findings; the retention setting shows in the
summary.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from audit_pipeline.cli import main
from audit_pipeline.ledger import Ledger
from audit_pipeline.ledger.batch_index import INDEX, index_path
from audit_pipeline.ledger.layout import KEYRING, LocalStorage, checkpoint_path, manifest_path
from audit_pipeline.ledger.storage import ObjectExistsError
from audit_pipeline.ledger.tiles import TILE_WIDTH, TILES, tile_path
from audit_pipeline.store.s3 import S3ObjectStore
from audit_pipeline.store.seaweedfs import SeaweedServer
from tests.cli.test_verify_history_prove import commit_hour
from tests.store.conftest import REGION, pipeline_client, settings_for

pytestmark = pytest.mark.e2e


def upload(ledger: Ledger, store: S3ObjectStore, skip: set[str] | None = None) -> list[str]:
    """upload copies a local ledger into the store, data before the records naming it
    (but the keys in ``skip``, copied before)."""
    local = LocalStorage(ledger.data_dir)
    keys = [
        *local.walk_files("lake"),
        *local.walk_files("ledger/manifests"),
        *local.walk_files("ledger/checkpoints"),
        *local.walk_files(TILES),
        *local.walk_files(INDEX),
        KEYRING,
    ]
    keys = [k for k in keys if k not in (skip or ())]
    for rel in keys:
        store.put_new(rel, local.read(rel))
    return keys


@pytest.fixture
def s3_env(monkeypatch, seaweed: SeaweedServer) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweed.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.pipeline.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.pipeline.secret_access_key)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AUDIT_RETENTION_DAYS", "1")
    monkeypatch.delenv("AUDIT_DATA_DIR", raising=False)


@pytest.fixture
def uploaded(ledger: Ledger, store: S3ObjectStore) -> list[str]:
    for hour in range(3):
        commit_hour(ledger, hour)
    return upload(ledger, store)


def verify(capsys, url: str, *extra: str) -> tuple[int, dict, str]:
    code = main(["verify", "--data-dir", url, "--json", *extra])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out else {}, err


def codes(doc: dict) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for f in doc["findings"]:
        found.setdefault(f["code"], set()).add(f["location"])
    return found


def data_key(uploaded: list[str], index: int = 0) -> str:
    return [k for k in uploaded if k.startswith("lake/")][index]


def test_a_clean_ledger_verifies_through_s3_with_its_retention_shown(
    capsys, s3_env, data_url, uploaded
) -> None:
    code, doc, err = verify(capsys, data_url)
    assert code == 0, err
    assert doc["ok"] and doc["tree_size"] == 3 and doc["checked"]["data_files"] == 3
    assert doc["checked"]["events"] == 9
    store = doc["object_store"]
    assert store["retention_days"] == 1 and store["location"] == data_url
    assert store["objects_pinned"] == 3 + 3 + 3  # data files, manifests, checkpoints
    # the verdict opens its own line (progress lines come first on a slow machine)
    assert "AUDIT_RETENTION_DAYS=1" in err and "\nOK: ledger" in "\n" + err
    assert "not recorded in a verification history" in err


def test_jobs_and_depth_on_s3_one_process_with_a_notice(capsys, s3_env, data_url, uploaded) -> None:
    code, doc, err = verify(capsys, data_url, "--jobs", "2", "--depth", "files")
    assert code == 0, err
    assert doc["checked"]["depth"] == "files" and doc["checked"]["data_files"] == 3
    notices = {n["code"] for n in doc["notices"]}
    assert {"jobs_not_used", "rows_not_rederived"} <= notices
    code, doc, err = verify(capsys, data_url, "--jobs", "2")
    assert code == 0 and doc["checked"]["events"] == 9, err


def test_writes_through_s3_are_refused_or_named(
    capsys, s3_env, seaweed, data_url, uploaded, store
) -> None:
    target = data_key(uploaded)
    with pytest.raises(ObjectExistsError):
        store.put_new(target, b"forged")
    first = store.head(target)
    client = pipeline_client(seaweed)
    bucket, full = store.location.bucket, store.location.key(target)
    with pytest.raises(ClientError) as refused:
        client.delete_object(Bucket=bucket, Key=full, VersionId=first.version_id)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    # what the pipeline's own credentials can still do: a new current version, a marker
    client.put_object(Bucket=bucket, Key=full, Body=b"forged bytes")
    manifest = store.location.key(manifest_path(2))
    client.delete_object(Bucket=bucket, Key=manifest)

    code, doc, err = verify(capsys, data_url)
    assert code == 1 and not doc["ok"]
    found = codes(doc)
    assert target in found["current_version_differs"]
    assert target in found["extra_version"]
    assert target in found["file_hash_mismatch"]  # readers would get the forged bytes
    assert manifest_path(2) in found["delete_marker"]
    assert "missing_manifest" in found or "tail_truncated" in found
    assert "FAIL:" in err and "AUDIT_RETENTION_DAYS=1" in err


def _filer_put(seaweed: SeaweedServer, store: S3ObjectStore, rel: str, body: bytes) -> None:
    """_filer_put writes behind S3's back: the storage layer, bypassing Object Lock."""
    path = f"/buckets/{store.location.bucket}/{store.location.key(rel)}"
    request = urllib.request.Request(seaweed.filer_url + path, data=body, method="PUT")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status < 300


def test_a_write_over_a_key_behind_s3_is_an_extra_version(
    capsys, s3_env, seaweed, data_url, uploaded, store
) -> None:
    target = data_key(uploaded, 1)
    _filer_put(seaweed, store, target, b"written behind the lock")
    code, doc, _ = verify(capsys, data_url)
    assert code == 1
    assert codes(doc) == {"extra_version": {target}}


def test_a_locked_version_rewritten_behind_s3_is_caught(
    capsys, s3_env, seaweed, data_url, uploaded, store
) -> None:
    target = data_key(uploaded, 2)
    version = store.head(target).version_id
    _filer_put(seaweed, store, f"{target}.versions/v_{version}", b"rewritten under the lock")
    code, doc, err = verify(capsys, data_url)
    assert code == 1, err
    found = codes(doc)
    # readers (a GET) get the rewritten bytes where the batch was, and the locked version
    # itself is gone from the listing (a HEAD of the key answers 404 on SeaweedFS; the
    # verifier reads as readers do)
    assert found == {
        "file_hash_mismatch": {target},
        "size_mismatch": {target},
        "unreadable_data_file": {target},
        "pinned_version_missing": {target},
    }


def test_tiles_and_index_files_are_audited_like_manifests(
    capsys, s3_env, seaweed, data_url, ledger, store
) -> None:
    for hour in range(TILE_WIDTH + 1):
        commit_hour(ledger, hour, n=1)
    keys = upload(ledger, store)
    tile, upper, index = tile_path(0, 0), tile_path(1, 0, 1), index_path(0)
    assert {tile, upper, index} <= set(keys)
    code, doc, err = verify(capsys, data_url)
    assert code == 0, err
    batches = TILE_WIDTH + 1  # a data file, a manifest and a checkpoint each
    assert doc["object_store"]["objects_pinned"] == 3 * batches + 3
    # the same bytes again over the index key: only the version audit can see it
    _filer_put(seaweed, store, index, store.get(index))
    version = store.head(tile).version_id
    _filer_put(seaweed, store, f"{tile}.versions/v_{version}", b"rewritten under the lock")
    code, doc, err = verify(capsys, data_url)
    assert code == 1, err
    found = codes(doc)
    assert found.pop("extra_version") == {index}
    assert tile in found.pop("pinned_version_missing")
    assert found.pop("log_tile_mismatch") == {tile}
    assert set(found) <= {"unexpected_file"}, found  # what readers get of a rewritten tile


def test_an_incremental_verify_audits_what_follows_its_trusted_checkpoint(
    capsys, s3_env, seaweed, data_url, ledger, store, tmp_path
) -> None:
    for hour in range(TILE_WIDTH + 1):
        commit_hour(ledger, hour, n=1)
    old = upload(ledger, store)
    trusted = tmp_path / "trusted.checkpoint"
    trusted.write_bytes(store.get(checkpoint_path(TILE_WIDTH + 1)))
    for hour in range(TILE_WIDTH + 1, TILE_WIDTH + 3):
        commit_hour(ledger, hour, n=1)
    new = [k for k in upload(ledger, store, skip=set(old)) if k.startswith("lake/")]
    incremental = ("--incremental", "--trusted-checkpoint", str(trusted))
    code, doc, err = verify(capsys, data_url, *incremental)
    assert code == 0, err
    facts = doc["object_store"]
    assert facts["audit_from"] == TILE_WIDTH + 1 and "batch 257 on" in err
    # two batches (data, manifest, checkpoint each), the manifest before them and the
    # tiles the verifier read: not the history's 800 objects
    assert facts["objects_pinned"] < 20, facts
    # in the new hours: a stray object, a version over a data object; in an old hour a
    # version over a data object, which only the full verification lists
    stray = new[0].rsplit("/", 1)[0] + "/00009999-hour.parquet"
    store.put_new(stray, b"not part of the ledger")
    _filer_put(seaweed, store, new[1], store.get(new[1]))
    _filer_put(seaweed, store, data_key(old, 3), store.get(data_key(old, 3)))
    code, doc, err = verify(capsys, data_url, *incremental)
    assert code == 1, err
    assert codes(doc) == {"unreferenced_file": {stray}, "extra_version": {new[1]}}
    code, doc, err = verify(capsys, data_url)
    assert code == 1 and doc["object_store"]["audit_from"] is None, err
    assert codes(doc) == {
        "unreferenced_file": {stray},
        "extra_version": {new[1], data_key(old, 3)},
    }


def test_an_incremental_verify_lists_manifests_from_its_trusted_checkpoint(
    capsys, s3_env, seaweed, data_url, ledger, store, tmp_path
) -> None:
    for hour in range(6):
        commit_hour(ledger, hour, n=1)
    upload(ledger, store)
    trusted = tmp_path / "trusted.checkpoint"
    trusted.write_bytes(store.get(checkpoint_path(3)))
    incremental = ("--incremental", "--trusted-checkpoint", str(trusted))
    code, doc, err = verify(capsys, data_url, *incremental)
    assert code == 0 and doc["object_store"]["audit_from"] == 3, err
    assert doc["checked"]["manifests"] < 6  # the log's size from the names after batch 2
    client = pipeline_client(seaweed)
    # a delete marker over a manifest after the trusted checkpoint: a gap in what is listed
    client.delete_object(Bucket=store.location.bucket, Key=store.location.key(manifest_path(4)))
    code, doc, err = verify(capsys, data_url, *incremental)
    assert code == 1, err
    assert codes(doc)["missing_manifest"] == {manifest_path(4)}
    assert codes(doc)["delete_marker"] == {manifest_path(4)}


def test_a_delete_marker_over_a_manifest_the_trusted_checkpoint_covers_is_found_by_a_full_verify(
    capsys, s3_env, seaweed, data_url, ledger, store, tmp_path
) -> None:
    for hour in range(TILE_WIDTH + 2):
        commit_hour(ledger, hour, n=1)
    upload(ledger, store)
    trusted = tmp_path / "trusted.checkpoint"
    trusted.write_bytes(store.get(checkpoint_path(TILE_WIDTH + 1)))
    client = pipeline_client(seaweed)
    client.delete_object(Bucket=store.location.bucket, Key=store.location.key(manifest_path(1)))
    # the incremental run lists from batch 257 on: the first 256 batches are the trusted
    # checkpoint's (their hashes from a tile that gives its root, none of their manifests
    # read), as the last full verification found them
    incremental = ("--incremental", "--trusted-checkpoint", str(trusted))
    code, doc, err = verify(capsys, data_url, *incremental)
    assert code == 0 and "delete_marker" not in codes(doc), err
    code, doc, err = verify(capsys, data_url)
    assert code == 1, err
    assert codes(doc)["missing_manifest"] == {manifest_path(1)}
    assert manifest_path(1) in codes(doc)["delete_marker"]


def test_an_object_no_manifest_pins_and_a_short_retention_are_findings(
    capsys, s3_env, monkeypatch, data_url, uploaded, store
) -> None:
    stray = "lake/date=2025-12-01/hour=05/00000009-hour.parquet"
    store.put_new(stray, b"not part of the ledger")
    junk = "ledger/staged/not-an-intent.json"
    store.put_new(junk, b"{}")
    monkeypatch.setenv("AUDIT_RETENTION_DAYS", "30")  # the objects are kept for 1 day
    code, doc, err = verify(capsys, data_url)
    assert code == 1
    found = codes(doc)
    assert stray in found["unreferenced_file"]
    assert stray not in found.get("unreferenced_object", ())  # named once
    assert junk in found["unreferenced_object"]  # beside the intents, not one of them
    assert found["retention_short"] >= {manifest_path(0), data_key(uploaded)}
    assert doc["object_store"]["retention_days"] == 30 and "AUDIT_RETENTION_DAYS=30" in err


def test_a_bucket_without_object_lock_is_refused_with_the_fix(
    capsys, s3_env, seaweed, uploaded
) -> None:
    client = pipeline_client(seaweed)
    client.create_bucket(Bucket="no-lock-here")
    code, out, err = verify(capsys, "s3://no-lock-here/ledger")
    assert code == 2 and not out
    assert "does not have Object Lock enabled" in err and "object-lock-enabled" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_the_retention_setting_is_required(capsys, s3_env, monkeypatch, data_url) -> None:
    monkeypatch.delenv("AUDIT_RETENTION_DAYS")
    code, _, err = verify(capsys, data_url)
    assert code == 2 and "AUDIT_RETENTION_DAYS is required" in err


def test_reader_credentials_are_enough_to_verify(
    capsys, s3_env, monkeypatch, seaweed, data_url, uploaded
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.reader.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.reader.secret_access_key)
    settings = settings_for(seaweed, data_url, identity="reader")
    assert settings.access_key_id == seaweed.reader.access_key_id
    code, doc, err = verify(capsys, data_url)
    assert code == 0 and doc["ok"], err
    assert doc["object_store"]["object_lock"].startswith("not checked: these credentials")
    assert "Object Lock not checked" in err  # said, and each object's retention still was


def test_nothing_local_is_read_for_an_s3_data_dir(
    capsys, s3_env, monkeypatch, tmp_path: Path, data_url, uploaded
) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)  # a local "s3:" directory would be made or read here
    code, _, err = verify(capsys, data_url)
    assert code == 0, err
    assert not any(work.iterdir())


def test_a_prefix_without_a_ledger_is_a_configuration_error(capsys, s3_env, data_url, store):
    code, out, err = verify(capsys, data_url)
    assert code == 2 and not out
    assert f"no ledger in {data_url}" in err and len(err.strip().splitlines()) == 1


def test_no_dataset_is_built_from_a_tampered_store(
    capsys, s3_env, seaweed, tmp_path, data_url, uploaded, store
) -> None:
    target = data_key(uploaded)
    bucket, full = store.location.bucket, store.location.key(target)
    original = store.get(target)
    # a new current version with the very same bytes: every hash still matches, the
    # version audit alone sees it
    pipeline_client(seaweed).put_object(Bucket=bucket, Key=full, Body=original)
    database = tmp_path / "out" / "audit.duckdb"
    database.parent.mkdir()
    code = main(["dataset", "build", "--data-dir", data_url, "--database", str(database)])
    _, err = capsys.readouterr()
    assert code == 1 and "did not verify" in err, err
    assert not database.exists() and not database.with_name("audit.ledger").exists()
