"""``invguard audit ...``: the tamper-evident audit log from the command line.

Exit codes: 0 ok, 1 ``verify`` found tampering, 2 usage or bad input (one line on stderr). A file
that is damaged, truncated or emptied counts as tampering (1) when a valid checkpoint commits
to entries or when the file is recognisably an audit log; see ``VERIFY_EXIT_CODES``.
Import-light: ``sqlite3``, ``json`` and ``cryptography`` load only when a command runs. Only
``append`` writes to the database; every other command opens it read-only.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from invguard.cli._common import EXIT_FINDINGS, EXIT_OK, SubParsers, nonneg_int, positive_int

if TYPE_CHECKING:
    from datetime import datetime

    from invguard.audit.log import Entry, VerifyReport

# Function-level imports below are for laziness: parsers are built without sqlite3 or cryptography.

DEFAULT_DB = "invguard-audit.db"
VERIFY_EXIT_CODES = (
    "Exit codes: 0 intact; 1 tampered (first line 'TAMPERED: FILE: reason'); 2 bad input (one "
    "line on stderr). A damaged, truncated or emptied log file is tampering (1) when a valid "
    "--checkpoint commits to at least one entry ('log has 0 readable entries, checkpoint "
    "commits to N'), also when the file is missing; without a checkpoint it is tampering when "
    "the file is recognisably an InvGuard audit log whose entries cannot all be read ('entry "
    "N: unreadable') or whose chain fails, and bad input (2) when it is not one at all (empty, "
    "not SQLite, no audit tables, missing): nothing then proves a log was there, it may be "
    "the wrong path. Bad arguments, keys and checkpoint files are always 2."
)
EXIT_TAMPERED = EXIT_FINDINGS
MAX_SHOWN_PROBLEMS = 10
_tree_size = nonneg_int("a tree size")


# ---------------------------------------------------------------------------------------------
# argument types and output helpers


def _time(text: str) -> datetime:
    from invguard.audit.errors import AuditError
    from invguard.audit.log import parse_time

    try:
        return parse_time(text)
    except AuditError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _safe(text: str) -> str:
    """Show a field on a terminal: as-is when printable, else JSON-escaped (no escape codes)."""
    import json

    return text if text.isprintable() else json.dumps(text)


def _safe_payload(payload: Any) -> str:
    import json

    from invguard.audit.log import canonical_json

    text = canonical_json(payload)
    return (
        text if text.isprintable() else json.dumps(payload, sort_keys=True, separators=(",", ":"))
    )


def _entry_line(e: Entry) -> str:
    return "  ".join(
        (
            f"{e.seq:>6}",
            e.timestamp,
            _safe(e.actor),
            _safe(e.action),
            _safe(e.subject) or '""',
            _safe_payload(e.payload),
        )
    )


def _emit(text: str) -> None:
    """Print to stdout; a closed pipe (``| head``) is not an error."""
    import os

    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _add_db(p: argparse.ArgumentParser, *, writes: bool = False) -> None:
    extra = " (created if missing)" if writes else " (opened read-only)"
    p.add_argument(
        "--audit-db",
        default=DEFAULT_DB,
        metavar="FILE",
        help=f"audit log SQLite file, default {DEFAULT_DB} in the current folder{extra}",
    )


# ---------------------------------------------------------------------------------------------
# commands


def cmd_log(args: argparse.Namespace) -> int:
    """List entries, optionally filtered."""
    import json

    from invguard.audit.log import AuditLog

    with AuditLog(args.audit_db, readonly=True) as log:
        entries = log.entries(
            action=args.action,
            actor=args.actor,
            subject=args.subject,
            since=args.since,
            until=args.until,
            limit=args.limit,
        )
    if args.json:
        _emit(json.dumps([e.to_dict() for e in entries]))
    elif entries:
        _emit("\n".join(_entry_line(e) for e in entries))
    else:
        print("no matching entries", file=sys.stderr)
    return EXIT_OK


def cmd_append(args: argparse.Namespace) -> int:
    """Append one entry."""
    import json

    from invguard.audit.errors import AuditError
    from invguard.audit.log import AuditLog

    payload: Any = None
    if args.payload is not None:
        try:
            payload = json.loads(args.payload)
        except ValueError as exc:
            raise AuditError(f"--payload is not valid JSON: {exc}") from None
    with AuditLog(args.audit_db, synchronous="FULL" if args.sync == "full" else "NORMAL") as log:
        entry = log.append(args.actor, args.action, args.subject, payload)
    if args.json:
        print(json.dumps(entry.to_dict()))
    else:
        print(f"appended entry {entry.seq} (leaf hash {entry.leaf_hash.hex()})")
    return EXIT_OK


def _report_json(report: VerifyReport) -> str:
    import json

    cp = report.checkpoint
    return json.dumps(
        {
            "ok": report.ok,
            "path": report.path,
            "size": report.size,
            "root": report.root.hex(),
            "problem_count": report.problem_count,
            "problems": [
                {"kind": p.kind, "seq": p.seq, "message": p.message} for p in report.problems
            ],
            "checkpoint": None
            if cp is None
            else {"origin": cp.origin, "size": cp.size, "root": cp.root.hex()},
        }
    )


def cmd_verify(args: argparse.Namespace) -> int:
    """Recompute chain and root; check a checkpoint. 0 intact, 1 tampered, 2 usage."""
    from invguard.audit.errors import AuditError
    from invguard.audit.log import verify_file

    if (args.checkpoint is None) != (args.public_key is None):
        raise AuditError("--checkpoint and --public-key go together: give both or neither")
    signed = verifier = None
    if args.checkpoint is not None:
        from invguard.audit.checkpoint import read_checkpoint
        from invguard.audit.keys import read_verifier

        verifier = read_verifier(args.public_key)
        signed = read_checkpoint(args.checkpoint)
    report = verify_file(args.audit_db, signed, verifier)
    if args.json:
        print(_report_json(report))
        return EXIT_OK if report.ok else EXIT_TAMPERED
    if report.ok:
        print(
            f"ok: {report.path}: {report.size} entries, hash chain intact, root {report.root.hex()}"
        )
        if report.checkpoint is not None and verifier is not None:
            print(
                f"ok: checkpoint {_safe(report.checkpoint.origin)} (tree size "
                f"{report.checkpoint.size}) is signed by {verifier.name}+{verifier.key_id.hex()} "
                "and matches the log"
            )
        return EXIT_OK
    problems = report.problems
    print(f"TAMPERED: {report.path}: {_safe(problems[0].message)}")
    for p in problems[1:MAX_SHOWN_PROBLEMS]:
        print(f"  also: {_safe(p.message)}")
    if report.problem_count > MAX_SHOWN_PROBLEMS:
        print(f"  ... and {report.problem_count - MAX_SHOWN_PROBLEMS} more problems")
    return EXIT_TAMPERED


def cmd_checkpoint(args: argparse.Namespace) -> int:
    """Verify the log, then sign its tree head as a C2SP checkpoint."""
    from invguard.audit.checkpoint import parse_checkpoint, write_text_atomic
    from invguard.audit.keys import read_signer
    from invguard.audit.log import AuditLog

    signer = read_signer(args.key)
    with AuditLog(args.audit_db, readonly=True) as log:
        note = log.checkpoint(signer, args.origin)
    if args.out is None:
        sys.stdout.write(note)
        return EXIT_OK
    write_text_atomic(args.out, note)
    cp = parse_checkpoint(note).checkpoint
    print(f"wrote checkpoint {_safe(cp.origin)} for tree size {cp.size} to {args.out}")
    return EXIT_OK


def cmd_prove(args: argparse.Namespace) -> int:
    """Print an inclusion or a consistency proof (verified before it is printed)."""
    import json

    from invguard.audit.errors import AuditError
    from invguard.audit.log import AuditLog, ConsistencyProof, InclusionProof

    proof: InclusionProof | ConsistencyProof
    if args.consistency is not None:
        if args.entry is not None or args.size is not None:
            raise AuditError("give either an entry number (with --size) or --consistency OLD NEW")
        old, new = args.consistency
        if old > new:
            raise AuditError(f"--consistency OLD NEW needs OLD <= NEW, got {old} > {new}")
        with AuditLog(args.audit_db, readonly=True) as log:
            proof = log.consistency_proof(old, new)
    else:
        if args.entry is None:
            raise AuditError("give an entry number to prove, or --consistency OLD NEW")
        with AuditLog(args.audit_db, readonly=True) as log:
            proof = log.inclusion_proof(args.entry, args.size)
    if not proof.verify():  # pragma: no cover - a bug, never a user error
        raise AuditError("internal error: the generated proof does not verify")
    if args.json:
        print(json.dumps(proof.to_dict(), indent=2))
        return EXIT_OK
    if isinstance(proof, InclusionProof):
        lines = [
            f"inclusion proof (RFC 6962): entry {proof.seq} (leaf index {proof.seq - 1}) "
            f"in tree size {proof.tree_size}",
            f"leaf hash  {proof.leaf_hash.hex()}",
            f"root       {proof.root.hex()}",
        ]
    else:
        lines = [
            f"consistency proof (RFC 6962): tree size {proof.old_size} -> {proof.new_size}",
            f"old root   {proof.old_root.hex()}",
            f"new root   {proof.new_root.hex()}",
        ]
    lines.append(f"path       {len(proof.path)} hashes")
    lines += [f"  {h.hex()}" for h in proof.path]
    lines.append("verified   yes (RFC 9162 algorithm)")
    print("\n".join(lines))
    return EXIT_OK


def cmd_keygen(args: argparse.Namespace) -> int:
    """Create an Ed25519 key pair for signing checkpoints."""
    from invguard.audit.keys import Signer, write_key_pair

    signer = Signer.generate(args.name)
    write_key_pair(signer, args.out_private, args.out_public, force=args.force)
    print(f"wrote private key to {args.out_private} (mode 0600: keep it secret)")
    print(f"wrote public key to {args.out_public}: {signer.verifier.to_string()}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# parser


def add_audit_parser(sub: SubParsers) -> None:
    """Register ``invguard audit`` and its sub-commands on the top-level sub-parsers ``sub``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "audit",
        help="tamper-evident audit log (append, verify, checkpoints, proofs)",
        description="Append-only audit log in a SQLite file with a hash chain, an RFC 6962 "
        "Merkle tree and signed C2SP checkpoints. 'verify' exits 0 when intact, 1 when "
        "tampering is found (a damaged or truncated file included, see 'verify --help'), "
        "2 on bad input.",
    )
    asub = p.add_subparsers(dest="audit_command", metavar="AUDIT_COMMAND")
    asub.required = True
    _add_entry_parsers(asub)
    _add_proof_parsers(asub)


