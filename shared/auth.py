"""Who is calling: JWT verification against a JWKS, and role/agency/clearance checks.

Every part verifies tokens itself; none trusts an identity header it did not verify. Keys come
from the identity provider's JWKS (cached; refetched, at most every few seconds, when a token
names an unknown ``kid``, which is how key rotation reaches every part). Algorithms are pinned to
asymmetric ones, and each key only verifies the algorithm of its own type: ``alg: none`` and
HS256-signed-with-the-public-key tokens can never pass.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared import clock, organ_id
from shared.errors import Forbidden, NotFound, Unauthorized

ROLES = (
    "citizen",
    "desk_officer",
    "specialist",
    "leader",
    "clerk",
    "admin",
    "auditor",
    "integrator",
    "service",
)
ALLOWED_ALGORITHMS = {"RS256": "RSA", "ES256": "EC"}

# Secrecy levels (độ mật): a caller sees what is at or below their clearance.
CLEARANCE_LEVELS = {"none": 0, "mat": 1, "toi_mat": 2, "tuyet_mat": 3}


@dataclass(frozen=True)
class Caller:
    sub: str
    name: str
    roles: frozenset[str]
    agency: str | None
    clearance: int = 0
    token: str = field(default="", repr=False)
    claims: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def has_any(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))

    def acts_in(self, agency: str | None) -> bool:
        """A user acts only inside their agency's subtree; service clients act everywhere."""
        if "service" in self.roles:
            return True
        if agency is None or self.agency is None:
            return False
        return organ_id.within(agency, self.agency)

    def require_agency(self, agency: str | None, *, hide: bool = False) -> None:
        if not self.acts_in(agency):
            if hide:
                raise NotFound()
            raise Forbidden("outside your agency", agency=agency)

    def may_see_secrecy(self, level: int) -> bool:
        return self.clearance >= level


# the time claims in the order PyJWT checks them, with the names its messages give them
_TIME_CLAIMS = {"iat": "Issued At", "nbf": "Not Before", "exp": "Expiration Time"}

KeySource = Callable[[], Awaitable[dict[str, Any]]]


def jwks_from_url(url: str, *, timeout: float = 5.0) -> KeySource:
    async def fetch() -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.get(url)
            response.raise_for_status()
            return response.json()

    return fetch


