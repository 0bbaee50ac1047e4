"""C2SP signed notes: interop with Go's golang.org/x/mod/sumdb/note and the C2SP example.

Vectors (data only): the C2SP signed-note spec's example key and note (verify only, its
private key is not published), and Go's note_test.go golden key pair PeterNeumann, whose
private key is published, so signing must reproduce Go's output byte for byte. Go's
EnochRoot signature over the same text checks two-signature notes.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_pipeline.ledger.errors import (
    AmbiguousKeyError,
    InvalidSignatureError,
    MalformedError,
    UnknownKeyError,
)
from audit_pipeline.ledger.note import (
    ALG_ED25519,
    Note,
    Signature,
    Signer,
    Verifier,
    Verifiers,
    format_vkey,
    generate_key,
    key_hash,
    open_note,
    parse_vkey,
    sign_note,
)

C2SP_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
C2SP_TEXT = "This is an example message.\n"
C2SP_SIG_B64 = (
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM="
)
C2SP_NOTE = f"{C2SP_TEXT}\n— example.com/foo {C2SP_SIG_B64}\n".encode()

GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_SEED_B64 = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_B64 = (
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
)
ENOCH_B64 = (
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ="
)
PETER_SIG = f"— PeterNeumann {PETER_B64}\n"
ENOCH_SIG = f"— EnochRoot {ENOCH_B64}\n"
PETER = Signature("PeterNeumann", 0xC74F20A3, PETER_B64)
ENOCH = Signature("EnochRoot", 0xAF0CFE78, ENOCH_B64)


def _verifiers(*vkeys: str) -> Verifiers:
    return Verifiers(Verifier.from_vkey(v) for v in vkeys)


def _msg(*sig_lines: str, text: str = GO_TEXT) -> bytes:
    return (text + "\n" + "".join(sig_lines)).encode()


# --- interop vectors -------------------------------------------------------------------


def test_c2sp_example_note_verifies() -> None:
    verifier = Verifier.from_vkey(C2SP_VKEY)
    assert (verifier.name, verifier.key_hash) == ("example.com/foo", 0x530D903A)
    assert key_hash("example.com/foo", verifier.public_key) == 0x530D903A
    assert verifier.vkey == C2SP_VKEY
    note = open_note(C2SP_NOTE, Verifiers([verifier]))
    assert note == Note(C2SP_TEXT, (Signature("example.com/foo", 0x530D903A, C2SP_SIG_B64),), ())
    raw = base64.b64decode(C2SP_SIG_B64)
    assert raw[:4] == bytes.fromhex("530d903a") and len(raw) == 68
    assert verifier.verify(C2SP_TEXT.encode(), raw[4:])
    assert not verifier.verify(b"This is an example message!\n", raw[4:])


def test_c2sp_example_rejects_every_flipped_signature_bit() -> None:
    verifiers = _verifiers(C2SP_VKEY)
    raw = base64.b64decode(C2SP_SIG_B64)
    for bit in range(32, len(raw) * 8):  # past the key hash: the Ed25519 signature itself
        corrupt = bytearray(raw)
        corrupt[bit // 8] ^= 1 << (bit % 8)
        line = f"— example.com/foo {base64.b64encode(corrupt).decode()}\n"
        with pytest.raises(InvalidSignatureError, match=r"example.com/foo\+530d903a"):
            open_note(_msg(line, text=C2SP_TEXT), verifiers)


def test_go_golden_signing_is_byte_identical() -> None:
    signer = Signer.from_private_key(GO_SKEY)
    assert (signer.name, signer.key_hash, signer.vkey) == ("PeterNeumann", 0xC74F20A3, PETER_VKEY)
    assert sign_note(GO_TEXT, signer) == _msg(PETER_SIG)


def test_go_open_one_verified_one_not() -> None:
    note = open_note(_msg(PETER_SIG, ENOCH_SIG), _verifiers(PETER_VKEY))
    assert note.text == GO_TEXT
    assert note.sigs == (PETER,)
    assert note.unverified_sigs == (ENOCH,)


def test_go_open_both_verified() -> None:
    note = open_note(_msg(PETER_SIG, ENOCH_SIG), _verifiers(PETER_VKEY, ENOCH_VKEY))
    assert note.sigs == (PETER, ENOCH)
    assert note.unverified_sigs == ()


def test_no_known_key_names_the_first_unknown_one() -> None:
    with pytest.raises(UnknownKeyError) as caught:
        open_note(_msg(PETER_SIG, ENOCH_SIG), _verifiers(C2SP_VKEY))
    err = caught.value
    assert (err.name, err.key_hash) == ("PeterNeumann", 0xC74F20A3)
    assert str(err) == "note has no verifiable signatures: unknown key PeterNeumann+c74f20a3"
    assert err.note.unverified_sigs == (PETER, ENOCH)
    assert err.note.sigs == ()
    assert err.exit_code == 1


def test_same_name_other_key_hash_is_unknown_not_invalid() -> None:
    """Spec: verifiers ignore signatures from unknown keys sharing a name (not both)."""
    line = PETER_SIG.replace(PETER_B64, base64.b64encode(b"\xc7\x4f\x20\xa4" + bytes(64)).decode())
    note = open_note(_msg(PETER_SIG, line), _verifiers(PETER_VKEY))
    assert note.sigs == (PETER,)
    assert [(s.name, s.key_hash) for s in note.unverified_sigs] == [("PeterNeumann", 0xC74F20A4)]


def test_invalid_signature_by_known_key_rejects_the_note() -> None:
    corrupt = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(InvalidSignatureError) as caught:
        open_note(_msg(corrupt), _verifiers(PETER_VKEY))
    assert str(caught.value) == "invalid signature for key PeterNeumann+c74f20a3"
    assert (caught.value.name, caught.value.key_hash) == ("PeterNeumann", 0xC74F20A3)
    # ... even when another known key signed correctly.
    with pytest.raises(InvalidSignatureError):
        open_note(_msg(ENOCH_SIG, corrupt), _verifiers(PETER_VKEY, ENOCH_VKEY))


def test_repeated_signatures_are_collapsed() -> None:
    enoch_abcd_b64 = ENOCH_B64[:46] + "ABCD" + ENOCH_B64[46:]
    msg = _msg(PETER_SIG, PETER_SIG, ENOCH_SIG, ENOCH_SIG, f"— EnochRoot {enoch_abcd_b64}\n")
    note = open_note(msg, _verifiers(PETER_VKEY))
    assert note.sigs == (PETER,)
    assert note.unverified_sigs == (ENOCH, Signature("EnochRoot", 0xAF0CFE78, enoch_abcd_b64))


def test_at_most_100_signatures() -> None:
    assert open_note(_msg(*[PETER_SIG] * 100), _verifiers(PETER_VKEY)).sigs == (PETER,)
    for verifiers in (_verifiers(PETER_VKEY), Verifiers()):
        with pytest.raises(MalformedError, match="101 signature lines, at most 100"):
            open_note(_msg(*[PETER_SIG] * 101), verifiers)


@pytest.mark.parametrize(
    ("msg", "problem"),
    [
        (GO_TEXT.encode(), "no blank line"),
        ((GO_TEXT + "\n").encode(), "must end with a newline"),
        (_msg(PETER_SIG[:-1]), "must end with a newline"),
        (b"\x01" + _msg(PETER_SIG), "control character 0x01"),
        (b"\xff" + _msg(PETER_SIG), "not valid UTF-8 at byte 0"),
        (_msg(PETER_SIG.replace("PeterNeumann", "Bad Name")), "no valid base64"),
        (_msg(PETER_SIG, "Unexpected line.\n"), "line 2 does not start with an em dash"),
        (_msg(PETER_SIG).replace(b"\n", b"\r\n"), "control character 0x0d"),
        (_msg(PETER_SIG, text="tab\there\n"), "control character 0x09"),
        (_msg(PETER_SIG.replace("— ", "-- ")), "does not start with an em dash"),
        (_msg(PETER_SIG.replace("— ", "—")), "does not start with an em dash"),
        (_msg(PETER_SIG.replace(" x08", "  x08")), "no valid base64"),
        (_msg(PETER_SIG.replace("PeterNeumann", "Peter+Neumann")), "no valid key name"),
        (_msg(PETER_SIG.replace("PeterNeumann ", "")), "no valid key name"),
        (_msg(PETER_SIG.replace("PeterNeumann", "")), "no valid key name"),
        (_msg(PETER_SIG.replace("nAM=", "nAN=")), "no valid base64"),  # stray padding bits
        (_msg(PETER_SIG.replace("nAM=", "nAM")), "no valid base64"),
        (_msg(PETER_SIG.replace(PETER_B64, "AAAA")), "no valid base64"),  # under 5 bytes
        (_msg(PETER_SIG + "\n"), "must end with a newline"),
        (_msg(PETER_SIG).replace(b"\n\n", b"\n \n"), "no blank line"),
        ("x\ud800\n\n".encode("utf-8", "surrogatepass") + PETER_SIG.encode(), "UTF-8"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_malformed_notes(msg: bytes, problem: str) -> None:
    with pytest.raises(MalformedError, match=problem):
        open_note(msg, _verifiers(PETER_VKEY))


def test_text_is_split_at_the_last_blank_line() -> None:
    signer = Signer.from_private_key(GO_SKEY)
    text = "first\n\n— NotASignature line\n\nlast\n"
    note = open_note(sign_note(text, signer), _verifiers(PETER_VKEY))
    assert note.text == text


def test_open_note_wants_bytes() -> None:
    with pytest.raises(MalformedError, match="must be bytes"):
        open_note(_msg(PETER_SIG).decode(), _verifiers(PETER_VKEY))  # type: ignore[arg-type]


# --- keys ------------------------------------------------------------------------------


@pytest.mark.parametrize("vkey", [PETER_VKEY, ENOCH_VKEY, C2SP_VKEY])
def test_verifier_key_manglings_are_refused(vkey: str) -> None:
    """Go's TestNewVerifier: every proper substring and every byte+1 must fail."""
    accepted = []
    for i in range(len(vkey) + 1):
        for j in range(i + 1, len(vkey) + 1):
            if (i, j) != (0, len(vkey)) and _parses(Verifier.from_vkey, vkey[i:j]):
                accepted.append(vkey[i:j])
    for i in range(len(vkey)):
        mangled = vkey[:i] + chr(ord(vkey[i]) + 1) + vkey[i + 1 :]
        if _parses(Verifier.from_vkey, mangled):
            accepted.append(mangled)
    assert not accepted, f"accepted mangled keys: {accepted[:5]}"


