"""Ed25519 signer and verifier keys in the C2SP signed-note encodings (https://c2sp.org/signed-note).

* key ID = SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]
* verifier key (public): ``<name>+<hex key ID>+<base64(0x01 || public key)>``
* signer key (private):  ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || 32-byte seed)>``

These are the encodings of ``golang.org/x/mod/sumdb/note``, so keys interoperate with Go tooling.
A private key file is created with mode 0600 from the start (never chmod-ed afterwards) and is
never overwritten unless asked; no function here prints or logs key material.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import logging
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from invguard.audit.errors import KeyFileError

SIG_TYPE_ED25519 = 0x01
PRIVATE_KEY_PREFIX = "PRIVATE+KEY+"
MAX_KEY_FILE_BYTES = 64 * 1024
_KEY_HASH_RE = re.compile(r"[0-9a-f]{8}")
log = logging.getLogger(__name__)
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK}


def check_key_name(name: str) -> str:
    """C2SP signed-note: a key name is non-empty, with no Unicode spaces and no '+'."""
    if not isinstance(name, str) or not name:
        raise KeyFileError("key name must be a non-empty string")
    if any(c.isspace() or c == "+" or ord(c) < 0x20 or c == "\x7f" for c in name):
        raise KeyFileError(
            f"key name {name[:64]!r} is invalid: no spaces, '+' or control characters allowed"
        )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise KeyFileError(f"key name {name[:64]!r} is not valid UTF-8") from None
    return name


def key_id(name: str, public_key: bytes) -> bytes:
    """C2SP signed-note Ed25519 key ID: SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    return hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([SIG_TYPE_ED25519]) + public_key
    ).digest()[:4]


