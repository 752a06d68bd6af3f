"""Identity at the gateway: every kind of bad token refused early, key rotation without logout,
lockout, client credentials, an external OIDC provider (Keycloak's claim layout), and the
refusal to start in production with a default key or a demo account."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError

from gateway.app import RefusedToStart, create_app
from gateway.config import RateRule, get_settings
from gateway.identity import KeyRing
from gateway.state import GatewayState
from shared import clock
from tests.gateway.gateway_support import (
    assert_problem,
    bearer,
    gateway_settings,
    running_gateway,
    serve,
    token_for,
)
from tests.gateway.test_gateway_proxy import FakePart

GENEROUS = {"rate_routes": {}, "rate_public": RateRule(rate=1000, burst=1000)}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())


@pytest_asyncio.fixture(scope="module")
async def gw(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    async with serve(FakePart(), lifespan="off") as part_url:
        async with running_gateway(tmp_path_factory.mktemp("identity"), {"intake": part_url}, **GENEROUS) as (url, app):
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                yield {"client": client, "app": app}


async def test_a_good_token_says_who_you_are(gw: dict[str, Any]) -> None:
    client: httpx.AsyncClient = gw["client"]
    token = await token_for(client, "specialist")
    response = await client.get("/api/auth/me", headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == {
        "sub": "specialist",
        "name": "Trần Thị Chuyên",
        "roles": ["specialist"],
        "agency": "000.00.00.H56",
        "clearance": 1,
    }
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256" and header["kid"]
    response = await client.post(
        "/api/auth/token", data={"grant_type": "password", "username": "specialist", "password": "demo"}
    )
    assert response.headers["cache-control"] == "no-store"


async def _bad_tokens(client: httpx.AsyncClient, app: Any) -> dict[str, str]:
    good = await token_for(client, "admin")
    kid = jwt.get_unverified_header(good)["kid"]
    claims = jwt.decode(good, options={"verify_signature": False})
    now = int(time.time())
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = (await client.get("/api/auth/jwks")).json()
    public_pem = jwt.PyJWK.from_dict(next(k for k in jwks["keys"] if k["kid"] == kid)).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def forged(**changes: Any) -> str:
        return jwt.encode({**claims, **changes}, other_key, algorithm="RS256", headers={"kid": kid})

    real_key = GatewayState.of(app.state.runtime).keyring.active.private

    def signed(**changes: Any) -> str:
        return jwt.encode({**claims, **changes}, real_key, algorithm="RS256", headers={"kid": kid})

    hs_header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    hs_signing_input = _unsigned(hs_header, claims)
    hs_signature = hmac.new(public_pem, hs_signing_input.encode(), hashlib.sha256).digest()
    ec_key = ec.generate_private_key(ec.SECP256R1())
    head, body, _sig = good.split(".")
    return {
        "forged (another key, same kid)": forged(),
        "expired": signed(exp=now - 3600, iat=now - 7200, nbf=now - 7200),
        "not yet valid": signed(nbf=now + 3600, iat=now),
        "wrong issuer": signed(iss="https://evil.example/issuer"),
        "wrong audience": signed(aud="someone-else"),
        "alg none": _unsigned({"alg": "none", "typ": "JWT", "kid": kid}, claims) + ".",
        "HS256 signed with the public key": hs_signing_input + "." + _b64(hs_signature),
        "ES256 by a stranger": jwt.encode(claims, ec_key, algorithm="ES256", headers={"kid": kid}),
        "unknown kid": jwt.encode(claims, other_key, algorithm="RS256", headers={"kid": "no-such-key"}),
        "tampered payload": head + "." + _b64(json.dumps({**claims, "roles": ["auditor"]}).encode()) + "." + _sig,
        "garbage": "not.a.token",
        "no signature": head + "." + body,
    }


async def test_every_kind_of_bad_token_is_401_before_any_part_sees_it(gw: dict[str, Any]) -> None:
    client: httpx.AsyncClient = gw["client"]
    tokens = await _bad_tokens(client, gw["app"])
    for what, token in tokens.items():
        for path in ("/api/auth/me", "/api/intake/echo"):
            response = await client.get(path, headers=bearer(token))
            body = assert_problem(response, 401, "unauthorized")
            assert response.headers["www-authenticate"].startswith("Bearer"), what
            assert body["instance"] == path
    # a signature by the real key with the same claims passes: the refusals above are about the token
    ok = jwt.encode(
        jwt.decode(await token_for(client, "admin"), options={"verify_signature": False}),
        GatewayState.of(gw["app"].state.runtime).keyring.active.private,
        algorithm="RS256",
        headers={"kid": GatewayState.of(gw["app"].state.runtime).keyring.active.kid},
    )
    assert (await client.get("/api/auth/me", headers=bearer(ok))).status_code == 200


async def test_a_missing_token_on_a_protected_route_is_401_and_wrong_role_403(gw: dict[str, Any]) -> None:
    client: httpx.AsyncClient = gw["client"]
    assert_problem(await client.get("/api/auth/me"), 401)
    assert_problem(await client.get("/api/auth/me", headers={"Authorization": "Bearer"}), 401)
    assert_problem(await client.get("/api/auth/me", headers={"Authorization": "Basic Zm9vOmJhcg=="}), 401)
    citizen = await token_for(client, "citizen")
    assert_problem(await client.get("/api/auth/users", headers=bearer(citizen)), 403, "forbidden")


async def test_key_rotation_logs_nobody_out(gw: dict[str, Any]) -> None:
    client: httpx.AsyncClient = gw["client"]
    admin = await token_for(client, "admin")
    before = jwt.get_unverified_header(admin)["kid"]
    response = await client.post("/api/auth/rotate-key", headers=bearer(admin))
    assert response.status_code == 200
    after = response.json()["kid"]
    assert after != before
    kids = {k["kid"] for k in (await client.get("/api/auth/jwks")).json()["keys"]}
    assert {before, after} <= kids
    fresh = await token_for(client, "admin")
    assert jwt.get_unverified_header(fresh)["kid"] == after
    for token in (admin, fresh):
        assert (await client.get("/api/auth/me", headers=bearer(token))).status_code == 200


async def test_repeated_failures_lock_the_account_until_it_is_unlocked(gw: dict[str, Any]) -> None:
    client: httpx.AsyncClient = gw["client"]
    admin = await token_for(client, "admin")
    response = await client.post(
        "/api/auth/users",
        json={
            "username": "khoa.tam",
            "full_name": "Trương Khóa Tạm",
            "password": "mat-khau-dai-du",
            "roles": ["desk_officer"],
            "agency": "000.00.00.H56",
        },
        headers=bearer(admin),
    )
    assert response.status_code == 201, response.text

    async def login(password: str) -> httpx.Response:
        return await client.post(
            "/api/auth/token", data={"grant_type": "password", "username": "khoa.tam", "password": password}
        )

    for _ in range(5):
        assert_problem(await login("sai-mat-khau"), 401, "invalid_grant")
    locked = await login("mat-khau-dai-du")
    assert_problem(locked, 423, "account_locked")
    assert int(locked.headers["retry-after"]) > 0
    unlocked = await client.post("/api/auth/users/khoa.tam/unlock", headers=bearer(admin))
    assert unlocked.status_code == 200
    assert (await login("mat-khau-dai-du")).status_code == 200


async def test_unknown_users_and_bad_grants_are_refused(gw: dict[str, Any]) -> None:
    client: httpx.AsyncClient = gw["client"]
    response = await client.post(
        "/api/auth/token", data={"grant_type": "password", "username": "khong-ai", "password": "x"}
    )
    assert_problem(response, 401, "invalid_grant")
    assert_problem(await client.post("/api/auth/token", data={"grant_type": "implicit"}), 422)
    assert_problem(await client.post("/api/auth/token", data={"grant_type": "password"}), 400)
    assert_problem(
        await client.post(
            "/api/auth/token", content=b"\xff\xfe", headers={"content-type": "application/x-www-form-urlencoded"}
        ),
        422,
    )


async def test_client_credentials_by_form_and_by_basic_authentication(gw: dict[str, Any]) -> None:
    client: httpx.AsyncClient = gw["client"]
    admin = await token_for(client, "admin")
    created = await client.post(
        "/api/auth/clients",
        json={
            "client_id": "cong-dvc",
            "description": "Cổng dịch vụ công",
            "roles": ["integrator"],
            "agency": "000.00.00.H56",
        },
        headers=bearer(admin),
    )
    assert created.status_code == 201, created.text
    secret = created.json()["client_secret"]
    form = await client.post(
        "/api/auth/token", data={"grant_type": "client_credentials", "client_id": "cong-dvc", "client_secret": secret}
    )
    assert form.status_code == 200
    basic = await client.post("/api/auth/token", data={"grant_type": "client_credentials"}, auth=("cong-dvc", secret))
    assert basic.status_code == 200
    me = (await client.get("/api/auth/me", headers=bearer(basic.json()["access_token"]))).json()
    assert me["sub"] == "client:cong-dvc" and me["roles"] == ["integrator"]
    wrong = await client.post(
        "/api/auth/token", data={"grant_type": "client_credentials", "client_id": "cong-dvc", "client_secret": "x" * 20}
    )
    assert_problem(wrong, 401, "invalid_grant")
    # the secret is never shown again
    listed = await client.get("/api/auth/clients/cong-dvc", headers=bearer(admin))
    assert "client_secret" not in listed.json()


# --- an external OIDC provider (Keycloak's layout) ------------------------------------------


class FakeKeycloak:
    """Serves a realm's JWKS the way Keycloak does, and signs tokens shaped like its own."""

    def __init__(self) -> None:
        self.keys = [("k1", rsa.generate_private_key(public_exponent=65537, key_size=2048))]
        self.fetches = 0
        self.issuer = ""

    def rotate(self) -> None:
        self.keys.append(("k2", rsa.generate_private_key(public_exponent=65537, key_size=2048)))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["path"] == "/realms/lienthong/protocol/openid-connect/certs"
        self.fetches += 1
        keys = [
            {
                **jwt.algorithms.RSAAlgorithm.to_jwk(k.public_key(), as_dict=True),
                "kid": kid,
                "alg": "RS256",
                "use": "sig",
            }
            for kid, k in self.keys
        ]
        body = json.dumps({"keys": keys}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    def token(self, *, kid: str = "k1", roles: list[str], **extra: Any) -> str:
        key = dict(self.keys)[kid]
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": "lienthong",
            "sub": "f4b2c1d0-8e1a-4c5e-9d7b-000000000001",
            "typ": "Bearer",
            "azp": "lienthong-portal",
            "preferred_username": "nguyen.van.a",
            "name": "Nguyễn Văn A",
            "realm_access": {"roles": [*roles, "offline_access", "uma_authorization"]},
            "agency": "000.00.00.H56",
            "iat": now,
            "exp": now + 300,
            **extra,
        }
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


