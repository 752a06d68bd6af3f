"""Dead letters an operator can see and mend: every consumer's dead-letter depth in /readyz
(degraded while any wait) and /metrics, an admin-only API to list and replay them, and
``python -m lienthong dlq``; on the in-process broker and on RabbitMQ."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.app import ServiceDefinition, create_service_app
from shared.bus import Broker, OutgoingMessage
from shared.bus.amqp import AmqpBroker
from shared.bus.memory import InProcessBroker
from shared.events import EXCHANGE, CloudEvent
from shared.inbox import Consumer, PoisonEvent
from shared.settings import Settings, load_settings
from tests import harness
from tests.servers import temporary_vhost
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
KID = "dlq-test"


class Ledger:
    """A part of one consumer whose handler refuses ``poison`` events until it is mended."""

    def __init__(self) -> None:
        self.mended = False
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    async def apply(self, session: AsyncSession, event: CloudEvent) -> None:
        if event.data.get("poison") and not self.mended:
            raise PoisonEvent("not yet")
        await session.execute(harness.applied.insert().values(event_id=event.id, aggregate=event.subject, sequence="0"))

    def consumer(self, name: str = "ledger") -> Consumer:
        return Consumer(name=name, handlers={"ledger.*": self.apply}, inbox=harness.inbox)

    def token(self, role: str) -> dict[str, str]:
        now = int(time.time())
        claims = {
            "sub": role,
            "iss": "urn:lienthong:identity",
            "aud": "lienthong",
            "iat": now,
            "exp": now + 600,
            "roles": [role],
            "name": role,
        }
        return {"Authorization": "Bearer " + jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": KID})}


@asynccontextmanager
async def ledger_part(
    tmp_path: Path, ledger: Ledger, broker: Broker, *, name: str = "ledger"
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(ledger.key.public_key(), as_dict=True)

    async def keys() -> dict[str, Any]:
        return {"keys": [{**jwk, "kid": KID, "alg": "RS256", "use": "sig"}]}

    settings = load_settings(Settings, "ledger", var_dir=tmp_path, auto_migrate=False, log_json=False, amqp_url=None)
    definition = ServiceDefinition(
        name="ledger",
        title="ledger",
        description="a test part",
        settings=settings,
        metadata=harness.metadata,
        migrations=tmp_path,
        consumers=[ledger.consumer(name)],
    )
    app = create_service_app(definition, broker=broker, key_source=keys)
    async with app.router.lifespan_context(app):
        await harness.create_schema(app.state.runtime.db)
        await app.state.runtime.consumers_started.wait()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ledger") as client:
            yield client, app.state.runtime


def events(*poison: bool) -> list[CloudEvent]:
    return [
        CloudEvent(source="urn:test", type="vn.lienthong.ledger.changed.v1", subject=f"a-{i}", data={"poison": p})
        for i, p in enumerate(poison)
    ]


async def publish(broker: Broker, batch: list[CloudEvent]) -> None:
    await broker.publish(
        [OutgoingMessage(routing_key=e.routing_key, body=e.to_bytes(), message_id=e.id) for e in batch]
    )


async def applied_count(runtime: Any) -> int:
    async with runtime.db.sessionmaker() as session:
        return (await session.execute(select(func.count()).select_from(harness.applied))).scalar_one()


async def walk_through(client: httpx.AsyncClient, runtime: Any, ledger: Ledger, poison_id: str) -> None:
    """What an operator meets, from the poison event's death to its replay."""
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
    assert ready.json()["checks"]["dead_letters"] == {"ledger.dlq": 1}
    assert 'lienthong_bus_dead_letters{queue="ledger.dlq"} 1.0' in (await client.get("/metrics")).text

    assert (await client.get("/dead-letters")).status_code == 401
    assert (await client.get("/dead-letters", headers=ledger.token("auditor"))).status_code == 403
    listed = await client.get("/dead-letters", headers=ledger.token("admin"))
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["depths"] == {"ledger.dlq": 1}
    [letter] = body["letters"]
    assert letter["message_id"] == poison_id and letter["queue"] == "ledger"
    assert letter["routing_key"] == "ledger.changed" and letter["reason"] == "rejected"
    assert letter["event"]["data"] == {"poison": True}
    # looking leaves it there
    assert (await client.get("/readyz")).json()["checks"]["dead_letters"] == {"ledger.dlq": 1}

    wrong = await client.post("/dead-letters/replay", json={"queue": "elsewhere"}, headers=ledger.token("admin"))
    assert wrong.status_code == 404 and wrong.headers["content-type"].startswith("application/problem+json")
    assert (await client.post("/dead-letters/replay", json={}, headers=ledger.token("auditor"))).status_code == 403

    ledger.mended = True
    replayed = await client.post("/dead-letters/replay", json={}, headers=ledger.token("admin"))
    assert replayed.status_code == 200, replayed.text
    assert replayed.json() == {"replayed": {"ledger": 1}}

    async def all_applied() -> bool:
        return await applied_count(runtime) == 3

    await eventually(all_applied, within=30, what="the three events applied")

    async def ready_again() -> bool:
        return (await client.get("/readyz")).json()["status"] == "ok"

    await eventually(ready_again, within=30, what="readiness ok again")
    assert 'lienthong_bus_dead_letters{queue="ledger.dlq"} 0.0' in (await client.get("/metrics")).text


