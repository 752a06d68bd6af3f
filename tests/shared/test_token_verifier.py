"""The token verifier every part uses: a verified token is remembered until it expires, never
longer, and a key withdrawn from the JWKS stops its tokens even when they were remembered."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shared import clock
from shared.auth import TokenVerifier
from shared.errors import Unauthorized

ISSUER, AUDIENCE = "urn:lienthong:identity", "lienthong"


def _key(kid: str) -> tuple[Any, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return key, {**jwk, "kid": kid, "alg": "RS256"}


def _token(key: Any, kid: str, *, lifetime: int = 600, sub: str = "chuyen.vien") -> str:
    now = int(clock.epoch())
    claims = {"sub": sub, "roles": ["specialist"], "agency": "000.00.00.H56", "iss": ISSUER, "aud": AUDIENCE}
    claims |= {"iat": now, "exp": now + lifetime}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


async def test_a_verified_token_is_remembered_and_a_withdrawn_key_forgets_it() -> None:
    old_key, old_jwk = _key("k1")
    new_key, new_jwk = _key("k2")
    published = {"keys": [old_jwk]}

    async def jwks() -> dict[str, Any]:
        return published

    verifier = TokenVerifier(jwks, issuer=ISSUER, audience=AUDIENCE, refetch_interval=0.0)
    token = _token(old_key, "k1")
    first = await verifier.verify(token)
    assert await verifier.verify(token) is first  # remembered: no second verification
    assert first.sub == "chuyen.vien" and first.roles == {"specialist"}

    # the old key is withdrawn (a compromise): a token of the new key makes the part refetch,
    # and the remembered token of the withdrawn key is refused from then on
    published = {"keys": [new_jwk]}
    assert (await verifier.verify(_token(new_key, "k2", sub="lanh.dao"))).sub == "lanh.dao"
    with pytest.raises(Unauthorized):
        await verifier.verify(token)


async def test_a_remembered_token_is_not_accepted_past_its_expiry() -> None:
    key, jwk = _key("k1")

    async def jwks() -> dict[str, Any]:
        return {"keys": [jwk]}

    verifier = TokenVerifier(jwks, issuer=ISSUER, audience=AUDIENCE, leeway=0)
    token = _token(key, "k1", lifetime=60)
    await verifier.verify(token)
    with clock.advanced(58):  # exp counts whole seconds: 58 is before it, whatever the fraction
        assert (await verifier.verify(token)).sub == "chuyen.vien"
    with clock.advanced(61), pytest.raises(Unauthorized, match="expired"):
        await verifier.verify(token)


async def test_a_fresh_token_is_refused_by_its_expiry_and_leeway_read_on_the_suites_clock() -> None:
    """Not only the remembered ones: a token never seen before is judged by the same clock."""
    key, jwk = _key("k1")

    async def jwks() -> dict[str, Any]:
        return {"keys": [jwk]}

    verifier = TokenVerifier(jwks, issuer=ISSUER, audience=AUDIENCE, leeway=30)
    first, second = _token(key, "k1", lifetime=600), _token(key, "k1", lifetime=600, sub="other")
    with clock.advanced(600 + 28):  # past exp, within the leeway
        assert (await verifier.verify(first)).sub == "chuyen.vien"
    with clock.advanced(600 + 31), pytest.raises(Unauthorized, match="expired"):
        await verifier.verify(second)
    with clock.advanced(120):  # issued by a provider whose clock runs two minutes ahead
        early = _token(key, "k1", sub="early")
    with pytest.raises(Unauthorized, match="not yet valid"):
        await verifier.verify(early)


async def test_a_forged_token_is_never_remembered() -> None:
    key, jwk = _key("k1")
    forger, _ = _key("k1")

    async def jwks() -> dict[str, Any]:
        return {"keys": [jwk]}

    verifier = TokenVerifier(jwks, issuer=ISSUER, audience=AUDIENCE)
    forged = _token(forger, "k1")
    for _ in range(2):
        with pytest.raises(Unauthorized):
            await verifier.verify(forged)
