"""Where the gateway's alerts go: the tamper-evident audit log (synchronously, before the response
that raised them), and optionally a webhook (in the background, with retries).

:class:`AuditWriter` owns one :class:`~invguard.audit.AuditLog` connection on a dedicated thread
(SQLite connections belong to the thread that made them); :meth:`AuditWriter.submit` returns a
future that completes once the records are committed, and records queued together are committed
in one transaction. :class:`WebhookWorker` posts alerts from a bounded queue on its own thread:
a slow or failing webhook never delays a prediction, and an alert it cannot queue is counted as
dropped (it is in the audit log all the same).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import httpx

from invguard.audit.log import AuditLog, Entry
from invguard.errors import InvGuardError
from invguard.targets.http import header_secrets, parse_retry_after, redact_url, scrub

logger = logging.getLogger("invguard.gateway")

ACTOR = "invguard-gateway"
Record = tuple[str, str, str, object]  # actor, action, subject, payload
_RETRY_STATUSES = frozenset({408, 425, 429}) | frozenset(range(500, 600))
_MAX_BACKOFF = 30.0


class AlertError(InvGuardError):
    """An alert could not be recorded in the audit log."""


class AuditWriter:
    """Appends records to the audit log at ``path`` on one dedicated thread.

    Opening the log happens in the constructor's thread handshake, so a bad path fails at once
    with :class:`~invguard.audit.AuditError`. Use :meth:`submit` (a future) or :meth:`append`
    (blocking); :meth:`call` runs any function with the open log on the writer thread.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._queue: queue.SimpleQueue[tuple[Any, Future[Any]] | None] = queue.SimpleQueue()
        ready: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="invguard-audit", daemon=True
        )
        self._closed = False
        self._thread.start()
        ready.result()  # re-raises the AuditError of a bad path

    def _run(self, ready: Future[None]) -> None:
        try:
            log = AuditLog(self.path)
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                batch = [item]
                stop = False
                while True:  # everything queued meanwhile goes into the same transaction
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    batch.append(more)
                self._handle(log, batch)
                if stop:
                    return
        finally:
            log.close()

    @staticmethod
    def _handle(log: AuditLog, batch: list[tuple[Any, Future[Any]]]) -> None:
        records = [(work, fut) for work, fut in batch if isinstance(work, list)]
        calls = [(work, fut) for work, fut in batch if not isinstance(work, list)]
        if records:
            flat = [r for work, _ in records for r in work]
            try:
                entries = log.append_many(flat)
            except BaseException as exc:
                for _, fut in records:
                    fut.set_exception(exc)
            else:
                at = 0
                for work, fut in records:
                    fut.set_result(entries[at : at + len(work)])
                    at += len(work)
        for fn, fut in calls:
            try:
                fut.set_result(fn(log))
            except BaseException as exc:
                fut.set_exception(exc)

    def submit(self, records: list[Record]) -> Future[list[Entry]]:
        """Queue ``records``; the future's result is their entries, once committed."""
        fut: Future[list[Entry]] = Future()
        if self._closed:
            fut.set_exception(AlertError(f"the audit writer for {self.path} is closed"))
            return fut
        self._queue.put((list(records), fut))
        return fut

    def append(self, actor: str, action: str, subject: str, payload: object) -> Entry:
        """Append one record and wait until it is committed."""
        return self.submit([(actor, action, subject, payload)]).result()[0]

    def call(self, fn: Callable[[AuditLog], Any]) -> Any:
        """Run ``fn(log)`` on the writer thread (e.g. to read entries) and return its result."""
        fut: Future[Any] = Future()
        if self._closed:
            raise AlertError(f"the audit writer for {self.path} is closed")
        self._queue.put((fn, fut))
        return fut.result()

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the thread and close the log."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)


class WebhookWorker:
    """Posts JSON alerts to ``url`` from a bounded queue, on its own thread, with retries.

    Network errors and HTTP 408/425/429/5xx are retried ``retries`` times with exponential
    backoff (``backoff * 2**attempt`` seconds, or the server's ``Retry-After``, at most 30 s);
    other answers are final. With ``secret`` each body is signed: ``X-InvGuard-Signature:
    sha256=<hex HMAC-SHA256 of the body>``. ``on_outcome`` is called with ``"delivered"``,
    ``"failed"`` or ``"dropped"`` (queue full, or still queued at close).
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        secret: str | None = None,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.5,
        queue_size: int = 1000,
        on_outcome: Callable[[str], None] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        self.endpoint = redact_url(url)
        self._headers = dict(headers or {})
        self._secrets = header_secrets(self._headers) + ([secret] if secret else [])
        self._secret = secret.encode("utf-8") if secret else None
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=queue_size)
        self._on_outcome = on_outcome or (lambda outcome: None)
        self._stop = threading.Event()
        self._client = httpx.Client(
            transport=transport if transport is not None else httpx.HTTPTransport(),
            headers={"Content-Type": "application/json", **self._headers},
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
        )
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="invguard-webhook", daemon=True)
        self._thread.start()

    def post(self, payload: Mapping[str, Any]) -> bool:
        """Queue an alert without waiting; False (and counted as dropped) when the queue is full."""
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        try:
            self._queue.put_nowait(body)
        except queue.Full:
            self._outcome("dropped")
            logger.warning(
                "webhook %s: queue full, alert dropped (it is in the audit log)", self.endpoint
            )
            return False
        return True

    def _outcome(self, outcome: str) -> None:
        if outcome == "delivered":
            self.delivered += 1
        elif outcome == "failed":
            self.failed += 1
        else:
            self.dropped += 1
        self._on_outcome(outcome)

    def _run(self) -> None:
        while True:
            body = self._queue.get()
            if body is None:
                return
            self._deliver(body)

    def _deliver(self, body: bytes) -> None:
        headers = {}
        if self._secret is not None:
            mac = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
            headers["X-InvGuard-Signature"] = f"sha256={mac}"
        problem = ""
        for attempt in range(self.retries + 1):
            wait = self.backoff * 2.0**attempt
            try:
                resp = self._client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {scrub(str(exc), self._secrets, 120)}"
            else:
                if 200 <= resp.status_code < 300:
                    self._outcome("delivered")
                    return
                problem = f"HTTP {resp.status_code}"
                if resp.status_code not in _RETRY_STATUSES:
                    break
                retry_after = parse_retry_after(resp.headers.get("retry-after"))
                if retry_after is not None:
                    wait = retry_after
            if attempt < self.retries and self._stop.wait(min(wait, _MAX_BACKOFF)):
                break  # closing: give up waiting
        self._outcome("failed")
        logger.warning(
            "webhook %s: alert not delivered (%s); it is in the audit log", self.endpoint, problem
        )

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued within ``timeout`` seconds, then stop; the rest is dropped."""
        deadline = time.monotonic() + timeout
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=max(0.01, timeout))
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self._stop.set()  # cut retries short, drop what is still queued
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    self._outcome("dropped")
            self._queue.put(None)
            self._thread.join(2.0)
        self._client.close()
