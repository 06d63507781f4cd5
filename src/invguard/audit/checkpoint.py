"""Signed notes (https://c2sp.org/signed-note) and log checkpoints (https://c2sp.org/tlog-checkpoint).

A checkpoint's note text is three lines, each ending in a newline: the origin, the tree size in
decimal and the base64 RFC 6962 root hash (optional extension lines may follow). The signed note
is the text, a blank line, then one line per signature::

    — <key name> base64(4-byte key ID || 64-byte Ed25519 signature of the note text)

The output is byte-for-byte what ``golang.org/x/mod/sumdb/note`` produces for the same key.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass
from pathlib import Path

from invguard.audit.errors import (
    BadSignatureError,
    CheckpointFormatError,
    KeyFileError,
    UnknownKeyError,
)
from invguard.audit.keys import Signer, Verifier, check_key_name
from invguard.audit.merkle import HASH_SIZE
from invguard.fileio import write_atomic

EM_DASH = "\u2014"
MAX_NOTE_BYTES = 1 << 20
MAX_SIGNATURES = 100
_SIZE_RE = re.compile(r"0|[1-9][0-9]{0,18}")


def _short(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of a signed note: key name, 4-byte key ID, signature bytes."""

    name: str
    key_id: bytes
    signature: bytes

    def to_line(self) -> str:
        blob = base64.b64encode(self.key_id + self.signature).decode("ascii")
        return f"{EM_DASH} {self.name} {blob}\n"


@dataclass(frozen=True)
class SignedNote:
    """A parsed signed note: the signed text (ending in a newline) and its signatures."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def to_text(self) -> str:
        return self.text + "\n" + "".join(s.to_line() for s in self.signatures)


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: origin (log identity), tree size and RFC 6962 root hash."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint with the signed note that carries it. Trust it only after verification."""

    checkpoint: Checkpoint
    note: SignedNote


def _check_note_chars(text: str) -> None:
    for c in text:
        if (ord(c) < 0x20 and c != "\n") or c == "\x7f":
            raise CheckpointFormatError(
                f"control character U+{ord(c):04X} is not allowed in a signed note"
            )


def sign_note(text: str, *signers: Signer) -> str:
    """C2SP signed-note: sign ``text`` (must end in a newline) with each signer."""
    if not text.endswith("\n"):
        raise CheckpointFormatError("note text must end with a newline")
    _check_note_chars(text)
    if not signers:
        raise CheckpointFormatError("a signed note needs at least one signer")
    msg = text.encode("utf-8")
    sigs = tuple(NoteSignature(s.name, s.key_id, s.sign(msg)) for s in signers)
    return SignedNote(text, sigs).to_text()


