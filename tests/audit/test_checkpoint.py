"""C2SP signed notes, checkpoints and keys.

The interoperability vector is the example of ``golang.org/x/mod/sumdb/note`` (package
documentation and note_test.go): the PeterNeumann key pair and its signed note. Ed25519 is
deterministic (RFC 8032), so our signature must match it byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
from pathlib import Path

import pytest

from invguard.audit.checkpoint import (
    EM_DASH,
    Checkpoint,
    format_checkpoint,
    parse_checkpoint,
    parse_note,
    read_checkpoint,
    sign,
    sign_note,
    verify_note,
    verify_signature,
)
from invguard.audit.errors import (
    BadSignatureError,
    CheckpointFormatError,
    KeyFileError,
    UnknownKeyError,
)
from invguard.audit.keys import Signer, Verifier, key_id, read_signer, read_verifier, write_key_pair
from invguard.audit.merkle import EMPTY_ROOT, mth

GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT
    + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ROOT8 = bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer.generate("example.com/audit")


# ---------------------------------------------------------------------------------------------
# keys


def test_go_reference_keys_and_signature() -> None:
    s = Signer.from_string(GO_SKEY)
    assert s.name == "PeterNeumann"
    assert s.key_id.hex() == "c74f20a3"
    assert s.to_string() == GO_SKEY
    assert s.verifier.to_string() == GO_VKEY
    assert Verifier.from_string(GO_VKEY) == s.verifier
    assert sign_note(GO_TEXT, s) == GO_NOTE
    verify_note(parse_note(GO_NOTE), Verifier.from_string(GO_VKEY))


def test_key_id_is_c2sp_formula(signer: Signer) -> None:
    pub = signer.public_key
    expected = hashlib.sha256(b"example.com/audit\n\x01" + pub).digest()[:4]
    assert key_id("example.com/audit", pub) == expected == signer.key_id
    name, hexid, blob = signer.verifier.to_string().split("+", 2)
    assert (name, hexid) == ("example.com/audit", expected.hex())
    assert base64.b64decode(blob) == b"\x01" + pub


def test_signer_repr_hides_the_key(signer: Signer) -> None:
    secret = signer.to_string().split("+", 4)[4]  # the base64 may hold "+"
    assert secret not in repr(signer)
    assert "private_key" not in repr(signer)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GO_SKEY, "private (signer) key"),
        ("PeterNeumann+c74f20a3", "expected NAME+KEYHASH+BASE64"),
        ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "does not match"),
        ("PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "8 lowercase hex"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T!", "not base64"),
        ("PeterNeumann+c74f20a3+AhpjMlFrIDMDAIA=", "not an Ed25519 public key"),
        ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "invalid"),
        ("", "expected NAME+KEYHASH+BASE64"),
    ],
)
def test_bad_verifier_keys(text: str, message: str) -> None:
    with pytest.raises(KeyFileError, match=re.escape(message)):
        Verifier.from_string(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GO_VKEY, "not a signed-note private key"),
        ("PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", "match"),
        ("PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr", "Ed25519 private key"),
        ("PRIVATE+KEY+PeterNeumann", "expected PRIVATE+KEY+NAME"),
    ],
)
def test_bad_signer_keys(text: str, message: str) -> None:
    with pytest.raises(KeyFileError, match=re.escape(message)) as err:
        Signer.from_string(text)
    assert "AYEKFALV" not in str(err.value)  # never echoes key material


def test_key_files_are_written_safely(tmp_path: Path, signer: Signer) -> None:
    old = os.umask(0)  # even with a permissive umask the private key is 0600 from creation
    try:
        write_key_pair(signer, tmp_path / "k", tmp_path / "k.pub")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "k.pub").stat().st_mode) == 0o644
    assert read_signer(tmp_path / "k").to_string() == signer.to_string()
    assert read_verifier(tmp_path / "k.pub") == signer.verifier
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k", "k.pub"]  # no temp files left
    other = Signer.generate("other")
    with pytest.raises(KeyFileError, match="already exists"):
        write_key_pair(other, tmp_path / "k", tmp_path / "k2.pub")
    assert not (tmp_path / "k2.pub").exists()
    assert read_signer(tmp_path / "k").to_string() == signer.to_string()
    write_key_pair(other, tmp_path / "k", tmp_path / "k.pub", force=True)
    assert read_signer(tmp_path / "k").name == "other"
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600


def test_key_file_errors(tmp_path: Path, signer: Signer) -> None:
    write_key_pair(signer, tmp_path / "k", tmp_path / "k.pub")
    with pytest.raises(KeyFileError, match="does not exist"):
        read_verifier(tmp_path / "nope.pub")
    with pytest.raises(KeyFileError, match="private"):
        read_verifier(tmp_path / "k")
    with pytest.raises(KeyFileError, match="not a signed-note private key"):
        read_signer(tmp_path / "k.pub")
    (tmp_path / "bin").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(KeyFileError, match="not a text key file"):
        read_verifier(tmp_path / "bin")
    with pytest.raises(KeyFileError, match="not a regular file"):
        read_verifier(tmp_path)
    with pytest.raises(KeyFileError, match="invalid"):
        Signer.generate("bad name")
    with pytest.raises(KeyFileError, match="invalid"):
        Signer.generate("a+b")


# ---------------------------------------------------------------------------------------------
# checkpoints


def test_format_checkpoint_is_exact() -> None:
    cp = Checkpoint("example.com/log", 8, ROOT8)
    assert format_checkpoint(cp) == (
        "example.com/log\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n"
    )
    assert base64.b64decode("XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=") == ROOT8
    assert format_checkpoint(Checkpoint("o", 0, EMPTY_ROOT)).split("\n")[1] == "0"


def test_sign_parse_verify_round_trip(signer: Signer) -> None:
    cp = Checkpoint("example.com/audit", 8, mth([b"a"] * 8))
    note = sign(cp, signer)
    body, sigs = note.split("\n\n")
    assert body + "\n" == format_checkpoint(cp)
    line = sigs.rstrip("\n")
    assert line.startswith(f"{EM_DASH} example.com/audit ")
    blob = base64.b64decode(line.rsplit(" ", 1)[1])
    assert len(blob) == 4 + 64
    assert blob[:4] == signer.key_id
    signed = parse_checkpoint(note)
    assert signed.checkpoint == cp
    assert verify_signature(signed, signer.verifier) == cp
    assert signed.note.to_text() == note


def test_altered_checkpoints_fail(signer: Signer) -> None:
    note = sign(Checkpoint("example.com/audit", 8, ROOT8), signer)
    # root changed in the body
    forged_root = note.replace(
        base64.b64encode(ROOT8).decode(), base64.b64encode(EMPTY_ROOT).decode()
    )
    with pytest.raises(BadSignatureError, match="checkpoint signature invalid"):
        verify_signature(parse_checkpoint(forged_root), signer.verifier)
    # size changed
    with pytest.raises(BadSignatureError):
        verify_signature(parse_checkpoint(note.replace("\n8\n", "\n9\n")), signer.verifier)
    # one bit of the signature changed (key ID kept)
    text, line = note.split("\n\n")
    prefix, blob = line.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(blob))
    raw[-1] ^= 1
    bad_sig = f"{text}\n\n{prefix} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(BadSignatureError):
        verify_signature(parse_checkpoint(bad_sig), signer.verifier)
    # a different key, even with the same name
    other = Signer.generate("example.com/audit")
    with pytest.raises(UnknownKeyError, match="checkpoint signed by a different key"):
        verify_signature(parse_checkpoint(note), other.verifier)


def test_unknown_cosignatures_are_ignored(signer: Signer) -> None:
    witness = Signer.generate("witness.example/w1")
    note = sign_note(format_checkpoint(Checkpoint("example.com/audit", 8, ROOT8)), witness, signer)
    signed = parse_checkpoint(note)
    assert len(signed.note.signatures) == 2
    assert verify_signature(signed, signer.verifier).size == 8
    assert verify_signature(signed, witness.verifier).size == 8


GOOD = "example.com/log\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n"
SIG = "— example.com/log AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"


@pytest.mark.parametrize(
    ("note", "message"),
    [
        (GOOD, "no blank line"),
        (GOOD + "\n", "no signature lines"),
        (GOOD + "\n" + SIG.rstrip("\n"), "does not end with a newline"),
        (GOOD + "\n" + SIG.replace("—", "-"), "em dash"),
        (GOOD + "\n" + SIG.replace(" AAAA", " !AAA"), "not base64"),
        (GOOD + "\n— example.com/log AAAA\n", "too short"),
        (GOOD + "\n— example.com/log x AAAA\n", "is not '— NAME SIG'"),
        (GOOD.replace("\n8\n", "\n08\n") + "\n" + SIG, "not a decimal number"),
        (GOOD.replace("\n8\n", "\n-8\n") + "\n" + SIG, "not a decimal number"),
        (GOOD.replace("\n8\n", "\n8 \n") + "\n" + SIG, "not a decimal number"),
        (GOOD.replace("Qyg=", "Qy==") + "\n" + SIG, "base64"),
        (GOOD.replace("Qyg=", "") + "\n" + SIG, "base64"),
        ("example.com/log\n8\n\n" + SIG, "origin, tree size and root hash"),
        ("\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\n" + SIG, "must not be empty"),
        (GOOD.replace("example", "ex\x07ample") + "\n" + SIG, "control character"),
        ("", "no blank line"),
    ],
)
def test_malformed_checkpoints(note: str, message: str) -> None:
    with pytest.raises(CheckpointFormatError, match=re.escape(message)):
        parse_checkpoint(note)


def test_malformed_checkpoint_bytes_and_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointFormatError, match="UTF-8"):
        parse_checkpoint(b"\xff\xfe" + (GOOD + "\n" + SIG).encode())
    with pytest.raises(CheckpointFormatError, match="does not exist"):
        read_checkpoint(tmp_path / "nope")
    (tmp_path / "cp").write_text("hello\n")
    with pytest.raises(CheckpointFormatError, match=r"checkpoint .*cp is malformed: no blank"):
        read_checkpoint(tmp_path / "cp")


def test_format_rejects_bad_checkpoints() -> None:
    with pytest.raises(CheckpointFormatError):
        format_checkpoint(Checkpoint("", 1, ROOT8))
    with pytest.raises(CheckpointFormatError):
        format_checkpoint(Checkpoint("a\nb", 1, ROOT8))
    with pytest.raises(CheckpointFormatError):
        format_checkpoint(Checkpoint("a", -1, ROOT8))
    with pytest.raises(CheckpointFormatError):
        format_checkpoint(Checkpoint("a", 1, ROOT8[:31]))