def _b64decode(text: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ValueError("not base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("not canonical base64")
    return raw


@dataclass(frozen=True)
class Verifier:
    """An Ed25519 public key with its signed-note name (verifies checkpoint signatures)."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.public_key) != 32:
            raise KeyFileError("an Ed25519 public key has 32 bytes")

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True when ``signature`` is this key's Ed25519 signature (RFC 8032) of ``message``."""
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True

    def to_string(self) -> str:
        """The verifier-key encoding ``name+keyhash+base64(0x01||pubkey)``."""
        blob = base64.b64encode(bytes([SIG_TYPE_ED25519]) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{blob}"

    @classmethod
    def from_string(cls, text: str) -> Verifier:
        """Parse a verifier key; raises :class:`KeyFileError` naming what is wrong."""
        text = text.strip()
        if text.startswith(PRIVATE_KEY_PREFIX):
            raise KeyFileError("this is a private (signer) key, not a public key")
        parts = text.split("+", 2)
        if len(parts) != 3:
            raise KeyFileError("not a signed-note public key (expected NAME+KEYHASH+BASE64)")
        name, hexid, blob = parts
        check_key_name(name)
        if not _KEY_HASH_RE.fullmatch(hexid):
            raise KeyFileError("public key hash must be 8 lowercase hex digits")
        try:
            raw = _b64decode(blob)
        except ValueError as exc:
            raise KeyFileError(f"public key material is {exc}") from None
        if len(raw) != 33 or raw[0] != SIG_TYPE_ED25519:
            raise KeyFileError("not an Ed25519 public key (expected 0x01 and 32 bytes)")
        verifier = cls(name, raw[1:])
        if verifier.key_id.hex() != hexid:
            raise KeyFileError("public key hash does not match the key (file damaged?)")
        return verifier


@dataclass(frozen=True)
class Signer:
    """An Ed25519 private key with its signed-note name. Its repr never shows the key."""

    name: str
    private_key: Ed25519PrivateKey = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)

    @classmethod
    def generate(cls, name: str) -> Signer:
        """A new random key pair (Ed25519, from the OS CSPRNG)."""
        return cls(check_key_name(name), Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, self.public_key)

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    def sign(self, message: bytes) -> bytes:
        """Ed25519 signature (RFC 8032) of ``message``: 64 bytes."""
        return self.private_key.sign(message)

    def to_string(self) -> str:
        """The signer-key encoding ``PRIVATE+KEY+name+keyhash+base64(0x01||seed)``. Secret."""
        seed = self.private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        blob = base64.b64encode(bytes([SIG_TYPE_ED25519]) + seed).decode("ascii")
        return f"{PRIVATE_KEY_PREFIX}{self.name}+{self.key_id.hex()}+{blob}"

    @classmethod
    def from_string(cls, text: str) -> Signer:
        """Parse a signer key; raises :class:`KeyFileError` (never quoting the key)."""
        text = text.strip()
        if not text.startswith(PRIVATE_KEY_PREFIX):
            raise KeyFileError(
                "not a signed-note private key (expected PRIVATE+KEY+NAME+KEYHASH+BASE64)"
            )
        parts = text[len(PRIVATE_KEY_PREFIX) :].split("+", 2)
        if len(parts) != 3:
            raise KeyFileError("not a signed-note private key (expected PRIVATE+KEY+NAME+...)")
        name, hexid, blob = parts
        check_key_name(name)
        if not _KEY_HASH_RE.fullmatch(hexid):
            raise KeyFileError("private key hash must be 8 lowercase hex digits")
        try:
            raw = _b64decode(blob)
        except ValueError as exc:
            raise KeyFileError(f"private key material is {exc}") from None
        if len(raw) != 33 or raw[0] != SIG_TYPE_ED25519:
            raise KeyFileError("not an Ed25519 private key (expected 0x01 and a 32-byte seed)")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if signer.key_id.hex() != hexid:
            raise KeyFileError("private key hash does not match the key (file damaged?)")
        return signer


# ---------------------------------------------------------------------------------------------
# key files


def _read_key_text(path: Path, kind: str) -> str:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"{kind} key file {path} does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read {kind} key file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"{kind} key file {path} is not a regular file")
    if st.st_size > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"{kind} key file {path} is too large to be a key")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read {kind} key file {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyFileError(f"{kind} key file {path} is not a text key file") from None


def read_signer(path: str | os.PathLike[str]) -> Signer:
    """Load a private key file (``PRIVATE+KEY+...``). Warns when others may read it."""
    p = Path(path)
    text = _read_key_text(p, "private")
    try:
        signer = Signer.from_string(text)
    except KeyFileError as exc:
        raise KeyFileError(f"private key file {p}: {exc}") from None
    mode = p.stat().st_mode
    if os.name == "posix" and mode & 0o077:
        log.warning("private key file %s is readable by other users (chmod 600 it)", p)
    return signer


def read_verifier(path: str | os.PathLike[str]) -> Verifier:
    """Load a public key file (``name+keyhash+base64``)."""
    p = Path(path)
    text = _read_key_text(p, "public")
    try:
        return Verifier.from_string(text)
    except KeyFileError as exc:
        raise KeyFileError(f"public key file {p}: {exc}") from None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_exclusive(path: Path, data: bytes, mode: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists (use --force to overwrite)") from None
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new_file(path: Path, data: bytes, mode: int, *, force: bool) -> None:
    """Write ``data`` to ``path`` atomically; the file has ``mode`` from its creation on.

    A temporary file is created with O_EXCL and ``mode`` in the same folder, filled and fsync-ed,
    then linked to ``path`` (fails if it exists) or, with ``force``, renamed over it.
    """
    folder = path.parent
    tmp = folder / f".{path.name}.{secrets.token_hex(8)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(tmp, flags, mode)
    except OSError as exc:
        raise KeyFileError(f"cannot create {path}: {exc.strerror}") from None
    try:
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, mode)  # exact mode whatever the umask; nobody else has it open
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise KeyFileError(f"{path} already exists (use --force to overwrite)") from None
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise
                _create_exclusive(path, data, mode)  # file system without hard links
            finally:
                tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise KeyFileError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(folder)


def write_key_pair(
    signer: Signer,
    private_path: str | os.PathLike[str],
    public_path: str | os.PathLike[str],
    *,
    force: bool = False,
) -> None:
    """Write the private key (mode 0600) and the public key (0644) files.

    Refuses to overwrite either file unless ``force``; checks both before writing anything.
    """
    priv, pub = Path(private_path), Path(public_path)
    if priv.resolve() == pub.resolve():
        raise KeyFileError("the private and public key files must be different files")
    for p in (priv, pub):
        if not p.parent.is_dir():
            raise KeyFileError(f"folder {p.parent} does not exist")
        if not force and (p.exists() or p.is_symlink()):
            raise KeyFileError(f"{p} already exists (use --force to overwrite)")
    _write_new_file(priv, (signer.to_string() + "\n").encode("utf-8"), 0o600, force=force)
    _write_new_file(pub, (signer.verifier.to_string() + "\n").encode("utf-8"), 0o644, force=force)