async def test_an_external_oidc_provider_by_configuration(tmp_path: Path) -> None:
    keycloak = FakeKeycloak()
    async with serve(keycloak, lifespan="off") as idp:
        keycloak.issuer = f"{idp}/realms/lienthong"
        async with running_gateway(
            tmp_path,
            demo=False,
            identity_provider="oidc",
            token_issuer=keycloak.issuer,
            token_audience="lienthong",
            jwks_url=f"{keycloak.issuer}/protocol/openid-connect/certs",
            token_claim_map={"roles": "realm_access.roles", "name": "preferred_username"},
        ) as (url, _):
            async with httpx.AsyncClient(base_url=url) as client:
                token = keycloak.token(roles=["desk_officer"])
                me = await client.get("/api/auth/me", headers=bearer(token))
                assert me.status_code == 200, me.text
                assert me.json() == {
                    "sub": "f4b2c1d0-8e1a-4c5e-9d7b-000000000001",
                    "name": "nguyen.van.a",
                    "roles": ["desk_officer"],
                    "agency": "000.00.00.H56",
                    "clearance": 0,
                }
                # the built-in provider steps aside
                response = await client.post(
                    "/api/auth/token", data={"grant_type": "password", "username": "admin", "password": "demo"}
                )
                assert_problem(response, 404, "external_identity_provider")
                assert_problem(await client.get("/api/auth/jwks"), 404, "external_identity_provider")
                # the provider rotates its key: a token with the new kid is accepted after a refetch
                keycloak.rotate()
                fetches = keycloak.fetches
                with clock.advanced(1.1):  # the gateway asks the provider at most once a second
                    me = await client.get("/api/auth/me", headers=bearer(keycloak.token(kid="k2", roles=["auditor"])))
                assert me.status_code == 200 and me.json()["roles"] == ["auditor"]
                assert keycloak.fetches == fetches + 1
                # and still refuses what it must
                stranger = FakeKeycloak()
                stranger.issuer = keycloak.issuer
                assert_problem(await client.get("/api/auth/me", headers=bearer(stranger.token(roles=["admin"]))), 401)
                assert_problem(
                    await client.get("/api/auth/me", headers=bearer(keycloak.token(roles=["admin"], aud="account"))),
                    401,
                )