def test_go_bad_verifier_keys() -> None:
    with pytest.raises(MalformedError):  # wrong key length, hash adjusted to match
        Verifier.from_vkey(
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
        )
    with pytest.raises(MalformedError, match="unknown key algorithm 0x65"):  # alg 0x65, adjusted
        Verifier.from_vkey("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
    with pytest.raises(MalformedError, match="lower-case hex"):
        Verifier.from_vkey(PETER_VKEY.replace("c74f20a3", "C74F20A3"))
    with pytest.raises(MalformedError, match="key hash does not match"):
        Verifier.from_vkey(PETER_VKEY.replace("c74f20a3", "c74f20a4"))
    with pytest.raises(MalformedError, match="must be text"):
        Verifier.from_vkey(PETER_VKEY.encode())  # type: ignore[arg-type]


def test_private_key_manglings_are_refused_without_quoting_the_key() -> None:
    """Go's TestNewSigner, plus: no error message may contain key material."""
    accepted, leaked = [], []
    candidates = [
        GO_SKEY[i:j]
        for i in range(len(GO_SKEY) + 1)
        for j in range(i + 1, len(GO_SKEY) + 1)
        if (i, j) != (0, len(GO_SKEY))
    ]
    candidates += [
        GO_SKEY[:i] + chr(ord(GO_SKEY[i]) + 1) + GO_SKEY[i + 1 :] for i in range(len(GO_SKEY))
    ]
    for skey in candidates:
        try:
            Signer.from_private_key(skey)
        except MalformedError as e:
            if GO_SEED_B64[4:16] in str(e) or GO_SEED_B64[-12:] in str(e):
                leaked.append(str(e))
        else:
            accepted.append(skey)
    assert not accepted, f"{len(accepted)} mangled private keys accepted"
    assert not leaked, f"error messages quote key material: {leaked[:3]}"


def test_signer_never_shows_its_key() -> None:
    signer = Signer.from_private_key(GO_SKEY)
    assert GO_SEED_B64[1:] not in repr(signer)
    assert repr(signer) == "Signer(name='PeterNeumann', key_hash=0xc74f20a3)"
    assert not hasattr(signer, "__dict__")


def test_generate_key_round_trip() -> None:
    skey, vkey = generate_key("audit.example/log")
    other_skey, _ = generate_key("audit.example/log")
    assert skey != other_skey
    name, hash_, public = parse_vkey(vkey)
    assert name == "audit.example/log" and len(public) == 32
    assert (
        vkey
        == format_vkey(name, public)
        == f"{name}+{hash_:08x}+" + base64.b64encode(bytes([ALG_ED25519]) + public).decode()
    )
    assert skey.startswith(f"PRIVATE+KEY+audit.example/log+{hash_:08x}+")
    signer, verifier = Signer.from_private_key(skey), Verifier.from_vkey(vkey)
    assert (signer.name, signer.key_hash, signer.public_key) == (name, hash_, public)
    assert signer.verifier == verifier
    sig = signer.sign(b"hi")
    assert verifier.verify(b"hi", sig)
    assert not verifier.verify(b"hj", sig)
    assert not verifier.verify(b"hi", bytes([sig[0] ^ 1]) + sig[1:])
    assert not verifier.verify(b"hi", sig[:-1])


@pytest.mark.parametrize("name", ["", "a+b", "a b", "a\u00a0b", "a\nb", "a\u2003b", "a\x00b"])
def test_invalid_key_names(name: str) -> None:
    with pytest.raises(MalformedError, match="invalid key name"):
        generate_key(name)


# --- trust decisions -------------------------------------------------------------------


def test_colliding_key_id_is_ambiguous_and_a_forger_fails() -> None:
    """Attack 4: an attacker's key whose (name, key hash) collides with a trusted one.

    A real 32-bit collision takes hours to grind, so the colliding key is modelled by
    overriding the hash the attacker's key announces."""
    peter = Verifier.from_vkey(PETER_VKEY)
    attacker_skey, _ = generate_key("PeterNeumann")
    attacker = Signer.from_private_key(attacker_skey)
    attacker.key_hash = peter.key_hash
    forged = sign_note(GO_TEXT, attacker)
    with pytest.raises(InvalidSignatureError, match=r"PeterNeumann\+c74f20a3"):
        open_note(forged, Verifiers([peter]))

    impostor = attacker.verifier
    impostor.key_hash = peter.key_hash
    both = Verifiers([peter, impostor])
    with pytest.raises(AmbiguousKeyError, match=r"ambiguous key PeterNeumann\+c74f20a3") as caught:
        open_note(_msg(PETER_SIG), both)
    assert caught.value.exit_code == 2
    # The same trusted key listed twice is not ambiguous.
    assert open_note(_msg(PETER_SIG), Verifiers([peter, Verifier.from_vkey(PETER_VKEY)])).sigs == (
        PETER,
    )


def test_verifiers_lookup() -> None:
    verifiers = _verifiers(PETER_VKEY, ENOCH_VKEY)
    assert verifiers.verifier("PeterNeumann", 0xC74F20A3).vkey == PETER_VKEY
    assert len(verifiers) == 2 and {v.name for v in verifiers} == {"PeterNeumann", "EnochRoot"}
    with pytest.raises(UnknownKeyError, match=r"^unknown key PeterNeumann\+c74f20a4$"):
        verifiers.verifier("PeterNeumann", 0xC74F20A4)
    with pytest.raises(UnknownKeyError, match=r"^unknown key PeterNeuman\+c74f20a3$"):
        verifiers.verifier("PeterNeuman", 0xC74F20A3)
    with pytest.raises(TypeError):
        Verifiers([PETER_VKEY])  # type: ignore[list-item]


# --- signing -----------------------------------------------------------------------------


def test_sign_note_refuses_unopenable_text() -> None:
    signer = Signer.from_private_key(GO_SKEY)
    for text, problem in [
        ("abc", "must end with a newline"),
        ("", "must end with a newline"),
        ("a\rb\n", "control character 0x0d"),
        ("bell\x07\n", "control character 0x07"),
        ("x\ud800\n", "not valid Unicode"),
    ]:
        with pytest.raises(MalformedError, match=problem):
            sign_note(text, signer)
    with pytest.raises(MalformedError, match="at least one signer"):
        sign_note(GO_TEXT)


def test_cosigned_note_lists_signers_in_order() -> None:
    log, witness = (
        Signer.from_private_key(generate_key(n)[0]) for n in ("log.example", "witness.example")
    )
    msg = sign_note("tree head\n", log, witness)
    assert msg.startswith(b"tree head\n\n\xe2\x80\x94 log.example ")
    assert b"\n\xe2\x80\x94 witness.example " in msg
    note = open_note(msg, Verifiers([log.verifier, witness.verifier]))
    assert [s.name for s in note.sigs] == ["log.example", "witness.example"]
    only_witness = open_note(msg, Verifiers([witness.verifier]))
    assert [s.name for s in only_witness.unverified_sigs] == ["log.example"]


note_texts = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs",), blacklist_characters=[chr(c) for c in range(32) if c != 10]
    ),
    max_size=200,
).map(lambda t: t + "\n")


@settings(max_examples=100, deadline=None)
@given(note_texts)
def test_property_sign_then_open_round_trips(text: str) -> None:
    signer = Signer.from_private_key(GO_SKEY)
    note = open_note(sign_note(text, signer), _verifiers(PETER_VKEY))
    assert note.text == text
    assert [s.name for s in note.sigs] == ["PeterNeumann"]


def _parses(parse: Callable[[str], object], text: str) -> bool:
    try:
        parse(text)
    except MalformedError:
        return False
    return True
