"""``invguard audit ...`` through ``invguard.cli.main``: a session, tampering (exit 1), bad input
(exit 2, one line, database untouched) and start-up cost."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from invguard.audit import AuditLog, verify_consistency, verify_inclusion
from invguard.cli import main
from tests.audit.helpers import SCENARIOS, build_log, file_digest, rewrite_consistently, side_files


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> bool:
    return err.count("\n") == 1 and err.startswith("invguard")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return build_log(tmp_path / "audit.db", 30)


@pytest.fixture
def keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    priv, pub = tmp_path / "audit.key", tmp_path / "audit.pub"
    code, _, _ = run(
        capsys, "audit", "keygen", "--out-private", priv, "--out-public", pub, "--name", "ex.org/a"
    )
    assert code == 0
    return priv, pub


@pytest.fixture
def checkpoint(
    db: Path, keys: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Path:
    out = tmp_path / "cp.txt"
    code, text, _ = run(
        capsys, "audit", "checkpoint", "--audit-db", db, "--key", keys[0], "--out", out
    )
    assert code == 0
    assert "tree size 30" in text
    return out


def test_session_in_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for i in range(3):
        code, out, _ = run(
            capsys,
            "audit",
            "append",
            "--actor",
            "alice",
            "--action",
            "assessment.finished" if i < 2 else "gateway.alert",
            "--subject",
            f"model-{i}",
            "--payload",
            json.dumps({"top1": 0.5 + i / 10}),
        )
        assert code == 0
        assert out.startswith(f"appended entry {i + 1} ")
    assert (tmp_path / "invguard-audit.db").is_file()  # the default, in the current folder
    code, out, _ = run(capsys, "audit", "log")
    lines = out.splitlines()
    assert code == 0
    assert len(lines) == 3
    assert lines[2].split()[2:5] == ["alice", "gateway.alert", "model-2"]
    code, out, _ = run(capsys, "audit", "log", "--action", "assessment.finished", "--json")
    assert [e["seq"] for e in json.loads(out)] == [1, 2]
    code, out, _ = run(capsys, "audit", "log", "--since", "2999-01-01")
    assert code == 0
    assert out == ""
    code, out, _ = run(
        capsys, "audit", "append", "--actor", "b", "--action", "x", "--subject", "", "--json"
    )
    assert code == 0
    assert json.loads(out)["seq"] == 4
    code, out, _ = run(capsys, "audit", "verify")
    assert code == 0
    assert out.startswith("ok: invguard-audit.db: 4 entries, hash chain intact")
    code, out, _ = run(capsys, "audit", "verify", "--json")
    assert code == 0
    assert json.loads(out)["ok"] is True
    assert side_files(tmp_path / "invguard-audit.db") == []


def test_keygen_checkpoint_verify_and_prove(
    db: Path, keys: tuple[Path, Path], checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    priv, pub = keys
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert pub.read_text().startswith("ex.org/a+")
    code, out, _ = run(
        capsys, "audit", "verify", "--audit-db", db, "--checkpoint", checkpoint, "--public-key", pub
    )
    assert code == 0
    assert "checkpoint ex.org/a (tree size 30) is signed by ex.org/a+" in out
    code, out, _ = run(
        capsys, "audit", "checkpoint", "--audit-db", db, "--key", priv, "--origin", "o.example"
    )
    assert code == 0
    assert out.startswith("o.example\n30\n")
    assert "\n\n— ex.org/a " in out

    with AuditLog(db, readonly=True) as log:
        root = log.root()
    code, out, _ = run(capsys, "audit", "prove", "17", "--audit-db", db, "--json")
    proof = json.loads(out)
    assert code == 0
    assert proof["tree_size"] == 30
    assert proof["root"] == root.hex()
    path = [bytes.fromhex(x) for x in proof["path"]]
    assert verify_inclusion(16, 30, bytes.fromhex(proof["leaf_hash"]), path, root)
    code, out, _ = run(capsys, "audit", "prove", "17", "--size", "20", "--audit-db", db)
    assert code == 0
    assert "entry 17 (leaf index 16) in tree size 20" in out
    code, out, _ = run(
        capsys, "audit", "prove", "--consistency", "7", "30", "--audit-db", db, "--json"
    )
    c = json.loads(out)
    assert verify_consistency(
        7,
        30,
        bytes.fromhex(c["old_root"]),
        bytes.fromhex(c["new_root"]),
        [bytes.fromhex(x) for x in c["path"]],
    )
    code, out, _ = run(capsys, "audit", "prove", "--consistency", "7", "30", "--audit-db", db)
    assert code == 0
    assert "tree size 7 -> 30" in out


def test_secrets_never_printed(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    priv, pub = tmp_path / "k", tmp_path / "k.pub"
    code, out, err = run(capsys, "audit", "keygen", "--out-private", priv, "--out-public", pub)
    # PRIVATE+KEY+<name>+<key id>+<base64>; the base64 may itself hold '+'
    seed = priv.read_text().strip().split("+", 4)[4]
    assert len(seed) >= 40
    assert code == 0
    assert seed not in out + err
    code, out, err = run(capsys, "audit", "checkpoint", "--audit-db", db, "--key", priv)
    assert code == 0
    assert seed not in out + err
    code, out, err = run(
        capsys, "audit", "verify", "--audit-db", db, "--checkpoint", priv, "--public-key", priv
    )
    assert code == 2
    assert seed not in out + err
    assert one_line_error(err)
    code, _, err = run(
        capsys, "audit", "keygen", "--out-private", priv, "--out-public", tmp_path / "x"
    )
    assert code == 2
    assert "already exists (use --force" in err
    assert not (tmp_path / "x").exists()
    code, _, _ = run(
        capsys, "audit", "keygen", "--out-private", priv, "--out-public", pub, "--force"
    )
    assert code == 0
    assert priv.read_text().strip().split("+", 4)[4] != seed


# ---------------------------------------------------------------------------------------------
# tampering: exit 1, first problem named


@pytest.mark.parametrize(
    ("attack", "message"), [(s[1], s[3]) for s in SCENARIOS], ids=[s[0] for s in SCENARIOS]
)
def test_cli_detects_tampering(
    db: Path, attack: Callable[[Path], None], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    attack(db)
    code, out, _ = run(capsys, "audit", "verify", "--audit-db", db)
    assert code == 1
    assert out.startswith(f"TAMPERED: {db}: {message}"), out


def _alter_signature(note: str) -> str:
    text, line = note.split("\n\n")
    prefix, blob = line.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(blob))
    raw[10] ^= 0x40
    return f"{text}\n\n{prefix} {base64.b64encode(bytes(raw)).decode()}\n"


def _alter_root(note: str) -> str:
    lines = note.split("\n")
    root = bytearray(base64.b64decode(lines[2]))
    root[0] ^= 1
    lines[2] = base64.b64encode(bytes(root)).decode()
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("alter", "message"),
    [
        (_alter_signature, "checkpoint signature invalid"),
        (_alter_root, "checkpoint signature invalid"),
        (lambda n: n.replace("\n30\n", "\n31\n"), "checkpoint signature invalid"),
    ],
    ids=["signature", "root", "size"],
)
def test_cli_detects_altered_checkpoints(
    db: Path,
    keys: tuple[Path, Path],
    checkpoint: Path,
    alter: Callable[[str], str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    checkpoint.write_text(alter(checkpoint.read_text()))
    code, out, _ = run(
        capsys,
        "audit",
        "verify",
        "--audit-db",
        db,
        "--checkpoint",
        checkpoint,
        "--public-key",
        keys[1],
    )
    assert code == 1, out
    assert out.startswith(f"TAMPERED: {db}: {message}"), out


def test_cli_detects_checkpoint_of_another_key(
    db: Path, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(
        capsys,
        "audit",
        "keygen",
        "--out-private",
        tmp_path / "o",
        "--out-public",
        tmp_path / "o.pub",
        "--name",
        "ex.org/a",
    )
    code, out, _ = run(
        capsys,
        "audit",
        "verify",
        "--audit-db",
        db,
        "--checkpoint",
        checkpoint,
        "--public-key",
        tmp_path / "o.pub",
    )
    assert code == 1
    assert "checkpoint signed by a different key" in out


def test_cli_detects_removed_tail_and_rewrite(
    db: Path, keys: tuple[Path, Path], checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = (
        "audit",
        "verify",
        "--audit-db",
        db,
        "--checkpoint",
        checkpoint,
        "--public-key",
        keys[1],
    )
    rewrite_consistently(db, 3, '{"n":2,"note":"rewritten","score":0.25}')
    code, out, _ = run(capsys, *args)
    assert code == 1
    assert "checkpoint root does not match the log" in out
    from tests.audit.helpers import tamper

    tamper(db, "DELETE FROM entries WHERE seq > 20")
    code, out, _ = run(capsys, *args)
    assert code == 1
    assert "log has 20 entries but the checkpoint commits to 30: entries were removed" in out


PAGE = 4096


def _overwrite_page(page: int) -> Callable[[bytes], bytes]:
    return lambda data: data[: page * PAGE] + b"\xff" * PAGE + data[(page + 1) * PAGE :]


# Damage to a 400-entry log (25 pages of 4 KiB; the entries from page 5 on, ~19 a page), and the
# first line that verify prints against a checkpoint of all 400 entries.
DAMAGE: list[tuple[str, Callable[[bytes], bytes] | None, str]] = [
    (
        "emptied",
        lambda data: b"",
        "log has 0 readable entries, checkpoint commits to 400: the file is empty (0 bytes)",
    ),
    (
        "deleted",
        None,
        "log has 0 readable entries, checkpoint commits to 400: the file does not exist",
    ),
    (
        "header-only",
        lambda data: data[:100],
        "log has 0 readable entries, checkpoint commits "
        "to 400: the file is not a readable audit database",
    ),
    (
        "truncated-half",
        lambda data: data[: len(data) // 2],
        "log has 157 readable entries, "
        "checkpoint commits to 400: the audit log file is damaged or truncated (SQLite: "
        "database disk image is malformed)",
    ),
    (
        "last-page-cut",
        lambda data: data[:-PAGE],
        "log has 387 readable entries, checkpoint "
        "commits to 400: the audit log file is damaged or truncated",
    ),
    (
        "page-overwritten",
        _overwrite_page(10),
        "entry 118: unreadable (database disk image is "
        "malformed): the file is damaged or truncated",
    ),
]


@pytest.fixture
def log400(
    tmp_path: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> tuple[Path, Path]:
    """A 400-entry log and a checkpoint of it."""
    path = build_log(tmp_path / "big.db", 400)
    assert path.stat().st_size == 25 * PAGE
    cp = tmp_path / "big.cp"
    code, _, _ = run(
        capsys, "audit", "checkpoint", "--audit-db", path, "--key", keys[0], "--out", cp
    )
    assert code == 0
    return path, cp


@pytest.mark.parametrize(("damage", "first"), [d[1:] for d in DAMAGE], ids=[d[0] for d in DAMAGE])
def test_damaged_log_against_a_checkpoint_is_tampered(
    log400: tuple[Path, Path],
    keys: tuple[Path, Path],
    damage: Callable[[bytes], bytes] | None,
    first: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A CI job that tests for exit 1 sees a damaged, truncated, emptied or deleted log."""
    path, cp = log400
    if damage is None:
        path.unlink()
    else:
        path.write_bytes(damage(path.read_bytes()))
    before = file_digest(path) if path.exists() else None
    argv = ("audit", "verify", "--audit-db", path, "--checkpoint", cp, "--public-key", keys[1])
    code, out, err = run(capsys, *argv)
    assert code == 1, (out, err)
    assert err == ""
    assert out.splitlines()[0].startswith(f"TAMPERED: {path}: {first}"), out
    code, out, _ = run(capsys, *argv, "--json")
    report = json.loads(out)
    assert code == 1
    assert report["ok"] is False
    assert report["problems"][0]["message"].startswith(first)
    assert (file_digest(path) if path.exists() else None) == before  # read-only, always
    assert side_files(path) == []