# --- production ---------------------------------------------------------------------------


def _key_file(path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


def test_production_refuses_to_start_without_a_configured_token_key(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="token_key_file"):
        get_settings(environment="production", var_dir=tmp_path)
    with pytest.raises(ValidationError, match="demo"):
        get_settings(
            environment="production", var_dir=tmp_path, demo=True, token_key_file=_key_file(tmp_path / "k.pem")
        )
    with pytest.raises(ValidationError, match="password_hash_memory_kib"):
        get_settings(
            environment="production", var_dir=tmp_path, token_key_file=tmp_path / "k.pem", password_hash_memory_kib=8192
        )


async def test_production_refuses_to_start_while_a_demo_account_opens_with_the_demo_password(tmp_path: Path) -> None:
    # a development run seeded the demo accounts into this database
    development = create_app(gateway_settings(tmp_path))
    async with development.router.lifespan_context(development):
        pass
    key_file = _key_file(tmp_path / "token-key.pem")
    production = create_app(
        get_settings(var_dir=tmp_path, environment="production", token_key_file=key_file, log_json=False)
    )
    with pytest.raises(RefusedToStart, match="demo account"):
        async with production.router.lifespan_context(production):
            pass


async def test_production_signs_with_the_configured_key_file(tmp_path: Path) -> None:
    key_file = _key_file(tmp_path / "token-key.pem")
    settings = get_settings(
        var_dir=tmp_path,
        environment="production",
        token_key_file=key_file,
        log_json=False,
        rate_routes={},
        upstreams={},
    )
    app = create_app(settings)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        jwks = (await client.get("/api/auth/jwks")).json()
        (key,) = jwks["keys"]
        public = serialization.load_pem_private_key(key_file.read_bytes(), None).public_key()  # type: ignore[union-attr]
        assert jwt.PyJWK.from_dict(key).key.public_numbers() == public.public_numbers()
        # an account an administrator created works; the key id is the key's RFC 7638 thumbprint
        async with app.state.runtime.db.sessionmaker() as session:
            from gateway.models import User

            session.add(
                User(
                    username="quan.tri",
                    full_name="Quản Trị",
                    password_hash=GatewayState.of(app.state.runtime).passwords.hash("mot-mat-khau-rat-dai"),
                    roles=["admin"],
                    agency="000.00.00.H56",
                    clearance=0,
                    active=True,
                    failed_attempts=0,
                    version=1,
                )
            )
            await session.commit()
        token = await token_for(client, "quan.tri", "mot-mat-khau-rat-dai")
        assert jwt.get_unverified_header(token)["kid"] == key["kid"]
        assert (await client.get("/api/auth/me", headers=bearer(token))).status_code == 200


async def test_a_key_file_read_again_parses_only_the_keys_it_has_not_seen(tmp_path: Path) -> None:
    """The gateway reads its keys every 30 s; parsing an RSA key checks it, which is costly, so a
    key already in memory is kept, a key appended (rotation) is read, and a key removed is gone."""
    first = _key_file(tmp_path / "first.pem").read_bytes()
    second = _key_file(tmp_path / "second.pem").read_bytes()
    key_file = tmp_path / "token-key.pem"
    key_file.write_bytes(first)
    settings = get_settings(var_dir=tmp_path, token_key_file=key_file, upstreams={})
    ring = KeyRing(settings)
    await ring.load(None)  # type: ignore[arg-type]  # a key file needs no database
    signing = ring.active.private
    await ring.load(None)  # type: ignore[arg-type]
    assert ring.active.private is signing
    key_file.write_bytes(first + second)
    await ring.load(None)  # type: ignore[arg-type]
    assert len(ring.jwks()["keys"]) == 2
    assert ring.active.private is not signing  # the appended key signs
    assert ring.active.private.private_numbers() == serialization.load_pem_private_key(second, None).private_numbers()  # type: ignore[union-attr]
    key_file.write_bytes(second)
    await ring.load(None)  # type: ignore[arg-type]
    (only,) = ring.jwks()["keys"]
    assert only["kid"] == ring.active.kid
