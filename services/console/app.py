"""Console: the suite in a browser — pages for citizens, desks, specialists, leaders and clerks.

Rendered on the server (Jinja2, plain forms, no script needed); every fact comes from the
gateway's public API called with the user's own token, so the console holds nothing but sessions.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.console import admin, audit, dashboard, endpoints, oidc, work
from services.console.api import Api, ApiError
from services.console.config import ConsoleSettings, get_settings
from services.console.i18n import LOCALES, N_, Formats, catalogue
from services.console.models import Base
from services.console.state import ConsoleState
from services.console.web import (
    CSP,
    LANG_COOKIE,
    CsrfRefused,
    LoginRequired,
    NotYours,
    environment,
    sweep_sessions,
)
from shared.app import ServiceDefinition, ServiceRuntime, create_service_app
from shared.errors import ProblemError

MIGRATIONS = Path(__file__).parent / "migrations"
STATIC = Path(__file__).parent / "static"
SWEEP_SECONDS = 300.0
log = structlog.get_logger("console")


async def on_start(runtime: ServiceRuntime) -> ConsoleState:
    settings: ConsoleSettings = runtime.settings  # type: ignore[assignment]
    catalogue()  # a broken catalogue stops the start, not the first page
    return ConsoleState(api=Api(settings.api_base, timeout=settings.api_timeout_seconds))


async def on_stop(runtime: ServiceRuntime) -> None:
    await ConsoleState.of(runtime).api.close()


async def sweep(runtime: ServiceRuntime) -> None:
    """Background job: sessions idle past the limit are deleted (a request finds them dead anyway)."""
    while True:
        await sweep_sessions(runtime)
        await asyncio.sleep(SWEEP_SECONDS)


def definition(settings: ConsoleSettings | None = None) -> ServiceDefinition:
    settings = settings or get_settings()
    return ServiceDefinition(
        name="console",
        title="lienthong console",
        description="Web pages for the desk, processing, leaders, clerks and citizens, over the public API.",
        settings=settings,
        metadata=Base.metadata,
        migrations=MIGRATIONS,
        routers=[endpoints.router, oidc.router, work.router, dashboard.router, audit.router, admin.router],
        on_start=on_start,
        on_stop=on_stop,
        background=[sweep],
        # scans come through the console's forms: a dossier's files together
        max_body_bytes=1 * 1024 * 1024,
        body_limits={"/mot-cua/tiep-nhan": 200 * 1024 * 1024, "/xu-ly/ho-so-cong-viec/": 25 * 1024 * 1024},
    )


def _error_page(request: Request, status: int, title: str, detail: str = "") -> Response:
    settings: ConsoleSettings = request.app.state.runtime.settings
    locale = request.cookies.get(LANG_COOKIE) or settings.default_locale
    fmt = Formats(locale if locale in LOCALES else settings.default_locale, settings.timezone)
    page = environment.get_template("error.html").render(
        _=fmt._,
        fmt=fmt,
        user=None,
        csrf="",
        csrf_field="csrf_token",
        locale=fmt.locale,
        here="/",
        notice=None,
        status=status,
        title=fmt._(title),
        detail=detail,
        request_id=getattr(request.state, "request_id", "") or request.headers.get("x-request-id", ""),
    )
    return HTMLResponse(page, status_code=status, headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store"})


def install_html_errors(app: FastAPI) -> None:
    """Every error a person meets is a page in their language; never a stack trace."""

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        from urllib.parse import quote

        return Response(status_code=303, headers={"Location": "/dang-nhap?next=" + quote(exc.next_url, safe="")})

    @app.exception_handler(NotYours)
    async def _not_yours(request: Request, exc: NotYours) -> Response:
        return _error_page(request, 403, N_("This page is for another role."))

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, exc: CsrfRefused) -> Response:
        return _error_page(
            request,
            403,
            N_("The form had expired or did not come from this site. Go back, reload the page and try again."),
        )

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> Response:
        if exc.status == 401:
            return Response(status_code=303, headers={"Location": "/dang-nhap?next=" + _quoted_here(request)})
        if exc.status in (403, 404):
            title = N_("Not found.") if exc.status == 404 else N_("You may not see this.")
            return _error_page(request, exc.status, title)
        if exc.is_client_error:
            return _error_page(request, exc.status, N_("The request was refused."), exc.message())
        log.warning("api_failed", status=exc.status, code=exc.code, path=request.url.path)
        return _error_page(
            request, 502 if exc.status >= 500 else exc.status, N_("The system is not answering; try again shortly.")
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        titles = {404: N_("Not found."), 405: N_("Not found."), 413: N_("The files are too large.")}
        return _error_page(request, exc.status_code, titles.get(exc.status_code, N_("The request was refused.")))

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> Response:
        if exc.status >= 500:
            return _error_page(request, exc.status, N_("The system is not answering; try again shortly."))
        titles = {404: N_("Not found."), 413: N_("The files are too large.")}
        return _error_page(request, exc.status, titles.get(exc.status, N_("The request was refused.")))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return _error_page(request, 400, N_("The address or the form is not valid."))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> Response:
        log.exception("console_page_failed", path=request.url.path)
        return _error_page(request, 500, N_("Something went wrong on our side; it was logged."))


def _quoted_here(request: Request) -> str:
    from urllib.parse import quote

    here = request.url.path + ("?" + request.url.query if request.url.query else "")
    return quote(here if request.method == "GET" else "/", safe="")


def create_app(settings: ConsoleSettings | None = None, **kwargs: Any) -> FastAPI:
    app = create_service_app(definition(settings), **kwargs)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    install_html_errors(app)
    return app
