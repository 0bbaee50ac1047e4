"""Fixtures for driving the emulator the way collectors do: the real SDK and raw HTTP.

slack-sdk honours HTTP(S)_PROXY and ignores NO_PROXY, so every test here runs with the proxy
variables unset; otherwise a proxy in the environment would capture loopback calls.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from slack_sdk.audit_logs import AuditLogsClient

from audit_pipeline.slack.emulator import Emulator, EmulatorConfig

H = 1795860000  # 2026-11-28T10:00:00Z
HOUR = 3600


class FakeClock:
    """A settable emulator clock: ``clock()`` is now; ``advance(s)`` moves it."""

    def __init__(self, now: float):
        self.now = float(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RawResponse:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def start_emulator() -> Iterator[Callable[..., Emulator]]:
    """start_emulator(**config) starts an emulator (rate limit off unless given); all stop after."""
    started: list[Emulator] = []

    def start(**fields: Any) -> Emulator:
        fields.setdefault("rate_limit_per_min", 0)
        emulator = Emulator(EmulatorConfig(**fields))
        emulator.start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


@pytest.fixture(scope="session")
def client_for() -> Callable[..., AuditLogsClient]:
    """client_for(emulator, **kwargs) builds the unmodified SDK client for that emulator."""

    def build(emulator: Emulator, **kwargs: Any) -> AuditLogsClient:
        kwargs.setdefault("token", emulator.token)
        return AuditLogsClient(base_url=emulator.base_url, **kwargs)

    return build


def raw_get(
    emulator: Emulator,
    path: str,
    params: dict[str, Any] | str | None = None,
    *,
    token: str | None = "",
    method: str = "GET",
    body: bytes | None = None,
    timeout: float = 10,
) -> RawResponse:
    """raw_get sends one request with http.client; ``token=""`` means the emulator's own."""
    base = urlsplit(emulator.base_url)
    target = path if path.startswith("/") else base.path + path
    if params:
        target += "?" + (params if isinstance(params, str) else urlencode(params))
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token or emulator.token}"
    conn = http.client.HTTPConnection(base.hostname, base.port, timeout=timeout)
    try:
        conn.request(method, target, body=body, headers=headers)
        response = conn.getresponse()
        return RawResponse(response.status, dict(response.getheaders()), response.read())
    finally:
        conn.close()


@pytest.fixture(scope="session")
def raw() -> Callable[..., RawResponse]:
    """raw(emulator, path, params, token=..., method=..., body=...) -> RawResponse."""
    return raw_get


def page_through(client: AuditLogsClient, **params: Any) -> list[list[dict]]:
    """Every page of one query (from ``cursor`` if given), re-sending the other parameters."""
    pages: list[list[dict]] = []
    cursor = params.pop("cursor", None)
    while True:
        response = client.logs(**params, cursor=cursor)
        assert response.status_code == 200, (response.status_code, response.raw_body)
        pages.append(response.body["entries"])
        cursor = (response.body.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return pages


@pytest.fixture(scope="session")
def fake_clock() -> type[FakeClock]:
    """fake_clock is the FakeClock class, for fixtures that build their own emulators."""
    return FakeClock


@pytest.fixture(scope="session")
def pages_of() -> Callable[..., list[list[dict]]]:
    """pages_of(client, **logs_params) -> the entries of every page."""
    return page_through
