"""Running the app with uvicorn, with limits on connections that hold a socket.

uvicorn closes idle keep-alive connections (``serve.keep_alive_s``) and caps a request
head's size (h11's incomplete-event limit) but has no deadline for the head itself: a
client that opens a connection and sends nothing, or half a header, holds it forever.
:class:`HeadDeadlineProtocol` closes such a connection after ``serve.header_timeout_s``;
bodies have their own deadline in the app (serve.request.read_body: 408).
``serve.max_connections`` caps open connections (uvicorn answers 503 beyond it).
"""
from __future__ import annotations

import asyncio
import logging

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from labkit.config import LabConfig, ServeConfig

from .app import create_app

log = logging.getLogger("serve")

#: the largest request head accepted (request line and headers), bytes
MAX_HEAD_BYTES = 16 * 1024


class HeadDeadlineProtocol(H11Protocol):
    """h11 protocol that closes a connection whose request head is not complete within
    ``head_timeout`` seconds of the connection opening or its last response ending."""

    head_timeout: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_expired)

    def _disarm(self) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not None and self.cycle is not before:  # a head arrived complete
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            log.info("closing a connection from %s: no complete request head within %g s",
                     "%s:%d" % self.client if self.client else "?", self.head_timeout)
            self.transport.close()


def protocol_for(scfg: ServeConfig) -> type[HeadDeadlineProtocol]:
    return type("HeadDeadline", (HeadDeadlineProtocol,), {"head_timeout": scfg.header_timeout_s})


def serve(cfg: LabConfig) -> None:
    """Run the endpoint with uvicorn on ``cfg.serve.host:port`` (127.0.0.1:8880)."""
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    scfg = cfg.serve
    app = create_app(cfg)
    log.info("listening on http://%s:%d", scfg.host, scfg.port)
    uvicorn.run(app, host=scfg.host, port=scfg.port, log_level="info",
                http=protocol_for(scfg), timeout_keep_alive=scfg.keep_alive_s,
                limit_concurrency=scfg.max_connections,
                h11_max_incomplete_event_size=MAX_HEAD_BYTES,
                timeout_graceful_shutdown=3)
