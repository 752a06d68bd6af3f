"""The gateway's edge: everything a request meets before a part sees it, as one ASGI layer.

For ``/api/…``: the route template from the route table; the bearer token verified early (401
for garbage, forged or expired tokens, 403 for a role the route does not admit); rate limits
(429); the route's body limit (413); the request forwarded (or, for ``/api/auth``, handed to
the gateway's own routes); then an access record. Every response gets the security headers.
Pure ASGI, with no framework objects on the hot path.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from starlette.requests import Request

from gateway.access import AccessNotRecorded
from gateway.config import CONSOLE, SERVICES, GatewaySettings, RateRule
from gateway.openapi import RouteInfo
from gateway.proxy import ClientGone, forward
from gateway.ratelimit import Decision, Limiter, tightest
from gateway.state import GatewayState
from shared.auth import Caller, TokenVerifier
from shared.errors import ProblemError, Unauthorized, error_response, problem_response
from shared.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = structlog.get_logger("edge")

OWN_PREFIX = "auth"
# Paths outside /api the gateway answers itself; every other one is the console's page.
OWN_PATHS = frozenset({"/docs", "/openapi.json", "/healthz", "/readyz", "/metrics"})
OWN_PATH_PREFIXES = ("/docs/",)
# the gateway's own readiness and metrics: probes and scrapers from the operator networks, or
# an admin or auditor (the parts' are behind /api/<part>/…, whose route table says the same)
OPERATOR_PATHS = frozenset({"/readyz", "/metrics"})
OPERATORS = frozenset({"admin", "auditor"})
METRICS_KEPT = 4096
CSP_API = b"default-src 'none'; frame-ancestors 'none'"
# Swagger UI's page loads its (local) script and styles and runs an inline bootstrap.
CSP_DOCS = (
    b"default-src 'none'; script-src 'self' 'unsafe-inline'; "
    b"style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    b"connect-src 'self'; frame-ancestors 'none'"
)


def security_headers(settings: GatewaySettings) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    common = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"cross-origin-opener-policy", b"same-origin"),
    ]
    if settings.public_base_url.startswith("https://"):
        common.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
    return common + [(b"content-security-policy", CSP_API)], common + [(b"content-security-policy", CSP_DOCS)]


def page_headers(settings: GatewaySettings) -> list[tuple[bytes, bytes]]:
    """Around the console's pages: the common headers but those the console sends itself (its
    own CSP: two policies would both apply)."""
    api, _ = security_headers(settings)
    own = {b"content-security-policy", b"x-content-type-options", b"referrer-policy"}
    return [h for h in api if h[0] not in own]


class Edge:
    def __init__(self, app: Any, *, settings: GatewaySettings) -> None:
        self.app = app
        self.settings = settings
        self.api_headers, self.docs_headers = security_headers(settings)
        self.trusted = [ipaddress.ip_network(c, strict=False) for c in settings.trusted_proxies]
        self.operator_networks = [ipaddress.ip_network(c, strict=False) for c in settings.operator_networks]
        self.parts = frozenset(SERVICES) | {OWN_PREFIX}
        self.page_headers = page_headers(settings)
        self.console = CONSOLE in settings.upstreams
        # each (method, template, status)'s counter and histogram, looked up once: the metrics'
        # label look-up costs a lock and a tuple per call
        self._metrics: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if not path.startswith("/api/"):
            if path in OWN_PATHS or path.startswith(OWN_PATH_PREFIXES) or not self.console:
                extra = self.docs_headers if path == "/docs" else self.api_headers
                if path in OPERATOR_PATHS and not await self._operator(scope, receive, _adding(send, extra)):
                    return
                await self.app(scope, receive, _adding(send, extra))
            else:
                await self._page(scope, receive, send, path)
            return
        await self._api(scope, receive, send, path)

    # --- the console's pages ----------------------------------------------------------------

    async def _page(self, scope: dict[str, Any], receive: Any, send: Any, path: str) -> None:
        """A web page: to the console as it is. The console checks its own sessions; the edge
        adds the common headers, counts it and bounds the body."""
        started = time.perf_counter()
        runtime = scope["app"].state.runtime
        status = 500
        started_response = False
        send_out = _adding(send, self.page_headers)

        async def counting(message: dict[str, Any]) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status, started_response = message["status"], True
            await send_out(message)

        try:
            _check_declared_length(scope, self.settings.max_upload_bytes)
            await forward(
                GatewayState.of(runtime).upstreams,
                CONSOLE,
                scope,
                receive,
                counting,
                body_limit=self.settings.max_upload_bytes,
                client_ip=self._client_ip(scope),
                strip_prefix=False,
            )
        except ClientGone:
            status = 499
        except ProblemError as exc:
            response = error_response(Request(scope, receive), exc)
            await response(scope, receive, counting)
        except Exception:
            log.exception("edge_page_failed", path=path)
            if started_response:
                raise
            await self._problem(
                scope, receive, counting, 500, "internal_error", "Internal error", "The error was logged."
            )
        finally:
            self._count(scope["method"], "/*", status, time.perf_counter() - started)

    # --- /api/… ---------------------------------------------------------------------------

    async def _api(self, scope: dict[str, Any], receive: Any, send: Any, path: str) -> None:
        started = time.perf_counter()
        runtime = scope["app"].state.runtime
        state = GatewayState.of(runtime)
        part = path[5:].split("/", 1)[0]
        method: str = scope["method"]
        client_ip = self._client_ip(scope)
        caller: Caller | None = None
        route: RouteInfo | None = None
        status = 500
        extra_headers = list(self.api_headers)
        started_response = False
        # the response's start, held back until its body is complete or streams: a 503 can
        # still take its place while nothing has been sent
        held_start: dict[str, Any] | None = None
        held_chunk: dict[str, Any] | None = None  # a streamed answer's latest piece
        recorded = False
        elapsed = 0.0

        def access_record() -> Any:
            nonlocal recorded, elapsed
            recorded = True
            elapsed = time.perf_counter() - started
            return state.access.record(
                actor=caller.sub if caller else None,
                roles=caller.roles if caller else [],
                agency=caller.agency if caller else None,
                client_ip=client_ip,
                method=method,
                route=_template(part, route, self.parts),
                status=status,
                duration_ms=elapsed * 1000,
                request_id=scope.get("state", {}).get("request_id"),
            )

        async def send_out(message: dict[str, Any]) -> None:
            """The response goes out one piece behind, and its last piece only once the access
            record is committed: a client never holds a whole answer that has no record (with a
            Content-Length, the bytes held back are what keeps it from being whole)."""
            nonlocal status, started_response, held_start, held_chunk
            if message["type"] == "http.response.start":
                status, started_response = message["status"], True
                message["headers"] = list(message.get("headers", ())) + extra_headers
                held_start = message
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            if message.get("more_body", False):
                if not message.get("body"):
                    return  # nothing to hold back
                if held_start is not None:
                    await send(held_start)
                    held_start = None
                if held_chunk is not None:
                    await send(held_chunk)
                held_chunk = message
                return
            try:
                await access_record()
            except AccessNotRecorded:
                # handled here, not raised through the proxy or the framework (whose error
                # layers would log it as a crash)
                status = 503
                if held_start is not None:
                    held_start = None
                    await self._unrecorded(scope, receive, send)
                else:
                    # streamed: the app ends without the last pieces and the server cuts the
                    # connection, so the client is left with an answer it knows is incomplete
                    log.warning("access_record_not_written_stream_cut", method=method, path=path)
                return
            for piece in (held_start, held_chunk):
                if piece is not None:
                    await send(piece)
            held_start = held_chunk = None
            await send(message)

        try:
            if part not in self.parts:
                raise _NoSuchRoute()
            api = state.api
            route = api.routes.match(part, method, path)
            if route is None and part != OWN_PREFIX:
                # not in the route table: the part answers 404/405 itself, or it has new routes
                # the gateway has not read yet
                api.stale(part)
            caller, token_error = await self._authenticate(scope, runtime.verifier)
            decision = await self._limit(state.limiter, caller, client_ip, method, route)
            if decision is not None:
                extra_headers += decision.headers()
                if not decision.allowed:
                    raise _RateLimited(decision)
            if token_error is not None:
                raise token_error
            if route is not None and not route.public:
                if caller is None:
                    raise Unauthorized("a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
                if not (caller.roles & route.roles or "service" in caller.roles):
                    raise _Forbidden(route)
            limit = route.body_limit if route else self._default_limit(part)
            _check_declared_length(scope, limit)
            if part == OWN_PREFIX:
                await self.app(scope, receive, send_out)
            else:
                await forward(state.upstreams, part, scope, receive, send_out, body_limit=limit, client_ip=client_ip)
        except ClientGone:
            status = 499  # nginx's "client closed request": the caller left before an answer
        except _NoSuchRoute:
            await self._problem(scope, receive, send_out, 404, "not_found", "Not found", f"no route {method} {path}")
        except _RateLimited as exc:
            await self._problem(
                scope,
                receive,
                send_out,
                429,
                "rate_limited",
                "Too many requests",
                f"try again in {exc.decision.retry_after} s",
            )
        except _Forbidden as exc:
            await self._problem(
                scope,
                receive,
                send_out,
                403,
                "forbidden",
                "Not allowed",
                f"this needs one of the roles: {', '.join(sorted(exc.route.roles))}",
            )
        except ProblemError as exc:
            response = error_response(Request(scope, receive), exc)
            await response(scope, receive, send_out)
        except Exception:
            # the edge sits outside the framework's error layer: a fault of ours is a 500
            # problem (logged with the request id), never a stack trace to the caller
            log.exception("edge_failed", method=method, path=path)
            if started_response and held_start is None:  # a part of the answer is out
                raise
            detail = "The error was logged with this request id."
            await self._problem(scope, receive, send_out, 500, "internal_error", "Internal error", detail)
        finally:
            if not recorded:
                # no complete answer went out (the client left, or a fault broke it off): the
                # record is still written, but nobody waits for it
                access_record()
            if part != OWN_PREFIX:  # the gateway's own routes are counted by its metrics middleware
                self._count(method, _template(part, route, self.parts), status, elapsed)

    def _count(self, method: str, template: str, status: int, elapsed: float) -> None:
        key = (method, template, status)
        metrics = self._metrics.get(key)
        if metrics is None:
            if len(self._metrics) >= METRICS_KEPT:  # methods are the caller's to make up
                self._metrics.clear()
            metrics = self._metrics[key] = (
                HTTP_REQUESTS.labels("gateway", method, template, str(status)),
                HTTP_LATENCY.labels("gateway", template),
            )
        metrics[0].inc()
        metrics[1].observe(elapsed)

    async def _authenticate(
        self, scope: dict[str, Any], verifier: TokenVerifier
    ) -> tuple[Caller | None, Unauthorized | None]:
        """The caller of a bearer token, or the reason it is refused (reported after the rate
        limit, so guessing tokens is rate-limited like any anonymous call)."""
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        if authorization is None:
            return None, None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None, None  # e.g. Basic client authentication at the token endpoint
        token = token.strip()
        if not token:
            return None, Unauthorized("empty bearer token", headers={"WWW-Authenticate": "Bearer"})
        try:
            caller = await verifier.verify(token)  # a hot caller's token is a cache hit there
        except Unauthorized as exc:
            exc.headers = {**(exc.headers or {}), "WWW-Authenticate": 'Bearer error="invalid_token"'}
            return None, exc
        scope.setdefault("state", {})["caller"] = caller
        return caller, None

    async def _limit(
        self, limiter: Limiter, caller: Caller | None, client_ip: str | None, method: str, route: RouteInfo | None
    ) -> Decision | None:
        settings = self.settings
        client = caller.sub if caller else f"ip:{client_ip}"
        checks: list[tuple[str, RateRule]] = [
            (f"c:{client}", settings.rate_client) if caller else (f"p:{client}", settings.rate_public)
        ]
        if route is not None and settings.rate_routes:
            rule = settings.rate_routes.get(f"{method} {route.template}")
            if rule is not None:
                checks.append((f"r:{client}|{method} {route.template}", rule))
        try:
            decisions = await limiter.take(checks)
        except Exception as exc:  # a store that is away must not take the API down with it
            log.warning("rate_limit_store_failed", error=repr(exc))
            return None
        return tightest(decisions)

    def _client_ip(self, scope: dict[str, Any]) -> str | None:
        peer = scope.get("client")
        ip = peer[0] if peer else None
        if not self.trusted or ip is None:
            return ip
        try:
            if not any(ipaddress.ip_address(ip) in net for net in self.trusted):
                return ip
        except ValueError:
            return ip
        # behind our own load balancer: the last address it did not add itself
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                hops = [h.strip() for h in value.decode("latin-1").split(",") if h.strip()]
                for hop in reversed(hops):
                    try:
                        if not any(ipaddress.ip_address(hop) in net for net in self.trusted):
                            scope.setdefault("state", {})["forwarded_chain"] = True
                            return hop
                    except ValueError:
                        return ip
        return ip

    async def _operator(self, scope: dict[str, Any], receive: Any, send: Any) -> bool:
        """May this caller read the gateway's readiness and metrics? Callers from the operator
        networks (probes, scrapers) may; anyone else needs an admin or auditor token. Answers
        the refusal itself."""
        client_ip = self._client_ip(scope)
        try:
            if client_ip is not None and any(ipaddress.ip_address(client_ip) in n for n in self.operator_networks):
                return True
        except ValueError:
            pass
        caller, error = await self._authenticate(scope, scope["app"].state.runtime.verifier)
        if error is None and caller is None:
            error = Unauthorized("a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
        if error is not None:
            response = error_response(Request(scope, receive), error)
            await response(scope, receive, send)
            return False
        assert caller is not None
        if caller.roles & (OPERATORS | {"service"}):
            return True
        detail = f"this needs one of the roles: {', '.join(sorted(OPERATORS))}"
        await self._problem(scope, receive, send, 403, "forbidden", "Not allowed", detail)
        return False

    def _default_limit(self, part: str) -> int:
        return self.settings.max_json_body_bytes if part == OWN_PREFIX else self.settings.max_upload_bytes

    async def _unrecorded(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The answer instead of one whose access record could not be written: nothing of it was
        sent, so the client hears to try again (a request that changed something upstream is
        safe to repeat with its Idempotency-Key)."""
        problem = _NotRecorded(
            "the gateway records every answer before giving it, and its database is not reachable",
            headers={"Retry-After": "1"},
        )
        response = error_response(Request(scope, receive), problem)
        await response(scope, receive, _adding(send, self.api_headers))

    async def _problem(
        self, scope: dict[str, Any], receive: Any, send: Any, status: int, code: str, title: str, detail: str
    ) -> None:
        response = problem_response(Request(scope, receive), status=status, code=code, title=title, detail=detail)
        await response(scope, receive, send)


class _NoSuchRoute(Exception):
    pass


class _RateLimited(Exception):
    def __init__(self, decision: Decision) -> None:
        self.decision = decision


class _Forbidden(Exception):
    def __init__(self, route: RouteInfo) -> None:
        self.route = route


class _LengthError(ProblemError):
    status, code, title = 400, "bad_content_length", "Content-Length is not a number"


class _NotRecorded(ProblemError):
    status, code, title = 503, "access_not_recorded", "The request could not be recorded; try again shortly"


class _TooLarge(ProblemError):
    status, code, title = 413, "payload_too_large", "Request body too large"


def _check_declared_length(scope: dict[str, Any], limit: int) -> None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            if not value.isdigit() or len(value) > 15:
                raise _LengthError()
            if int(value) > limit:
                raise _TooLarge(f"the limit here is {limit} bytes")


def _template(part: str, route: RouteInfo | None, parts: frozenset[str]) -> str:
    return route.template if route else f"/api/{part}/*" if part in parts else "/api/*"


def _adding(send: Any, extra: list[tuple[bytes, bytes]]) -> Callable[[dict[str, Any]], Awaitable[None]]:
    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = list(message.get("headers", ())) + extra
        await send(message)

    return wrapped
