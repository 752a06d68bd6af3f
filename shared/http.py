"""HTTP plumbing every part shares: strict query parameters, body limits, request metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Header, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic_core import to_json

from shared.errors import InvalidParam, problem_response
from shared.metrics import HTTP_LATENCY, HTTP_REQUESTS


class StrictRoute(APIRoute):
    """Refuses unknown query parameters with 400 instead of silently ignoring a typo'd filter."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        allowed = _query_parameter_names(self.dependant)

        async def strict_handler(request: Request) -> Response:
            unknown = sorted(set(request.query_params.keys()) - allowed)
            if unknown:
                return problem_response(
                    request,
                    status=400,
                    code="unknown_query_parameter",
                    title="Unknown query parameter",
                    detail=f"not understood here: {', '.join(unknown)}",
                    invalid_params=[InvalidParam(name=n, reason="unknown parameter") for n in unknown],
                )
            return await handler(request)

        return strict_handler


def _query_parameter_names(dependant: Dependant) -> set[str]:
    names: set[str] = set()
    stack = [dependant]
    while stack:
        current = stack.pop()
        for param in current.query_params:
            names.update((param.alias, param.name))
        stack.extend(current.dependencies)
    return names


class BodyLimitMiddleware:
    """Refuses bodies over a limit with 413 problem+json, by Content-Length or while streaming.

    ``limits`` maps a path prefix to its own limit (the longest matching prefix wins), so an
    upload route can take more than a JSON route.
    """

    def __init__(self, app: Any, *, default: int, limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.default = default
        self.limits = sorted((limits or {}).items(), key=lambda kv: -len(kv[0]))

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.limits:
            if path.startswith(prefix):
                return limit
        return self.default

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit or declared < 0:
                    await _too_large(scope, receive, send, limit)
                    return
        received = 0
        started = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge()
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _too_large(scope, receive, send, limit)


class _BodyTooLarge(Exception):
    pass


async def _too_large(scope: dict[str, Any], receive: Any, send: Any, limit: int) -> None:
    request = Request(scope, receive)
    response = problem_response(
        request,
        status=413,
        code="payload_too_large",
        title="Request body too large",
        detail=f"the limit here is {limit} bytes",
    )
    await response(scope, receive, send)


class MetricsMiddleware:
    def __init__(self, app: Any, *, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            HTTP_REQUESTS.labels(self.service, scope["method"], template, str(status)).inc()
            HTTP_LATENCY.labels(self.service, template).observe(time.perf_counter() - start)


# The header an update of a mutable resource must carry (see check_if_match).
IfMatch = Annotated[str | None, Header(alias="If-Match", max_length=100)]


def etag_for(version: int | str) -> str:
    return f'"{version}"'


def check_if_match(if_match: str | None, current: str) -> None:
    """``If-Match`` is required on updates of mutable resources; a stale one is 412."""
    from shared.errors import PreconditionFailed, PreconditionRequired

    if if_match is None:
        raise PreconditionRequired("send the ETag you read in If-Match")
    candidates = {v.strip() for v in if_match.split(",")}
    if "*" not in candidates and current not in candidates:
        raise PreconditionFailed(f"current version is {current}")


def raw_body_route(media_type: str, *roles: str) -> dict[str, Any]:
    """Route keywords for a raw file body (a PDF, an XML envelope): who may call (``allow``, or
    ``public`` with no roles) and the OpenAPI description of a body that is streamed, not parsed."""
    from shared.auth import allow, public

    kwargs = allow(*roles) if roles else public()
    kwargs["openapi_extra"]["requestBody"] = {
        "required": True,
        "content": {media_type: {"schema": {"type": "string", "format": "binary"}}},
    }
    return kwargs


def id_cursor(cursor: str | None) -> int:
    """The row id a keyset cursor of ours carries; anything else is a 400."""
    from shared.errors import BadRequest

    if cursor is None:
        return 0
    if not cursor.isdigit() or len(cursor) > 18:
        raise BadRequest("not a cursor this API gave out")
    return int(cursor)


def json_response(data: Any) -> Response:
    """A route's answer sent as its ``response_model`` would send it, without FastAPI validating
    it into that model first: for data the route shaped itself field by field (intake's dossier
    views) or a model it built (audit's entries), on the hot reads, where that second validation
    was a fifth of a page's CPU. The JSON is pydantic's own serializer's; the route's
    ``response_model`` still documents it (a test per caller holds the two together)."""
    return Response(content=to_json(data), media_type="application/json")
