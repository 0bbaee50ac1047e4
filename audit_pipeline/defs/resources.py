"""Resources: the Audit Logs API, the ledger on disk, and the Slack channel alerts go to.

Tokens arrive through ``dagster.EnvVar`` and are resolved only inside runs and sensor
ticks; a field left ``None`` falls back to the same environment variables and defaults as
the command line, so ``audit-pipeline sync`` and a Dagster run read one configuration.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from ipaddress import ip_address
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
from pydantic import Field
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from audit_pipeline.defs.witnesses import WitnessSetResource
from audit_pipeline.errors import AuditPipelineError, ConfigurationError
from audit_pipeline.lake import PARQUET_FORMAT
from audit_pipeline.ledger import Keyring, Ledger, VerifyReport, load_trusted_keys, verify_ledger
from audit_pipeline.ledger.cosignature import WitnessKey
from audit_pipeline.ledger.keys import default_signing_key_path, load_signing_key
from audit_pipeline.ledger.layout import DATA_DIR_ENV, is_object_store_url, resolve_data_dir
from audit_pipeline.ledger.signer_state import signer_state_path
from audit_pipeline.slack.client import AuditApiSettings, AuditLogSource

log = logging.getLogger(__name__)

SLACK_WEB_API_URL = "https://slack.com/api/"
ORIGIN_ENV = "AUDIT_LOG_ORIGIN"  # the same variable as ``audit-pipeline sync``
# Public keys held outside the data directory: what ``verify --trusted-keys`` reads.
TRUSTED_KEYS_ENV = "AUDIT_TRUSTED_KEYS"
DEFAULT_WEBSERVER_URL = "http://127.0.0.1:3000"

# Environment variables of the alerting channel (read when the code location loads).
NOTIFIER_ENV = {
    "bot_token": "AUDIT_SLACK_BOT_TOKEN",
    "channel": "AUDIT_SLACK_CHANNEL",
    "checkpoint_channel": "AUDIT_SLACK_CHECKPOINT_CHANNEL",
    "base_url": "AUDIT_SLACK_API_URL",
    "webserver_url": "AUDIT_DAGSTER_URL",
}


class SlackAuditResource(dg.ConfigurableResource):
    """SlackAuditResource reads the Audit Logs API (or the emulator, by ``base_url``).

    Unset fields fall back to ``SLACK_AUDIT_*`` variables, then to the client's defaults.
    """

    token: str = Field(description="User token (xoxp-…) with auditlogs:read.")
    base_url: str | None = Field(default=None, description="API root; the emulator's here.")
    page_size: int | None = Field(default=None, description="Entries per page (<= 9,999).")
    timeout: float | None = Field(default=None, description="Seconds per request.")
    max_retries: int | None = Field(default=None, description="Retry budget per request.")
    max_calls_per_minute: float | None = Field(
        default=None, description="Our share of the org-wide rate limit (0 = no cap)."
    )

    def settings(self) -> AuditApiSettings:
        return AuditApiSettings.from_env(
            token=self.token,
            base_url=self.base_url,
            page_size=self.page_size,
            timeout=self.timeout,
            max_retries=self.max_retries,
            max_calls_per_minute=self.max_calls_per_minute,
        )

    def source(self) -> AuditLogSource:
        """source returns a fresh reader with its own request counters and pacer."""
        return AuditLogSource(self.settings())


class LedgerResource(dg.ConfigurableResource):
    """LedgerResource is the data directory: its lake, its ledger and the signing key.

    ``data_dir`` None means ``$AUDIT_DATA_DIR``, else ``./data``; ``signing_key`` None
    means ``$AUDIT_SIGNING_KEY``, else ``$XDG_CONFIG_HOME/audit-pipeline/signing-key``;
    ``origin`` None means ``$AUDIT_LOG_ORIGIN``, else the ledger's own or its default.
    ``trusted_keys`` None means ``$AUDIT_TRUSTED_KEYS``: the public keys signatures are
    checked against, held where whoever writes the data directory cannot edit them (as
    ``verify --trusted-keys``). Without it the data directory's own keyring is used and the
    ``ledger_keys_anchored`` check fails, so nothing is published as verified.

    ``data_dir`` may be ``s3://BUCKET/PREFIX`` (the ``AWS_*`` variables and
    ``AUDIT_RETENTION_DAYS`` configure it, as for the command line): commits are then the
    object store's create-only ones, verification includes the version audit, the key and
    signer state stay local, and the auditors' dataset is a local file
    (``$AUDIT_DATASET``) built from a verified local copy beside it.
    """

    data_dir: str | None = Field(default=None, description="Data directory (lake + ledger).")
    signing_key: str | None = Field(
        default=None, description="Path of the private signing key file (never its content)."
    )
    origin: str | None = Field(default=None, description="Log origin for a new ledger.")
    verify_jobs: int = Field(default=1, ge=1, description="Processes hashing files in verify.")
    trusted_keys: str | None = Field(
        default=None,
        description="Keyring JSON or vkeys file outside the data directory (the public keys "
        "signatures must verify with); None: $AUDIT_TRUSTED_KEYS.",
    )

    def resolved_data_dir(self) -> Path:
        """resolved_data_dir is the local data directory (refuses an ``s3://`` one)."""
        return resolve_data_dir(self.data_dir).resolve()

    def object_store_url(self) -> str | None:
        """object_store_url is the ``s3://`` data directory, if that is what is configured."""
        chosen = self.data_dir or os.environ.get(DATA_DIR_ENV)
        return str(chosen) if is_object_store_url(chosen) else None

    def location(self) -> str:
        """location names the data directory in messages (local path or ``s3://`` URL)."""
        return self.object_store_url() or str(self.resolved_data_dir())

    def _s3_settings(self) -> Any:
        from audit_pipeline.store.settings import S3Settings

        url = self.object_store_url()
        assert url is not None
        return S3Settings.from_env(url)

    def signing_key_path(self) -> Path:
        if self.signing_key:
            return Path(self.signing_key).expanduser()
        return default_signing_key_path()

    def resolved_origin(self) -> str | None:
        return self.origin or os.environ.get(ORIGIN_ENV) or None

    def trusted_keys_path(self) -> Path | None:
        """trusted_keys_path is the configured trusted-keys file, refused inside the data dir."""
        raw = self.trusted_keys or os.environ.get(TRUSTED_KEYS_ENV, "").strip()
        if not raw:
            return None
        path = Path(raw).expanduser().resolve()
        if self.object_store_url() is not None:
            return path  # the bucket holds no file a local path could name
        data_dir = self.resolved_data_dir()
        if path == data_dir or data_dir in path.parents:
            raise ConfigurationError(
                f"{TRUSTED_KEYS_ENV} points inside the data directory ({path}): whoever can "
                "write the data directory could edit those keys; keep the trusted public keys "
                f"outside {data_dir} (e.g. beside the Dagster instance's configuration)"
            )
        return path

    def trusted_keyring(self) -> Keyring | None:
        """trusted_keyring loads the trusted public keys (None: none configured)."""
        path = self.trusted_keys_path()
        return None if path is None else load_trusted_keys(path)

    def reader(self) -> Ledger:
        """reader opens the ledger for reading only (no key needed)."""
        if self.object_store_url() is not None:
            from audit_pipeline.store.ledger import reading_ledger

            return reading_ledger(self._s3_settings(), file_format=PARQUET_FORMAT)
        return Ledger(
            self.resolved_data_dir(), file_format=PARQUET_FORMAT, origin=self.resolved_origin()
        )

    def writer(self) -> Ledger:
        """writer opens the ledger for commits, with the signing key loaded."""
        signer = load_signing_key(self.signing_key_path())
        if self.object_store_url() is not None:
            from audit_pipeline.store.ledger import open_ledger

            return open_ledger(
                self._s3_settings(),
                file_format=PARQUET_FORMAT,
                signer=signer,
                key_path=self.signing_key_path(),
                signer_state=signer_state_path(self.signing_key_path()),
                origin=self.resolved_origin(),
            )
        return Ledger(
            self.resolved_data_dir(),
            file_format=PARQUET_FORMAT,
            signer=signer,
            origin=self.resolved_origin(),
            signer_state=signer_state_path(self.signing_key_path()),
        )

    def verify(
        self,
        *,
        trusted_checkpoint: bytes | None,
        incremental: bool,
        witness_keys: Sequence[WitnessKey] = (),
        witness_quorum: int | None = None,
        recheck_trusted_files: bool = False,
    ) -> VerifyReport:
        """verify runs the ledger verifier over the data directory; returns its report.

        ``incremental`` needs a trusted checkpoint; without one the whole ledger is checked
        (at row level). ``recheck_trusted_files`` also checks, at file level, the data files
        the trusted checkpoint covers.
        Signatures are checked against :meth:`trusted_keyring` when one is configured. An
        object store is verified with its versions.
        """
        options: dict[str, Any] = dict(
            keyring=self.trusted_keyring(),
            trusted_checkpoint=trusted_checkpoint,
            incremental=incremental and trusted_checkpoint is not None,
            jobs=self.verify_jobs,
            witness_keys=witness_keys,
            witness_quorum=witness_quorum,
            recheck_trusted_files=recheck_trusted_files,
        )
        if self.object_store_url() is not None:
            from audit_pipeline.store.verification import verify_object_store

            return verify_object_store(self._s3_settings(), file_format=PARQUET_FORMAT, **options)
        return verify_ledger(self.resolved_data_dir(), file_format=PARQUET_FORMAT, **options)

    def dataset_source(self) -> tuple[Path, Path, bool]:
        """dataset_source is (the data directory the dataset is built from, the dataset
        file, whether that directory is a copy the build must verify again). For an object
        store: a local copy, brought up to the store now, beside ``$AUDIT_DATASET``."""
        from audit_pipeline.dataset.seal import DATASET_ENV, dataset_path

        if self.object_store_url() is None:
            data_dir = self.resolved_data_dir()
            return data_dir, dataset_path(data_dir), False
        from audit_pipeline.store.local_copy import copy_ledger, local_copy_path

        chosen = os.environ.get(DATASET_ENV, "").strip()
        if not chosen:
            raise ConfigurationError(
                f"set {DATASET_ENV} to a local file for the dataset of {self.location()}: "
                "it is built locally, from a verified local copy of the ledger beside it"
            )
        database = Path(chosen).expanduser().resolve()
        copy = local_copy_path(database)
        copy_ledger(self._s3_settings(), copy)
        return copy, database, True


class SlackNotificationError(AuditPipelineError):
    """Slack did not take a message (the text names Slack's error code, never the token)."""


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


class SlackNotifier(dg.ConfigurableResource):
    """SlackNotifier posts alerts and checkpoints through the Slack Web API.

    Off unless a bot token and a channel are configured. ``base_url`` points the official
    ``slack_sdk.WebClient`` elsewhere (tests use a local recording server).
    """

    bot_token: str | None = Field(default=None, description="Bot token (xoxb-…), chat:write.")
    channel: str | None = Field(default=None, description="Channel for failure alerts.")
    checkpoint_channel: str | None = Field(
        default=None, description="Channel that witnesses every verified checkpoint."
    )
    base_url: str | None = Field(default=None, description="Web API root (default Slack's).")
    webserver_url: str = Field(
        default=DEFAULT_WEBSERVER_URL, description="Dagster UI address for run links."
    )
    timeout: int = Field(default=10, ge=1, description="Seconds per request.")

    @property
    def alerts_enabled(self) -> bool:
        return bool(self.bot_token and self.channel)

    @property
    def checkpoints_enabled(self) -> bool:
        return bool(self.bot_token and self.checkpoint_channel)

    def run_url(self, run_id: str) -> str:
        return f"{self.webserver_url.rstrip('/')}/runs/{run_id}"

    def _client(self) -> WebClient:
        base_url = self.base_url or SLACK_WEB_API_URL
        if not base_url.endswith("/"):
            base_url += "/"
        client = WebClient(
            token=self.bot_token,
            base_url=base_url,
            timeout=self.timeout,
            logger=logging.getLogger("audit_pipeline.slack_sdk.web"),
        )
        client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=2))
        if _is_loopback(base_url):
            client.proxy = None  # slack-sdk honours HTTPS_PROXY but not NO_PROXY
        return client

    def post(
        self, channel: str, text: str, blocks: Sequence[Mapping[str, Any]] | None = None
    ) -> str:
        """post sends one message and returns its timestamp (Slack's message id)."""
        if not self.bot_token:
            raise ConfigurationError(f"no Slack bot token: set {NOTIFIER_ENV['bot_token']}")
        try:
            response = self._client().chat_postMessage(
                channel=channel,
                text=text,
                blocks=list(blocks) if blocks else None,
                unfurl_links=False,
            )
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else None
            raise SlackNotificationError(
                f"Slack refused the message to {channel}: {error or 'unknown error'}"
            ) from None
        except (SlackClientError, OSError) as exc:
            raise SlackNotificationError(
                f"could not reach the Slack Web API at {self.base_url or SLACK_WEB_API_URL}: "
                f"{type(exc).__name__}"
            ) from None
        return str(response.get("ts", ""))

    def post_alert(self, text: str, blocks: Sequence[Mapping[str, Any]] | None = None) -> str:
        if not self.alerts_enabled or self.channel is None:
            raise ConfigurationError("Slack alerts are not configured")
        return self.post(self.channel, text, blocks)


def slack_notifier_from_env(environ: Mapping[str, str] | None = None) -> SlackNotifier:
    """slack_notifier_from_env configures alerting from ``AUDIT_SLACK_*`` (off if unset).

    The bot token's value is not read here: when the variable is set, the resource gets an
    ``EnvVar`` that Dagster resolves inside the run or sensor tick.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if env.get(NOTIFIER_ENV["bot_token"]):
        values["bot_token"] = dg.EnvVar(NOTIFIER_ENV["bot_token"])
    for field in ("channel", "checkpoint_channel", "base_url", "webserver_url"):
        raw = env.get(NOTIFIER_ENV[field], "").strip()
        if raw:
            values[field] = raw
    return SlackNotifier(**values)


@dg.definitions
def resources() -> dg.Definitions:
    """resources binds the resource keys every asset, check and sensor here asks for."""
    return dg.Definitions(
        resources={
            "slack_audit": SlackAuditResource(token=dg.EnvVar("SLACK_AUDIT_TOKEN")),
            "ledger": LedgerResource(),
            "slack_notifier": slack_notifier_from_env(),
            "witnesses": WitnessSetResource(),
        }
    )
