"""The in-process broker keeps RabbitMQ's semantics: topic routing, retries, dead letters."""

from __future__ import annotations

import asyncio

import pytest

from shared.bus import Delivery, OutgoingMessage, PublishError, topic_matches
from shared.bus.memory import InProcessBroker
from tests.waiting import eventually


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("#", "dossier.received", True),
        ("dossier.*", "dossier.received", True),
        ("dossier.*", "document.issued", False),
        ("*.issued", "document.issued", True),
        ("document.#", "document", True),
        ("a.#.z", "a.b.c.z", True),
        ("a.*", "a.b.c", False),
    ],
)
def test_topic_matching(pattern: str, key: str, matches: bool) -> None:
    assert topic_matches(pattern, key) is matches


def message(i: int, key: str = "dossier.received") -> OutgoingMessage:
    return OutgoingMessage(routing_key=key, body=str(i).encode(), message_id=f"m{i}")


async def test_publish_confirms_only_after_every_queue_handled_it() -> None:
    broker = InProcessBroker()
    await broker.connect()
    seen: dict[str, list[bytes]] = {"audit": [], "document": []}

    def recorder(name: str):  # type: ignore[no-untyped-def]
        async def handle(batch: list[Delivery]) -> None:
            for d in batch:
                seen[name].append(d.body)
                await d.ack()

        return handle

    await broker.consume("audit", ["#"], recorder("audit"), batch=10, prefetch=10)
    await broker.consume("document", ["dossier.*"], recorder("document"), batch=10, prefetch=10)
    assert await broker.publish([message(1), message(2, "document.issued")]) == 2
    assert seen["audit"] == [b"1", b"2"]
    assert seen["document"] == [b"1"]
    await broker.close()


async def test_unroutable_message_is_not_confirmed() -> None:
    broker = InProcessBroker()
    await broker.connect()
    with pytest.raises(PublishError) as info:
        await broker.publish([message(1)])
    assert info.value.confirmed == 0
    await broker.close()


async def test_poison_message_is_dead_lettered_after_the_limit_and_others_flow() -> None:
    broker = InProcessBroker(delivery_limit=3)
    await broker.connect()
    attempts: dict[bytes, int] = {}
    handled: list[bytes] = []

    async def handle(batch: list[Delivery]) -> None:
        for d in batch:
            attempts[d.body] = attempts.get(d.body, 0) + 1
            if d.body == b"2":
                await d.reject(requeue=True)
            else:
                handled.append(d.body)
                await d.ack()

    await broker.consume("q", ["#"], handle, batch=10, prefetch=10)
    await asyncio.wait_for(broker.publish([message(i) for i in range(1, 5)]), 5)
    assert handled == [b"1", b"3", b"4"]
    assert attempts[b"2"] == 3
    dead = await broker.dead_letters("q")
    assert [(d.message_id, d.reason, d.deliveries) for d in dead] == [("m2", "delivery_limit", 3)]
    depths = await broker.queue_depths()
    assert depths == {"q": 0, "q.dlq": 1}

    # An admin replays it once the cause is fixed.
    async def accept_all(batch: list[Delivery]) -> None:
        for d in batch:
            handled.append(d.body)
            await d.ack()

    await broker.close()
    await broker.connect()
    await broker.consume("q", ["#"], accept_all, batch=10, prefetch=10)
    assert await broker.replay_dead_letters("q") == 1
    await eventually(lambda: handled[-1:] == [b"2"], within=5, every=0.01, what="the replayed message")
    assert await broker.dead_letters("q") == []
    await broker.close()


async def test_rejected_without_requeue_goes_straight_to_dead_letters() -> None:
    broker = InProcessBroker(delivery_limit=5)
    await broker.connect()

    async def handle(batch: list[Delivery]) -> None:
        for d in batch:
            await d.reject(requeue=False)

    await broker.consume("q", ["#"], handle, batch=10, prefetch=10)
    await broker.publish([message(1)])
    dead = await broker.dead_letters("q")
    assert len(dead) == 1 and dead[0].reason == "rejected" and dead[0].deliveries == 1
    await broker.close()
