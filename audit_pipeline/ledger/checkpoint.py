"""C2SP transparency log checkpoints (c2sp.org/tlog-checkpoint): a log's signed tree head.

Byte format
-----------
A checkpoint is a signed note (see :mod:`audit_pipeline.ledger.note`) whose text is at
least three non-empty lines::

    <origin>\\n                 the log's name, non-empty (ours: a schema-less URL)
    <tree size>\\n              ASCII decimal, no sign, no leading zeros ("0" when empty)
    <base64 root hash>\\n       standard base64 of the 32-byte RFC 6962 root hash
    [<extension line>\\n ...]   optional, opaque, non-empty; kept but not interpreted

Worked example: the tree of the first three RFC 6962 test leaves (root ``aeb6bcfe…``),
signed by the key ``audit.example/log+d521ee0a+Aao7iY9rUO/mPPZs/mZ6+ekybDYgA2IyBtu7aZnTMAto``::

    audit.example/log
    3
    rra8/idLcKFPsGel5VeCZNsPqbUa9eC6FZFY8yngbnc=

    — audit.example/log 1SHuCj2tvbw6lsSAj0HctXtVwL3ZqMImopc/1yfgY19YEjsgjqtqGtojM4WPbE8o6yf29Cq5Ppnz4n73SQXFzxDjHQc=

Parsing is strict, in the manner of Go's ``tlog.ParseTree``: a size of ``05``, ``+5``,
`` 5`` or ``5 `` is refused, the root must be canonical base64 of exactly 32 bytes, and the
text must end in a newline. Rule of the format: a log never signs two checkpoints that no
consistency proof can join; a verifier holding an older checkpoint proves that with
:func:`audit_pipeline.ledger.merkle.verify_consistency`.
"""  # noqa: E501 (a signature line is longer than a source line)

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from audit_pipeline.ledger.errors import MalformedError
from audit_pipeline.ledger.merkle import HASH_SIZE
from audit_pipeline.ledger.note import (
    Note,
    Signer,
    Verifiers,
    b64decode_canonical,
    open_note,
    sign_note,
)

MAX_TREE_SIZE = 2**64 - 1
MAX_CHECKPOINT_BYTES = 1 << 20
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True)
class Checkpoint:
    """Checkpoint is a log's tree head: origin, tree size, root hash, extension lines."""

    origin: str
    tree_size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str) or not self.origin:
            raise MalformedError("checkpoint origin must be a non-empty string")
        _check_line("origin", self.origin)
        size = self.tree_size
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_TREE_SIZE:
            raise MalformedError(f"checkpoint tree size must be an integer 0..2^64-1: {size!r}")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            raise MalformedError(f"checkpoint root hash must be {HASH_SIZE} bytes")
        if isinstance(self.extensions, str):
            raise MalformedError("checkpoint extensions must be a sequence of lines")
        object.__setattr__(self, "extensions", tuple(self.extensions))
        for i, line in enumerate(self.extensions):
            if not isinstance(line, str) or not line:
                raise MalformedError(f"checkpoint extension line {i + 1} must be non-empty text")
            _check_line(f"extension line {i + 1}", line)

    def to_text(self) -> str:
        """to_text returns the note text: origin, size, base64 root, extensions, one a line."""
        root = base64.b64encode(self.root_hash).decode("ascii")
        lines = (self.origin, str(self.tree_size), root, *self.extensions)
        return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str) -> Checkpoint:
    """parse_checkpoint returns the checkpoint written in ``text`` (a note's text),
    raising MalformedError naming the first line that breaks the format."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise MalformedError(f"checkpoint is not valid UTF-8 at byte {e.start}") from None
    if not isinstance(text, str):
        raise MalformedError(f"checkpoint must be text, got {type(text).__name__}")
    if (
        len(text) > MAX_CHECKPOINT_BYTES
        or len(text.encode("utf-8", "replace")) > MAX_CHECKPOINT_BYTES
    ):
        raise MalformedError(f"checkpoint is longer than {MAX_CHECKPOINT_BYTES} bytes")
    if not text.endswith("\n"):
        raise MalformedError("checkpoint must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedError(f"checkpoint has {len(lines)} lines, want at least 3")
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise MalformedError("checkpoint origin (line 1) is empty")
    if not _DECIMAL.fullmatch(size_text):
        raise MalformedError(
            f"checkpoint tree size (line 2) is not a canonical decimal: {size_text[:40]!r}"
        )
    if len(size_text) > 20 or int(size_text) > MAX_TREE_SIZE:
        raise MalformedError("checkpoint tree size (line 2) is larger than 2^64-1")
    root = b64decode_canonical(root_text)
    if root is None:
        raise MalformedError(
            f"checkpoint root hash (line 3) is not canonical base64: {root_text[:60]!r}"
        )
    if len(root) != HASH_SIZE:
        raise MalformedError(
            f"checkpoint root hash (line 3) has {len(root)} bytes, want {HASH_SIZE}"
        )
    for i, line in enumerate(extensions, start=4):
        if not line:
            raise MalformedError(f"checkpoint extension line {i} is empty")
    return Checkpoint(origin, int(size_text), root, tuple(extensions))


def sign_checkpoint(cp: Checkpoint, *signers: Signer) -> bytes:
    """sign_checkpoint returns ``cp`` as a signed note, one signature line per signer."""
    return sign_note(cp.to_text(), *signers)


def open_checkpoint(msg: bytes, verifiers: Verifiers) -> tuple[Checkpoint, Note]:
    """open_checkpoint verifies the signed note ``msg`` (see :func:`note.open_note`) and
    parses its text as a checkpoint; it returns both so callers can report the signers."""
    note = open_note(msg, verifiers)
    return parse_checkpoint(note.text), note


def _check_line(what: str, value: str) -> None:
    for ch in value:
        if ch < "\x20" or "\ud800" <= ch <= "\udfff":
            raise MalformedError(
                f"checkpoint {what} contains control character or invalid text {ord(ch):#04x}"
            )
