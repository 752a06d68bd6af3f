"""The built-in identity provider: OAuth2 password and client-credentials grants, JWKS, keys.

Tokens are JWTs (RS256, or ES256 for an EC key) with ``sub``, ``name``, ``roles``, ``agency``,
``clearance``, ``aud``, ``iss``, ``iat``, ``nbf``, ``exp``, ``jti``. Passwords are hashed with
Argon2id (memory-hard); repeated failures lock the account for a while. Rotating the signing key
keeps the old public key in the JWKS until every token it signed has expired, so nobody is
logged out. With ``identity_provider = "oidc"`` an external provider issues the tokens instead
and these endpoints say so.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import APIRouter, Depends, Form, Request, Response
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.config import GatewaySettings
from gateway.models import ServiceClient, SigningKey, User
from gateway.state import GatewayState
from shared import clock
from shared.auth import ROLES, Caller, allow, current_caller
from shared.db import Database, request_session, session_scope
from shared.errors import BadRequest, ProblemError, problem_responses
from shared.http import StrictRoute

router = APIRouter(prefix="/api/auth", tags=["identity"], route_class=StrictRoute)
Session = Depends(request_session, scope="function")
Who = Depends(current_caller)


class InvalidGrant(ProblemError):
    status, code, title = 401, "invalid_grant", "Wrong username, password or client secret"


class AccountLocked(ProblemError):
    status, code, title = 423, "account_locked", "Too many failed attempts; try again later"


class ExternalIdentityProvider(ProblemError):
    status, code, title = 404, "external_identity_provider", "Tokens are issued by another provider"


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    scope: str = ""


class Me(BaseModel):
    sub: str
    name: str
    roles: list[str]
    agency: str | None
    clearance: int


class Passwords:
    """Argon2id hashing with the configured cost, off the event loop."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.hasher = PasswordHasher(
            time_cost=settings.password_hash_time_cost,
            memory_cost=settings.password_hash_memory_kib,
            parallelism=settings.password_hash_parallelism,
        )
        self._dummy: str | None = None

    def hash(self, secret: str) -> str:
        return self.hasher.hash(secret)

    async def hash_async(self, secret: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, secret)

    def _verify(self, stored: str, given: str) -> bool:
        try:
            return self.hasher.verify(stored, given)
        except (VerificationError, InvalidHashError):
            return False

    async def verify(self, stored: str | None, given: str) -> bool:
        """``stored=None`` (no such account) still costs one verification, so the response time
        does not tell an attacker which usernames exist."""
        if stored is None:
            if self._dummy is None:
                self._dummy = await self.hash_async(secrets.token_hex(16))
            await asyncio.to_thread(self._verify, self._dummy, given)
            return False
        return await asyncio.to_thread(self._verify, stored, given)

    def needs_rehash(self, stored: str) -> bool:
        try:
            return self.hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return False


# --- signing keys -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Key:
    kid: str
    private: Any
    alg: str
    retired: datetime | None


def _algorithm_of(private: Any) -> str:
    if isinstance(private, rsa.RSAPrivateKey):
        if private.key_size < 2048:
            raise ValueError("RSA token keys need at least 2048 bits")
        return "RS256"
    if isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP256R1):
        return "ES256"
    raise ValueError("token keys must be RSA (RS256) or EC P-256 (ES256)")


