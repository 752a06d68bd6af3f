"""Notify's API: who sees which subscription, the secret shown once, idempotent creation,
callback targets refused (private, loopback, link-local, credentials), bad input as 4xx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from services.notify.targets import GuardedResolver, address_allowed
from tests.gateway.gateway_support import assert_problem, serve
from tests.services.notify.notify_support import INTEGRATOR, Notify, Receiver, running_notify, token
from tests.waiting import eventually

OTHER_INTEGRATOR = token("client:bao-dien-tu", ["integrator"])
DISTRICT_INTEGRATOR = token("client:huyen-17", ["integrator"], "000.00.17.H56")
PROVINCE_ADMIN = token("admin", ["admin"])
OTHER_ADMIN = token("admin-h01", ["admin"], "000.00.00.H01")


@pytest_asyncio.fixture(scope="module")
async def notify(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    receiver = Receiver()
    async with serve(receiver, lifespan="off") as callback:
        async with running_notify(tmp_path_factory.mktemp("notify-api")) as running:
            yield {"notify": running, "callback": callback}


async def test_each_integrator_sees_its_own_and_an_admin_their_subtree(notify: dict[str, Any]) -> None:
    n: Notify = notify["notify"]
    mine = await n.subscribe(notify["callback"], ["dossier.*"])
    theirs = await n.subscribe(notify["callback"], ["document.issued"], headers=DISTRICT_INTEGRATOR)
    assert theirs["agency"] == "000.00.17.H56"
    listed = {s["id"] for s in (await n.client.get("/subscriptions", headers=INTEGRATOR)).json()["items"]}
    assert mine["id"] in listed and theirs["id"] not in listed
    assert_problem(await n.client.get(f"/subscriptions/{mine['id']}", headers=OTHER_INTEGRATOR), 404)
    assert_problem(await n.client.delete(f"/subscriptions/{mine['id']}", headers=OTHER_INTEGRATOR), 404)
    admin_sees = {s["id"] for s in (await n.client.get("/subscriptions", headers=PROVINCE_ADMIN)).json()["items"]}
    assert {mine["id"], theirs["id"]} <= admin_sees
    assert_problem(await n.client.get(f"/subscriptions/{mine['id']}", headers=OTHER_ADMIN), 404)
    one = await n.client.get(f"/subscriptions/{mine['id']}", headers=PROVINCE_ADMIN)
    assert one.status_code == 200 and "secret" not in one.json()
    for role in ("citizen", "desk_officer", "auditor"):
        assert_problem(await n.client.get("/subscriptions", headers=token(role, [role])), 403)
    assert_problem(await n.client.get("/subscriptions"), 401)


async def test_an_integrator_subscribes_only_inside_its_agency(notify: dict[str, Any]) -> None:
    n: Notify = notify["notify"]
    response = await n.client.post(
        "/subscriptions",
        json={"callback_url": notify["callback"], "event_types": ["#"], "agency": "000.00.00.H01"},
        headers=INTEGRATOR,
    )
    assert_problem(response, 403)
    response = await n.client.post(
        "/subscriptions",
        json={"callback_url": notify["callback"], "event_types": ["#"], "agency": "000.00.00.H56"},
        headers=DISTRICT_INTEGRATOR,
    )
    assert_problem(response, 403)


async def test_creation_is_idempotent_by_key(notify: dict[str, Any]) -> None:
    n: Notify = notify["notify"]
    body = {"callback_url": notify["callback"], "event_types": ["signature.completed"]}
    headers = {**INTEGRATOR, "Idempotency-Key": "tao-1"}
    first = await n.client.post("/subscriptions", json=body, headers=headers)
    again = await n.client.post("/subscriptions", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    for header in ("location", "etag", "cache-control"):
        assert again.headers[header] == first.headers[header], header
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    other = await n.client.post("/subscriptions", json={**body, "event_types": ["#"]}, headers=headers)
    assert_problem(other, 422, "idempotency_key_reused")


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://192.168.1.10/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://[fe80::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://0.0.0.0/hook",
        "https://localhost/hook",
        "https://metadata.internal/hook",
        "http://example.com/hook",
        "https://user:secret@example.com/hook",
        "ftp://example.com/hook",
        "https:///nohost",
        "https://example.com:99999/x",
    ],
)
async def test_internal_and_malformed_callbacks_are_refused_by_default(tmp_path: Any, url: str) -> None:
    async with running_notify(tmp_path, allow_private_targets=False, callback_schemes=["https"]) as n:
        response = await n.client.post(
            "/subscriptions", json={"callback_url": url, "event_types": ["#"]}, headers=INTEGRATOR
        )
        assert_problem(response, 422)


def test_the_address_rules() -> None:
    for address in ("127.0.0.1", "10.0.0.1", "172.16.0.1", "100.64.0.1", "169.254.1.1", "::1", "fc00::1", "224.0.0.1"):
        assert not address_allowed(address, allow_private=False), address
    for address in ("8.8.8.8", "2001:4860:4860::8888"):
        assert address_allowed(address, allow_private=False), address
    assert address_allowed("127.0.0.1", allow_private=True)


async def test_the_delivery_resolver_drops_internal_addresses() -> None:
    resolver = GuardedResolver(allow_private=False)
    try:
        with pytest.raises(OSError):
            await resolver.resolve("localhost", 443)
    finally:
        await resolver.close()


async def test_a_stored_callback_that_turned_internal_is_not_called(tmp_path: Any) -> None:
    """Rules tightened after a subscription was saved: the worker refuses at send time."""
    receiver = Receiver()
    async with serve(receiver, lifespan="off") as callback:
        async with running_notify(tmp_path) as n:
            created = await n.subscribe(callback, ["document.*"])
            n.app.state.runtime.settings.allow_private_targets = False
            # the test delivery may already have gone out before the change; publish a new one
            event = await n.publish("document.issued")
            deliveries = await eventually(lambda: _delivery_of(n, created["id"], event.id))
            detail = await eventually(lambda: _attempted(n, created["id"], deliveries))
            assert "target refused" in detail["attempts_log"][0]["error"]
            assert not receiver.for_id(event.id)


async def _delivery_of(n: Notify, subscription_id: int, event_id: str) -> Any:
    for d in await n.deliveries(subscription_id):
        if d["event_id"] == event_id:
            return d["id"]
    return None


async def _attempted(n: Notify, subscription_id: int, delivery_id: int) -> Any:
    detail = await n.delivery(subscription_id, delivery_id)
    return detail if detail["attempts_log"] else None


async def test_bad_input_is_a_clear_4xx(notify: dict[str, Any]) -> None:
    n: Notify = notify["notify"]
    good = {"callback_url": notify["callback"], "event_types": ["document.*"]}
    for body in (
        {**good, "event_types": []},
        {**good, "event_types": ["Document.Issued"]},
        {**good, "event_types": ["document..issued"]},
        {**good, "event_types": ["document.*"] * 21},
        {**good, "agency": "H56"},
        {**good, "unknown": 1},
        {**good, "callback_url": "not a url"},
        {**good, "callback_url": "https://" + "a" * 2100 + ".vn/"},
        {"event_types": ["#"]},
    ):
        assert_problem(await n.client.post("/subscriptions", json=body, headers=INTEGRATOR), 422)
    assert_problem(
        await n.client.post(
            "/subscriptions", content=b"{bad", headers={**INTEGRATOR, "content-type": "application/json"}
        ),
        400,
    )
    created = await n.subscribe(notify["callback"], ["document.*"])
    sid = created["id"]
    assert_problem(await n.client.get("/subscriptions/abc", headers=INTEGRATOR), 422)
    assert_problem(await n.client.get("/subscriptions/999999", headers=INTEGRATOR), 404)
    assert_problem(await n.client.get(f"/subscriptions/{sid}/deliveries/999999", headers=INTEGRATOR), 404)
    assert_problem(
        await n.client.get(f"/subscriptions/{sid}/deliveries", params={"status": "weird"}, headers=INTEGRATOR), 422
    )
    assert_problem(
        await n.client.get(f"/subscriptions/{sid}/deliveries", params={"cursor": "x"}, headers=INTEGRATOR), 400
    )
    assert_problem(
        await n.client.get(
            f"/subscriptions/{sid}/deliveries", params={"since": "2026-01-01T00:00:00"}, headers=INTEGRATOR
        ),
        400,
    )
    assert_problem(
        await n.client.get(f"/subscriptions/{sid}/deliveries", params={"colour": "red"}, headers=INTEGRATOR), 400
    )
    assert_problem(
        await n.client.post(
            f"/subscriptions/{sid}/replay",
            json={"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
            headers=INTEGRATOR,
        ),
        422,
    )
    assert_problem(await n.client.patch(f"/subscriptions/{sid}", json={"description": "x"}, headers=INTEGRATOR), 428)
    assert_problem(
        await n.client.patch(
            f"/subscriptions/{sid}", json={"description": "x"}, headers={**INTEGRATOR, "If-Match": '"7"'}
        ),
        412,
    )
    deleted = await n.client.delete(f"/subscriptions/{sid}", headers=INTEGRATOR)
    assert deleted.status_code == 204
    assert_problem(await n.client.get(f"/subscriptions/{sid}", headers=INTEGRATOR), 404)


async def test_deliveries_page_by_cursor(notify: dict[str, Any]) -> None:
    n: Notify = notify["notify"]
    created = await n.subscribe(notify["callback"], ["workfile.opened"])
    for _ in range(5):
        await n.publish("workfile.opened")
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (
            await n.client.get(f"/subscriptions/{created['id']}/deliveries", params=params, headers=INTEGRATOR)
        ).json()
        seen += [d["id"] for d in page["items"]]
        cursor = page["next"]
        if not cursor:
            break
    assert len(seen) == 6 and seen == sorted(seen, reverse=True)