class VerifiedTokens:
    """Tokens that passed verification, kept for their remaining lifetime: a caller's next
    request costs one dict look-up instead of parsing the JWT and an RSA verification (a
    measurable share of every request in every part). Only verified tokens ever enter; the whole
    cache is dropped when the key set changes, so a withdrawn key stops its tokens at once."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._entries: dict[str, tuple[Caller, float]] = {}

    def get(self, token: str) -> Caller | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        if entry[1] <= clock.epoch():
            del self._entries[token]
            return None
        return entry[0]

    def put(self, token: str, caller: Caller) -> None:
        if len(self._entries) >= self.size:
            self._entries.clear()
        exp = caller.claims.get("exp")
        if isinstance(exp, int | float):
            self._entries[token] = (caller, float(exp))

    def clear(self) -> None:
        self._entries.clear()


class TokenVerifier:
    def __init__(
        self,
        key_source: KeySource,
        *,
        issuer: str,
        audience: str,
        claim_map: dict[str, str] | None = None,
        leeway: int = 30,
        refetch_interval: float = 1.0,
    ) -> None:
        self._source = key_source
        self.issuer, self.audience = issuer, audience
        # maps our claim names to where a provider puts them (e.g. Keycloak: realm_access.roles)
        self.claim_map = claim_map or {}
        self.leeway = leeway
        self.refetch_interval = refetch_interval
        self._keys: dict[str, tuple[str, Any]] = {}
        self._fetched_at = 0.0
        self._missed: dict[str, float] = {}
        self._lock = asyncio.Lock()
        self.verified = VerifiedTokens()

    async def _fetch(self) -> None:
        try:
            document = await self._source()
        except Exception as exc:
            if self._keys:
                return  # keep verifying with the keys we have while the provider is away
            raise Unauthorized("the identity provider's keys are not reachable") from exc
        keys: dict[str, tuple[str, Any]] = {}
        for jwk in document.get("keys", []):
            kid, kty = jwk.get("kid"), jwk.get("kty")
            alg = jwk.get("alg") or ("RS256" if kty == "RSA" else "ES256" if kty == "EC" else None)
            if not kid or alg not in ALLOWED_ALGORITHMS or ALLOWED_ALGORITHMS[alg] != kty:
                continue
            keys[kid] = (alg, jwt.PyJWK.from_dict({**jwk, "alg": alg}).key)
        if keys.keys() != self._keys.keys():
            self.verified.clear()
        self._keys = keys
        self._fetched_at = clock.monotonic()

    async def _ensure_key(self, kid: str) -> None:
        """Fetch the JWKS for a key id we do not know: a rotated key reaches us this way.

        At most one fetch per ``refetch_interval``; a token arriving sooner waits for the window
        rather than being refused, and a key id still unknown after a fetch is not fetched for
        again until the next one, so random key ids cannot make us hammer the provider."""
        async with self._lock:
            if kid in self._keys:
                return
            if self._keys and self._missed.get(kid, -1.0) >= self._fetched_at:
                return
            wait = self.refetch_interval - (clock.monotonic() - self._fetched_at)
            if self._keys and wait > 0:
                await asyncio.sleep(wait)
            await self._fetch()
            if kid not in self._keys:
                if len(self._missed) > 1000:
                    self._missed.clear()
                self._missed[kid] = self._fetched_at

    async def verify(self, token: str) -> Caller:
        known = self.verified.get(token)
        if known is not None:
            return known
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized("malformed token") from exc
        kid, alg = header.get("kid"), header.get("alg")
        if alg not in ALLOWED_ALGORITHMS or not isinstance(kid, str):
            raise Unauthorized("token algorithm not accepted")
        if kid not in self._keys:
            await self._ensure_key(kid)
        if kid not in self._keys:
            raise Unauthorized("token signed by an unknown key")
        key_alg, key = self._keys[kid]
        if key_alg != alg:
            raise Unauthorized("token algorithm does not match its key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[key_alg],
                audience=self.audience,
                issuer=self.issuer,
                # PyJWT reads the machine's clock; the times are checked below against ours
                options={
                    "require": ["exp", "iat", "sub", "iss", "aud"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"token refused: {exc}") from exc
        self._check_times(claims)
        caller = self.caller_from_claims(claims, token)
        self.verified.put(token, caller)
        return caller

    def _check_times(self, claims: dict[str, Any]) -> None:
        """``iat`` and ``nbf`` not in the future, ``exp`` not past, each give or take ``leeway``
        (PyJWT's rules, read against :func:`shared.clock.epoch` so a test can let a token expire)."""
        now = clock.epoch()
        times: dict[str, int] = {}
        for name, title in _TIME_CLAIMS.items():
            if name in claims:
                try:
                    times[name] = int(claims[name])
                except (ValueError, TypeError, OverflowError) as exc:
                    raise Unauthorized(f"token refused: {title} claim ({name}) must be an integer.") from exc
        if any(times.get(name, -math.inf) > now + self.leeway for name in ("iat", "nbf")):
            raise Unauthorized("token not yet valid")
        if times["exp"] <= now - self.leeway:
            raise Unauthorized("token expired")

    def _claim(self, claims: dict[str, Any], name: str) -> Any:
        path = self.claim_map.get(name, name)
        value: Any = claims
        for part in path.split("."):
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        return value

    def caller_from_claims(self, claims: dict[str, Any], token: str) -> Caller:
        roles = self._claim(claims, "roles") or []
        if isinstance(roles, str):
            roles = roles.split()
        clearance = self._claim(claims, "clearance") or 0
        if isinstance(clearance, str):
            clearance = CLEARANCE_LEVELS.get(clearance, 0)
        agency = self._claim(claims, "agency")
        return Caller(
            sub=str(claims["sub"]),
            name=str(self._claim(claims, "name") or claims["sub"]),
            roles=frozenset(r for r in roles if r in ROLES),
            agency=agency if isinstance(agency, str) and organ_id.is_valid(agency) else None,
            clearance=int(clearance) if isinstance(clearance, int) else 0,
            token=token,
            claims=claims,
        )


bearer = HTTPBearer(auto_error=False, description="JWT from POST /api/auth/token")


async def current_caller(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Caller:
    cached = getattr(request.state, "caller", None)
    if cached is not None:
        return cached
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized("a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    verifier: TokenVerifier = request.app.state.runtime.verifier
    caller = await verifier.verify(credentials.credentials)
    request.state.caller = caller
    return caller


async def optional_caller(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Caller | None:
    if credentials is None:
        return None
    return await current_caller(request, credentials)


def require_roles(*roles: str) -> Callable[..., Awaitable[Caller]]:
    """Dependency admitting only callers holding one of ``roles``."""
    admitted = frozenset(roles) | {"service"}

    async def check(caller: Caller = Depends(current_caller)) -> Caller:
        if not caller.roles & admitted:
            raise Forbidden(f"this needs one of the roles: {', '.join(sorted(roles))}")
        return caller

    check.__name__ = f"require_{'_or_'.join(roles)}"
    return check


def allow(*roles: str) -> dict[str, Any]:
    """Route keyword arguments declaring the roles a route admits, checked and documented.

    ``@router.post("/x", **allow("desk_officer"))`` adds the role check and ``x-roles`` in
    OpenAPI, which the role × route matrix test reads.
    """
    return {
        "dependencies": [Depends(require_roles(*roles))],
        "openapi_extra": {"x-roles": sorted(roles)},
    }


def public() -> dict[str, Any]:
    return {"openapi_extra": {"x-roles": ["public"]}}


def parse_json_object(raw: str) -> dict[str, Any]:
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return value
