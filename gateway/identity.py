"""The built-in identity provider: OAuth2 password and client-credentials grants, JWKS.

Tokens are RS256 JWTs with ``sub``, ``name``, ``roles``, ``agency``, ``clearance``, ``aud``,
``iss``, ``iat``, ``nbf``, ``exp``. Passwords are hashed with Argon2id (memory-hard); repeated
failures lock the account for a while. Rotating the signing key keeps the old public key in the
JWKS until every token it signed has expired, so nobody is logged out.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import APIRouter, Depends, Form, Request
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.config import GatewaySettings
from gateway.models import ServiceClient, SigningKey, User
from shared.auth import ROLES, allow
from shared.db import request_session
from shared.errors import BadRequest, ProblemError, problem_responses
from shared.http import StrictRoute

hasher = PasswordHasher()
router = APIRouter(prefix="/api/auth", tags=["identity"], route_class=StrictRoute)
Session = Depends(request_session, scope="function")


class InvalidGrant(ProblemError):
    status, code, title = 401, "invalid_grant", "Wrong username, password or client secret"


class AccountLocked(ProblemError):
    status, code, title = 423, "account_locked", "Too many failed attempts; try again later"


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    scope: str = ""


def hash_secret(secret: str) -> str:
    return hasher.hash(secret)


def _verify_secret(stored: str, given: str) -> bool:
    try:
        return hasher.verify(stored, given)
    except (VerificationError, InvalidHashError):
        return False


# A hash to verify against when the username does not exist, so the response time does not
# tell an attacker which usernames are real.
_DUMMY_HASH = hasher.hash(secrets.token_hex(16))


def new_signing_key() -> SigningKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return SigningKey(kid=secrets.token_hex(8), private_pem=pem, created_at=datetime.now(UTC))


class KeyRing:
    """The signing keys in memory: the newest signs, all unexpired ones verify."""

    def __init__(self) -> None:
        self._keys: list[tuple[str, Any, datetime, datetime | None]] = []
        self.loaded_at = 0.0

    async def load(self, session: AsyncSession, *, ttl: int) -> None:
        rows = (await session.execute(select(SigningKey).order_by(SigningKey.created_at))).scalars().all()
        if not rows:
            key = new_signing_key()
            session.add(key)
            await session.flush()
            rows = [key]
        horizon = datetime.now(UTC) - timedelta(seconds=ttl * 2)
        keys = []
        for row in rows:
            retired = row.retired_at.replace(tzinfo=UTC) if row.retired_at and row.retired_at.tzinfo is None else row.retired_at
            if retired and retired < horizon:
                continue
            private = serialization.load_pem_private_key(row.private_pem.encode(), password=None)
            created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
            keys.append((row.kid, private, created, retired))
        self._keys = keys
        self.loaded_at = time.monotonic()

    @property
    def active(self) -> tuple[str, Any]:
        live = [k for k in self._keys if k[3] is None]
        kid, private, _, _ = (live or self._keys)[-1]
        return kid, private

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, private, _, _ in self._keys:
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
            keys.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
        return {"keys": keys}

    def issue(self, claims: dict[str, Any], *, settings: GatewaySettings) -> str:
        kid, private = self.active
        now = int(time.time())
        payload = {
            **claims,
            "iss": settings.token_issuer,
            "aud": settings.token_audience,
            "iat": now,
            "nbf": now,
            "exp": now + settings.token_ttl_seconds,
            "jti": secrets.token_hex(12),
        }
        return jwt.encode(payload, private, algorithm="RS256", headers={"kid": kid})


async def rotate_signing_key(session: AsyncSession) -> str:
    """Start signing with a new key; the old one keeps verifying until its tokens expire."""
    now = datetime.now(UTC)
    for row in (await session.execute(select(SigningKey).where(SigningKey.retired_at.is_(None)))).scalars():
        row.retired_at = now
    key = new_signing_key()
    session.add(key)
    await session.flush()
    return key.kid


def _keyring(request: Request) -> KeyRing:
    return request.app.state.runtime.extras["keyring"]


@router.get("/jwks", **{"openapi_extra": {"x-roles": ["public"]}})
async def jwks(request: Request) -> dict[str, Any]:
    """Public keys that verify lienthong access tokens (RFC 7517)."""
    return _keyring(request).jwks()


@router.post(
    "/token",
    response_model=TokenResponse,
    responses=problem_responses(400, 401, 423),
    openapi_extra={"x-roles": ["public"]},
)
async def token(
    request: Request,
    grant_type: str = Form(pattern="^(password|client_credentials)$"),
    username: str | None = Form(default=None, max_length=100),
    password: str | None = Form(default=None, max_length=200),
    client_id: str | None = Form(default=None, max_length=100),
    client_secret: str | None = Form(default=None, max_length=200),
    session: AsyncSession = Session,
) -> TokenResponse:
    """OAuth2 token endpoint (RFC 6749 §4.3 password, §4.4 client credentials)."""
    settings: GatewaySettings = request.app.state.runtime.settings
    ring = _keyring(request)
    if grant_type == "password":
        if not username or not password:
            raise BadRequest("username and password are required for the password grant")
        user = (await session.execute(select(User).where(User.username == username))).scalar_one_or_none()
        now = datetime.now(UTC)
        if user is None:
            await asyncio.to_thread(_verify_secret, _DUMMY_HASH, password)
            raise InvalidGrant()
        locked = user.locked_until.replace(tzinfo=UTC) if user.locked_until and user.locked_until.tzinfo is None else user.locked_until
        if locked and locked > now:
            raise AccountLocked(headers={"Retry-After": str(int((locked - now).total_seconds()) + 1)})
        if not await asyncio.to_thread(_verify_secret, user.password_hash, password):
            user.failed_attempts += 1
            if user.failed_attempts >= settings.lockout_attempts:
                user.locked_until = now + timedelta(minutes=settings.lockout_minutes)
                user.failed_attempts = 0
            # the failure count must survive the error response, so commit it here
            await session.commit()
            raise InvalidGrant()
        user.failed_attempts = 0
        user.locked_until = None
        claims = {
            "sub": user.username,
            "name": user.full_name,
            "roles": [r for r in user.roles if r in ROLES],
            "agency": user.agency,
            "clearance": user.clearance,
        }
    else:
        if not client_id or not client_secret:
            raise BadRequest("client_id and client_secret are required for client credentials")
        client = (
            await session.execute(select(ServiceClient).where(ServiceClient.client_id == client_id))
        ).scalar_one_or_none()
        if client is None:
            await asyncio.to_thread(_verify_secret, _DUMMY_HASH, client_secret)
            raise InvalidGrant()
        if not await asyncio.to_thread(_verify_secret, client.secret_hash, client_secret):
            raise InvalidGrant()
        claims = {
            "sub": f"client:{client.client_id}",
            "name": client.client_id,
            "roles": [r for r in client.roles if r in ROLES],
            "agency": client.agency,
            "clearance": 0,
        }
    return TokenResponse(access_token=ring.issue(claims, settings=settings), expires_in=settings.token_ttl_seconds)


@router.post("/rotate-key", responses=problem_responses(401, 403), **allow("admin"))
async def rotate_key(request: Request, session: AsyncSession = Session) -> dict[str, str]:
    """Start signing tokens with a new key; tokens already issued stay valid."""
    kid = await rotate_signing_key(session)
    settings: GatewaySettings = request.app.state.runtime.settings
    await _keyring(request).load(session, ttl=settings.token_ttl_seconds)
    return {"kid": kid}
