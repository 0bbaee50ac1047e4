"""Commits without a shared lock: create-only manifests on SeaweedFS, raced by processes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audit_pipeline.ledger.commit_point import ChainGapError, commit_next, read_head
from audit_pipeline.ledger.layout import manifest_path
from audit_pipeline.store.s3 import S3ObjectStore
from tests.store.conftest import settings_for

pytestmark = pytest.mark.e2e

COMMITTERS = 8
COMMITS_EACH = 2

# One committer: its own process, its own client, nothing shared but the bucket.
_COMMITTER = """
import hashlib, json, os, sys, time
from datetime import timedelta
from audit_pipeline.ledger.commit_point import commit_next
from audit_pipeline.store.s3 import S3ObjectStore
from audit_pipeline.store.settings import S3Location, S3Settings

cfg = json.loads(os.environ["COMMITTER_SETTINGS"])
store = S3ObjectStore.open(S3Settings(
    location=S3Location.parse(cfg["url"]), retention=timedelta(days=1),
    endpoint_url=cfg["endpoint"], region="us-east-1",
    access_key_id=cfg["key"], secret_access_key=cfg["secret"]))
writer = sys.argv[1]
time.sleep(max(0.0, float(cfg["start_at"]) - time.time()))
for n in range(int(cfg["count"])):
    def build(seq, head, n=n):
        prev = hashlib.sha256(head.data).hexdigest() if head else None
        return json.dumps({"seq": seq, "prev": prev, "writer": writer, "n": n}).encode()
    point = commit_next(store, build)
    print(json.dumps({"seq": point.seq, "version": point.stored.version_id,
                      "rebases": point.rebases, "n": n}), flush=True)
"""


def _manifest(seq: int, head) -> bytes:
    prev = hashlib.sha256(head.data).hexdigest() if head else None
    return json.dumps({"seq": seq, "prev": prev}).encode()


def test_the_first_commit_is_zero_and_each_links_to_the_head(store) -> None:
    assert read_head(store) is None
    first = commit_next(store, _manifest)
    second = commit_next(store, _manifest)
    assert (first.seq, second.seq, first.rebases) == (0, 1, 0)
    head = read_head(store)
    assert head is not None and head.seq == 1 and head.version_id == second.stored.version_id
    assert json.loads(head.data)["prev"] == hashlib.sha256(_manifest(0, None)).hexdigest()


def test_a_lost_race_rebases_on_the_winner(store) -> None:
    built: list[int] = []

    def build(seq: int, head) -> bytes:
        built.append(seq)
        if len(built) == 1:  # another writer takes N while this one builds it
            store.put_new(manifest_path(seq), _manifest(seq, head))
        return _manifest(seq, head)

    point = commit_next(store, build)
    assert built == [0, 1] and point.seq == 1 and point.rebases == 1


def test_a_gap_in_the_chain_refuses_the_commit(store) -> None:
    store.put_new(manifest_path(0), b"{}")
    store.put_new(manifest_path(2), b"{}")
    with pytest.raises(ChainGapError, match=r"00000001\.json is missing"):
        commit_next(store, _manifest)


def test_concurrent_committers_in_processes_make_one_linear_chain(
    seaweed, data_url, tmp_path: Path
) -> None:
    settings = settings_for(seaweed, data_url)
    cfg = {
        "url": data_url,
        "endpoint": settings.endpoint_url,
        "key": settings.access_key_id,
        "secret": settings.secret_access_key,
        "count": COMMITS_EACH,
        "start_at": time.time() + 3.0,  # every process imported and connected by then
    }
    env = {**os.environ, "COMMITTER_SETTINGS": json.dumps(cfg)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _COMMITTER, f"w{i}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(COMMITTERS)
    ]
    reports = {}
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-2000:]
        reports[f"w{i}"] = [json.loads(line) for line in out.splitlines()]

    store_seqs = sorted(r["seq"] for rs in reports.values() for r in rs)
    total = COMMITTERS * COMMITS_EACH
    assert store_seqs == list(range(total))  # every commit got its own number, no gaps

    store = S3ObjectStore(settings)
    assert store.list_keys("ledger/manifests/") == [manifest_path(n) for n in range(total)]
    prev = None
    seen = set()
    for seq in range(total):
        data = store.get(manifest_path(seq))
        body = json.loads(data)
        assert body["seq"] == seq
        assert body["prev"] == prev  # linked to exactly the manifest before it
        prev = hashlib.sha256(data).hexdigest()
        seen.add((body["writer"], body["n"]))
        report = reports[body["writer"]][body["n"]]
        assert report["seq"] == seq  # the writer's own account agrees with the store
        versions = store.list_versions(manifest_path(seq))
        assert [v.version_id for v in versions] == [report["version"]]  # created once
    assert len(seen) == total  # no commit twice
    rebases = sum(r["rebases"] for rs in reports.values() for r in rs)
    assert rebases > 0, reports  # they did race
    print(f"{total} commits by {COMMITTERS} processes, {rebases} rebases")
