"""Connection limits for uvicorn's h11 server: a header timeout and a cap on open connections.

uvicorn (0.30 to 0.54 at least) has neither: a connection that never completes its request
headers is held for ever (slowloris), and its ``limit_concurrency`` counts idle connections too,
so idle connections beyond it make uvicorn answer 503 to every client. :func:`guarded_h11`
makes an :class:`~uvicorn.protocols.http.h11_impl.H11Protocol` that closes a connection whose
request headers take more than ``header_timeout`` seconds (from its opening, or from the end of
its previous response, however slowly the bytes come), and, above ``max_connections`` open
connections, closes the connections idle longest (waiting for a request's headers), or the new
one when none is idle. A connection with a request in progress is never closed for the cap.
When a response is sent before its request's body was read (413, 429 ...), uvicorn reads and
drops the rest of the body, however large, through h11; this protocol drops at most
:data:`DRAIN_BYTES` of it and then closes the connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from invguard.errors import MissingDependencyError

logger = logging.getLogger("invguard.gateway")

DRAIN_BYTES = 1 << 20
"""The most of an unread request body read (and dropped) after its response."""


def guarded_h11(header_timeout: float, max_connections: int) -> type[Any]:
    """An h11 protocol class for ``uvicorn.Config(http=...)`` with these limits."""
    try:
        import h11
        from uvicorn.protocols.http.h11_impl import H11Protocol
    except ImportError as exc:  # pragma: no cover
        raise MissingDependencyError("uvicorn", "serve") from exc

    class GuardedH11Protocol(H11Protocol):
        """uvicorn's h11 protocol with a header timeout and a connection cap."""

        _header_timer: asyncio.TimerHandle | None = None
        idle_since: float | None = None  # waiting for a request's headers since (monotonic)
        drained = 0  # bytes of an answered request's body read since its response

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._await_headers()
            self._cap()

        def data_received(self, data: bytes) -> None:
            cycle = self.cycle
            if cycle is not None and cycle.response_complete and self._draining(len(data)):
                return
            super().data_received(data)
            if self.cycle is not cycle:  # a request's headers are in
                self._headers_in()

        def on_response_complete(self) -> None:
            cycle = self.cycle
            super().on_response_complete()
            if self.cycle is not cycle:  # a pipelined request, already parsed
                self._headers_in()
            elif not self.transport.is_closing():
                self._await_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            self._headers_in()
            super().connection_lost(exc)

        def _draining(self, size: int) -> bool:
            """Whether the body of an answered request is still coming: its first
            ``DRAIN_BYTES`` go to h11 (and are dropped), then the connection is closed."""
            if self.conn.their_state is not h11.SEND_BODY:
                return False
            self.drained += size
            if self.drained > DRAIN_BYTES:
                logger.debug("closing a connection: a refused request's body goes on")
                self.transport.close()
                return True
            return False

        def _await_headers(self) -> None:
            self.idle_since = time.monotonic()
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(header_timeout, self._too_slow)

        def _headers_in(self) -> None:
            self.idle_since = None
            self.drained = 0
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _too_slow(self) -> None:
            self._header_timer = None
            if self.idle_since is not None and not self.transport.is_closing():
                logger.debug("closing a connection: no request headers in %g s", header_timeout)
                self.transport.close()

        def _cap(self) -> None:
            """Close the longest-idle connections above ``max_connections`` (or this one)."""
            open_: list[Any] = [c for c in self.connections if not _closing(c)]
            excess = len(open_) - max_connections
            if excess <= 0:
                return
            idle = [
                c for c in open_ if c is not self and getattr(c, "idle_since", None) is not None
            ]
            idle.sort(key=lambda c: float(c.idle_since))
            for c in idle[:excess]:
                c.transport.close()
            if len(idle) < excess:
                self.transport.close()
            logger.debug("%d open connections: closed %d idle ones", len(open_), excess)

    return GuardedH11Protocol


def _closing(protocol: Any) -> bool:
    transport = getattr(protocol, "transport", None)
    return transport is None or bool(transport.is_closing())


__all__ = ["guarded_h11"]
