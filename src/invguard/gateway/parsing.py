"""A prediction request's JSON body to a batch of inputs: strict, bounded, and off the event loop.

:func:`parse_inputs` turns the bytes of ``{"inputs": [...]}`` into a float32 batch or raises
:class:`InputError` (a status and a one-line message naming the field): 400 for JSON that is
malformed or nested more than :data:`MAX_DEPTH` levels, 422 for a missing or empty ``inputs``,
too many items, a ragged list, booleans, nulls, strings, NaN or infinities, the wrong shape or
values outside [0, 1]; a large body (above 1 MB) whose arrays do not nest deep enough for the
input shape is refused before it is parsed. It needs only json and numpy, so that
:class:`ParsePool` can run it in worker processes: ``json.loads`` holds the GIL for the whole
parse (150 ms for 13 MB, measured), so a thread pool would not keep a large body from stalling
every other request.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import IO, Any

import anyio
import anyio.to_thread
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


def _load(body: bytes, spec: InputSpec) -> Any:
    depth = nesting_depth(body)
    if depth > MAX_DEPTH:
        raise InputError(
            400, f"request body is nested {depth} levels deep; at most {MAX_DEPTH} are accepted"
        )
    needed = 2 + len(spec.input_shape)  # the object, the batch, each dimension
    if depth < needed and len(body) > _CHUNK:  # not worth parsing
        raise InputError(
            422,
            f"'inputs' must have shape (n, {', '.join(map(str, spec.input_shape))}): the body "
            f"nests only {depth} levels of arrays and objects, not {needed}",
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
    inputs = _items(_load(body, spec), spec)
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


class ParsePool:
    """Worker processes that run :func:`parse_inputs` on large bodies, off the event loop.

    At most ``queue`` bodies wait or are parsed at once, all keys together (503 beyond), and one
    per key (429 beyond), so that no key can hold the workers. A worker is a plain process
    (``python -m invguard.gateway.parsing``, at a lower CPU priority) that reads length-prefixed
    bodies on stdin and writes the batch's raw float32 values or the refusal on stdout: nothing
    is pickled, and nothing of the parent's main module runs in it. The workers start with the
    first large body (or :meth:`start`); call :meth:`close` when done.
    """

    def __init__(self, spec: InputSpec, *, workers: int, queue: int) -> None:
        self.spec = spec
        self.workers = workers
        self.queue = queue
        self._busy: set[str] = set()  # keys with a body in the pool (event loop only)
        self._idle: SimpleQueue[subprocess.Popen[bytes]] = SimpleQueue()
        self._started: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._threads = anyio.CapacityLimiter(queue)
        self._closed = False

    def _spawn(self) -> subprocess.Popen[bytes]:
        root = str(Path(__file__).resolve().parents[2])  # the folder holding invguard
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        shape = ",".join(map(str, self.spec.input_shape))
        cmd = [sys.executable, "-m", __name__, shape, str(self.spec.max_batch)]
        return subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": path},
            start_new_session=True,  # Ctrl-C is the server's; it stops the workers
        )

    def _take(self) -> subprocess.Popen[bytes]:
        """An idle worker (a new one while fewer than ``workers`` run); waits for one."""
        while True:
            with self._lock:
                if self._closed:
                    raise InputError(503, "the gateway is shutting down")
                if len(self._started) < self.workers and self._idle.empty():
                    self._started.append(self._spawn())
                    return self._started[-1]
            with contextlib.suppress(Empty):
                return self._idle.get(timeout=0.5)

    def _replace(self, worker: subprocess.Popen[bytes]) -> None:
        """Drop a worker that failed; the next body starts a new one."""
        with self._lock:
            if worker in self._started:
                self._started.remove(worker)
        worker.kill()
        worker.wait()

    def start(self) -> None:
        """Start the worker processes now rather than with the first large body."""
        for w in [self._take() for _ in range(self.workers)]:
            self._idle.put(w)

    def parse_blocking(self, body: bytes) -> NDArray[np.float32]:
        """:func:`parse_inputs` of ``body`` in a worker (blocking; for a thread)."""
        worker = self._take()
        try:
            assert worker.stdin is not None
            assert worker.stdout is not None
            worker.stdin.write(struct.pack(">Q", len(body)))
            worker.stdin.write(body)
            worker.stdin.flush()
            result = _read_result(worker.stdout)
        except (OSError, EOFError, struct.error):  # the worker died (killed for memory?)
            self._replace(worker)
            raise InputError(
                503, "the request body could not be parsed; retry after 1 s", 1
            ) from None
        self._idle.put(worker)
        if isinstance(result, InputError):
            raise result
        return result

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
            return await anyio.to_thread.run_sync(self.parse_blocking, body, limiter=self._threads)
        finally:
            self._busy.discard(key)

    def close(self) -> None:
        """Stop the worker processes (each ends at the end of its input)."""
        with self._lock:
            self._closed = True
            workers, self._started = self._started, []
        for w in workers:
            with contextlib.suppress(OSError):
                if w.stdin is not None:
                    w.stdin.close()
            try:
                w.wait(timeout=5)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
            if w.stdout is not None:
                w.stdout.close()


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise EOFError("the parsing worker closed its output")
    return data


def _read_result(stream: IO[bytes]) -> NDArray[np.float32] | InputError:
    """A worker's answer: the batch, or the refusal."""
    kind = _read_exact(stream, 1)
    if kind == b"E":
        status, length = struct.unpack(">HI", _read_exact(stream, 6))
        return InputError(status, _read_exact(stream, length).decode("utf-8"))
    (ndim,) = struct.unpack(">B", _read_exact(stream, 1))
    shape = struct.unpack(f">{ndim}Q", _read_exact(stream, 8 * ndim))
    data = _read_exact(stream, 4 * math.prod(shape))
    return np.frombuffer(data, dtype="<f4").astype(np.float32).reshape(shape)


def _answer(body: bytes, spec: InputSpec) -> bytes:
    """A worker's answer to one body (see :func:`_read_result`)."""
    try:
        x = parse_inputs(body, spec)
    except InputError as exc:
        status, message = exc.status, exc.message
    except MemoryError:
        status, message = 413, "request body is too large to parse"
    except Exception as exc:  # a body must never end the worker
        status, message = 400, f"request body could not be parsed ({type(exc).__name__})"
    else:
        head = struct.pack(f">cB{x.ndim}Q", b"K", x.ndim, *x.shape)
        return head + np.ascontiguousarray(x, dtype="<f4").tobytes()
    text = message.encode("utf-8")
    return struct.pack(">cHI", b"E", status, len(text)) + text


def worker_main(argv: list[str]) -> int:
    """``python -m invguard.gateway.parsing SHAPE MAX_BATCH``: answer bodies until EOF."""
    with contextlib.suppress(OSError):
        os.nice(5)  # the event loop's process goes first when CPUs are short
    spec = InputSpec(tuple(int(d) for d in argv[0].split(",")), int(argv[1]))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = stdin.read(8)
        if len(head) < 8:
            return 0
        (n,) = struct.unpack(">Q", head)
        stdout.write(_answer(stdin.read(n), spec))
        stdout.flush()


__all__ = [
    "MAX_DEPTH",
    "InputError",
    "InputSpec",
    "ParsePool",
    "nesting_depth",
    "parse_inputs",
    "worker_main",
]

if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
