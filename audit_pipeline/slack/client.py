"""Reading the Audit Logs API with the official ``slack_sdk.audit_logs.AuditLogsClient``.

The traps this module exists to avoid (each one lost or duplicated events for some
collector): every page resends ``oldest``, ``latest`` and the other filters with the cursor
(the cursor carries a position, not the filters); end of data is an empty *or missing*
``next_cursor``; non-2xx responses are returned by slack-sdk, not raised, so each one is
checked here; 429 waits for ``Retry-After`` through slack-sdk's own
``RateLimitErrorRetryHandler`` (which slack-sdk does not install by default); and
``invalid_cursor`` restarts the window from its first page (the caller dedups on ``id``).
Our own request rate is capped so that we stay inside the org-wide budget that every app
of the organization shares.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from http.client import HTTPException
from typing import Any, ClassVar, TypeVar
from urllib.error import URLError
from urllib.parse import urlsplit
from urllib.request import HTTPSHandler, ProxyHandler, build_opener, urlopen

from slack_sdk.audit_logs import AuditLogsClient
from slack_sdk.audit_logs.v1.response import AuditLogsResponse
from slack_sdk.http_retry import RetryHandler
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator

from audit_pipeline.errors import AuditPipelineError, ConfigurationError
from audit_pipeline.slack.page_bytes import PageSyntaxError, SplitPage, split_page
from audit_pipeline.text import plural

log = logging.getLogger(__name__)

SLACK_BASE_URL = AuditLogsClient.BASE_URL
MAX_PAGE_SIZE = 9_999
MAX_WINDOW_RESTARTS = 3
T = TypeVar("T")

# Error codes that mean "this token can never work": fail fast, do not retry.
AUTH_ERRORS = frozenset(
    {
        "invalid_auth",
        "invalid_authentication",
        "missing_authentication",
        "not_authed",
        "token_revoked",
        "token_expired",
        "missing_scope",
        "not_allowed_token_type",
        "user_not_authorized",
        "team_not_authorized",
        "feature_not_enabled",
        "invalid_workspace",
    }
)
# Slack keeps no audit data from before March 2018 (2018-03-01T00:00:00Z).
AUDIT_HISTORY_START = 1519862400
TOKEN_NEEDED = (
    "a user token (xoxp-…) of an Enterprise Grid org owner, from an app installed on the "
    "organization, with the auditlogs:read scope"
)
TOKEN_HINT = f"The Audit Logs API needs {TOKEN_NEEDED}; check SLACK_AUDIT_TOKEN"
MISSING_TOKEN = f"no Slack token: set SLACK_AUDIT_TOKEN to {TOKEN_NEEDED}"


class SlackApiError(AuditPipelineError):
    """The API answered with an error we could not retry past."""

    def __init__(self, message: str, *, status: int | None = None, error: str | None = None):
        super().__init__(message)
        self.status = status
        self.error = error


class SlackAuthError(SlackApiError, ConfigurationError):
    """The token was refused: a configuration problem, never worth retrying."""

    exit_code = 2


class UnparseablePageError(SlackApiError):
    """A 200 page whose structure could not be followed, even after retries: a data
    problem of this window alone. ``body`` is the last response, kept for inspection."""

    def __init__(self, message: str, *, body: bytes, offset: int) -> None:
        super().__init__(message, status=200)
        self.body = body
        self.offset = offset


@dataclass(frozen=True)
class AuditApiSettings:
    """How to reach the Audit Logs API. The token is never shown in ``repr``."""

    token: str = field(repr=False)
    base_url: str = SLACK_BASE_URL
    page_size: int = MAX_PAGE_SIZE
    timeout: float = 30.0
    max_retries: int = 8
    max_calls_per_minute: float = 40.0  # leaves room for the other apps sharing the org's ~50/min

    ENV: ClassVar[dict[str, str]] = {
        "token": "SLACK_AUDIT_TOKEN",
        "base_url": "SLACK_AUDIT_BASE_URL",
        "page_size": "SLACK_AUDIT_PAGE_SIZE",
        "timeout": "SLACK_AUDIT_TIMEOUT",
        "max_retries": "SLACK_AUDIT_MAX_RETRIES",
        "max_calls_per_minute": "SLACK_AUDIT_MAX_CALLS_PER_MINUTE",
    }

    def __post_init__(self) -> None:
        if not self.token or not self.token.strip():
            raise ConfigurationError(MISSING_TOKEN)
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"base URL must be http(s)://…, got {self.base_url!r}")
        if not self.base_url.endswith("/"):
            object.__setattr__(self, "base_url", self.base_url + "/")
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise ConfigurationError(f"page size must be 1..{MAX_PAGE_SIZE}, got {self.page_size}")
        if not 0 < self.timeout < 1e9:  # NaN and infinity fail this too
            raise ConfigurationError(f"timeout must be > 0 seconds, got {self.timeout}")
        if self.max_retries < 0:
            raise ConfigurationError(f"retry budget must be >= 0, got {self.max_retries}")
        if not 0 <= self.max_calls_per_minute < 1e9:
            raise ConfigurationError(
                f"max calls per minute must be >= 0 (0 = no cap), got {self.max_calls_per_minute}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> AuditApiSettings:
        """from_env reads ``SLACK_AUDIT_*`` variables; explicit overrides win (None = unset)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        types = {f.name: f.type for f in fields(cls)}
        for name, var in cls.ENV.items():
            raw = overrides.get(name)
            if raw is None:
                raw = env.get(var)
            if raw is None or raw == "":
                continue
            if types[name] in ("int", int):
                values[name] = _number(int, raw, var)
            elif types[name] in ("float", float):
                values[name] = _number(float, raw, var)
            else:
                values[name] = raw
        if "token" not in values:
            raise ConfigurationError(MISSING_TOKEN)
        return cls(**values)

    def with_overrides(self, **changes: Any) -> AuditApiSettings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def is_loopback(self) -> bool:
        host = urlsplit(self.base_url).hostname or ""
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


