"""Webhook delivery: each event exactly once by webhook-id through 500, a timeout and a 200;
Standard Webhooks signatures verified by the `standardwebhooks` package; 410 disables; redirects
are not followed; Retry-After is honoured; retries end after the horizon; replays resend."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cloudevents.http import from_http
from standardwebhooks import Webhook

from shared import clock
from shared.bus import PublishError
from tests.contract.test_event_contract import breaches
from tests.gateway.gateway_support import serve
from tests.services.notify.notify_support import (
    AGENCY,
    INTEGRATOR,
    Receiver,
    running_notify,
)
from tests.waiting import eventually


async def test_each_event_once_by_webhook_id_through_500_then_timeout_then_200(tmp_path: Path) -> None:
    def script(webhook_id: str, nth: int, body: bytes) -> tuple[int, dict[str, str], float]:
        if b"vn.lienthong.webhook.test.v1" in body:
            return 200, {}, 0.0
        return {1: (500, {}, 0.0), 2: (200, {}, 1.0), 3: (200, {}, 0.0)}[min(nth, 3)]  # 2: answers too late

    test_ids: set[str] = set()
    receiver = Receiver(script)
    async with serve(receiver, lifespan="off") as callback, running_notify(tmp_path) as notify:
        created = await notify.subscribe(callback + "/hooks/lienthong", ["document.*"])
        secret = created["secret"]
        assert secret.startswith("whsec_")
        test = await notify.delivery(created["id"], created["test_delivery_id"])
        test_ids.add(test["event_id"])
        owed = [await notify.publish("document.issued") for _ in range(4)]
        with pytest.raises(PublishError, match="no queue bound"):
            await notify.publish("dossier.received")  # no subscription wants dossiers: not even bound
        await notify.publish("document.issued", agency="000.00.00.H01")  # another province
        with pytest.raises(PublishError, match="no queue bound"):
            await notify.publish("access.recorded")  # internal, never offered: notify does not even bind it
        ids = [e.id for e in owed]
        await eventually(lambda: all(receiver.processed.get(i) for i in ids), within=15)
        await asyncio.sleep(0.5)  # time for any (wrong) extra attempt to show up

        webhook = Webhook(secret)
        delivered_ids = {r.headers["webhook-id"] for r in receiver.requests}
        assert delivered_ids == set(ids) | test_ids
        # the test delivery is sent whatever the event types, and its type is in the contract
        [test_body] = [json.loads(r.body) for r in receiver.requests if r.headers["webhook-id"] in test_ids]
        assert test_body["type"] == "vn.lienthong.webhook.test.v1"
        assert breaches(test_body) == []
        assert test_body["data"]["subscription_id"] == created["id"] and test_body["data"]["actor"]["sub"]
        for event in owed:
            attempts = receiver.for_id(event.id)
            assert [a.answered for a in attempts] == [500, 200, 200]  # the 2nd came too late to count
            for attempt in attempts:
                assert webhook.verify(attempt.body, attempt.headers)["id"] == event.id
                assert attempt.headers["content-type"].startswith("application/cloudevents+json")
                parsed = from_http(attempt.headers, attempt.body)
                assert parsed["id"] == event.id and parsed["type"] == "vn.lienthong.document.issued.v1"
                assert parsed["agency"] == AGENCY
        # what the integrator sees: each delivery, every attempt
        listed = await notify.deliveries(created["id"])
        by_event = {d["event_id"]: d for d in listed}
        assert set(by_event) == set(ids) | test_ids
        for event in owed:
            summary = by_event[event.id]
            assert summary["status"] == "delivered" and summary["attempts"] == 3
            detail = await notify.delivery(created["id"], summary["id"])
            log = [(a["number"], a["status_code"], a["error"] is None) for a in detail["attempts_log"]]
            assert log == [(1, 500, True), (2, None, False), (3, 200, True)]
            assert "no answer within" in detail["attempts_log"][1]["error"]
        attempts = (await notify.client.get(f"/subscriptions/{created['id']}/attempts", headers=INTEGRATOR)).json()
        assert len(attempts["items"]) == 13


async def test_410_disables_the_subscription_until_its_owner_re_enables_it(tmp_path: Path) -> None:
    gone = {"yes": False}
    receiver = Receiver(lambda _id, _n, _b: (410, {}, 0.0) if gone["yes"] else (200, {}, 0.0))
    async with serve(receiver, lifespan="off") as callback, running_notify(tmp_path) as notify:
        created = await notify.subscribe(callback, ["document.#"])
        await eventually(lambda: len(receiver.requests) == 1)  # the test delivery
        gone["yes"] = True
        first = await notify.publish("document.issued")
        await eventually(lambda: receiver.for_id(first.id))
        path = f"/subscriptions/{created['id']}"
        state = await eventually(lambda: _inactive(notify, path))
        assert state["disabled_reason"] == "the callback answered 410 Gone"
        deliveries = {d["event_id"]: d for d in await notify.deliveries(created["id"])}
        assert deliveries[first.id]["status"] == "failed" and deliveries[first.id]["attempts"] == 1
        second = await notify.publish("document.issued")
        await asyncio.sleep(0.4)
        assert not receiver.for_id(second.id)
        assert second.id not in {d["event_id"] for d in await notify.deliveries(created["id"])}
        # re-enabled, it is delivered to again
        gone["yes"] = False
        etag = (await notify.client.get(path, headers=INTEGRATOR)).headers["etag"]
        response = await notify.client.patch(path, json={"active": True}, headers={**INTEGRATOR, "If-Match": etag})
        assert response.status_code == 200 and response.json()["active"] is True
        third = await notify.publish("document.issued")
        await eventually(lambda: receiver.processed.get(third.id))


async def _inactive(notify, path):  # type: ignore[no-untyped-def]
    body = (await notify.client.get(path, headers=INTEGRATOR)).json()
    return body if body["active"] is False else None


async def test_redirects_are_not_followed(tmp_path: Path) -> None:
    elsewhere = Receiver()
    async with serve(elsewhere, lifespan="off") as other:
        receiver = Receiver(lambda _id, _n, _b: (302, {"location": other + "/steal"}, 0.0))
        async with serve(receiver, lifespan="off") as callback, running_notify(tmp_path) as notify:
            created = await notify.subscribe(callback, ["document.issued"])
            await eventually(lambda: len(receiver.requests) >= 2)
            detail = await notify.delivery(created["id"], created["test_delivery_id"])
            first = detail["attempts_log"][0]
            assert first["status_code"] == 302 and "not followed" in first["error"]
            assert detail["status"] == "pending"  # tried again later, never at the other address
    assert elsewhere.requests == []


async def test_retry_after_is_honoured(tmp_path: Path) -> None:
    receiver = Receiver(lambda _id, n, _b: (503, {"retry-after": "3600"}, 0.0) if n == 1 else (200, {}, 0.0))
    async with (
        serve(receiver, lifespan="off") as callback,
        running_notify(tmp_path, retry_horizon_seconds=7200) as notify,
    ):
        created = await notify.subscribe(callback, ["document.issued"])

        async def scheduled() -> dict[str, Any] | None:
            # the first attempt answered and recorded (``attempts`` counts it from the moment it
            # starts, while its request is in flight; the log holds it once it is over)
            detail = await notify.delivery(created["id"], created["test_delivery_id"])
            return detail if len(detail["attempts_log"]) == 1 else None

        detail = await eventually(scheduled, within=5)
        first = datetime.fromisoformat(detail["attempts_log"][0]["started_at"])
        due = datetime.fromisoformat(detail["next_attempt_at"])
        assert due - first >= timedelta(seconds=3599), due - first  # the backoff alone: ~0.05 s
        with clock.advanced(3600):
            await eventually(lambda: receiver.processed.get(detail["event_id"]), within=5)
        assert [r.answered for r in receiver.requests] == [503, 200]


async def test_retries_stop_after_the_horizon(tmp_path: Path) -> None:
    receiver = Receiver(lambda _id, _n, _b: (500, {}, 0.0))
    async with (
        serve(receiver, lifespan="off") as callback,
        running_notify(tmp_path, retry_horizon_seconds=0.6) as notify,
    ):
        created = await notify.subscribe(callback, ["document.issued"])

        async def given_up() -> bool:
            return (await notify.delivery(created["id"], created["test_delivery_id"]))["status"] == "failed"

        await eventually(given_up, within=5)
        tries = len(receiver.requests)
        assert 3 <= tries <= 12
        # given up for good: nothing left to claim, rather than a pause that shows no new try
        detail = await notify.delivery(created["id"], created["test_delivery_id"])
        assert detail["next_attempt_at"] is None and detail["attempts"] == tries


async def test_replay_of_one_delivery_and_of_a_time_range(tmp_path: Path) -> None:
    receiver = Receiver()
    async with serve(receiver, lifespan="off") as callback, running_notify(tmp_path) as notify:
        created = await notify.subscribe(callback, ["document.*"])
        events = [await notify.publish("document.issued") for _ in range(3)]
        await eventually(lambda: all(receiver.processed.get(e.id) for e in events))
        sid = created["id"]
        one = next(d for d in await notify.deliveries(sid) if d["event_id"] == events[0].id)
        response = await notify.client.post(f"/subscriptions/{sid}/deliveries/{one['id']}/replay", headers=INTEGRATOR)
        assert response.status_code == 202 and response.json()["status"] == "pending"
        await eventually(lambda: receiver.processed[events[0].id] == 2)
        now = datetime.now(UTC)
        window = {"since": (now - timedelta(minutes=5)).isoformat(), "until": (now + timedelta(minutes=1)).isoformat()}
        failed_only = await notify.client.post(f"/subscriptions/{sid}/replay", json=window, headers=INTEGRATOR)
        assert failed_only.status_code == 202 and failed_only.json() == {"replayed": 0}
        everything = await notify.client.post(
            f"/subscriptions/{sid}/replay", json={**window, "status": "all"}, headers=INTEGRATOR
        )
        assert everything.json() == {"replayed": 4}  # three events and the test delivery
        await eventually(lambda: all(receiver.processed[e.id] >= 2 for e in events[1:]))
        # replays carry the same webhook-id: a receiver that already has it can skip it
        assert {r.headers["webhook-id"] for r in receiver.requests} == {e.id for e in events} | {
            (await notify.delivery(sid, created["test_delivery_id"]))["event_id"]
        }


async def test_a_rotated_secret_signs_beside_the_old_one_for_a_while(tmp_path: Path) -> None:
    receiver = Receiver()
    async with serve(receiver, lifespan="off") as callback, running_notify(tmp_path) as notify:
        created = await notify.subscribe(callback, ["document.*"])
        rotated = await notify.client.post(f"/subscriptions/{created['id']}/secret", headers=INTEGRATOR)
        assert rotated.status_code == 200
        event = await notify.publish("document.issued")
        await eventually(lambda: receiver.for_id(event.id))
        (request,) = receiver.for_id(event.id)
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        for secret in (created["secret"], rotated.json()["secret"]):
            Webhook(secret).verify(request.body, request.headers)
