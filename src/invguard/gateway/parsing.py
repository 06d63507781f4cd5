"""A prediction request's JSON body to a batch of inputs: strict, bounded, and off the event loop.

:func:`parse_inputs` turns the bytes of ``{"inputs": [...]}`` into a float32 batch or raises
:class:`InputError` (a status and a one-line message naming the field): 400 for JSON that is
malformed or nested more than :data:`MAX_DEPTH` levels, 422 for a missing or empty ``inputs``,
too many items, a ragged list, booleans, nulls, strings, NaN or infinities, the wrong shape or
values outside [0, 1]. It needs only json and numpy, so that :class:`ParsePool` can run it in
worker processes: ``json.loads`` holds the GIL for the whole parse (150 ms for 13 MB, measured),
so a thread pool would not keep a large body from stalling every other request.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import signal
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

MAX_DEPTH = 32
"""Arrays and objects nested deeper than this are refused (400) before the JSON is parsed."""
_CHUNK = 1 << 20
_SUSPECT = (b"true", b"false", b"null")


class InputError(Exception):
    """A request body refused with ``status`` and a one-line ``message`` (picklable);
    ``retry_after`` (seconds) when trying again later can succeed."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(status, message, retry_after)
        self.status = status
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class InputSpec:
    """What a valid batch looks like: items of ``input_shape``, at most ``max_batch`` of them."""

    input_shape: tuple[int, ...]
    max_batch: int

    @property
    def expected(self) -> str:
        return f"a list of arrays of shape {_shape(self.input_shape)}"


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def nesting_depth(body: bytes) -> int:
    """The deepest nesting of ``[`` and ``{`` in ``body`` (brackets inside strings count too:
    a valid request has no strings but its keys); vectorised, 1 MB at a time."""
    deepest, depth = 0, 0
    for start in range(0, len(body), _CHUNK):
        b = np.frombuffer(body, np.uint8, count=min(_CHUNK, len(body) - start), offset=start)
        brackets = b[(b == 0x5B) | (b == 0x5D) | (b == 0x7B) | (b == 0x7D)]  # [ ] { }
        if not len(brackets):
            continue
        step = np.where((brackets == 0x5B) | (brackets == 0x7B), 1, -1)
        levels = np.cumsum(step) + depth
        deepest = max(deepest, int(levels.max()))
        depth = int(levels[-1])
    return deepest


def _first_non_number(inputs: list[Any]) -> tuple[str, Any] | None:
    """The index path and value of the first item of ``inputs`` that is not a number or a list
    (booleans are not numbers here); None if there is none. Iterative: any depth."""
    stack: list[tuple[str, Any]] = [(f"[{i}]", v) for i, v in reversed(list(enumerate(inputs)))]
    while stack:
        path, v = stack.pop()
        if isinstance(v, list):
            stack.extend((f"{path}[{i}]", w) for i, w in reversed(list(enumerate(v))))
        elif isinstance(v, bool) or not isinstance(v, int | float):
            return path, v
    return None


def _not_a_number(inputs: list[Any], spec: InputSpec) -> InputError | None:
    found = _first_non_number(inputs)
    if found is None:
        return None
    path, value = found
    shown = json.dumps(value)[:40] if value is None or isinstance(value, bool | str) else "{...}"
    return InputError(
        422,
        f"'inputs' must contain only numbers (not booleans, nulls or strings): found {shown} at "
        f"inputs{path}; expected {spec.expected}",
    )


