"""The role × route matrix: every operation of the assembled OpenAPI, called by every demo role
and by nobody, through the gateway and directly at each part. A caller whose role a route does
not admit must never get a 2xx; nobody without a token gets past a protected route; no
combination makes anything answer 5xx."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio

from gateway.app import DEMO_USERS
from gateway.config import RateRule
from tests.suites import Running, embedded

CALLERS = [*sorted(DEMO_USERS), None]  # None: no token at all
METHODS = ("get", "post", "put", "patch", "delete")
PARAM = re.compile(r"\{([^}]+)\}")
SAMPLE_VALUES = {"code": "000.00.00.H56-260101-0001", "agency": "000.00.00.H56", "organ_id": "000.00.00.H56"}
GENEROUS = RateRule(rate=10_000, burst=100_000)


def _concrete(path: str, operation: dict[str, Any]) -> str:
    kinds = {
        p["name"]: (p.get("schema") or {}).get("type", "string")
        for p in operation.get("parameters", [])
        if p.get("in") == "path"
    }

    def value(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in SAMPLE_VALUES:
            return SAMPLE_VALUES[name]
        return "1" if kinds.get(name) == "integer" else "khong-co"

    return PARAM.sub(value, path)


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


@pytest_asyncio.fixture(scope="module")
async def suite(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    tmp: Path = tmp_path_factory.mktemp("matrix")
    async with embedded(
        tmp,
        rate_routes={},
        operator_networks=[],  # the test calls from loopback, which probes may use tokenless
        rate_public=GENEROUS,
        rate_client=GENEROUS,
        password_hash_time_cost=1,
        password_hash_memory_kib=8192,
        password_hash_parallelism=1,
    ) as running:
        async with running.client() as client:
            for _ in range(200):
                document = (await client.get("/openapi.json")).json()
                if not document["info"].get("x-unavailable-parts"):
                    break
                await asyncio.sleep(0.05)
            tokens = {user: await running.token(user) for user in DEMO_USERS}
        yield {"running": running, "document": document, "tokens": tokens}


async def _walk(base_url: str, operations: list[tuple[str, str, dict[str, Any]]], tokens: dict[str, str]) -> list[str]:
    problems: list[str] = []
    limit = asyncio.Semaphore(8)

    async def one(
        client: httpx.AsyncClient, method: str, path: str, operation: dict[str, Any], who: str | None
    ) -> None:
        roles = set(operation.get("x-roles") or ())
        public = "public" in roles
        headers = {"Authorization": f"Bearer {tokens[who]}"} if who else {}
        has_json_body = "application/json" in (operation.get("requestBody") or {}).get("content", {})
        async with limit:
            response = await client.request(
                method, _concrete(path, operation), headers=headers, json={} if has_json_body else None
            )
        status = response.status_code
        label = f"{method} {path} as {who or 'nobody'}: {status}"
        if status >= 500:
            problems.append(f"{label} (server error) {response.text[:200]}")
        if not roles:
            problems.append(f"{method} {path}: no x-roles")
        admitted = public or (who is not None and DEMO_USERS[who][1][0] in roles)
        if not admitted and 200 <= status < 300:
            problems.append(f"{label} (admitted a role the route does not list: {sorted(roles)})")
        if who is None and not public and status != 401:
            problems.append(f"{label} (expected 401 without a token)")
        if status >= 400 and not response.headers.get("content-type", "").startswith("application/problem+json"):
            problems.append(f"{label} (not problem+json: {response.headers.get('content-type')})")

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        await asyncio.gather(*(one(client, m, p, op, who) for m, p, op in operations for who in CALLERS))
    return problems


async def test_role_matrix_through_the_gateway(suite: dict[str, Any]) -> None:
    running: Running = suite["running"]
    document = suite["document"]
    assert not document["info"].get("x-unavailable-parts"), document["info"]
    operations = _operations(document)
    assert len(operations) > 20
    problems = await _walk(running.gateway_url, operations, suite["tokens"])
    assert not problems, "\n".join(sorted(problems))


async def test_role_matrix_directly_at_each_part(suite: dict[str, Any]) -> None:
    """The parts enforce the roles themselves, not only the gateway in front of them."""
    running: Running = suite["running"]
    problems: list[str] = []
    async with httpx.AsyncClient(timeout=30) as client:
        for part, port in running.ports.items():
            if part == "gateway":
                continue
            base = f"http://127.0.0.1:{port}"
            document = (await client.get(base + "/openapi.json")).json()
            problems += [f"[{part}] {p}" for p in await _walk(base, _operations(document), suite["tokens"])]
    assert not problems, "\n".join(sorted(problems))


async def test_a_rotated_key_reaches_every_part(suite: dict[str, Any]) -> None:
    running: Running = suite["running"]
    async with running.client() as client:
        admin = {"Authorization": f"Bearer {suite['tokens']['admin']}"}
        rotated = await client.post("/api/auth/rotate-key", headers=admin)
        assert rotated.status_code == 200
        fresh = await running.token("auditor")
        assert jwt.get_unverified_header(fresh)["kid"] == rotated.json()["kid"]
        old = suite["tokens"]["auditor"]
        for token in (old, fresh):
            response = await client.get("/api/audit/entries", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200, response.text