def _public_jwk(private: Any, alg: str) -> dict[str, Any]:
    if alg == "RS256":
        return jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return jwt.algorithms.ECAlgorithm.to_jwk(private.public_key(), as_dict=True)


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint: a key id derived from the key itself."""
    members = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def pem_blocks(path: Path) -> list[bytes]:
    """Every PEM block of a file, in file order."""
    marker = b"-----BEGIN "
    blocks = [marker + block for block in path.read_bytes().split(marker)[1:]]
    if not blocks:
        raise ValueError(f"no private key in {path}")
    return blocks


def _load_pem(block: bytes) -> Any:
    return serialization.load_pem_private_key(block, password=None)


def new_signing_key() -> SigningKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return SigningKey(kid=secrets.token_hex(8), private_pem=pem, created_at=clock.now())


class KeyRing:
    """The signing keys in memory: the newest live one signs, every unexpired one verifies.

    Keys come from ``token_key_file`` when set (production; rotation = append a key to the file
    and reload) or else from the gateway's database (generated on first start).
    """

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self._keys: list[_Key] = []
        self._jwks: dict[str, Any] = {"keys": []}
        self.loaded_at = 0.0
        # each key in use, by its PEM: a reload (every 30 s) parses only keys it has not seen, since
        # parsing an RSA key checks it, tens of milliseconds of CPU each time
        self._parsed: dict[bytes, Any] = {}

    @property
    def from_file(self) -> bool:
        return self.settings.token_key_file is not None

    async def load(self, session: AsyncSession) -> None:
        if self.settings.token_key_file is not None:
            blocks = await asyncio.to_thread(pem_blocks, self.settings.token_key_file)
            privates = await asyncio.to_thread(self._parse, blocks)
            keys = []
            for private in privates:
                alg = _algorithm_of(private)
                keys.append(_Key(thumbprint(_public_jwk(private, alg)), private, alg, None))
            self._set(keys)
            return
        rows = (await session.execute(select(SigningKey).order_by(SigningKey.created_at))).scalars().all()
        if not rows:
            key = new_signing_key()
            session.add(key)
            await session.flush()
            rows = [key]
        horizon = clock.now() - timedelta(seconds=self.settings.token_ttl_seconds * 2)
        kept = [row for row in rows if not (row.retired_at and row.retired_at < horizon)]
        privates = self._parse([row.private_pem.encode() for row in kept])
        self._set(
            [
                _Key(row.kid, private, _algorithm_of(private), row.retired_at)
                for row, private in zip(kept, privates, strict=True)
            ]
        )

    def _parse(self, pems: list[bytes]) -> list[Any]:
        """The private key of each PEM, parsed only when new; keys no longer in use are forgotten."""
        parsed = {pem: self._parsed.get(pem) or _load_pem(pem) for pem in pems}
        self._parsed = parsed
        return [parsed[pem] for pem in pems]

    def _set(self, keys: list[_Key]) -> None:
        self._keys = keys
        self._jwks = {
            "keys": [{**_public_jwk(k.private, k.alg), "kid": k.kid, "alg": k.alg, "use": "sig"} for k in keys]
        }
        self.loaded_at = clock.monotonic()

    def loaded_within(self, seconds: float) -> bool:
        """Whether the keys were read less than ``seconds`` ago (the suite's clock, so a test moves it)."""
        return clock.monotonic() - self.loaded_at <= seconds

    @property
    def active(self) -> _Key:
        live = [k for k in self._keys if k.retired is None]
        return (live or self._keys)[-1]

    def jwks(self) -> dict[str, Any]:
        return self._jwks

    def issue(self, claims: dict[str, Any]) -> str:
        key = self.active
        now = int(clock.epoch())
        payload = {
            **claims,
            "iss": self.settings.token_issuer,
            "aud": self.settings.token_audience,
            "iat": now,
            "nbf": now,
            "exp": now + self.settings.token_ttl_seconds,
            "jti": secrets.token_hex(12),
        }
        return jwt.encode(payload, key.private, algorithm=key.alg, headers={"kid": key.kid})


async def rotate_signing_key(session: AsyncSession) -> str:
    """Start signing with a new key; the old one keeps verifying until its tokens expire."""
    now = clock.now()
    for row in (await session.execute(select(SigningKey).where(SigningKey.retired_at.is_(None)))).scalars():
        row.retired_at = now
    key = new_signing_key()
    session.add(key)
    await session.flush()
    return key.kid


# --- endpoints ----------------------------------------------------------------------------


def _settings(request: Request) -> GatewaySettings:
    return request.app.state.runtime.settings


def _builtin(request: Request) -> KeyRing:
    settings = _settings(request)
    if settings.identity_provider != "builtin":
        raise ExternalIdentityProvider(
            f"sign in at {settings.token_issuer}; its keys are at {settings.jwks_url}",
            issuer=settings.token_issuer,
        )
    ring = GatewayState.of(request).keyring
    assert ring is not None  # a built-in provider loads its keys at start
    return ring


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    """Client authentication by HTTP Basic (RFC 6749 §2.3.1), the form's alternative."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise BadRequest("malformed Basic credentials") from exc
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise BadRequest("malformed Basic credentials")
    return unquote(client_id), unquote(secret)


@router.get("/jwks", responses=problem_responses(404), openapi_extra={"x-roles": ["public"]})
async def jwks(request: Request, response: Response) -> dict[str, Any]:
    """Public keys that verify lienthong access tokens (RFC 7517)."""
    ring = _builtin(request)
    response.headers["Cache-Control"] = "public, max-age=60"
    return ring.jwks()


@router.post(
    "/token",
    response_model=TokenResponse,
    responses=problem_responses(400, 401, 404, 422, 423, 429),
    openapi_extra={"x-roles": ["public"]},
)
async def token(
    request: Request,
    response: Response,
    grant_type: str = Form(pattern="^(password|client_credentials)$"),
    username: str | None = Form(default=None, max_length=100),
    password: str | None = Form(default=None, max_length=200),
    client_id: str | None = Form(default=None, max_length=100),
    client_secret: str | None = Form(default=None, max_length=200),
    scope: str | None = Form(default=None, max_length=500),
) -> TokenResponse:
    """OAuth2 token endpoint (RFC 6749 §4.3 password, §4.4 client credentials)."""
    ring = _builtin(request)
    settings = _settings(request)
    runtime = request.app.state.runtime
    passwords = GatewayState.of(runtime).passwords
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    if grant_type == "password":
        if not username or not password:
            raise BadRequest("username and password are required for the password grant")
        claims = await _password_grant(runtime.db, passwords, settings, username, password)
    else:
        basic = _basic_credentials(request)
        if basic:
            client_id, client_secret = basic
        if not client_id or not client_secret:
            raise BadRequest("client_id and client_secret are required for client credentials")
        claims = await _client_grant(runtime.db, passwords, client_id, client_secret)
    return TokenResponse(access_token=ring.issue(claims), expires_in=settings.token_ttl_seconds)


# The grants verify the (deliberately slow) hash outside any transaction: on SQLite a
# transaction holds the database's write lock, and a second's worth of Argon2 under it would
# queue every other writer of the gateway behind each sign-in.


async def _password_grant(
    db: Database, passwords: Passwords, settings: GatewaySettings, username: str, password: str
) -> dict[str, Any]:
    async with session_scope(db) as session:
        user = (await session.execute(select(User).where(User.username == username))).scalar_one_or_none()
    now = clock.now()
    if user is None or not user.active:
        await passwords.verify(None, password)
        raise InvalidGrant()
    if user.locked_until and user.locked_until > now:
        retry = int((user.locked_until - now).total_seconds()) + 1
        raise AccountLocked(headers={"Retry-After": str(retry)}, retry_after_seconds=retry)
    if not await passwords.verify(user.password_hash, password):
        async with session_scope(db) as session:
            failing = await session.get(User, user.id)
            if failing is not None:
                failing.failed_attempts += 1
                if failing.failed_attempts >= settings.lockout_attempts:
                    failing.locked_until = now + timedelta(minutes=settings.lockout_minutes)
                    failing.failed_attempts = 0
        raise InvalidGrant()
    rehash = await passwords.hash_async(password) if passwords.needs_rehash(user.password_hash) else None
    if user.failed_attempts or user.locked_until or rehash:
        async with session_scope(db) as session:
            succeeded = await session.get(User, user.id)
            if succeeded is not None:
                succeeded.failed_attempts, succeeded.locked_until = 0, None
                if rehash:
                    succeeded.password_hash = rehash
    return {
        "sub": user.username,
        "name": user.full_name,
        "roles": [r for r in user.roles if r in ROLES],
        "agency": user.agency,
        "clearance": user.clearance,
    }


async def _client_grant(db: Database, passwords: Passwords, client_id: str, client_secret: str) -> dict[str, Any]:
    async with session_scope(db) as session:
        client = (
            await session.execute(select(ServiceClient).where(ServiceClient.client_id == client_id))
        ).scalar_one_or_none()
    if client is None or not client.active:
        await passwords.verify(None, client_secret)
        raise InvalidGrant()
    if not await passwords.verify(client.secret_hash, client_secret):
        raise InvalidGrant()
    return {
        "sub": f"client:{client.client_id}",
        "name": client.description or client.client_id,
        "roles": [r for r in client.roles if r in ROLES],
        "agency": client.agency,
        "clearance": 0,
    }


@router.get("/me", response_model=Me, responses=problem_responses(401), **allow(*ROLES))
async def me(caller: Caller = Who) -> Me:
    """Who the token says you are (as every part reads it)."""
    return Me(
        sub=caller.sub,
        name=caller.name,
        roles=sorted(caller.roles),
        agency=caller.agency,
        clearance=caller.clearance,
    )


class RotatedKey(BaseModel):
    kid: str


@router.post("/rotate-key", response_model=RotatedKey, responses=problem_responses(401, 403, 404), **allow("admin"))
async def rotate_key(request: Request, session: AsyncSession = Session) -> RotatedKey:
    """Start signing tokens with a new key; tokens already issued stay valid.

    With ``token_key_file`` the file is the source of keys: append the new key to it, then call
    this to reload it on this replica (the others reload it within a minute).
    """
    ring = _builtin(request)
    if not ring.from_file:
        await rotate_signing_key(session)
    await ring.load(session)
    return RotatedKey(kid=ring.active.kid)
