"""Structured JSON logs that carry the request id, and the ASGI middleware that sets it.

The request id is accepted from ``X-Request-ID`` (when it looks sane) or made here, echoed
in the response, bound into every log line of the request, and carried into events as the
W3C ``traceparent`` so one id follows a citizen's request across parts.
"""

from __future__ import annotations

import logging
import os
import random
import re
import sys
from contextvars import ContextVar
from typing import Any

import structlog

_random_bits = random.Random().getrandbits
_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_traceparent: ContextVar[str | None] = ContextVar("traceparent", default=None)
_SANE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


def current_request_id() -> str | None:
    return _request_id.get()


def current_traceparent() -> str | None:
    return _traceparent.get()


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is when a line is logged, not to the one there was when
    logging was configured: loggers are cached on first use, and a test runner swaps (and closes)
    ``sys.stderr`` per test, so a bound stream would be written after it is closed."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _add_request_id(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """Every line logged inside a request (or an event handler continuing one) names its id: read
    from the request's context when a line is logged, not bound into structlog's context at each
    request (which costs every request, logged or not)."""
    request_id = _request_id.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    return event


def configure_logging(*, level: str = "INFO", json: bool = True) -> None:
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_request_id,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # JSON carries an exception as text in the line; the console renderer formats it itself
    if json:
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        processors.append(structlog.dev.ConsoleRenderer())
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(message)s")
    # uvicorn's own access log would duplicate ours without the request id
    logging.getLogger("uvicorn.access").disabled = True


class RequestIdMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): cheap on the hot path and safe with streaming bodies."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        parent = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
            elif name == b"traceparent":
                parent = value.decode("latin-1")
        # correlation ids, not secrets: a fast PRNG instead of a system call per request
        request_id = incoming if incoming and _SANE_ID.match(incoming) else f"{_random_bits(128):032x}"
        trace = _TRACEPARENT.match(parent) if parent else None
        trace_id = trace.group(1) if trace else f"{_random_bits(128):032x}"
        scope.setdefault("state", {})["request_id"] = request_id
        t1 = _request_id.set(request_id)
        t2 = _traceparent.set(f"00-{trace_id}-{_random_bits(64):016x}-01")
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", ()) if h[0].lower() != b"x-request-id"]
                headers.append(header)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _request_id.reset(t1)
            _traceparent.reset(t2)


def set_request_context(request_id: str | None, traceparent: str | None = None) -> None:
    """For work that is not an HTTP request (event handlers): continue the originating trace."""
    _request_id.set(request_id)
    _traceparent.set(traceparent)


os.environ.setdefault("PYTHONIOENCODING", "utf-8")
