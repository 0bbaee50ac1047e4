"""Manifests: exact signed bytes, strict parsing, allow-listed algorithms, key statuses."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from audit_pipeline.ledger.canonical import canonical_json
from audit_pipeline.ledger.errors import MalformedError
from audit_pipeline.ledger.keys import Keyring, TrustedKey
from audit_pipeline.ledger.manifest import (
    ALGORITHMS,
    SIGNING_CONTEXT,
    DataFile,
    Manifest,
    UnsupportedAlgorithmError,
    parse_manifest,
    sign_manifest,
    signature_status,
)
from audit_pipeline.ledger.note import Signer, generate_key


@pytest.fixture
def signer() -> Signer:
    return Signer.from_private_key(generate_key("log")[0])


def sample(signer: Signer, **changes: Any) -> Manifest:
    fields: dict[str, Any] = dict(
        origin="test.example/ledger",
        sequence=3,
        prev_manifest_sha256="ab" * 32,
        window_start=1_735_693_200,
        window_end=1_735_696_800,
        kind="hour",
        data=DataFile("lake/date=2025-01-01/hour=01/00000003-hour.jsonl", 812, "cd" * 32, 2),
        event_count=2,
        min_date_create=1_735_693_210,
        max_date_create=1_735_693_999,
        events_root="ef" * 32,
        source={"api_url": "https://api.slack.test/audit/v1/logs", "pages": 1},
        run_id="run-1",
        created=1_736_000_000,
        key_name=signer.name,
        key_id=f"{signer.key_hash:08x}",
    )
    fields.update(changes)
    return Manifest(**fields)


def envelope(raw: bytes) -> dict[str, Any]:
    return json.loads(raw)


def test_round_trip_is_exact(signer: Signer) -> None:
    signed = sign_manifest(sample(signer), signer)
    assert signed.raw == canonical_json(envelope(signed.raw))
    again = parse_manifest(signed.raw)
    assert again.manifest == signed.manifest and again.raw == signed.raw
    assert again.signature.sig == signed.signature.sig
    payload = envelope(signed.raw)["signed"]
    assert payload["format"] == "audit_pipeline.manifest/v2"
    assert payload["algorithms"] == dict(ALGORITHMS)
    assert set(payload) >= {
        "origin",
        "sequence",
        "prev_manifest_sha256",
        "window",
        "kind",
        "data",
        "events",
        "source",
        "run_id",
        "created",
        "key",
    }


def test_v1_manifests_are_still_read_and_verified(signer: Signer) -> None:
    signed = sign_manifest(sample(signer, format="audit_pipeline.manifest/v1"), signer)
    payload = canonical_json(signed.manifest.to_dict())
    assert signer.verifier.verify(b"audit_pipeline.manifest/v1\x00" + payload, signed.signature.sig)
    again = parse_manifest(signed.raw)
    assert again.manifest.format == "audit_pipeline.manifest/v1" and again.raw == signed.raw
    assert again.manifest.signed_bytes.startswith(b"audit_pipeline.manifest/v1\x00")
    with pytest.raises(MalformedError, match="unsupported manifest format"):
        Manifest.from_dict({**signed.manifest.to_dict(), "format": "audit_pipeline.manifest/v3"})


def test_signature_covers_context_and_payload(signer: Signer) -> None:
    signed = sign_manifest(sample(signer), signer)
    payload = canonical_json(signed.manifest.to_dict())
    assert signer.verifier.verify(SIGNING_CONTEXT + payload, signed.signature.sig)
    assert not signer.verifier.verify(payload, signed.signature.sig)


def test_unknown_payload_fields_are_kept_and_signed(signer: Signer) -> None:
    d = sample(signer).to_dict()
    d["retention"] = {"until": 1}
    signed = sign_manifest(Manifest.from_dict(d), signer)
    again = parse_manifest(signed.raw)
    assert again.manifest.unrecognized_fields == {"retention": {"until": 1}}
    assert envelope(signed.raw)["signed"]["retention"] == {"until": 1}


def test_a_data_version_pin_is_signed_and_round_trips(signer: Signer) -> None:
    signed = sign_manifest(sample(signer, data_version_id="3HL4kqtJvjVBH40Nrjfkd"), signer)
    doc = envelope(signed.raw)["signed"]
    assert doc["data_version_id"] == "3HL4kqtJvjVBH40Nrjfkd" and "version_id" not in doc["data"]
    again = parse_manifest(signed.raw)
    assert again.manifest.data_version_id == "3HL4kqtJvjVBH40Nrjfkd"
    assert again.manifest.unrecognized_fields == {} and again.raw == signed.raw
    assert "data_version_id" not in sample(signer).to_dict()  # local ledgers: absent
    # the pin is inside the signed bytes: changing it breaks the signature
    keyring = Keyring((TrustedKey.from_vkey(signer.vkey),))
    assert signature_status(again, keyring) == "valid"
    forged = signed.raw.replace(b"3HL4kqtJvjVBH40Nrjfkd", b"3HL4kqtJvjVBH40Nrjfke")
    assert signature_status(parse_manifest(forged), keyring) == "bad_signature"


@pytest.mark.parametrize(
    ("value", "data"),
    [
        ("null", True),
        ("", True),
        ("has space", True),
        ("v" * 1025, True),
        (7, True),
        (None, True),
        ("3HL4kq", False),
    ],
)
def test_a_bad_data_version_pin_is_malformed(signer: Signer, value: Any, data: bool) -> None:
    d = sample(signer, **({} if data else {"data": None, "kind": "empty"})).to_dict()
    d["data_version_id"] = value
    with pytest.raises(MalformedError, match="data_version_id"):
        Manifest.from_dict(d)


def _variants(raw: bytes) -> dict[str, bytes]:
    text = raw.decode()
    doc = envelope(raw)
    return {
        "trailing newline": raw + b"\n",
        "pretty printed": json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False).encode(),
        "reordered keys": json.dumps(
            {"signed": doc["signed"], "signatures": doc["signatures"]},
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode(),
        "duplicate key": text.replace('"kind":"hour"', '"kind":"late","kind":"hour"').encode(),
        "escaped slash": text.replace("api.slack.test/audit", "api.slack.test\\/audit").encode(),
        "unicode escape": text.replace('"run-1"', '"run\\u002d1"').encode(),
        "CRLF": raw.replace(b",", b",\r\n", 1),
        "BOM": b"\xef\xbb\xbf" + raw,
        "invalid UTF-8": raw.replace(b"run-1", b"run-\xff"),
    }


def test_canonicalisation_tricks_are_refused(signer: Signer) -> None:
    raw = sign_manifest(sample(signer), signer).raw
    for desc, variant in _variants(raw).items():
        assert variant != raw, desc
        with pytest.raises(MalformedError):
            parse_manifest(variant)
            pytest.fail(f"parse_manifest accepted: {desc}")


def _edit(raw: bytes, edit) -> bytes:
    doc = envelope(raw)
    edit(doc)
    return canonical_json(doc)


BAD_EDITS = {
    "field outside the signed bytes": lambda d: d.update(created=1),
    "two signatures": lambda d: d["signatures"].append(d["signatures"][0]),
    "no signature": lambda d: d.update(signatures=[]),
    "short signature": lambda d: d["signatures"][0].update(
        sig=base64.b64encode(b"x" * 63).decode()
    ),
    "sig not base64": lambda d: d["signatures"][0].update(sig="!" * 88),
    "signature by another key": lambda d: d["signatures"][0].update(key_id="00000000"),
    "missing field": lambda d: d["signed"].pop("run_id"),
    "unknown kind": lambda d: d["signed"].update(kind="hourly"),
    "future format": lambda d: d["signed"].update(format="audit_pipeline.manifest/v3"),
    "negative sequence": lambda d: d["signed"].update(sequence=-1),
    "bool sequence": lambda d: d["signed"].update(sequence=True),
    "string created": lambda d: d["signed"].update(created="2025-01-01"),
    "uppercase hex": lambda d: d["signed"].update(prev_manifest_sha256="AB" * 32),
    "short hash": lambda d: d["signed"]["data"].update(sha256="cd" * 31),
    "extra data field": lambda d: d["signed"]["data"].update(mtime=1),
    "extra window field": lambda d: d["signed"]["window"].update(tz="UTC"),
    "float in source": lambda d: d["signed"]["source"].update(pages=1.5),
    "empty run id": lambda d: d["signed"].update(run_id=""),
    "source not an object": lambda d: d["signed"].update(source=[]),
}


@pytest.mark.parametrize("desc", sorted(BAD_EDITS))
def test_malformed_manifests_are_refused(signer: Signer, desc: str) -> None:
    raw = sign_manifest(sample(signer), signer).raw
    with pytest.raises(MalformedError):
        parse_manifest(_edit(raw, BAD_EDITS[desc]))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("signature", "rsa-pkcs1"),
        ("file_hash", "md5"),
        ("merkle", "sha1"),
        ("canonicalization", "none"),
    ],
)
def test_algorithms_outside_the_allow_list(signer: Signer, name: str, value: str) -> None:
    raw = sign_manifest(sample(signer), signer).raw
    edited = _edit(raw, lambda d: d["signed"]["algorithms"].update({name: value}))
    with pytest.raises(UnsupportedAlgorithmError, match=name):
        parse_manifest(edited)
    missing = _edit(raw, lambda d: d["signed"]["algorithms"].pop(name))
    with pytest.raises(MalformedError):
        parse_manifest(missing)


def test_signature_statuses(signer: Signer) -> None:
    signed = sign_manifest(sample(signer, created=1000), signer)

    def ring(**window: int | None) -> Keyring:
        return Keyring((TrustedKey.from_vkey(signer.vkey, **window),))

    assert signature_status(signed, ring()) == "valid"
    assert signature_status(signed, Keyring()) == "unknown_key"
    assert signature_status(signed, ring(valid_from=1001)) == "key_not_yet_valid"
    assert signature_status(signed, ring(valid_until=1000)) == "key_expired"
    assert signature_status(signed, ring(revoked_at=999)) == "key_revoked"
    # A different key with the same name and key id (a key id collision): bad signature.
    impostor = Signer.from_private_key(generate_key("log")[0])
    forged_sig = impostor.sign(signed.manifest.signed_bytes)
    forged = parse_manifest(
        _edit(
            signed.raw,
            lambda d: d["signatures"][0].update(sig=base64.b64encode(forged_sig).decode()),
        )
    )
    assert signature_status(forged, ring()) == "bad_signature"
    assert signature_status(forged, ring(revoked_at=0)) == "bad_signature"


def test_sign_refuses_a_payload_naming_another_key(signer: Signer) -> None:
    with pytest.raises(ValueError, match="signer"):
        sign_manifest(sample(signer, key_id="00000000"), signer)


@pytest.mark.parametrize("fmt", ["audit_pipeline.manifest/v1", "audit_pipeline.manifest/v2"])
def test_the_signature_is_checked_over_the_payload_bytes_as_stored(signer: Signer, fmt) -> None:
    """A parsed manifest's signed message is sliced from its stored bytes, and equals the
    re-encoded payload (unknown signed fields included), so its signature still verifies."""
    signed = sign_manifest(sample(signer, format=fmt, unrecognized_fields={"zz": [1]}), signer)
    again = parse_manifest(signed.raw)
    assert again.payload is not None and again.payload in signed.raw
    assert again.signed_bytes == signed.manifest.signed_bytes
    assert signer.verifier.verify(again.signed_bytes, again.signature.sig)
    assert signature_status(again, Keyring((TrustedKey.from_vkey(signer.vkey),))) == "valid"