def _load(body: bytes) -> Any:
    depth = nesting_depth(body)
    if depth > MAX_DEPTH:
        raise InputError(
            400, f"request body is nested {depth} levels deep; at most {MAX_DEPTH} are accepted"
        )
    try:
        return json.loads(body)
    except RecursionError:  # not reached below MAX_DEPTH; kept as the last line of defence
        raise InputError(400, "request body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(400, f"request body is not valid JSON: {msg}") from None


def _items(doc: Any, spec: InputSpec) -> list[Any]:
    expected = spec.expected
    if not isinstance(doc, dict) or "inputs" not in doc:
        raise InputError(422, f"'inputs' is missing: send a JSON object {{\"inputs\": {expected}}}")
    inputs = doc["inputs"]
    if not isinstance(inputs, list) or not inputs:
        raise InputError(422, f"'inputs' must be a non-empty list: {expected}")
    if len(inputs) > spec.max_batch:
        raise InputError(
            422, f"'inputs' has {len(inputs)} items, at most {spec.max_batch} per request"
        )
    return inputs


def parse_inputs(body: bytes, spec: InputSpec) -> NDArray[np.float32]:
    """The batch in a request body, or :class:`InputError` (see the module's docstring)."""
    inputs = _items(_load(body), spec)
    if any(token in body for token in _SUSPECT):  # exact check only where one may be
        bad = _not_a_number(inputs, spec)
        if bad is not None:
            raise bad
    try:
        arr = np.asarray(inputs)
    except ValueError:
        raise InputError(422, f"'inputs' is ragged: expected {spec.expected}") from None
    if arr.dtype.kind not in "iuf":
        raise _not_a_number(inputs, spec) or InputError(
            422, f"'inputs' must contain only numbers: expected {spec.expected}"
        )
    if tuple(arr.shape[1:]) != spec.input_shape:
        raise InputError(
            422,
            f"'inputs' must have shape (n, {', '.join(map(str, spec.input_shape))}), "
            f"got {_shape(arr.shape)}",
        )
    x = arr.astype(np.float32)
    if not np.isfinite(x).all():
        raise InputError(422, "'inputs' contains NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise InputError(422, f"'inputs' values must lie in [0, 1], got min {lo:g}, max {hi:g}")
    return x


def _worker_init() -> None:
    """Workers leave Ctrl-C to the server, which stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ParsePool:
    """Worker processes that run :func:`parse_inputs` on large bodies, off the event loop.

    At most ``queue`` bodies wait or are parsed at once, all keys together (503 beyond), and one
    per key (429 beyond), so that no key can hold the workers. The processes are started on the
    first body (or by :meth:`start`); call :meth:`close` when done. Used from one event loop.
    """

    def __init__(self, spec: InputSpec, *, workers: int, queue: int) -> None:
        self.spec = spec
        self.workers = workers
        self.queue = queue
        self._executor: ProcessPoolExecutor | None = None
        self._busy: set[str] = set()

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:  # spawn: never fork a process that holds torch's threads
            ctx = multiprocessing.get_context("spawn")
            self._executor = ProcessPoolExecutor(
                self.workers, mp_context=ctx, initializer=_worker_init
            )
        return self._executor

    def start(self) -> None:
        """Start the worker processes now rather than on the first large body."""
        for f in [self._pool().submit(int) for _ in range(self.workers)]:
            f.result()

    async def parse(self, key: str, body: bytes) -> NDArray[np.float32]:
        """:func:`parse_inputs` of ``body`` in a worker, for the client ``key``."""
        if key in self._busy:
            raise InputError(
                429, "one large request body per API key is parsed at a time; retry after 1 s", 1
            )
        if len(self._busy) >= self.queue:
            raise InputError(
                503, "the gateway is busy parsing large request bodies; retry after 1 s", 1
            )
        self._busy.add(key)
        try:
            future = self._pool().submit(parse_inputs, body, self.spec)
            result: NDArray[np.float32] = await asyncio.wrap_future(future)
            return result
        except BrokenProcessPool:  # a worker died (killed for memory?): new ones next time
            executor, self._executor = self._executor, None
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)
            raise InputError(
                503, "the request body could not be parsed; retry after 1 s", 1
            ) from None
        finally:
            self._busy.discard(key)

    def close(self) -> None:
        """Stop the worker processes."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


__all__ = ["MAX_DEPTH", "InputError", "InputSpec", "ParsePool", "nesting_depth", "parse_inputs"]
