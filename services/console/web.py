"""What every console page shares: the session, CSRF, the language, rendering, redirects.

Sessions: the cookie holds 32 random bytes; the table holds their SHA-256. A log-in always makes
a new id (no fixation), log-out deletes the row, a session idle for ``session_idle_minutes`` or
whose token expired is gone. CSRF: every form carries a token — the session's own once logged
in, before that a double-submit cookie — and every POST is checked before anything else.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import delete, select

from services.console.api import CLIENT_IP, Api, ApiError
from services.console.config import ConsoleSettings
from services.console.i18n import LOCALES, N_, Formats
from services.console.models import ConsoleSession
from services.console.state import ConsoleState
from shared import clock
from shared.db import session_scope

TEMPLATES = Path(__file__).parent / "templates"
CSRF_COOKIE = "lt_csrf"
LANG_COOKIE = "lt_lang"
CSRF_FIELD = "csrf_token"
# what the last action did, shown once on the next page (a cookie: a notice in the URL would let
# anyone put their own words on the site's pages)
NOTICE_COOKIE = "lt_notice"
# the last-seen time is written at most this often (a page view is not worth a write each)
TOUCH_SECONDS = 60.0
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=jinja2.select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)

# the API's field names as the console's forms label them
FIELD_LABELS = {
    "full_name": N_("Full name"),
    "id_number": N_("ID number"),
    "phone": N_("Phone"),
    "email": N_("E-mail"),
    "address": N_("Address"),
    "components": N_("Components"),
    "reasons": N_("Reasons, one per line"),
    "missing_items": N_("Everything that is missing, one per line"),
    "amount_vnd": N_("Amount (VND)"),
    "summary": N_("Result"),
    "to_whom": N_("Hand over to"),
    "allotted_hours": N_("Working hours allotted to this step"),
    "subject": N_("What it is about"),
    "note": N_("Note"),
    "username": N_("User name"),
    "password": N_("Password"),
    "roles": N_("Roles"),
    "agency": N_("Agency"),
    "clearance": N_("Clearance"),
    "effective_from": N_("In force from"),
    "name": N_("Procedure"),
    "sector": N_("Sector"),
    "receiving_agencies": N_("Receiving agencies (codes, comma-separated)"),
    "deciding_agency": N_("Deciding agency (code)"),
    "processing_hours": N_("Processing time (working hours)"),
    "cutoff": N_("Cut-off time (HH:MM)"),
    "fee_vnd": N_("Fee (VND)"),
    "online_level": N_("Online level"),
    "copies": N_("Number of copies"),
}

ROLE_HOMES = {
    "desk_officer": "/mot-cua",
    "specialist": "/xu-ly",
    "leader": "/ky-duyet",
    "clerk": "/van-thu",
    "admin": "/tong-hop",
    "auditor": "/kiem-toan",
}


@dataclass
class User:
    sub: str
    name: str
    roles: list[str]
    agency: str | None
    token: str
    csrf: str

    def has(self, *roles: str) -> bool:
        return bool(set(self.roles) & set(roles))

    @property
    def home(self) -> str:
        for role in self.roles:
            if role in ROLE_HOMES:
                return ROLE_HOMES[role]
        return "/"


@dataclass
class Visit:
    """One request as the console sees it."""

    request: Request
    settings: ConsoleSettings
    api: Api
    fmt: Formats
    user: User | None
    anonymous_csrf: str
    set_cookies: list[tuple[str, str, int | None]] = field(default_factory=list)
    notice: str | None = None

    @property
    def _(self) -> Any:
        return self.fmt._

    def problem(self, exc: ApiError) -> str:
        """An API refusal in words, the wrong fields named as the form names them."""
        return exc.message(lambda name: self.fmt._(FIELD_LABELS[name]) if name in FIELD_LABELS else name)

    @property
    def csrf(self) -> str:
        return self.user.csrf if self.user else self.anonymous_csrf

    @property
    def client_ip(self) -> str | None:
        """The browser's address: the gateway in front of the console names it last."""
        forwarded = self.request.headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",")[-1].strip() or None
        return self.request.client.host if self.request.client else None

    def render(self, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        page = environment.get_template(template).render(
            _=self.fmt._,
            fmt=self.fmt,
            user=self.user,
            csrf_field=CSRF_FIELD,
            csrf=self.csrf,
            locale=self.fmt.locale,
            here=_here(self.request),
            notice=self.notice,
            oidc=bool(self.settings.oidc_issuer),
            max_upload_mb=self.settings.max_upload_mb,
            **context,
        )
        return self.finish(HTMLResponse(page, status_code=status))

    def redirect(self, url: str, *, notice: str | None = None) -> Response:
        if notice:
            self.set_cookies.append((NOTICE_COOKIE, quote(notice), 60))
        return self.finish(RedirectResponse(url, status_code=303))

    def finish(self, response: Response) -> Response:
        secure = self.settings.secure_cookies
        for name, value, max_age in self.set_cookies:
            if value:
                response.set_cookie(
                    name, value, max_age=max_age, httponly=True, samesite="lax", secure=secure, path="/"
                )
            else:
                response.delete_cookie(name, path="/", httponly=True, samesite="lax", secure=secure)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["Cache-Control"] = "no-store"
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response


def _here(request: Request) -> str:
    path = request.url.path
    return path + ("?" + request.url.query if request.url.query else "")


def hash_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def safe_next(target: str | None) -> str:
    """Only a path on this site: ``//evil``, ``/\\evil``, schemes and hosts fall back to ``/``."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(c in target for c in "\r\n\t\\"):
        return "/"
    return target


async def visit(request: Request) -> Visit:
    """FastAPI dependency: who is here, in which language, with which CSRF token."""
    runtime = request.app.state.runtime
    settings: ConsoleSettings = runtime.settings  # type: ignore[assignment]
    locale = request.cookies.get(LANG_COOKIE) or settings.default_locale
    if locale not in LOCALES:
        locale = settings.default_locale
    fmt = Formats(locale, settings.timezone)
    set_cookies: list[tuple[str, str, int | None]] = []
    anonymous_csrf = request.cookies.get(CSRF_COOKIE) or ""
    if len(anonymous_csrf) < 32:
        anonymous_csrf = secrets.token_urlsafe(32)
        set_cookies.append((CSRF_COOKIE, anonymous_csrf, None))
    user, expired = await _load_user(request, settings)
    v = Visit(request, settings, ConsoleState.of(runtime).api, fmt, user, anonymous_csrf, set_cookies)
    CLIENT_IP.set(v.client_ip)
    if request.cookies.get(NOTICE_COOKIE) and request.method == "GET":
        v.notice = unquote(request.cookies[NOTICE_COOKIE])[:500]
        set_cookies.append((NOTICE_COOKIE, "", None))
    if expired:
        set_cookies.append((settings.session_cookie, "", None))
        v.notice = fmt._("Your session has ended; please log in again.")
    if request.method == "POST":
        await _check_csrf(request, v)
    return v


async def _load_user(request: Request, settings: ConsoleSettings) -> tuple[User | None, bool]:
    session_id = request.cookies.get(settings.session_cookie)
    if not session_id:
        return None, False
    db = request.app.state.runtime.db
    now = clock.now()
    async with session_scope(db) as session:
        row = await session.get(ConsoleSession, hash_id(session_id))
        if row is None:
            return None, True
        idle = timedelta(minutes=settings.session_idle_minutes)
        if row.last_seen_at + idle < now or row.token_expires_at <= now:
            await session.delete(row)
            return None, True
        if (now - row.last_seen_at).total_seconds() > TOUCH_SECONDS:
            row.last_seen_at = now
        return User(row.sub, row.name, list(row.roles), row.agency, row.access_token, row.csrf), False


class CsrfRefused(Exception):
    pass


async def _check_csrf(request: Request, v: Visit) -> None:
    form = await request.form()
    given = str(form.get(CSRF_FIELD) or "")
    expected = v.user.csrf if v.user else request.cookies.get(CSRF_COOKIE, "")
    if not expected or not given or not hmac.compare_digest(given, expected):
        raise CsrfRefused()


async def start_session(v: Visit, token: dict[str, Any], claims: Any) -> None:
    """A fresh session for a successful log-in: a new random id whatever the browser sent."""
    runtime = v.request.app.state.runtime
    settings = v.settings
    old = v.request.cookies.get(settings.session_cookie)
    session_id = secrets.token_urlsafe(32)
    now = clock.now()
    expires_in = int(token.get("expires_in") or 3600)
    async with session_scope(runtime.db) as session:
        if old:
            await session.execute(delete(ConsoleSession).where(ConsoleSession.id_hash == hash_id(old)))
        session.add(
            ConsoleSession(
                id_hash=hash_id(session_id),
                csrf=secrets.token_urlsafe(32),
                access_token=token["access_token"],
                sub=claims.sub,
                name=claims.name or claims.sub,
                roles=sorted(claims.roles),
                agency=claims.agency,
                created_at=now,
                last_seen_at=now,
                token_expires_at=now + timedelta(seconds=expires_in),
            )
        )
    v.set_cookies.append((settings.session_cookie, session_id, None))


async def end_session(v: Visit) -> None:
    session_id = v.request.cookies.get(v.settings.session_cookie)
    if session_id:
        async with session_scope(v.request.app.state.runtime.db) as session:
            await session.execute(delete(ConsoleSession).where(ConsoleSession.id_hash == hash_id(session_id)))
    v.set_cookies.append((v.settings.session_cookie, "", None))


async def sweep_sessions(runtime: Any) -> int:
    """Delete sessions idle past the limit or whose token expired."""
    settings: ConsoleSettings = runtime.settings
    now = clock.now()
    cutoff = now - timedelta(minutes=settings.session_idle_minutes)
    async with session_scope(runtime.db) as session:
        stale = (
            (
                await session.execute(
                    select(ConsoleSession.id_hash).where(
                        (ConsoleSession.last_seen_at < cutoff) | (ConsoleSession.token_expires_at <= now)
                    )
                )
            )
            .scalars()
            .all()
        )
        if stale:
            await session.execute(delete(ConsoleSession).where(ConsoleSession.id_hash.in_(stale)))
    return len(stale)


class LoginRequired(Exception):
    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class NotYours(Exception):
    """Logged in, but this page is for another role."""


def require(v: Visit, *roles: str) -> User:
    if v.user is None:
        raise LoginRequired(_here(v.request))
    if roles and not v.user.has(*roles):
        raise NotYours()
    return v.user
