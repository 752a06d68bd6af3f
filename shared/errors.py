"""RFC 9457 problem details: one error class per business failure, mapped once at the boundary.

Every error leaving any part is ``application/problem+json`` with ``type``, ``title``,
``status``, ``detail``, ``instance``, a stable ``code``, ``invalid_params`` for validation, and
the request id. No stack trace, SQL or host name ever reaches a client.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import StatementError
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://lienthong.vn/problems/"
_FORWARDED_PREFIX = re.compile(r"^/api/[a-z]+$")

log = structlog.get_logger("errors")


class InvalidParam(BaseModel):
    name: str
    reason: str


class Problem(BaseModel):
    """The body of every error response."""

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    code: str
    request_id: str | None = None
    invalid_params: list[InvalidParam] | None = None
    extra: dict[str, Any] | None = Field(default=None, description="error-specific facts")


class ProblemError(Exception):
    """Base of all business errors; subclasses fix ``status``, ``code`` and ``title``."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        invalid_params: list[InvalidParam] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.invalid_params = invalid_params
        self.headers = headers
        self.extra = extra or None


class BadRequest(ProblemError):
    status, code, title = 400, "bad_request", "Bad request"


class Unauthorized(ProblemError):
    status, code, title = 401, "unauthorized", "Authentication required"


class Forbidden(ProblemError):
    status, code, title = 403, "forbidden", "Not allowed"


class NotFound(ProblemError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(ProblemError):
    status, code, title = 409, "conflict", "Conflict with the current state"


class PreconditionFailed(ProblemError):
    status, code, title = 412, "precondition_failed", "The resource changed since you read it"


class PreconditionRequired(ProblemError):
    status, code, title = 428, "precondition_required", "If-Match is required"


class PayloadTooLarge(ProblemError):
    status, code, title = 413, "payload_too_large", "Request body too large"


class UnsupportedMediaType(ProblemError):
    status, code, title = 415, "unsupported_media_type", "Unsupported content"


class Unprocessable(ProblemError):
    status, code, title = 422, "validation_failed", "The request is not valid"


class TooManyRequests(ProblemError):
    status, code, title = 429, "rate_limited", "Too many requests"


class ServiceUnavailable(ProblemError):
    status, code, title = 503, "unavailable", "Temporarily unavailable"


def problem_response(
    request: Request | None,
    *,
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    invalid_params: list[InvalidParam] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    request_id = None
    instance = None
    if request is not None:
        request_id = request.scope.get("state", {}).get("request_id")
        # behind the gateway the client called /api/<part>/…; say so, not the part's own path
        prefix = request.headers.get("x-forwarded-prefix", "")
        instance = (prefix if _FORWARDED_PREFIX.match(prefix) else "") + request.url.path
    body = Problem(
        type=TYPE_BASE + code,
        title=title,
        status=status,
        detail=detail,
        instance=instance,
        code=code,
        request_id=request_id,
        invalid_params=invalid_params,
        extra=extra,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


_HTTP_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Not allowed"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("payload_too_large", "Request body too large"),
    415: ("unsupported_media_type", "Unsupported content"),
    429: ("rate_limited", "Too many requests"),
}


def _loc_name(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


def error_response(request: Request | None, exc: ProblemError) -> JSONResponse:
    """The problem+json answer a raised ``ProblemError`` stands for (also where the framework's
    handlers do not reach, e.g. the gateway's edge)."""
    return problem_response(
        request,
        status=exc.status,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        invalid_params=exc.invalid_params,
        headers=exc.headers,
        extra=exc.extra,
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return problem_response(
                request, status=400, code="malformed_json", title="The body is not valid JSON"
            )
        params = [
            InvalidParam(name=_loc_name(e.get("loc", ())), reason=str(e.get("msg", "invalid"))[:300])
            for e in errors
        ]
        return problem_response(
            request,
            status=422,
            code="validation_failed",
            title="The request is not valid",
            detail="; ".join(f"{p.name}: {p.reason}" for p in params)[:1000],
            invalid_params=params,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, title = _HTTP_CODES.get(exc.status_code, ("error", "Error"))
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
        return problem_response(
            request, status=exc.status_code, code=code, title=title, detail=detail, headers=exc.headers
        )

    @app.exception_handler(StatementError)
    @app.exception_handler(OverflowError)
    async def _database_value(request: Request, exc: Exception) -> JSONResponse:
        # A number the client sent that the database cannot hold (an id of 10**30) is the
        # client's mistake, whichever route let it through: 422, not 500. SQLite's driver raises
        # a bare OverflowError while binding it; asyncpg a wrapped "out of range" DataError.
        if isinstance(exc, OverflowError) or _is_out_of_range(exc):  # type: ignore[arg-type]
            return problem_response(
                request,
                status=422,
                code="value_out_of_range",
                title="A value is out of range",
                detail="a number in the request is too large for this field",
            )
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", path=request.url.path)
        return problem_response(
            request, status=500, code="internal_error", title="Internal error",
            detail="The error was logged with this request id.",
        )


def _is_out_of_range(exc: StatementError) -> bool:
    original = getattr(exc, "orig", None)
    if isinstance(original, OverflowError):
        return True
    text = f"{type(original).__name__}: {original}".lower()
    # asyncpg: DataError "value out of int64 range" / NumericValueOutOfRangeError
    return "out of range" in text or "numericvalueoutofrange" in text


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting problem+json bodies."""
    return {
        s: {"model": Problem, "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        for s in statuses
    }
