"""s3:// URLs and the AWS settings: parsing, required retention, no secrets in reprs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit_pipeline.errors import ConfigurationError
from audit_pipeline.store.settings import S3Location, S3Settings, is_s3_url

_SEGMENT = st.text("abcdefghijklmnopqrstuvwxyz0123456789=-_.", min_size=1, max_size=12).filter(
    lambda s: s not in (".", "..")
)
_BUCKET = st.from_regex(r"\A[a-z0-9][a-z0-9-]{1,20}[a-z0-9]\Z")


@given(_BUCKET, st.lists(_SEGMENT, max_size=4))
def test_url_round_trips_and_keys_map_both_ways(bucket: str, segments: list[str]) -> None:
    prefix = "/".join(segments)
    location = S3Location.parse(f"s3://{bucket}/{prefix}")
    assert location == S3Location(bucket, prefix)
    assert S3Location.parse(str(location)) == location
    rel = "ledger/manifests/00000000.json"
    assert location.rel(location.key(rel)) == rel


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "s3://A-Bucket/x",
        "s3://ab/x",
        "s3://bucket/../x",
        "s3://bucket/a//b",
        "s3://bucket/./x",
        "file:///tmp/data",
        "/tmp/data",
    ],
)
def test_bad_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        S3Location.parse(url)


def test_trailing_slashes_and_empty_prefix() -> None:
    assert S3Location.parse("s3://audit-logs/") == S3Location("audit-logs", "")
    assert S3Location.parse("s3://audit-logs/prod/") == S3Location("audit-logs", "prod")
    assert S3Location("audit-logs").key("lake/x") == "lake/x"
    assert is_s3_url("s3://audit-logs") and not is_s3_url("data")


def test_settings_come_from_the_standard_aws_variables() -> None:
    env = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_REGION": "eu-central-1",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI-secret",
        "AUDIT_RETENTION_DAYS": "2557",
    }
    settings = S3Settings.from_env("s3://audit-logs/prod", env)
    assert settings.location == S3Location("audit-logs", "prod")
    assert settings.retention == timedelta(days=2557)
    assert settings.endpoint_url == "http://127.0.0.1:9000"
    assert settings.region == "eu-central-1"
    assert "wJalrXUtnFEMI-secret" not in repr(settings)
    assert "AKIDEXAMPLE" not in repr(settings)
    s3_only = S3Settings.from_env(
        "s3://audit-logs",
        {**env, "AWS_ENDPOINT_URL_S3": "https://user:pw@s3.example:8443/", "AWS_REGION": ""},
    )
    assert s3_only.endpoint_text == "https://s3.example:8443"
    assert s3_only.region is None


@pytest.mark.parametrize("value", [None, "", "0", "-1", "7.5", "seven"])
def test_retention_is_required_and_a_positive_whole_number_of_days(value) -> None:
    env = {} if value is None else {"AUDIT_RETENTION_DAYS": value}
    with pytest.raises(ConfigurationError, match="AUDIT_RETENTION_DAYS"):
        S3Settings.from_env("s3://audit-logs/prod", env)
