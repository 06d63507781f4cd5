"""Atomic file writes: a file is either the old one or the complete new one, never half-written.

A leaf (imports nothing of invguard), so that light commands such as ``invguard audit`` use it
without loading numpy or torch.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(
    path: str | os.PathLike[str],
    data: bytes | str,
    *,
    mode: int = 0o644,
    fsync: bool = False,
    make_parents: bool = True,
) -> Path:
    """Write ``data`` (str as UTF-8) to ``path`` via a temporary file in the same folder and
    ``os.replace``; ``fsync`` flushes it to disk first (survives power loss)."""
    p = Path(path)
    if make_parents:
        p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


__all__ = ["write_atomic"]
