"""Errors of the audit log. All are :class:`~invguard.errors.InvGuardError`, so the CLI prints
them as one line and exits 2, unless a command turns them into a verification failure (exit 1)."""

from __future__ import annotations

from invguard.errors import InvGuardError


class AuditError(InvGuardError):
    """The audit log, a key file or a checkpoint cannot be used as asked (bad input, usage)."""


class KeyFileError(AuditError):
    """A key file is missing, unreadable, of the wrong kind, or malformed."""


class CheckpointFormatError(AuditError):
    """A checkpoint is not a well-formed C2SP signed note / tlog-checkpoint."""


class CheckpointVerificationError(AuditError):
    """A well-formed checkpoint does not verify: base class of the two cases below."""


class UnknownKeyError(CheckpointVerificationError):
    """The checkpoint carries no signature from the trusted key (C2SP signed-note: unknown key)."""


class BadSignatureError(CheckpointVerificationError):
    """A signature from the trusted key (same name and key ID) fails to verify."""


class MissingLogError(AuditError):
    """The audit database file does not exist (bad input, unless a checkpoint says otherwise)."""


class DamagedLogError(AuditError):
    """The file cannot be read as an audit log: damaged, truncated, emptied or another file.

    ``reason`` is the message without the path, ``detail`` SQLite's own words. ``recognised`` tells whether the file had
    identified itself as an InvGuard audit log (schema and format marker read) before the
    damage showed: then the damage is evidence of tampering even without a checkpoint.
    """

    def __init__(
        self, path: object, reason: str, *, recognised: bool, detail: str | None = None
    ) -> None:
        super().__init__(f"{path} {reason}")
        self.reason = reason
        self.recognised = recognised
        self.detail = reason if detail is None else detail
