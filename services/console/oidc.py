"""Log-in through an external OpenID Connect provider (Keycloak, …): authorization code with
PKCE (RFC 7636, S256). The state, the nonce and the code verifier wait in a short-lived HttpOnly
cookie of this browser, so a code that comes back to another browser, or twice, opens nothing.
The access token the provider gives is verified like every part verifies tokens (JWKS, issuer,
audience, claim map) before a session starts."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.console.config import ConsoleSettings
from services.console.web import ROLE_HOMES, Visit, safe_next, start_session, visit
from shared.errors import Unauthorized

router = APIRouter(include_in_schema=False)
V = Depends(visit)
PENDING_COOKIE = "lt_oidc"
PENDING_SECONDS = 600


def code_challenge(verifier: str) -> str:
    """PKCE S256: BASE64URL(SHA256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def callback_url(settings: ConsoleSettings) -> str:
    return f"{settings.public_base_url.rstrip('/')}/dang-nhap/oidc/ve"


async def discover(settings: ConsoleSettings) -> dict[str, Any]:
    assert settings.oidc_issuer
    url = settings.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration"
    async with httpx.AsyncClient(timeout=settings.api_timeout_seconds) as client:
        response = await client.get(url)
        response.raise_for_status()
        return response.json()


class OidcRefused(Exception):
    """The provider's answer cannot start a session (state, code or token wrong)."""


@router.get("/dang-nhap/oidc")
async def start(v: Visit = V, next: str = "/") -> Response:
    settings = v.settings
    if not settings.oidc_issuer:
        return v.redirect("/dang-nhap")
    provider = await discover(settings)
    state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": settings.oidc_client_id,
            "redirect_uri": callback_url(settings),
            "scope": settings.oidc_scopes,
            "state": state,
            "nonce": nonce,
            "code_challenge": code_challenge(verifier),
            "code_challenge_method": "S256",
        }
    )
    pending = json.dumps({"state": state, "nonce": nonce, "verifier": verifier, "next": safe_next(next)})
    v.set_cookies.append((PENDING_COOKIE, base64.urlsafe_b64encode(pending.encode()).decode(), PENDING_SECONDS))
    return v.redirect(f"{provider['authorization_endpoint']}?{query}")


@router.get("/dang-nhap/oidc/ve")
async def come_back(request: Request, v: Visit = V, code: str = "", state: str = "", error: str = "") -> Response:
    settings = v.settings
    v.set_cookies.append((PENDING_COOKIE, "", None))  # one try per start, whatever happens
    try:
        if not settings.oidc_issuer or error or not code:
            raise OidcRefused(error or "no code")
        pending = _pending(request)
        if not state or not secrets.compare_digest(state, pending.get("state", "")):
            raise OidcRefused("state does not match this browser's log-in")
        provider = await discover(settings)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": callback_url(settings),
            "client_id": settings.oidc_client_id,
            "code_verifier": pending["verifier"],
        }
        if settings.oidc_client_secret:
            form["client_secret"] = settings.oidc_client_secret
        async with httpx.AsyncClient(timeout=settings.api_timeout_seconds) as client:
            answer = await client.post(provider["token_endpoint"], data=form)
        if answer.status_code != 200:
            raise OidcRefused(f"token endpoint answered {answer.status_code}")
        token = answer.json()
        claims = await request.app.state.runtime.verifier.verify(token["access_token"])
    except (OidcRefused, Unauthorized, KeyError, ValueError, httpx.HTTPError):
        return v.render(
            "login.html", status=400, next="/", username="", error=v._("The log-in through the provider failed.")
        )
    await start_session(v, token, claims)
    next_url = pending.get("next") or "/"
    if next_url == "/":
        next_url = next((ROLE_HOMES[r] for r in sorted(claims.roles) if r in ROLE_HOMES), "/")
    return v.redirect(safe_next(next_url))


def _pending(request: Request) -> dict[str, str]:
    raw = request.cookies.get(PENDING_COOKIE, "")
    try:
        found = json.loads(base64.urlsafe_b64decode(raw.encode()).decode())
    except ValueError as exc:
        raise OidcRefused("no log-in was started in this browser") from exc
    if not isinstance(found, dict):
        raise OidcRefused("no log-in was started in this browser")
    return found