def _add_entry_parsers(asub: SubParsers) -> None:
    """``audit log`` and ``audit append``."""
    q = asub.add_parser("log", help="list entries (filter by action, actor, subject, time)")
    _add_db(q)
    q.add_argument("--action", help="only entries with exactly this action")
    q.add_argument("--actor", help="only entries with exactly this actor")
    q.add_argument("--subject", help="only entries with exactly this subject")
    q.add_argument("--since", type=_time, metavar="T", help="entries at or after T (RFC 3339)")
    q.add_argument("--until", type=_time, metavar="T", help="entries before T (RFC 3339)")
    q.add_argument("--limit", type=positive_int, metavar="N", help="at most N entries")
    q.add_argument("--json", action="store_true", help="a JSON array (hashes in hex)")
    q.set_defaults(handler=cmd_log)

    q = asub.add_parser("append", help="append one entry")
    _add_db(q, writes=True)
    q.add_argument("--actor", required=True, help="who acted (user, service)")
    q.add_argument("--action", required=True, help="what happened, e.g. assessment.finished")
    q.add_argument("--subject", required=True, help="what it happened to, e.g. a model id")
    q.add_argument("--payload", metavar="JSON", help="JSON details (default {})")
    q.add_argument(
        "--sync",
        choices=("normal", "full"),
        default="normal",
        help="normal (default): durable against a crash of the process; "
        "full: also against power loss (one fsync per append)",
    )
    q.add_argument("--json", action="store_true", help="print the entry as JSON")
    q.set_defaults(handler=cmd_append)


