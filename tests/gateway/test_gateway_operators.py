"""Readiness and metrics are an operator's: through the gateway they need an admin or auditor
token (the gateway's own and every part's under /api/<part>/…), while probes and scrapers still
read them without one at each part's own port and, for the gateway's, from the operator
networks (loopback by default: the compose and Kubernetes probes run inside the container)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.gateway.gateway_support import assert_problem, running_gateway
from tests.suites import embedded

OPERATOR_PATHS = ("/readyz", "/metrics", "/api/intake/readyz", "/api/intake/metrics", "/api/audit/metrics")


async def test_readiness_and_metrics_through_the_gateway_need_an_operator(tmp_path: Path) -> None:
    async with embedded(tmp_path, operator_networks=[]) as running:
        tokens = {who: await running.auth(who) for who in ("admin", "auditor", "citizen", "integrator")}
        async with running.client() as client:
            for path in OPERATOR_PATHS:
                assert_problem(await client.get(path), 401, "unauthorized")
                for who in ("citizen", "integrator"):
                    assert_problem(await client.get(path, headers=tokens[who]), 403, "forbidden")
                for who in ("admin", "auditor"):
                    response = await client.get(path, headers=tokens[who])
                    assert response.status_code == 200, (path, who, response.text)
            assert "lienthong_http_requests_total" in (await client.get("/metrics", headers=tokens["auditor"])).text
            ready = (await client.get("/api/intake/readyz", headers=tokens["admin"])).json()
            assert ready["service"] == "intake" and "dead_letters" in ready["checks"]
            # liveness stays public
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/api/intake/healthz")).status_code == 200
            # the published API says so
            document = (await client.get("/openapi.json")).json()
            for path in OPERATOR_PATHS:
                assert document["paths"][path]["get"]["x-roles"] == ["admin", "auditor"], path
                assert "x-gateway-roles" not in document["paths"][path]["get"]
            assert document["paths"]["/api/intake/healthz"]["get"]["x-roles"] == ["public"]
        # scrapers and probes at a part's own port need no token
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.ports['intake']}") as part:
            assert (await part.get("/readyz")).json()["status"] == "ok"
            assert "lienthong_bus_dead_letters" in (await part.get("/metrics")).text


async def test_probes_from_the_operator_networks_need_no_token(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as (url, _):  # default: loopback, where a probe runs
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.get("/metrics")).status_code == 200
    async with running_gateway(tmp_path, operator_networks=["10.0.0.0/8"]) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            assert_problem(await client.get("/readyz"), 401)
            assert_problem(await client.get("/metrics", headers={"Authorization": "Bearer garbage"}), 401)