def parse_note(data: str | bytes) -> SignedNote:
    """Parse a C2SP signed note (no verification). Raises :class:`CheckpointFormatError`."""
    if isinstance(data, bytes):
        if len(data) > MAX_NOTE_BYTES:
            raise CheckpointFormatError("note is too large")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointFormatError("note is not valid UTF-8") from None
    if len(data) > MAX_NOTE_BYTES:
        raise CheckpointFormatError("note is too large")
    _check_note_chars(data)
    split = data.rfind("\n\n")
    if split < 0:
        raise CheckpointFormatError("no blank line before the signature lines")
    text, block = data[: split + 1], data[split + 2 :]
    if not block:
        raise CheckpointFormatError("no signature lines")
    if not block.endswith("\n"):
        raise CheckpointFormatError("the last signature line does not end with a newline")
    sigs: list[NoteSignature] = []
    for line in block[:-1].split("\n"):
        if not line.startswith(EM_DASH + " "):
            raise CheckpointFormatError(
                f"signature line {_short(line)} does not start with an em dash and a space"
            )
        fields = line[2:].split(" ")
        if len(fields) != 2:
            raise CheckpointFormatError(f"signature line {_short(line)} is not '— NAME SIG'")
        name, blob = fields
        try:
            check_key_name(name)
        except KeyFileError:
            raise CheckpointFormatError(f"invalid key name {_short(name)}") from None
        try:
            raw = base64.b64decode(blob.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise CheckpointFormatError(f"signature of {_short(name)} is not base64") from None
        if len(raw) < 5:
            raise CheckpointFormatError(f"signature of {_short(name)} is too short")
        sigs.append(NoteSignature(name, raw[:4], raw[4:]))
        if len(sigs) > MAX_SIGNATURES:
            raise CheckpointFormatError(f"more than {MAX_SIGNATURES} signatures")
    return SignedNote(text, tuple(sigs))


def verify_note(note: SignedNote, verifier: Verifier) -> None:
    """C2SP signed-note verification against one trusted key.

    Signatures whose (name, key ID) differ from the key are ignored. Raises
    :class:`UnknownKeyError` when none is from the key and :class:`BadSignatureError` when one
    from the key fails (the whole note is then rejected).
    """
    mine = [s for s in note.signatures if s.name == verifier.name and s.key_id == verifier.key_id]
    if not mine:
        found = ", ".join(sorted({f"{s.name}+{s.key_id.hex()}" for s in note.signatures}))
        raise UnknownKeyError(
            f"checkpoint signed by a different key (signatures from {found}; "
            f"expected {verifier.name}+{verifier.key_id.hex()})"
        )
    msg = note.text.encode("utf-8")
    if not all(verifier.verify(msg, s.signature) for s in mine):
        raise BadSignatureError(
            f"checkpoint signature invalid (key {verifier.name}+{verifier.key_id.hex()})"
        )


# ---------------------------------------------------------------------------------------------
# checkpoints


def format_checkpoint(cp: Checkpoint) -> str:
    """The C2SP tlog-checkpoint note text: origin, size, base64 root (+ extensions), each + LF."""
    if not cp.origin or any(ord(c) < 0x20 or c == "\x7f" for c in cp.origin):
        raise CheckpointFormatError("origin must be non-empty, without control characters")
    if cp.size < 0:
        raise CheckpointFormatError(f"tree size must be >= 0, got {cp.size}")
    if len(cp.root) != HASH_SIZE:
        raise CheckpointFormatError(f"root hash must have {HASH_SIZE} bytes")
    for ext in cp.extensions:
        if not ext or "\n" in ext:
            raise CheckpointFormatError("extension lines must be non-empty single lines")
    lines = [cp.origin, str(cp.size), base64.b64encode(cp.root).decode("ascii"), *cp.extensions]
    return "".join(line + "\n" for line in lines)


def parse_checkpoint_text(text: str) -> Checkpoint:
    """Parse the note text of a checkpoint (C2SP tlog-checkpoint)."""
    if not text.endswith("\n"):
        raise CheckpointFormatError("checkpoint text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointFormatError("a checkpoint needs origin, tree size and root hash lines")
    if any(not line for line in lines):
        raise CheckpointFormatError("checkpoint lines must not be empty")
    origin, size_line, root_line, *extensions = lines
    if not _SIZE_RE.fullmatch(size_line):
        raise CheckpointFormatError(f"tree size line {_short(size_line)} is not a decimal number")
    size = int(size_line)
    if size >= 1 << 63:
        raise CheckpointFormatError("tree size is out of range")
    try:
        root = base64.b64decode(root_line.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise CheckpointFormatError(f"root hash line {_short(root_line)} is not base64") from None
    if len(root) != HASH_SIZE or base64.b64encode(root).decode("ascii") != root_line:
        raise CheckpointFormatError(
            f"root hash line {_short(root_line)} is not a base64 SHA-256 hash"
        )
    return Checkpoint(origin, size, root, tuple(extensions))


def sign(cp: Checkpoint, signer: Signer) -> str:
    """Sign a checkpoint: the full signed note (text, blank line, signature line)."""
    return sign_note(format_checkpoint(cp), signer)


def parse_checkpoint(data: str | bytes) -> SignedCheckpoint:
    """Parse a signed checkpoint note (format only: call :func:`verify_signature` next)."""
    note = parse_note(data)
    return SignedCheckpoint(parse_checkpoint_text(note.text), note)


def verify_signature(signed: SignedCheckpoint, verifier: Verifier) -> Checkpoint:
    """Check the checkpoint's signature by ``verifier``; returns the now trusted checkpoint.

    Raises :class:`UnknownKeyError` (signed by a different key) or :class:`BadSignatureError`.
    """
    verify_note(signed.note, verifier)
    return signed.checkpoint


def read_checkpoint(path: str | os.PathLike[str]) -> SignedCheckpoint:
    """Read and parse a checkpoint file; errors name the file and what is wrong."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_NOTE_BYTES:
            raise CheckpointFormatError(f"checkpoint {p} is too large to be a checkpoint")
        data = p.read_bytes()
    except FileNotFoundError:
        raise CheckpointFormatError(f"checkpoint file {p} does not exist") from None
    except IsADirectoryError:
        raise CheckpointFormatError(f"checkpoint file {p} is a folder") from None
    except OSError as exc:
        raise CheckpointFormatError(f"cannot read checkpoint {p}: {exc.strerror}") from None
    try:
        return parse_checkpoint(data)
    except CheckpointFormatError as exc:
        raise CheckpointFormatError(f"checkpoint {p} is malformed: {exc}") from None


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write a checkpoint (public data) atomically: temp file in the same folder, then rename."""
    p = Path(path)
    if not p.parent.is_dir():
        raise CheckpointFormatError(f"folder {p.parent} does not exist")
    try:
        write_atomic(p, text, fsync=True, make_parents=False)
    except OSError as exc:
        raise CheckpointFormatError(f"cannot write {p}: {exc.strerror}") from None
