"""Signing key files and the keyring: permissions, windows, rotation, revocation."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from audit_pipeline.errors import ConfigurationError
from audit_pipeline.ledger.keys import (
    Keyring,
    KeyStatus,
    MalformedKeyringError,
    TrustedKey,
    create_signing_key,
    default_signing_key_path,
    init_key,
    load_keyring,
    load_signing_key,
    parse_trusted_keys,
    revoke_key,
    rotate_key,
)
from audit_pipeline.ledger.note import Verifier, generate_key


def test_create_writes_a_private_file_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "audit-pipeline" / "signing-key"
    signer = create_signing_key(path, "acme-audit")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    text = path.read_text()
    assert text.startswith("PRIVATE+KEY+acme-audit+") and text.endswith("\n")
    assert load_signing_key(path).vkey == signer.vkey
    name, key_id, data = signer.vkey.split("+", 2)
    assert (name, key_id) == ("acme-audit", f"{signer.key_hash:08x}")
    assert base64.b64decode(data) == b"\x01" + signer.public_key
    with pytest.raises(ConfigurationError, match="already exists"):
        create_signing_key(path, "acme-audit")
    assert path.read_text() == text


def test_a_key_file_others_can_read_is_refused_without_showing_it(tmp_path: Path) -> None:
    path = tmp_path / "signing-key"
    create_signing_key(path, "acme")
    secret = path.read_text().strip()
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600") as info:
        load_signing_key(path)
    assert secret not in str(info.value)
    path.chmod(0o600)
    path.write_text(secret[:-3] + "xyz")
    with pytest.raises(ConfigurationError, match="does not hold a valid signing key") as info:
        load_signing_key(path)
    assert secret[12:] not in str(info.value)
    with pytest.raises(ConfigurationError, match="keys init"):
        load_signing_key(tmp_path / "absent")


def test_default_key_path() -> None:
    assert default_signing_key_path({"AUDIT_SIGNING_KEY": "/k/sk"}) == Path("/k/sk")
    assert default_signing_key_path({"XDG_CONFIG_HOME": "/cfg"}) == Path(
        "/cfg/audit-pipeline/signing-key"
    )
    assert default_signing_key_path({}) == Path("~/.config/audit-pipeline/signing-key").expanduser()


def test_status_windows_are_half_open() -> None:
    _, vkey = generate_key("k")
    key = TrustedKey.from_vkey(vkey, valid_from=100, valid_until=200, revoked_at=150)
    assert key.status_at(99) is KeyStatus.NOT_YET_VALID
    assert key.status_at(100) is KeyStatus.VALID
    assert key.status_at(149) is KeyStatus.VALID
    assert key.status_at(150) is KeyStatus.REVOKED
    open_ended = TrustedKey.from_vkey(vkey, valid_from=100, valid_until=200)
    assert open_ended.status_at(199) is KeyStatus.VALID
    assert open_ended.status_at(200) is KeyStatus.EXPIRED
    keyring = Keyring((key,))
    assert keyring.status("k", key.key_hash ^ 1, 120) is KeyStatus.UNKNOWN
    assert keyring.status("other", key.key_hash, 120) is KeyStatus.UNKNOWN


def test_keyring_round_trip_and_strict_parsing() -> None:
    _, v1 = generate_key("log")
    _, v2 = generate_key("log")
    ring = Keyring(
        (
            TrustedKey.from_vkey(v1, valid_from=1, valid_until=5),
            TrustedKey.from_vkey(v2, valid_from=5),
        )
    )
    again = Keyring.from_bytes(ring.to_bytes())
    assert again.keys == ring.keys
    doc = json.loads(ring.to_bytes())
    bad_docs = {
        "schema": {**doc, "schema": "other"},
        "extra top-level field": {**doc, "x": 1},
        "unknown key field": {**doc, "keys": [{**doc["keys"][0], "note": "x"}]},
        "string time": {**doc, "keys": [{**doc["keys"][0], "valid_from": "2025"}]},
        "until before from": {**doc, "keys": [{**doc["keys"][0], "valid_until": 0}]},
        "bad vkey": {**doc, "keys": [{**doc["keys"][0], "vkey": v1[:-2]}]},
        "same key twice": {**doc, "keys": [doc["keys"][0], doc["keys"][0]]},
    }
    for desc, bad in bad_docs.items():
        with pytest.raises(MalformedKeyringError):
            Keyring.from_bytes(json.dumps(bad).encode())
            pytest.fail(desc)
    with pytest.raises(MalformedKeyringError, match="duplicate"):
        Keyring.from_bytes(b'{"schema":"audit_pipeline.keyring/v1","keys":[],"keys":[]}')


def test_trusted_keys_file_forms(tmp_path: Path) -> None:
    _, v1 = generate_key("log")
    _, v2 = generate_key("log")
    ring = parse_trusted_keys(f"# held by the auditor\n{v1}\n\n{v2}\n".encode(), source="f")
    assert [k.vkey for k in ring.keys] == [v1, v2]
    assert all(k.status_at(0) is KeyStatus.VALID for k in ring.keys)
    keyring_json = Keyring((TrustedKey.from_vkey(v1, valid_from=7),)).to_bytes()
    assert parse_trusted_keys(keyring_json, source="f").keys[0].valid_from == 7
    with pytest.raises(MalformedKeyringError, match="no public keys"):
        parse_trusted_keys(b"# nothing\n", source="f")
    with pytest.raises(MalformedKeyringError):
        parse_trusted_keys(b"not-a-key\n", source="f")


def test_init_is_idempotent(data_dir: Path, key_path: Path) -> None:
    signer, created, added = init_key(data_dir, key_path, name="log", now=10)
    assert (created, added) == (True, True)
    again, created, added = init_key(data_dir, key_path, name="log", now=20)
    assert (again.vkey, created, added) == (signer.vkey, False, False)
    (key,) = load_keyring(data_dir).keys
    assert (key.vkey, key.valid_from, key.valid_until) == (signer.vkey, 10, None)


def test_rotation_closes_the_old_window_and_replaces_the_key_file(
    data_dir: Path, key_path: Path
) -> None:
    first, _, _ = init_key(data_dir, key_path, name="log", now=10)
    old, new = rotate_key(data_dir, key_path, now=50)
    assert old.vkey == first.vkey and new.vkey != first.vkey and new.name == "log"
    assert load_signing_key(key_path).vkey == new.vkey
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert not key_path.with_name(key_path.name + ".new").exists()
    ring = load_keyring(data_dir)
    assert ring.status("log", old.key_hash, 49) is KeyStatus.VALID
    assert ring.status("log", old.key_hash, 50) is KeyStatus.EXPIRED
    assert ring.status("log", new.key_hash, 49) is KeyStatus.NOT_YET_VALID
    assert ring.status("log", new.key_hash, 50) is KeyStatus.VALID


def test_rotation_interrupted_after_the_keyring_is_completed(
    data_dir: Path, key_path: Path
) -> None:
    """A crash between trusting the new key and replacing the key file: a rerun finishes."""
    init_key(data_dir, key_path, name="log", now=10)
    first_text = key_path.read_text()
    _, new = rotate_key(data_dir, key_path, now=50)
    staged = key_path.with_name(key_path.name + ".new")
    key_path.rename(staged)  # the state just before os.replace
    key_path.write_text(first_text)
    key_path.chmod(0o600)
    _, finished = rotate_key(data_dir, key_path, now=60)
    assert finished.vkey == new.vkey and load_signing_key(key_path).vkey == new.vkey
    assert not staged.exists() and len(load_keyring(data_dir).keys) == 2


def test_revoke_by_key_id(data_dir: Path, key_path: Path) -> None:
    signer, _, _ = init_key(data_dir, key_path, name="log", now=10)
    revoked = revoke_key(data_dir, f"{signer.key_hash:08x}", at=30)
    assert revoked.revoked_at == 30
    assert load_keyring(data_dir).status("log", signer.key_hash, 30) is KeyStatus.REVOKED
    assert load_keyring(data_dir).status("log", signer.key_hash, 29) is KeyStatus.VALID
    assert revoke_key(data_dir, f"log+{signer.key_hash:08x}", at=40).revoked_at == 40
    with pytest.raises(ConfigurationError, match="no key"):
        revoke_key(data_dir, "deadbeef", at=1)


def test_a_negative_revocation_position_is_refused_before_the_keyring_is_written(
    data_dir: Path, key_path: Path
) -> None:
    """--at-size -1 was written, and then every command refused the keyring it made."""
    signer, _, _ = init_key(data_dir, key_path, name="log", now=10)
    with pytest.raises(ConfigurationError, match="tree size >= 0"):
        revoke_key(data_dir, signer.vkey, at=30, at_size=-1, signer=signer)
    assert load_keyring(data_dir).find("log", signer.key_hash).revoked_at_size is None


def test_missing_keyring_says_what_to_do(data_dir: Path) -> None:
    with pytest.raises(ConfigurationError, match="keys init"):
        load_keyring(data_dir)


def test_trusted_key_verifier_matches_vkey() -> None:
    _, vkey = generate_key("log")
    key = TrustedKey.from_vkey(vkey)
    assert key.verifier == Verifier.from_vkey(vkey)
    assert key.key_id == vkey.split("+")[1]
