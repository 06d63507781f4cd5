"""Run small fits single-threaded for the duration of a ``with`` block.

Small tabular models gain nothing from a second thread, and on a shared 2-core machine OpenMP and
PyTorch worker threads that compete for busy cores make them 5-10x slower (measured: a
histogram-GBDT fit on Adult took 20 s with 2 OpenMP threads, 3 s with 1). The previous limits are
restored on exit, so no setting outlives the block.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]


@contextmanager
def limit_threads(threads: int = 1) -> Iterator[None]:
    """Limit BLAS/OpenMP pools and, when torch is loaded, torch's intra-op threads."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    try:
        if torch is not None:
            torch.set_num_threads(threads)
        with threadpool_limits(limits=threads):
            yield
    finally:
        if torch is not None and before is not None:
            torch.set_num_threads(before)
