"""Administering accounts: an administrator acts inside their agency's subtree only, never grants
more clearance than they hold, changes accounts only with a fresh ETag; bad input is 4xx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from gateway.config import RateRule
from tests.gateway.gateway_support import assert_problem, bearer, running_gateway, token_for

PROVINCE = "000.00.00.H56"
DISTRICT = "000.00.17.H56"  # a unit inside the province
OTHER_PROVINCE = "000.00.00.H01"


@pytest_asyncio.fixture(scope="module")
async def gw(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    async with running_gateway(
        tmp_path_factory.mktemp("accounts"), rate_routes={}, rate_public=RateRule(rate=1000, burst=1000)
    ) as (url, app):
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            admin = bearer(await token_for(client, "admin"))
            yield {"client": client, "admin": admin}


def officer(username: str, agency: str = DISTRICT, **changes: Any) -> dict[str, Any]:
    return {
        "username": username,
        "full_name": "Nguyễn Thị Cán Bộ",
        "password": "mot-mat-khau-du-dai",
        "roles": ["specialist"],
        "agency": agency,
        **changes,
    }


async def test_an_admin_creates_an_officer_of_their_subtree_who_can_then_sign_in(gw: dict[str, Any]) -> None:
    client: httpx.AsyncClient = gw["client"]
    response = await client.post("/api/auth/users", json=officer("chuyen.vien.17"), headers=gw["admin"])
    assert response.status_code == 201, response.text
    assert response.headers["etag"] == '"1"'
    assert response.headers["location"] == "/api/auth/users/chuyen.vien.17"
    assert response.json()["agency"] == DISTRICT and "password" not in response.json()
    token = await token_for(client, "chuyen.vien.17", "mot-mat-khau-du-dai")
    me = (await client.get("/api/auth/me", headers=bearer(token))).json()
    assert me["roles"] == ["specialist"] and me["agency"] == DISTRICT


async def test_outside_the_subtree_or_above_ones_clearance_is_refused(gw: dict[str, Any]) -> None:
    client: httpx.AsyncClient = gw["client"]
    response = await client.post("/api/auth/users", json=officer("ngoai.tinh", OTHER_PROVINCE), headers=gw["admin"])
    assert_problem(response, 403, "forbidden")
    response = await client.post("/api/auth/users", json=officer("toi.mat", clearance=2), headers=gw["admin"])
    assert_problem(response, 403, "forbidden")


async def test_a_district_admin_sees_and_changes_only_the_district(gw: dict[str, Any]) -> None:
    client: httpx.AsyncClient = gw["client"]
    created = await client.post("/api/auth/users", json=officer("quan.tri.17", roles=["admin"]), headers=gw["admin"])
    assert created.status_code == 201
    await client.post("/api/auth/users", json=officer("mot.cua.17", roles=["desk_officer"]), headers=gw["admin"])
    district_admin = bearer(await token_for(client, "quan.tri.17", "mot-mat-khau-du-dai"))
    listed = await client.get("/api/auth/users", headers=district_admin)
    assert listed.status_code == 200
    names = {u["username"] for u in listed.json()["items"]}
    assert {"quan.tri.17", "mot.cua.17"} <= names
    assert "desk_officer" not in names and "admin" not in names  # the province's own accounts
    assert_problem(await client.get("/api/auth/users/desk_officer", headers=district_admin), 404)
    response = await client.post("/api/auth/users", json=officer("len.tinh", PROVINCE), headers=district_admin)
    assert_problem(response, 403)
    # the province's administrator sees the district too
    listed = await client.get("/api/auth/users", params={"agency": DISTRICT}, headers=gw["admin"])
    assert {u["username"] for u in listed.json()["items"]} >= {"quan.tri.17", "mot.cua.17"}


async def test_changes_need_a_fresh_etag_and_deactivation_stops_sign_in(gw: dict[str, Any]) -> None:
    client: httpx.AsyncClient = gw["client"]
    await client.post("/api/auth/users", json=officer("tam.nghi"), headers=gw["admin"])
    path = "/api/auth/users/tam.nghi"
    assert_problem(await client.patch(path, json={"full_name": "X"}, headers=gw["admin"]), 428)
    assert_problem(await client.patch(path, json={"full_name": "X"}, headers={**gw["admin"], "If-Match": '"99"'}), 412)
    etag = (await client.get(path, headers=gw["admin"])).headers["etag"]
    changed = await client.patch(
        path, json={"roles": ["leader"], "active": False}, headers={**gw["admin"], "If-Match": etag}
    )
    assert changed.status_code == 200 and changed.json()["roles"] == ["leader"]
    assert changed.headers["etag"] != etag
    response = await client.post(
        "/api/auth/token",
        data={"grant_type": "password", "username": "tam.nghi", "password": "mot-mat-khau-du-dai"},
    )
    assert_problem(response, 401, "invalid_grant")


async def test_bad_input_is_a_clear_4xx(gw: dict[str, Any]) -> None:
    client: httpx.AsyncClient = gw["client"]
    admin = gw["admin"]
    cases = [
        (officer("Hoa Thuong"), 422),  # username pattern
        (officer("vai.tro", roles=["service"]), 422),
        (officer("cong.dan", roles=["citizen"]), 422),
        (officer("ma.sai", agency="H56"), 422),
        (officer("ma.sai2", agency="000.17.00.H56"), 422),  # a level below a missing one
        (officer("ngan", password="ngan"), 422),
        (officer("thua.truong", extra="x"), 422),
        ({"username": "thieu"}, 422),
    ]
    for body, status in cases:
        assert_problem(await client.post("/api/auth/users", json=body, headers=admin), status)
    await client.post("/api/auth/users", json=officer("trung.ten"), headers=admin)
    assert_problem(await client.post("/api/auth/users", json=officer("trung.ten"), headers=admin), 409)
    assert_problem(
        await client.post(
            "/api/auth/users", content=b"{not json", headers={**admin, "content-type": "application/json"}
        ),
        400,
    )
    assert_problem(await client.get("/api/auth/users", params={"cursor": "abc"}, headers=admin), 400)
    assert_problem(await client.get("/api/auth/users", params={"limit": 0}, headers=admin), 422)
    assert_problem(await client.get("/api/auth/users", params={"sort": "name"}, headers=admin), 400)
    assert_problem(await client.get("/api/auth/users/khong-co", headers=admin), 404)
    for role in ("specialist", "integrator", "auditor"):
        token = bearer(await token_for(client, role))
        assert_problem(await client.get("/api/auth/users", headers=token), 403)
    assert_problem(await client.get("/api/auth/users"), 401)


async def test_pages_follow_the_cursor(gw: dict[str, Any]) -> None:
    client: httpx.AsyncClient = gw["client"]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/auth/users", params=params, headers=gw["admin"])).json()
        assert len(page["items"]) <= 2
        seen += [u["username"] for u in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) and {"admin", "citizen"} - set(seen) == {"citizen"}


async def test_service_clients_deactivated_or_re_keyed(gw: dict[str, Any]) -> None:
    client: httpx.AsyncClient = gw["client"]
    created = await client.post(
        "/api/auth/clients",
        json={"client_id": "he-thong-17", "roles": ["integrator"], "agency": DISTRICT},
        headers=gw["admin"],
    )
    assert created.status_code == 201 and created.headers["cache-control"] == "no-store"
    old_secret = created.json()["client_secret"]
    renewed = await client.post("/api/auth/clients/he-thong-17/secret", headers=gw["admin"])
    new_secret = renewed.json()["client_secret"]

    async def grant(secret: str) -> httpx.Response:
        return await client.post(
            "/api/auth/token",
            data={"grant_type": "client_credentials", "client_id": "he-thong-17", "client_secret": secret},
        )

    assert_problem(await grant(old_secret), 401)
    assert (await grant(new_secret)).status_code == 200
    etag = (await client.get("/api/auth/clients/he-thong-17", headers=gw["admin"])).headers["etag"]
    off = await client.patch(
        "/api/auth/clients/he-thong-17", json={"active": False}, headers={**gw["admin"], "If-Match": etag}
    )
    assert off.status_code == 200
    assert_problem(await grant(new_secret), 401)
    listed = await client.get("/api/auth/clients", headers=gw["admin"])
    assert "he-thong-17" in {c["client_id"] for c in listed.json()["items"]}
    response = await client.post(
        "/api/auth/clients", json={"client_id": "x" * 3, "roles": ["service"], "agency": DISTRICT}, headers=gw["admin"]
    )
    assert_problem(response, 422)


async def test_a_leader_or_clerk_lists_the_people_of_their_own_agency_only(gw: dict[str, Any]) -> None:
    client: httpx.AsyncClient = gw["client"]
    leader = bearer(await token_for(client, "leader"))
    page = await client.get("/api/auth/colleagues", params={"role": "specialist"}, headers=leader)
    assert page.status_code == 200, page.text
    items = page.json()["items"]
    # the province's specialist, not the ward's (inside the province's subtree, another agency)
    assert [u["username"] for u in items] == ["specialist"]
    assert items[0] == {"username": "specialist", "full_name": "Trần Thị Chuyên", "roles": ["specialist"]}
    everyone = (await client.get("/api/auth/colleagues", headers=leader)).json()["items"]
    assert {"desk_officer", "specialist", "leader", "clerk", "admin"} <= {u["username"] for u in everyone}
    assert not [u for u in everyone if "." in u["username"]], everyone  # no other agency's people

    ward_clerk = bearer(await token_for(client, "clerk.41"))
    ward = (await client.get("/api/auth/colleagues", params={"role": "specialist"}, headers=ward_clerk)).json()
    assert [u["username"] for u in ward["items"]] == ["specialist.41"]


async def test_a_deactivated_colleague_is_not_offered(gw: dict[str, Any]) -> None:
    client: httpx.AsyncClient = gw["client"]
    created = await client.post("/api/auth/users", json=officer("nghi.viec", "000.00.00.H56"), headers=gw["admin"])
    assert created.status_code == 201, created.text
    leader = bearer(await token_for(client, "leader"))

    async def names() -> list[str]:
        page = await client.get("/api/auth/colleagues", params={"role": "specialist"}, headers=leader)
        return [u["username"] for u in page.json()["items"]]

    assert "nghi.viec" in await names()
    patched = await client.patch(
        "/api/auth/users/nghi.viec",
        json={"active": False},
        headers={**gw["admin"], "If-Match": created.headers["etag"]},
    )
    assert patched.status_code == 200, patched.text
    assert "nghi.viec" not in await names()


async def test_colleagues_come_in_pages_and_refuse_bad_input_and_other_roles(gw: dict[str, Any]) -> None:
    client: httpx.AsyncClient = gw["client"]
    leader = bearer(await token_for(client, "leader"))
    whole = [u["username"] for u in (await client.get("/api/auth/colleagues", headers=leader)).json()["items"]]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/auth/colleagues", params=params, headers=leader)).json()
        assert len(page["items"]) <= 2
        seen += [u["username"] for u in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == whole and len(whole) > 2

    for params, status in (
        ({"role": "citizen"}, 422),
        ({"role": "x" * 5000}, 422),
        ({"limit": 0}, 422),
        ({"limit": 501}, 422),
        ({"cursor": "abc"}, 400),
        ({"agency": "000.00.41.H56"}, 400),  # no reaching into another agency by a parameter
    ):
        assert_problem(await client.get("/api/auth/colleagues", params=params, headers=leader), status)
    for role in ("specialist", "desk_officer", "admin", "auditor", "integrator", "citizen"):
        token = bearer(await token_for(client, role))
        assert_problem(await client.get("/api/auth/colleagues", headers=token), 403)
    assert_problem(await client.get("/api/auth/colleagues"), 401)
