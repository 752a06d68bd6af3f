"""The public look-up's limit is one rule at the gateway, keyed on the real client address:
behind a load balancer listed by CIDR, each citizen has a bucket of their own (not one shared by
everyone the load balancer forwards), and intake itself no longer second-guesses addresses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.gateway.gateway_support import assert_problem, running_gateway, serve

OPENAPI = {
    "openapi": "3.1.0",
    "info": {"title": "fake intake", "version": "1"},
    "paths": {"/lookup": {"get": {"x-roles": ["public"], "responses": {}}}},
}


async def fake_intake(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = json.dumps(OPENAPI if scope["path"] == "/openapi.json" else {"status": 2}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


async def test_lookup_tries_are_limited_per_real_client_behind_a_trusted_load_balancer(tmp_path: Path) -> None:
    async with serve(fake_intake, lifespan="off") as intake_url:
        async with running_gateway(tmp_path, {"intake": intake_url}, trusted_proxies=["127.0.0.0/8"]) as (url, _):
            async with httpx.AsyncClient(base_url=url) as client:

                async def lookup(citizen: str) -> httpx.Response:
                    return await client.get(
                        "/api/intake/lookup",
                        params={"code": "x", "secret": "y"},
                        headers={"X-Forwarded-For": f"{citizen}, 127.0.0.9"},
                    )

                statuses = [(await lookup("203.0.113.7")).status_code for _ in range(31)]
                assert statuses[:30] == [200] * 30
                refused = await lookup("203.0.113.7")
                assert_problem(refused, 429, "rate_limited")
                assert int(refused.headers["retry-after"]) >= 1
                # another citizen behind the same load balancer is not held up
                assert (await lookup("198.51.100.23")).status_code == 200
                # the route's rule only: other public routes keep their own (wider) limit
                jwks = await client.get("/api/auth/jwks", headers={"X-Forwarded-For": "203.0.113.7"})
                assert jwks.status_code == 200
