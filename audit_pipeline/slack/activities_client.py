"""Reading ``admin.apps.activities.list`` with the official ``slack_sdk.WebClient``.

The same discipline as the Audit Logs client (``client.py``), whose retry handlers and
pacer it uses: every page resends every filter with the cursor; the end of data is an
empty or missing ``next_cursor``; 429 waits for ``Retry-After``; 5xx, resets and cut-off
bodies retry with backoff; ``invalid_cursor`` restarts the window; token errors fail at
once. The method has its own Tier 3 budget, so its pacer is its own.

Its own token: ``SLACK_ACTIVITIES_TOKEN`` (scope ``admin.app_activities:read``). Without
it the source is disabled with :class:`ActivitiesDisabled`; it never falls back to the
audit token. Each page's body is kept as the exact bytes received, so every activity can
be stored and identified by the bytes Slack sent (``page_bytes.split_page``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.client import HTTPException
from json import JSONDecodeError
from typing import Any, ClassVar
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError as SdkApiError
from slack_sdk.errors import SlackClientError

from audit_pipeline.errors import ConfigurationError
from audit_pipeline.slack import client as audit_client
from audit_pipeline.slack.client import (
    AUTH_ERRORS,
    AuditApiSettings,
    FetchStats,
    RequestPacer,
    RestartWindow,
    SlackApiError,
    SlackAuthError,
    UnparseablePageError,
    follow_cursor,
    restarting_window,
)
from audit_pipeline.slack.page_bytes import PageSyntaxError, SplitPage, split_page

SOURCE_NAME = "slack_app_activities"
METHOD = "admin.apps.activities.list"
SCOPE = "admin.app_activities:read"
WEB_API_URL = WebClient.BASE_URL
MAX_ACTIVITIES_PAGE = 1000
TOKEN_HINT = (
    "admin.apps.activities.list needs a user token (xoxp-…) of an Enterprise org admin or "
    f"owner with the {SCOPE} scope, in SLACK_ACTIVITIES_TOKEN (the audit token is never used)"
)


class ActivitiesDisabled(ConfigurationError):
    """No activities token is configured: the workflow activity source is off."""


@dataclass(frozen=True)
class ActivitiesApiSettings(AuditApiSettings):
    """How to reach ``admin.apps.activities.list``. The token is never shown in ``repr``."""

    token: str = field(repr=False)
    base_url: str = WEB_API_URL
    page_size: int = MAX_ACTIVITIES_PAGE
    max_calls_per_minute: float = 40.0  # inside the method's own Tier 3 (~50/min)

    ENV: ClassVar[dict[str, str]] = {
        "token": "SLACK_ACTIVITIES_TOKEN",
        "base_url": "SLACK_ACTIVITIES_BASE_URL",
        "page_size": "SLACK_ACTIVITIES_PAGE_SIZE",
        "timeout": "SLACK_ACTIVITIES_TIMEOUT",
        "max_retries": "SLACK_ACTIVITIES_MAX_RETRIES",
        "max_calls_per_minute": "SLACK_ACTIVITIES_MAX_CALLS_PER_MINUTE",
    }

    def __post_init__(self) -> None:
        if not self.token or not self.token.strip():
            raise ActivitiesDisabled(
                "workflow activity source disabled: SLACK_ACTIVITIES_TOKEN is not set. "
                + TOKEN_HINT
            )
        super().__post_init__()
        if self.page_size > MAX_ACTIVITIES_PAGE:
            raise ConfigurationError(
                f"activities page size must be 1..{MAX_ACTIVITIES_PAGE}, got {self.page_size}"
            )

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, **overrides: Any
    ) -> ActivitiesApiSettings:
        env = os.environ if env is None else env
        if not (overrides.get("token") or env.get(cls.ENV["token"])):
            raise ActivitiesDisabled(
                "workflow activity source disabled: SLACK_ACTIVITIES_TOKEN is not set. "
                + TOKEN_HINT
            )
        return super().from_env(env, **overrides)  # type: ignore[return-value]


class _BodyKeepingWebClient(WebClient):
    """slack-sdk's WebClient, except that it keeps the exact bytes of the last response.

    slack-sdk decodes every body as text before anything else sees it, which would lose
    the exact bytes of each activity and turn one invalid UTF-8 byte into a failure of the
    whole page. Only the step that reads the HTTP response is replaced (as the audit
    client's ``RawBodyAuditLogsClient`` does): the body's bytes are kept in ``last_body``
    and slack-sdk gets them decoded with replacement characters, enough for its own
    parsing; request building, auth headers, proxies, TLS, error responses and the retry
    handlers stay slack-sdk's.
    """

    last_body: bytes | None = None

    def _perform_urllib_http_request_internal(self, url: str, req: Any) -> dict[str, Any]:
        if not url.lower().startswith("http") or not isinstance(self.proxy, str | None):
            return super()._perform_urllib_http_request_internal(url, req)  # slack-sdk's error
        response = audit_client.open_http(req, proxy=self.proxy, ssl=self.ssl, timeout=self.timeout)
        with response:
            raw = response.read()
        self.last_body = raw
        text = raw.decode("utf-8", errors="replace")
        try:
            json.loads(text)
        except ValueError:
            # Not JSON at all (cut short, a proxy's HTML page): the page's own splitter
            # judges it, asks again and at last fails this window alone with the page kept.
            text = '{"ok":true,"unparsed":true}'
        return {"status": response.code, "headers": response.headers, "body": text}


def build_web_client(settings: ActivitiesApiSettings, stats: FetchStats) -> _BodyKeepingWebClient:
    """build_web_client returns slack-sdk's WebClient with the audit client's retry budget."""
    client = _BodyKeepingWebClient(
        token=settings.token,
        base_url=settings.base_url,
        timeout=int(max(1, round(settings.timeout))),
        logger=logging.getLogger("audit_pipeline.slack_sdk"),
        retry_handlers=audit_client.retry_handlers(stats, settings.max_retries),
    )
    if settings.is_loopback:
        client.proxy = None
        audit_client._bypass_proxy_for_loopback()
    return client


class ActivitySource:
    """Reads whole windows of ``admin.apps.activities.list``, page by page."""

    name = SOURCE_NAME

    def __init__(self, settings: ActivitiesApiSettings, *, pacer: RequestPacer | None = None):
        self.settings = settings
        self.stats = FetchStats()
        self.pacer = pacer or RequestPacer(settings.max_calls_per_minute)
        self._client = build_web_client(settings, self.stats)

    @property
    def method_url(self) -> str:
        return self.settings.base_url + METHOD

    def filters(self, min_created: int, max_created: int) -> dict[str, Any]:
        """filters are the arguments sent with every page of a window (microseconds,
        inclusive; every level; oldest first)."""
        return {
            "min_date_created": min_created,
            "max_date_created": max_created,
            "min_log_level": "trace",
            "sort_direction": "asc",
            "limit": self.settings.page_size,
        }

    def read_window(self, min_created: int, max_created: int) -> list[bytes]:
        """read_window returns the exact bytes of every activity of ``[min_created,
        max_created]`` from one complete pass. After an ``invalid_cursor`` the window is
        read again from its first page and the partial pass discarded, so identical
        records are counted within one pass only (their occurrence numbers stay stable)."""

        def one_pass() -> Iterator[list[bytes]]:
            pages = follow_cursor(
                lambda c: self._split_page(min_created, max_created, c), self.stats
            )
            yield [item for page in pages for item in page.items]

        what = f"activities [{min_created}, {max_created}]"
        return next(restarting_window(one_pass, self.stats, what))

    def _split_page(self, min_created: int, max_created: int, cursor: str | None) -> SplitPage:
        """One page split into exact bytes; a page whose structure cannot be followed is
        asked for again, then fails only its window (``UnparseablePageError``)."""
        unusable = 0
        while True:
            body = self._request_page(min_created, max_created, cursor)
            try:
                return split_page(body, "activities")
            except PageSyntaxError as exc:
                if unusable < self.settings.max_retries:
                    unusable += 1
                    self.stats.retries += 1
                    continue
                raise UnparseablePageError(
                    f"a page of [{min_created}, {max_created}] from {self.method_url} could "
                    f"not be parsed after {unusable} retries: {exc}",
                    body=body,
                    offset=exc.offset,
                ) from None

    def _request_page(self, min_created: int, max_created: int, cursor: str | None) -> bytes:
        self.stats.paced_seconds += self.pacer.wait()
        self.stats.requests += 1
        args = self.filters(min_created, max_created)
        try:
            response = self._client.admin_apps_activities_list(**args, cursor=cursor)
        except SdkApiError as exc:
            raise self._refused(exc) from None
        except (
            URLError,
            ConnectionError,
            TimeoutError,
            HTTPException,
            JSONDecodeError,
            SlackClientError,
        ) as exc:
            raise SlackApiError(
                f"could not read {self.method_url} after {self.settings.max_retries} "
                f"retries: {type(exc).__name__}"
            ) from None
        body = self._client.last_body
        if response.status_code != 200 or body is None:
            raise SlackApiError(f"{self.method_url}: HTTP {response.status_code}")
        return body

    def _refused(self, exc: SdkApiError) -> Exception:
        data = exc.response.data if isinstance(exc.response.data, dict) else {}
        error = data.get("error")
        status = exc.response.status_code
        if error in AUTH_ERRORS or status in (401, 403):
            extra = ""
            if error == "missing_scope":
                extra = f" (needed {data.get('needed')!r}, provided {data.get('provided')!r})"
            return SlackAuthError(
                f"Slack refused the activities token (HTTP {status}, {error}{extra}). "
                + TOKEN_HINT,
                status=status,
                error=error,
            )
        if error == "invalid_cursor":
            return RestartWindow()
        detail = f"HTTP {status}, error {error!r}"
        if status == 429 or status >= 500:
            detail += f" after {self.settings.max_retries} retries"
        return SlackApiError(f"{self.method_url} failed: {detail}", status=status, error=error)
