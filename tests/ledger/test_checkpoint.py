"""C2SP tlog-checkpoint: strict parsing (Go tlog.ParseTree style), round trips, signing.

Pins what sigstore-python's lenient parser lets through (" 5", "+5", "05", "0_5",
base64 without validation) and the spec's rule that extension lines are kept, non-empty.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_pipeline.ledger.checkpoint import (
    MAX_TREE_SIZE,
    Checkpoint,
    open_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
)
from audit_pipeline.ledger.errors import MalformedError, UnknownKeyError
from audit_pipeline.ledger.merkle import empty_root, leaf_hash, root_hash
from audit_pipeline.ledger.note import Signer, Verifier, Verifiers, generate_key, sign_note

ROOT = bytes.fromhex("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77")
ROOT_B64 = base64.b64encode(ROOT).decode()
URLSAFE_B64 = base64.urlsafe_b64encode(b"\xfb" * 32).decode()  # "-" and "_" instead of "+" "/"
# The worked example in checkpoint.py's module docstring.
DOC_VKEY = "audit.example/log+d521ee0a+Aao7iY9rUO/mPPZs/mZ6+ekybDYgA2IyBtu7aZnTMAto"
DOC_NOTE = (
    "audit.example/log\n3\nrra8/idLcKFPsGel5VeCZNsPqbUa9eC6FZFY8yngbnc=\n\n"
    "— audit.example/log 1SHuCj2tvbw6lsSAj0HctXtVwL3ZqMImopc/1yfgY19YEjsgjqtqGtojM4WPbE8o6yf29Cq5"
    "Ppnz4n73SQXFzxDjHQc=\n"
).encode()
# The C2SP spec's example checkpoint text (its key is not published).
C2SP_TEXT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer.from_private_key(generate_key("audit.example/log")[0])


def test_docstring_example_verifies_and_is_the_rfc_root_of_three() -> None:
    cp, note = open_checkpoint(DOC_NOTE, Verifiers([Verifier.from_vkey(DOC_VKEY)]))
    leaves = [leaf_hash(bytes.fromhex(h)) for h in ("", "00", "10")]
    assert cp == Checkpoint("audit.example/log", 3, root_hash(leaves))
    assert cp.root_hash == ROOT
    assert note.sigs[0].name == "audit.example/log"


def test_c2sp_example_parses() -> None:
    cp = parse_checkpoint(C2SP_TEXT)
    assert (cp.origin, cp.tree_size, cp.extensions) == ("example.com/behind-the-sofa", 20852163, ())
    assert cp.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert cp.to_text() == C2SP_TEXT


def test_to_text_format() -> None:
    cp = Checkpoint("audit.example/log", 3, ROOT, ("ext one", "ext-two"))
    assert cp.to_text() == f"audit.example/log\n3\n{ROOT_B64}\next one\next-two\n"
    assert (
        Checkpoint("o", 0, empty_root()).to_text()
        == "o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
    )


def test_sign_and_open_round_trip(signer: Signer) -> None:
    cp = Checkpoint("audit.example/log", 8760, hashlib.sha256(b"x").digest(), ("witness: none",))
    msg = sign_checkpoint(cp, signer)
    assert msg.startswith(cp.to_text().encode() + "\n— audit.example/log ".encode())
    opened, note = open_checkpoint(msg, Verifiers([signer.verifier]))
    assert opened == cp
    assert note.text == cp.to_text()
    assert [s.name for s in note.sigs] == ["audit.example/log"]


def test_open_checkpoint_needs_a_known_key(signer: Signer) -> None:
    msg = sign_checkpoint(Checkpoint("audit.example/log", 1, ROOT), signer)
    other = Signer.from_private_key(generate_key("audit.example/log")[0])
    with pytest.raises(UnknownKeyError, match=r"unknown key audit.example/log\+"):
        open_checkpoint(msg, Verifiers([other.verifier]))


def test_open_checkpoint_refuses_a_signed_non_checkpoint(signer: Signer) -> None:
    msg = sign_note("just a note\n", signer)
    with pytest.raises(MalformedError, match="checkpoint has 1 lines, want at least 3"):
        open_checkpoint(msg, Verifiers([signer.verifier]))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (f"o\n05\n{ROOT_B64}\n", "tree size .line 2. is not a canonical decimal: '05'"),
        (f"o\n+5\n{ROOT_B64}\n", "not a canonical decimal: '\\+5'"),
        (f"o\n 5\n{ROOT_B64}\n", "not a canonical decimal: ' 5'"),
        (f"o\n5 \n{ROOT_B64}\n", "not a canonical decimal"),
        (f"o\n-1\n{ROOT_B64}\n", "not a canonical decimal"),
        (f"o\n0_5\n{ROOT_B64}\n", "not a canonical decimal"),
        (f"o\n0x5\n{ROOT_B64}\n", "not a canonical decimal"),
        (f"o\n\u0665\n{ROOT_B64}\n", "not a canonical decimal"),  # ARABIC-INDIC DIGIT FIVE
        (f"o\n\n{ROOT_B64}\n", "not a canonical decimal"),
        (f"o\n{2**64}\n{ROOT_B64}\n", "larger than 2\\^64-1"),
        (f"o\n{'9' * 5000}\n{ROOT_B64}\n", "larger than 2\\^64-1"),
        (f"\n5\n{ROOT_B64}\n", "origin .line 1. is empty"),
        (f"o\n5\n{ROOT_B64}", "must end with a newline"),
        (f"o\n5\n{ROOT_B64}\n\n", "extension line 4 is empty"),
        (f"o\n5\n{ROOT_B64}\next\n\nmore\n", "extension line 5 is empty"),
        (f"o\n5\n{ROOT_B64}\r\n", "not canonical base64"),
        (f"o\r\n5\n{ROOT_B64}\n", "control character"),
        (f"o\n5\n{ROOT_B64}\nbell\x07\n", "control character"),
        ("o\n5\n", "has 2 lines, want at least 3"),
        ("", "must end with a newline"),
        (f"o\n5\n{ROOT_B64[:-1]}\n", "not canonical base64"),  # padding missing
        (f"o\n5\n{ROOT_B64[:-2]}9=\n", "not canonical base64"),  # stray padding bits
        (f"o\n5\n {ROOT_B64}\n", "not canonical base64"),
        (f"o\n5\n{ROOT.hex()}\n", "has 48 bytes, want 32"),
        (f"o\n5\n{URLSAFE_B64}\n", "not canonical base64"),
        (f"o\n5\n{base64.b64encode(ROOT[:31]).decode()}\n", "has 31 bytes, want 32"),
        (f"o\n5\n{base64.b64encode(ROOT + b'x').decode()}\n", "has 33 bytes, want 32"),
        (f"o\n5\n{base64.b64encode(b'').decode()}\n", "has 0 bytes, want 32"),
        ("x" * (1 << 20) + f"\n5\n{ROOT_B64}\n", "longer than"),
    ],
    ids=repr,
)
def test_strict_parsing(text: str, problem: str) -> None:
    with pytest.raises(MalformedError, match=problem):
        parse_checkpoint(text)


def test_boundaries_accepted() -> None:
    assert parse_checkpoint(f"o\n0\n{ROOT_B64}\n").tree_size == 0
    assert parse_checkpoint(f"o\n{MAX_TREE_SIZE}\n{ROOT_B64}\n").tree_size == 2**64 - 1
    assert parse_checkpoint(f"origin with spaces\n1\n{ROOT_B64}\n").origin == "origin with spaces"
    assert parse_checkpoint(f"o\n1\n{ROOT_B64}\n".encode()).tree_size == 1
    with pytest.raises(MalformedError, match="not valid UTF-8"):
        parse_checkpoint(b"\xff\n1\n" + ROOT_B64.encode() + b"\n")
    with pytest.raises(MalformedError, match="must be text"):
        parse_checkpoint(5)  # type: ignore[arg-type]


def test_extension_lines_are_kept_in_order() -> None:
    text = f"o\n7\n{ROOT_B64}\n— not a signature\nkey: value\n"
    cp = parse_checkpoint(text)
    assert cp.extensions == ("— not a signature", "key: value")
    assert cp.to_text() == text


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"origin": ""}, "origin must be a non-empty string"),
        ({"origin": "a\nb"}, "control character"),
        ({"tree_size": -1}, "tree size must be an integer"),
        ({"tree_size": 2**64}, "tree size must be an integer"),
        ({"tree_size": True}, "tree size must be an integer"),
        ({"tree_size": "5"}, "tree size must be an integer"),
        ({"root_hash": ROOT[:31]}, "root hash must be 32 bytes"),
        ({"root_hash": ROOT_B64}, "root hash must be 32 bytes"),
        ({"extensions": ("",)}, "extension line 1 must be non-empty"),
        ({"extensions": ("a\nb",)}, "control character"),
        ({"extensions": "abc"}, "sequence of lines"),
    ],
)
def test_constructor_validates(kwargs: dict, problem: str) -> None:
    fields = {"origin": "o", "tree_size": 1, "root_hash": ROOT} | kwargs
    with pytest.raises(MalformedError, match=problem):
        Checkpoint(**fields)


def test_extensions_become_a_tuple() -> None:
    cp = Checkpoint("o", 1, ROOT, ["a", "b"])  # type: ignore[arg-type]
    assert cp.extensions == ("a", "b")
    assert hash(cp) == hash(Checkpoint("o", 1, ROOT, ("a", "b")))


line_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40
)


@settings(max_examples=200, deadline=None)
@given(
    line_text,
    st.integers(0, MAX_TREE_SIZE),
    st.binary(min_size=32, max_size=32),
    st.lists(line_text, max_size=3),
)
def test_property_round_trip(origin: str, size: int, root: bytes, extensions: list[str]) -> None:
    cp = Checkpoint(origin, size, root, tuple(extensions))
    assert parse_checkpoint(cp.to_text()) == cp
