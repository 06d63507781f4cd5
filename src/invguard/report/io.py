"""Atomic file writes: a report file is either complete or absent, never half-written."""

from __future__ import annotations

from invguard.fileio import write_atomic

__all__ = ["write_atomic"]
