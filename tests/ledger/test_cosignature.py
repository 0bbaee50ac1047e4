"""tlog-cosignature/v1: the spec's example, the key id rule, and an independent verifier.

The spec (c2sp.org/tlog-cosignature) publishes its example cosignature line but not the
witness key that made it, so the example checks the framing byte for byte (key id, the
timestamp its signed-message example shows, 64 signature bytes) and the signed message is
rebuilt byte for byte. ``independent_open`` is a note/cosignature verifier written here from
the specs (Go's sumdb/note algorithm), sharing no code with the package.
"""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_pipeline.ledger.cosignature import (
    WitnessKey,
    WitnessSigner,
    cosignatures,
    cosigned_message,
    cosigner_key_id,
    with_cosignatures,
)
from audit_pipeline.ledger.errors import MalformedError
from audit_pipeline.ledger.note import Signer, generate_key, key_hash, sign_note

SPEC_CHECKPOINT = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)
SPEC_LOG_LINE = (
    "— example.com/behind-the-sofa "
    "Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
)
SPEC_COSIG_LINE = (
    "— witness.example.com/w1 "
    "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
)
SPEC_SIGNED_MESSAGE = (
    b"cosignature/v1\n"
    b"time 1679315147\n"
    b"example.com/behind-the-sofa\n"
    b"20852163\n"
    b"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)


def independent_open(note: bytes, witnesses: dict[str, bytes]) -> dict[str, int]:
    """independent_open returns {witness name: timestamp} for every valid cosignature line
    by the given (name -> Ed25519 public key) witnesses, raising on a bad one."""
    text, _, sigs = note.decode("utf-8").rpartition("\n\n")
    body = (text + "\n").encode("utf-8")
    found = {}
    for line in sigs.splitlines():
        assert line.startswith("\u2014 ")
        name, b64 = line[2:].split(" ")
        raw = base64.b64decode(b64, validate=True)
        if name not in witnesses:
            continue
        key = witnesses[name]
        key_id = hashlib.sha256(name.encode() + b"\n\x04" + key).digest()[:4]
        if raw[:4] != key_id:
            continue
        (timestamp,) = struct.unpack(">Q", raw[4:12])
        message = b"cosignature/v1\ntime " + str(timestamp).encode() + b"\n" + body
        Ed25519PublicKey.from_public_bytes(key).verify(raw[12:], message)
        found[name] = timestamp
    return found


def test_spec_example_line_framing() -> None:
    raw = base64.b64decode(SPEC_COSIG_LINE.split(" ")[2])
    assert len(raw) == 4 + 8 + 64
    assert raw[:4].hex() == "8d66cf3f"
    assert struct.unpack(">Q", raw[4:12])[0] == 1679315147


def test_spec_signed_message_byte_for_byte() -> None:
    assert cosigned_message(SPEC_CHECKPOINT, 1679315147) == SPEC_SIGNED_MESSAGE


def test_spec_example_parses_and_foreign_lines_are_ignored() -> None:
    note = (SPEC_CHECKPOINT + "\n" + SPEC_LOG_LINE + SPEC_COSIG_LINE).encode()
    # A key with the example's name but not its key: the line is by another key, ignored.
    other = WitnessSigner.generate("witness.example.com/w1").key
    found = cosignatures(note, [other])
    assert found.valid == () and found.invalid == ()
    assert found.text == SPEC_CHECKPOINT


def test_key_id_rule_matches_the_spec_formula() -> None:
    signer = WitnessSigner.generate("witness.example.com/w1")
    expected = hashlib.sha256(
        b"witness.example.com/w1" + b"\n" + b"\x04" + signer.public_key
    ).digest()[:4]
    assert signer.key.key_id == int.from_bytes(expected, "big")
    name, hex_id, data = signer.key.vkey.split("+", 2)
    assert (name, hex_id) == ("witness.example.com/w1", expected.hex())
    assert base64.b64decode(data) == b"\x04" + signer.public_key
    # The same key as a log key (type 0x01) has another id: never confused.
    assert cosigner_key_id(name, signer.public_key) != key_hash(name, signer.public_key)
    assert WitnessKey.from_vkey(signer.key.vkey) == signer.key


def test_private_key_round_trip_and_wrong_type_refused() -> None:
    signer = WitnessSigner.generate("w.example/1")
    again = WitnessSigner.from_private_key(signer.private_key_text)
    assert again.key == signer.key
    log_skey, log_vkey = generate_key("w.example/1")
    with pytest.raises(MalformedError):
        WitnessKey.from_vkey(log_vkey)  # a log key (0x01) is not a witness key
    with pytest.raises(MalformedError):
        WitnessSigner.from_private_key(log_skey)
    assert "PRIVATE" not in repr(signer)


def test_cosignature_verifies_with_the_independent_verifier() -> None:
    log_skey, _ = generate_key("example.com/log")
    signed = sign_note(SPEC_CHECKPOINT, Signer.from_private_key(log_skey))
    w1, w2 = WitnessSigner.generate("w1.example"), WitnessSigner.generate("w2.example")
    note = with_cosignatures(
        signed, [w1.cosign(SPEC_CHECKPOINT, 1679315147), w2.cosign(SPEC_CHECKPOINT, 1700000000)]
    )
    found = independent_open(note, {"w1.example": w1.public_key, "w2.example": w2.public_key})
    assert found == {"w1.example": 1679315147, "w2.example": 1700000000}
    ours = cosignatures(note, [w1.key, w2.key])
    assert sorted(ours.witnesses) == ["w1.example", "w2.example"] and ours.meets(2)
    assert not cosignatures(note, [w1.key]).meets(2)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=2**63 - 1), st.data())
def test_any_changed_byte_breaks_the_cosignature(timestamp: int, data: st.DataObject) -> None:
    w = WitnessSigner.generate("w.example")
    line = w.cosign(SPEC_CHECKPOINT, timestamp)
    message = bytearray(cosigned_message(SPEC_CHECKPOINT, timestamp))
    raw = base64.b64decode(line.split(" ")[2])
    Ed25519PublicKey.from_public_bytes(w.public_key).verify(raw[12:], bytes(message))
    i = data.draw(st.integers(0, len(message) - 1))
    message[i] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(InvalidSignature):
        Ed25519PublicKey.from_public_bytes(w.public_key).verify(raw[12:], bytes(message))
    tampered = SPEC_CHECKPOINT.replace("20852163", "20852164")
    note = (tampered + "\n" + line).encode()
    found = cosignatures(note, [w.key])
    assert found.valid == () and found.invalid == (f"w.example+{w.key.key_id:08x}",)