@pytest.mark.parametrize(
    ("damage", "code", "message"),
    [
        (lambda data: b"", 2, "is empty (0 bytes), not an InvGuard audit log"),
        (lambda data: data[:100], 2, "is not a readable audit database"),
        (
            lambda data: data[: len(data) // 2],
            1,
            "the audit log file is damaged or truncated (SQLite: database disk image is "
            "malformed); 157 entries readable",
        ),
        (_overwrite_page(10), 1, "entry 118: unreadable (database disk image is malformed)"),
    ],
    ids=["emptied", "header-only", "truncated-half", "page-overwritten"],
)
def test_damaged_log_without_a_checkpoint(
    tmp_path: Path,
    damage: Callable[[bytes], bytes],
    code: int,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without a checkpoint: tampered (1) when the file still reads as an audit log, bad input
    (2, one line) when it does not (nothing proves a log was there)."""
    path = build_log(tmp_path / "big.db", 400)
    path.write_bytes(damage(path.read_bytes()))
    before = file_digest(path)
    got, out, err = run(capsys, "audit", "verify", "--audit-db", path)
    assert got == code, (out, err)
    if code == 2:
        assert one_line_error(err), err
        assert message in err
        assert out == ""
    else:
        assert out.startswith(f"TAMPERED: {path}: {message}"), out
    assert file_digest(path) == before
    assert side_files(path) == []


def test_verify_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "audit", "verify", "--help")
    text = " ".join(out.split())
    assert code == 0
    assert "Exit codes: 0 intact; 1 tampered" in text
    assert "checkpoint commits to N" in text
    assert "bad input (2)" in text


# ---------------------------------------------------------------------------------------------
# bad input: exit 2, one line, the database byte-for-byte unchanged


def test_bad_input_is_one_line_exit_2_and_leaves_the_file_alone(
    db: Path,
    keys: tuple[Path, Path],
    checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    priv, pub = keys
    bad_cp = tmp_path / "bad.cp"
    bad_cp.write_text("ex.org/a\nthirty\nAAAA\n\n— ex.org/a AAAAAAAA\n")
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(8192))
    garbage_key = tmp_path / "garbage.pub"
    garbage_key.write_text("hello world\n")
    cases: list[tuple[tuple[str | Path, ...], str]] = [
        (("--audit-db", tmp_path / "missing.db"), "audit database"),
        (("--audit-db", junk), "is not a readable audit database"),
        (("--audit-db", tmp_path), "is not a regular file"),
        (
            ("--audit-db", db, "--checkpoint", checkpoint, "--public-key", priv),
            "private (signer) key",
        ),
        (
            ("--audit-db", db, "--checkpoint", checkpoint, "--public-key", garbage_key),
            "public key file",
        ),
        (
            ("--audit-db", db, "--checkpoint", checkpoint, "--public-key", tmp_path / "nope"),
            "does not exist",
        ),
        (
            ("--audit-db", db, "--checkpoint", bad_cp, "--public-key", pub),
            "is malformed: tree size line",
        ),
        (("--audit-db", db, "--checkpoint", pub, "--public-key", pub), "is malformed"),
        (("--audit-db", db, "--checkpoint", checkpoint), "go together"),
    ]
    before = file_digest(db)
    for extra, message in cases:
        code, out, err = run(capsys, "audit", "verify", *extra)
        assert code == 2, (extra, out, err)
        assert one_line_error(err), (extra, err)
        assert message in err, (extra, err)
        assert out == ""
    assert file_digest(db) == before
    assert side_files(db) == []
    assert not (tmp_path / "missing.db").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("audit",), "required: AUDIT_COMMAND"),
        (("audit", "append", "--actor", "a", "--action", "b"), "required: --subject"),
        (
            (
                "audit",
                "append",
                "--actor",
                "a",
                "--action",
                "b",
                "--subject",
                "c",
                "--payload",
                "{x",
            ),
            "--payload is not valid JSON",
        ),
        (
            (
                "audit",
                "append",
                "--actor",
                "a",
                "--action",
                "b",
                "--subject",
                "c",
                "--payload",
                "NaN",
            ),
            "not JSON-serialisable",
        ),
        (
            ("audit", "append", "--actor", "", "--action", "b", "--subject", "c"),
            "actor must not be empty",
        ),
        (("audit", "log", "--since", "last tuesday"), "RFC 3339"),
        (("audit", "prove"), "give an entry number"),
        (("audit", "prove", "0"), "positive integer"),
        (("audit", "prove", "31"), "entry 31 is not in a tree of size 30"),
        (("audit", "prove", "3", "--size", "99"), "larger than the log"),
        (("audit", "prove", "3", "--consistency", "1", "2"), "either an entry number"),
        (("audit", "prove", "--consistency", "9", "2"), "OLD <= NEW"),
        (("audit", "checkpoint", "--key", "nope.key"), "does not exist"),
        (
            ("audit", "keygen", "--out-private", "a", "--out-public", "b", "--name", "a b"),
            "key name",
        ),
    ],
)
def test_usage_errors(
    db: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: tuple[str, ...],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    db.rename(tmp_path / "invguard-audit.db")
    before = file_digest(tmp_path / "invguard-audit.db")
    code, out, err = run(capsys, *argv)
    assert code == 2, (out, err)
    assert one_line_error(err), err
    assert message in err, err
    assert file_digest(tmp_path / "invguard-audit.db") == before


def test_log_escapes_control_characters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "a.db"
    with AuditLog(db) as log:
        log.append("eve\x1b[2J", "gateway.alert", "m\u202e", {"k": "v\u2028"})
    code, out, _ = run(capsys, "audit", "log", "--audit-db", db)
    assert code == 0
    assert "\x1b" not in out
    assert "\u202e" not in out
    assert "\u2028" not in out
    assert '"eve\\u001b[2J"' in out


def test_cli_module_is_import_light() -> None:
    code = (
        "import sys, invguard.cli, invguard.cli.audit\n"
        "heavy = [m for m in ('cryptography', 'sqlite3', 'invguard.audit.log', 'torch', 'numpy')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