def _number(kind: type, raw: Any, var: str) -> Any:
    try:
        return kind(raw)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{var} must be a number, got {raw!r}") from None


@dataclass
class FetchStats:
    """What reading cost: shown in sync summaries and Dagster metadata."""

    requests: int = 0
    pages: int = 0
    entries: int = 0
    retries: int = 0
    rate_limited: int = 0
    window_restarts: int = 0
    paced_seconds: float = 0.0


class RequestPacer:
    """Spaces requests so that our own rate never exceeds ``calls_per_minute`` (0 = off).

    Thread-safe; one pacer is shared by everything that calls the API from a process.
    """

    def __init__(
        self,
        calls_per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 60.0 / calls_per_minute if calls_per_minute else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> float:
        """wait blocks until the next request may go out; returns the seconds waited."""
        if not self.interval:
            return 0.0
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        delay = slot - now
        if delay > 0:
            self._sleep(delay)
        return max(delay, 0.0)


class _CountingRateLimitHandler(RateLimitErrorRetryHandler):
    def __init__(self, stats: FetchStats, max_retry_count: int) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.stats = stats

    def prepare_for_next_attempt(self, **kwargs: Any) -> None:
        self.stats.rate_limited += 1
        self.stats.retries += 1
        super().prepare_for_next_attempt(**kwargs)


class _TransientErrorRetryHandler(ConnectionErrorRetryHandler):
    """Connection resets, timeouts and bodies cut short: retried with backoff and jitter."""

    def __init__(self, stats: FetchStats, max_retry_count: int) -> None:
        super().__init__(
            max_retry_count=max_retry_count,
            interval_calculator=BackoffRetryIntervalCalculator(backoff_factor=0.25),
            error_types=[
                URLError,
                ConnectionError,
                TimeoutError,
                HTTPException,  # RemoteDisconnected, IncompleteRead, BadStatusLine
                json.JSONDecodeError,  # slack-sdk parses error bodies; a cut-off "{…" raises
            ],
        )
        self.stats = stats

    def prepare_for_next_attempt(self, **kwargs: Any) -> None:
        self.stats.retries += 1
        super().prepare_for_next_attempt(**kwargs)


class _ServerErrorRetryHandler(RetryHandler):
    """5xx responses, retried with backoff (slack-sdk's own handler covers only 500/503)."""

    def __init__(self, stats: FetchStats, max_retry_count: int) -> None:
        super().__init__(
            max_retry_count=max_retry_count,
            interval_calculator=BackoffRetryIntervalCalculator(backoff_factor=0.25),
        )
        self.stats = stats

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:
        return response is not None and 500 <= response.status_code < 600

    def prepare_for_next_attempt(self, **kwargs: Any) -> None:
        self.stats.retries += 1
        super().prepare_for_next_attempt(**kwargs)


def _network_cause(exc: BaseException) -> str:
    """_network_cause says why a request failed in words (``Connection refused``), not as
    ``URLError: <urlopen error [Errno 111] …>``."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(reason or exc) or type(exc).__name__


def _bypass_proxy_for_loopback() -> None:
    """Make urllib never send loopback requests through an environment proxy."""
    loopback = ("127.0.0.1", "localhost", "::1")
    for var in ("no_proxy", "NO_PROXY"):
        present = [h.strip() for h in os.environ.get(var, "").split(",") if h.strip()]
        missing = [h for h in loopback if h not in present]
        if missing:
            os.environ[var] = ",".join(present + missing)


def retry_handlers(stats: FetchStats, budget: int) -> list[RetryHandler]:
    """retry_handlers: resets/timeouts/cut bodies, 429 after Retry-After, 5xx; counted."""
    return [
        _TransientErrorRetryHandler(stats, budget),
        _CountingRateLimitHandler(stats, budget),
        _ServerErrorRetryHandler(stats, budget),
    ]


class _RawBodyResponse(AuditLogsResponse):
    """A response that keeps the body's bytes (``raw_bytes``) and parses nothing yet."""

    def __init__(self, *, url: str, status_code: int, raw_bytes: bytes, headers: Any) -> None:
        self.url = url
        self.status_code = status_code
        self.headers = headers
        self.raw_bytes = raw_bytes
        self.raw_body = None
        self.body = None


def open_http(req: Any, *, proxy: str | None, ssl: Any, timeout: float) -> Any:
    """open_http sends a prepared request as slack-sdk would (its proxy, its TLS context)
    and returns the response unread, so callers keep its exact bytes."""
    if proxy is not None:
        opener = build_opener(
            ProxyHandler({"http": proxy, "https": proxy}), HTTPSHandler(context=ssl)
        )
        return opener.open(req, timeout=timeout)
    return urlopen(req, context=ssl, timeout=timeout)


class RawBodyAuditLogsClient(AuditLogsClient):
    """slack-sdk's AuditLogsClient, except that a successful response keeps its bytes.

    slack-sdk decodes every body as text and parses it whole, which loses the exact bytes
    of each entry and turns one invalid UTF-8 byte into a failure of the whole page. Only
    the final step that reads the HTTP response is replaced: request building, auth
    headers, proxies, TLS and the retry handlers (429, resets, 5xx) stay slack-sdk's.
    Error responses (``HTTPError``) still go through slack-sdk's own parsing.
    """

    def _perform_http_request_internal(self, url: str, req: Any) -> AuditLogsResponse:
        if not url.lower().startswith("http") or not isinstance(self.proxy, str | None):
            return super()._perform_http_request_internal(url, req)  # raises slack-sdk's error
        http_resp = open_http(req, proxy=self.proxy, ssl=self.ssl, timeout=self.timeout)
        with http_resp:
            raw = http_resp.read()
            return _RawBodyResponse(
                url=url, status_code=http_resp.status, raw_bytes=raw, headers=http_resp.headers
            )


def build_client(settings: AuditApiSettings, stats: FetchStats) -> AuditLogsClient:
    """build_client returns the official client with a real retry budget installed."""
    client = RawBodyAuditLogsClient(
        token=settings.token,
        base_url=settings.base_url,
        timeout=int(max(1, round(settings.timeout))),
        logger=logging.getLogger("audit_pipeline.slack_sdk"),
        retry_handlers=retry_handlers(stats, settings.max_retries),
    )
    if settings.is_loopback:
        # slack-sdk honours HTTP(S)_PROXY but ignores NO_PROXY: a loopback emulator must
        # never be reached through a proxy.
        client.proxy = None
        _bypass_proxy_for_loopback()
    return client


class RestartWindow(Exception):
    """Slack answered ``invalid_cursor``: the window is read again from its first page."""


def follow_cursor(
    request: Callable[[str | None], SplitPage], stats: FetchStats
) -> Iterator[SplitPage]:
    """follow_cursor yields one pass over a window: each page ``request`` returns for the
    cursor of the one before, until a page names no ``next_cursor``."""
    cursor: str | None = None
    while True:
        page = request(cursor)
        stats.pages += 1
        stats.entries += len(page.items)
        yield page
        metadata = page.members.get("response_metadata")
        cursor = metadata.get("next_cursor") if isinstance(metadata, dict) else None
        if not cursor:
            return


def restarting_window(
    read_once: Callable[[], Iterator[T]], stats: FetchStats, what: str
) -> Iterator[T]:
    """restarting_window yields ``read_once()`` and, when it raises :class:`RestartWindow`,
    starts it again (at most MAX_WINDOW_RESTARTS times): what was yielded before a restart
    may come again."""
    restarts = 0
    while True:
        try:
            yield from read_once()
            return
        except RestartWindow:
            restarts += 1
            stats.window_restarts += 1
            if restarts > MAX_WINDOW_RESTARTS:
                raise SlackApiError(
                    f"invalid_cursor {restarts} times reading {what}; giving up",
                    error="invalid_cursor",
                ) from None
            log.warning("invalid_cursor reading %s: restarting window", what)


@dataclass(frozen=True)
class Page:
    """One page: each entry's exact bytes as the API sent them, in page order."""

    entries: list[bytes]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


class AuditLogSource:
    """Reads whole windows of the Audit Logs API, page by page."""

    def __init__(
        self,
        settings: AuditApiSettings,
        *,
        pacer: RequestPacer | None = None,
    ) -> None:
        self.settings = settings
        self.stats = FetchStats()
        self.pacer = pacer or RequestPacer(settings.max_calls_per_minute)
        self._client = build_client(settings, self.stats)

    @property
    def logs_url(self) -> str:
        return self.settings.base_url + "logs"

    def iter_pages(self, oldest: int, latest: int) -> Iterator[Page]:
        """iter_pages yields the raw entries of every page of ``[oldest, latest]`` (inclusive).

        After an ``invalid_cursor`` the window starts again from its first page, so an
        entry may be yielded twice: callers dedup on ``id``.
        """
        pages = restarting_window(
            lambda: follow_cursor(lambda c: self._request_page(oldest, latest, c), self.stats),
            self.stats,
            f"[{oldest}, {latest}]",
        )
        for page in pages:
            yield Page(page.items)

    def _request_page(self, oldest: int, latest: int, cursor: str | None) -> SplitPage:
        unusable = 0
        while True:
            self.stats.paced_seconds += self.pacer.wait()
            self.stats.requests += 1
            try:
                response = self._client.logs(
                    oldest=oldest, latest=latest, limit=self.settings.page_size, cursor=cursor
                )
            except (URLError, ConnectionError, TimeoutError, HTTPException, ValueError) as exc:
                raise SlackApiError(
                    f"could not reach {self.logs_url} after "
                    f"{plural(self.settings.max_retries, 'retry')}: {_network_cause(exc)}"
                ) from None
            status = response.status_code
            body = response.body
            if isinstance(response, _RawBodyResponse):
                try:
                    page = _entries_page(response.raw_bytes)
                except PageSyntaxError as exc:
                    if unusable < self.settings.max_retries:
                        # A cut-off or garbled 200 body: retried like a transient glitch.
                        unusable += 1
                        self.stats.retries += 1
                        continue
                    raise UnparseablePageError(
                        f"a page of [{oldest}, {latest}] from {self.logs_url} could not be "
                        f"parsed after {plural(unusable, 'retry')}: {exc}",
                        body=response.raw_bytes,
                        offset=exc.offset,
                    ) from None
                if page.has_list:
                    return page
                body = page.members
            error = body.get("error") if isinstance(body, dict) else None
            if status in (401, 403) or error in AUTH_ERRORS:
                raise SlackAuthError(
                    f"Slack refused the token (HTTP {status}"
                    f"{', ' + error if error else ''}). {TOKEN_HINT}",
                    status=status,
                    error=error,
                )
            if error == "invalid_cursor":
                raise RestartWindow
            if status == 200 and unusable < self.settings.max_retries:
                # A 200 whose body is not an entries object: treat as a transient glitch.
                unusable += 1
                self.stats.retries += 1
                continue
            detail = f"HTTP {status}" + (f", error {error!r}" if error else "")
            if status == 429 or status >= 500:
                detail += f" after {self.settings.max_retries} retries"
            raise SlackApiError(f"{self.logs_url} failed: {detail}", status=status, error=error)


def _entries_page(body: bytes) -> SplitPage:
    """The page's entries as exact bytes; ``entries: null`` is an empty page, and any other
    non-list value is a page that cannot be followed."""
    page = split_page(body, "entries")
    if "entries" in page.members:
        value = page.members["entries"]
        if value is not None:
            raise PageSyntaxError(f"`entries` is a {type(value).__name__}, not a list", 0)
        return SplitPage([], page.members, True)
    return page
