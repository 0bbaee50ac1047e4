"""The test server itself: loopback only, S3 auth on."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from audit_pipeline.store.s3 import s3_client
from tests.store.conftest import BUCKET, settings_for

pytestmark = pytest.mark.e2e

_LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp


def _listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket process ``pid`` listens on (IPv4 and IPv6)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == _LISTEN and fields[9] in inodes:
                address, port = fields[1].split(":")
                found.add((address, int(port, 16)))
    return found


def test_weed_listens_on_loopback_only(seaweed) -> None:
    listening = _listening_addresses(seaweed.process.pid)
    assert seaweed.ports["s3.port"] in {port for _, port in listening}
    loopback_v4 = "0100007F"  # 127.0.0.1, little-endian hex
    assert {address for address, _ in listening} == {loopback_v4}, listening


def test_s3_auth_is_on(seaweed) -> None:
    stranger = settings_for(seaweed, f"s3://{BUCKET}")
    client = s3_client(replace(stranger, access_key_id="nobody", secret_access_key="x" * 24))
    with pytest.raises(ClientError):
        client.list_objects_v2(Bucket=BUCKET)
    reader = s3_client(settings_for(seaweed, f"s3://{BUCKET}", identity="reader"))
    with pytest.raises(ClientError) as refused:
        reader.put_object(Bucket=BUCKET, Key="by-reader", Body=b"x", IfNoneMatch="*")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