async def test_dead_letters_on_the_in_process_broker(tmp_path: Path) -> None:
    broker = InProcessBroker(delivery_limit=2)
    await broker.connect()
    ledger = Ledger()
    try:
        async with ledger_part(tmp_path, ledger, broker) as (client, runtime):
            batch = events(False, True, False)
            await publish(broker, batch)
            await walk_through(client, runtime, ledger, batch[1].id)
    finally:
        await broker.close()


@pytest.mark.amqp
async def test_dead_letters_on_rabbitmq_and_the_command(tmp_path: Path) -> None:
    with temporary_vhost() as url:
        # an integrator's queue bound to the same events: a replay must not reach it again
        watcher_connection = await aio_pika.connect(url)
        watcher = await watcher_connection.channel()
        exchange = await watcher.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        watched = await watcher.declare_queue("integrator.watcher", durable=True)
        await watched.bind(exchange, "ledger.#")
        broker = AmqpBroker(url, delivery_limit=2)
        await broker.connect()
        ledger = Ledger()
        try:
            async with ledger_part(tmp_path, ledger, broker) as (client, runtime):
                batch = events(False, True, False)
                await publish(broker, batch)

                async def dead() -> bool:
                    return (await broker.queue_depths(["ledger"]))["ledger.dlq"] == 1

                await eventually(dead, within=30, what="the poison event dead-lettered")
                await walk_through(client, runtime, ledger, batch[1].id)
                again = await watcher.declare_queue("integrator.watcher", passive=True)
                assert again.declaration_result.message_count == 3

        finally:
            await broker.close()
            await watcher_connection.close()


@pytest.mark.amqp
async def test_the_dlq_command_lists_and_replays_a_parts_dead_letters(tmp_path: Path) -> None:
    with temporary_vhost() as url:
        broker = AmqpBroker(url, delivery_limit=2)
        await broker.connect()
        ledger = Ledger()
        try:
            # the test part's consumer stands in for intake's queue, which the command looks up
            async with ledger_part(tmp_path, ledger, broker, name="intake") as (_client, runtime):
                batch = events(True, False)
                await publish(broker, batch)

                async def dead() -> bool:
                    return (await broker.queue_depths(["intake"]))["intake.dlq"] == 1

                await eventually(dead, within=30, what="the poison event dead-lettered")
                env = {k: v for k, v in os.environ.items() if not k.startswith("LIENTHONG_")}
                listed = await asyncio.to_thread(_command, {**env, "LIENTHONG_AMQP_URL": url}, "list", "intake")
                assert listed.returncode == 0, listed.stderr
                lines = listed.stdout.splitlines()
                assert lines[0] == "intake.dlq: 1 waiting"
                letter = json.loads(lines[1])
                assert letter["message_id"] == batch[0].id and letter["routing_key"] == "ledger.changed"
                assert json.loads(letter["body"])["data"] == {"poison": True}

                embedded = await asyncio.to_thread(_command, env, "list", "intake")
                assert embedded.returncode == 2 and "/api/intake/dead-letters" in embedded.stderr

                ledger.mended = True
                replayed = await asyncio.to_thread(
                    _command, {**env, "LIENTHONG_AMQP_URL": url}, "replay", "intake", "--id", batch[0].id
                )
                assert replayed.returncode == 0 and replayed.stdout.strip() == "intake: 1 replayed", replayed

                async def both_applied() -> bool:
                    return await applied_count(runtime) == 2

                await eventually(both_applied, within=30, what="the replayed events applied")
                assert (await broker.queue_depths(["intake"]))["intake.dlq"] == 0
        finally:
            await broker.close()


def _command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lienthong", "dlq", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
