"""Log-in through an external OIDC provider: authorization code + PKCE (S256), against a tiny
provider of our own served over HTTP, which refuses a code without the right verifier."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse

from services.console.i18n import translator
from services.console.oidc import PENDING_COOKIE, code_challenge
from tests.gateway.gateway_support import free_port, serve

T = translator("vi")


class FakeProvider:
    """Just enough of an OpenID provider: discovery, authorize (consents at once as one
    user), token (checks the code, the redirect URI and the PKCE verifier), JWKS."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.url = ""
        self.codes: dict[str, dict[str, str]] = {}
        self.app = FastAPI()
        self.app.get("/.well-known/openid-configuration")(self.discovery)
        self.app.get("/authorize")(self.authorize)
        self.app.post("/token")(self.token)
        self.app.get("/jwks")(self.jwks)

    async def discovery(self) -> dict[str, str]:
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "jwks_uri": f"{self.url}/jwks",
        }

    async def authorize(self, request: Request) -> RedirectResponse:
        q = request.query_params
        assert q["response_type"] == "code" and q["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"challenge": q["code_challenge"], "redirect_uri": q["redirect_uri"]}
        return RedirectResponse(f"{q['redirect_uri']}?code={code}&state={q['state']}", status_code=302)

    async def token(
        self,
        grant_type: str = Form(),
        code: str = Form(),
        redirect_uri: str = Form(),
        client_id: str = Form(),
        code_verifier: str = Form(),
    ) -> JSONResponse:
        issued = self.codes.pop(code, None)  # a code works once
        if (
            grant_type != "authorization_code"
            or issued is None
            or issued["redirect_uri"] != redirect_uri
            or code_challenge(code_verifier) != issued["challenge"]
        ):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        claims = {
            "iss": self.url,
            "aud": "lienthong",
            "sub": "kc-7f3a",
            "exp": int(time.time()) + 300,
            "iat": int(time.time()),
            "preferred_username": "Lê Thị Một Cửa",
            "realm_access": {"roles": ["desk_officer"]},
            "agency": "000.00.00.H56",
        }
        token = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "k1"})
        return JSONResponse({"access_token": token, "token_type": "Bearer", "expires_in": 300})

    async def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}


@pytest_asyncio.fixture
async def oidc(tmp_path: Path) -> AsyncIterator[tuple[FakeProvider, str]]:
    from services.console.app import create_app
    from services.console.config import get_settings

    provider = FakeProvider()
    async with serve(provider.app, lifespan="off") as provider_url:
        provider.url = provider_url
        port = free_port()
        console_url = f"http://127.0.0.1:{port}"
        settings = get_settings(
            var_dir=tmp_path,
            port=port,
            log_json=False,
            public_base_url=console_url,
            gateway_url="http://127.0.0.1:9",
            oidc_issuer=provider_url,
            jwks_url=f"{provider_url}/jwks",
            token_issuer=provider_url,
            token_audience="lienthong",
            token_claim_map={"roles": "realm_access.roles", "name": "preferred_username"},
        )
        async with serve(create_app(settings), port) as url:
            yield provider, url


async def test_log_in_through_the_provider_with_pkce(oidc: tuple[FakeProvider, str]) -> None:
    provider, console = oidc
    async with httpx.AsyncClient(base_url=console, follow_redirects=False) as browser:
        form = await browser.get("/dang-nhap")
        assert T("Log in with the province's account") in form.text
        started = await browser.get("/dang-nhap/oidc", params={"next": "/tra-cuu"})
        assert started.status_code == 303
        to_provider = urlsplit(started.headers["location"])
        query = {k: v[0] for k, v in parse_qs(to_provider.query).items()}
        assert started.headers["location"].startswith(provider.url + "/authorize")
        assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
        assert query["redirect_uri"] == f"{console}/dang-nhap/oidc/ve"
        pending = json.loads(base64.urlsafe_b64decode(browser.cookies[PENDING_COOKIE]))
        # the challenge is the verifier's S256, and the verifier never left the browser's cookie
        digest = hashlib.sha256(pending["verifier"].encode()).digest()
        assert query["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        assert pending["verifier"] not in started.headers["location"]

        consent = await browser.get(started.headers["location"])  # the provider (same client: cookies by host)
        back = await browser.get(consent.headers["location"])
        assert back.status_code == 303 and back.headers["location"] == "/tra-cuu"
        page = await browser.get("/tra-cuu")
        assert "Lê Thị Một Cửa" in page.text and T("Log out") in page.text
        # the same code again opens nothing: the provider took it back and the pending cookie is gone
        again = await browser.get(consent.headers["location"])
        assert again.status_code == 400


@pytest.mark.parametrize("tamper", ["state", "verifier", "no_cookie"])
async def test_a_code_that_did_not_start_in_this_browser_opens_nothing(
    oidc: tuple[FakeProvider, str], tamper: str
) -> None:
    provider, console = oidc
    async with httpx.AsyncClient(base_url=console, follow_redirects=False) as browser:
        started = await browser.get("/dang-nhap/oidc")
        consent = await browser.get(started.headers["location"])
        callback = urlsplit(consent.headers["location"])
        params = {k: v[0] for k, v in parse_qs(callback.query).items()}
        if tamper == "state":
            params["state"] = "guessed"
        elif tamper == "verifier":
            pending = json.loads(base64.urlsafe_b64decode(browser.cookies[PENDING_COOKIE]))
            pending["verifier"] = secrets.token_urlsafe(48)
            browser.cookies.set(
                PENDING_COOKIE, base64.urlsafe_b64encode(json.dumps(pending).encode()).decode(), domain="127.0.0.1"
            )
        else:
            browser.cookies.clear()
        back = await browser.get(callback.path, params=params)
        assert back.status_code == 400
        assert T("The log-in through the provider failed.") in back.text
        assert "lt_session" not in back.headers.get("set-cookie", "")
