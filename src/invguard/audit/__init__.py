"""Tamper-evident, append-only audit log: SQLite + hash chain + RFC 6962 Merkle tree + signed
C2SP checkpoints.

Names are loaded lazily (PEP 562) so that ``invguard audit`` starts without importing
``cryptography``; ``from invguard.audit import AuditLog`` works as usual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from invguard._lazy import lazy_exports

if TYPE_CHECKING:
    from invguard.audit.checkpoint import (
        Checkpoint,
        NoteSignature,
        SignedCheckpoint,
        SignedNote,
        format_checkpoint,
        parse_checkpoint,
        parse_checkpoint_text,
        parse_note,
        read_checkpoint,
        sign,
        sign_note,
        verify_note,
        verify_signature,
    )
    from invguard.audit.errors import (
        AuditError,
        BadSignatureError,
        CheckpointFormatError,
        CheckpointVerificationError,
        KeyFileError,
        UnknownKeyError,
    )
    from invguard.audit.keys import (
        Signer,
        Verifier,
        key_id,
        read_signer,
        read_verifier,
        write_key_pair,
    )
    from invguard.audit.log import (
        AuditLog,
        ConsistencyProof,
        Entry,
        InclusionProof,
        Problem,
        VerifyReport,
        canonical_entry_bytes,
        canonical_json,
    )
    from invguard.audit.merkle import (
        EMPTY_ROOT,
        consistency_path,
        inclusion_path,
        leaf_hash,
        mth,
        node_hash,
        root_from_leaf_hashes,
        verify_consistency,
        verify_inclusion,
    )

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        (
            "Checkpoint",
            "NoteSignature",
            "SignedCheckpoint",
            "SignedNote",
            "format_checkpoint",
            "parse_checkpoint",
            "parse_checkpoint_text",
            "parse_note",
            "read_checkpoint",
            "sign",
            "sign_note",
            "verify_note",
            "verify_signature",
        ),
        "checkpoint",
    ),
    **dict.fromkeys(
        (
            "AuditError",
            "BadSignatureError",
            "CheckpointFormatError",
            "CheckpointVerificationError",
            "KeyFileError",
            "UnknownKeyError",
        ),
        "errors",
    ),
    **dict.fromkeys(
        ("Signer", "Verifier", "key_id", "read_signer", "read_verifier", "write_key_pair"), "keys"
    ),
    **dict.fromkeys(
        (
            "AuditLog",
            "ConsistencyProof",
            "Entry",
            "InclusionProof",
            "Problem",
            "VerifyReport",
            "canonical_entry_bytes",
            "canonical_json",
        ),
        "log",
    ),
    **dict.fromkeys(
        (
            "EMPTY_ROOT",
            "consistency_path",
            "inclusion_path",
            "leaf_hash",
            "mth",
            "node_hash",
            "root_from_leaf_hashes",
            "verify_consistency",
            "verify_inclusion",
        ),
        "merkle",
    ),
}

__all__ = [
    "EMPTY_ROOT",
    "AuditError",
    "AuditLog",
    "BadSignatureError",
    "Checkpoint",
    "CheckpointFormatError",
    "CheckpointVerificationError",
    "ConsistencyProof",
    "Entry",
    "InclusionProof",
    "KeyFileError",
    "NoteSignature",
    "Problem",
    "SignedCheckpoint",
    "SignedNote",
    "Signer",
    "UnknownKeyError",
    "Verifier",
    "VerifyReport",
    "canonical_entry_bytes",
    "canonical_json",
    "consistency_path",
    "format_checkpoint",
    "inclusion_path",
    "key_id",
    "leaf_hash",
    "mth",
    "node_hash",
    "parse_checkpoint",
    "parse_checkpoint_text",
    "parse_note",
    "read_checkpoint",
    "read_signer",
    "read_verifier",
    "root_from_leaf_hashes",
    "sign",
    "sign_note",
    "verify_consistency",
    "verify_inclusion",
    "verify_note",
    "verify_signature",
    "write_key_pair",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