def _add_proof_parsers(asub: SubParsers) -> None:
    """``audit verify``, ``checkpoint``, ``prove`` and ``keygen``."""
    q = asub.add_parser(
        "verify",
        help="check chain, leaf hashes, root and a signed checkpoint",
        description="Recompute every leaf hash, the hash chain, the Merkle tree and its stored "
        "subtree hashes; check a signed checkpoint. " + VERIFY_EXIT_CODES,
    )
    _add_db(q)
    q.add_argument("--checkpoint", metavar="FILE", help="a signed checkpoint to check the log by")
    q.add_argument("--public-key", metavar="FILE", help="the trusted public key of the checkpoint")
    q.add_argument("--json", action="store_true", help="the report as JSON")
    q.set_defaults(handler=cmd_verify)

    q = asub.add_parser("checkpoint", help="sign the current tree head (C2SP tlog-checkpoint)")
    _add_db(q)
    q.add_argument("--key", required=True, metavar="PRIVATE", help="private key file (keygen)")
    q.add_argument("--origin", help="log identity line (default: the key name)")
    q.add_argument("--out", metavar="FILE", help="write the checkpoint here (default: stdout)")
    q.set_defaults(handler=cmd_checkpoint)

    q = asub.add_parser("prove", help="inclusion proof of an entry, or a consistency proof")
    _add_db(q)
    q.add_argument("entry", nargs="?", type=positive_int, metavar="N", help="entry number (seq)")
    q.add_argument("--size", type=_tree_size, metavar="M", help="tree size (default: current)")
    q.add_argument(
        "--consistency",
        nargs=2,
        type=_tree_size,
        metavar=("OLD", "NEW"),
        help="prove that tree size OLD is a prefix of tree size NEW",
    )
    q.add_argument("--json", action="store_true", help="the proof as JSON (hashes in hex)")
    q.set_defaults(handler=cmd_prove)

    q = asub.add_parser("keygen", help="create an Ed25519 key pair for checkpoints")
    q.add_argument("--out-private", required=True, metavar="FILE", help="private key (0600)")
    q.add_argument("--out-public", required=True, metavar="FILE", help="public key")
    q.add_argument(
        "--name",
        default="invguard-audit",
        help="key name, ideally a schema-less URL such as example.com/audit (default "
        "invguard-audit); also the default checkpoint origin",
    )
    q.add_argument("--force", action="store_true", help="overwrite existing key files")
    q.set_defaults(handler=cmd_keygen)
