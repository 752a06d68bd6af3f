"""Notify's queue is bound only to the event families some active subscription wants: with none,
the broker routes it nothing. A subscription's families are bound before its answer (so an event
published after it is owed), the others unbound by the reconciliation; two workers never leave
a wanted family unbound; the broker away makes a subscription a 503 that stores nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import delete

from services.notify import handlers
from services.notify.app import MIGRATIONS
from services.notify.config import get_settings
from services.notify.models import Subscription
from services.notify.state import NotifyState
from shared.bus import BusUnavailable, PublishError
from shared.bus.amqp import AmqpBroker
from shared.db import Database, session_scope
from shared.events import FAMILIES
from shared.migrations import upgrade_async
from tests.servers import rabbitmqctl, temporary_databases, temporary_vhost
from tests.services.notify.notify_support import INTEGRATOR, Notify, running_notify, stored_subscription
from tests.waiting import eventually

BINDABLE = handlers.bindable_families(get_settings().withheld_events)


def test_a_pattern_wants_its_family_and_a_wildcard_every_family() -> None:
    assert "access" not in BINDABLE and "dossier" in BINDABLE  # access records are never offered
    assert handlers.families_wanted(["document.issued"], BINDABLE) == ["document"]
    assert handlers.families_wanted(["dossier.#", "document.*", "dossier.received"], BINDABLE) == sorted(
        ["document", "dossier"], key=FAMILIES.index
    )
    assert handlers.families_wanted(["*.issued"], BINDABLE) == BINDABLE
    assert handlers.families_wanted(["#"], BINDABLE) == BINDABLE
    assert handlers.families_wanted(["access.recorded"], BINDABLE) == []
    assert handlers.families_wanted([], BINDABLE) == []


async def _routed(notify: Notify, routing_key: str) -> bool:
    """Whether the broker takes an event of this key (only notify's queue exists here)."""
    try:
        await notify.publish(routing_key)
    except PublishError:
        return False
    return True


async def _reconcile(notify: Notify) -> list[str]:
    runtime = notify.app.state.runtime
    return await NotifyState.of(runtime).bindings.reconcile(runtime.db, runtime.broker)


async def test_the_queue_follows_the_subscriptions(tmp_path: Path) -> None:
    async with running_notify(tmp_path) as notify:
        assert not await _routed(notify, "document.issued")  # nobody subscribed: nothing bound
        created = await notify.subscribe("https://example.vn/hook", ["document.*"])
        sid = created["id"]
        # bound before the answer: an event published right after it is owed
        assert await _routed(notify, "document.issued")
        await eventually(lambda: _owed(notify, sid, "document.issued"), within=5)
        assert not await _routed(notify, "dossier.received")

        etag = (await notify.client.get(f"/subscriptions/{sid}", headers=INTEGRATOR)).headers["ETag"]
        changed = await notify.client.patch(
            f"/subscriptions/{sid}",
            json={"event_types": ["dossier.#"]},
            headers={**INTEGRATOR, "If-Match": etag},
        )
        assert changed.status_code == 200, changed.text
        assert await _routed(notify, "dossier.received")  # widened: bound at once
        await eventually(lambda: _owed(notify, sid, "dossier.received"), within=5)
        # narrowed away from documents: unbound by the reconciliation, not before
        assert await _routed(notify, "document.issued")
        assert await _reconcile(notify) == ["dossier"]
        assert not await _routed(notify, "document.issued")

        deleted = await notify.client.delete(f"/subscriptions/{sid}", headers=INTEGRATOR)
        assert deleted.status_code == 204
        assert await _reconcile(notify) == []
        assert not await _routed(notify, "dossier.received")


async def _owed(notify: Notify, subscription_id: int, event: str) -> bool:
    deliveries = await notify.deliveries(subscription_id)
    return any(d["event_type"].endswith(f".{event}.v1") for d in deliveries)


async def test_the_broker_away_refuses_a_subscription_and_stores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_notify(tmp_path) as notify:

        async def away(*args: object, **kwargs: object) -> None:
            raise BusUnavailable("not connected to RabbitMQ")

        monkeypatch.setattr(notify.broker, "rebind", away)
        refused = await notify.client.post(
            "/subscriptions",
            json={"callback_url": "https://example.vn/hook", "event_types": ["document.*"]},
            headers=INTEGRATOR,
        )
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        listed = await notify.client.get("/subscriptions", headers=INTEGRATOR)
        assert listed.json()["items"] == []


# ----------------------------------------------------------- two workers, PostgreSQL and RabbitMQ


def _bound(vhost: str) -> set[str]:
    out = rabbitmqctl("list_bindings", "-p", vhost, "source_name", "destination_name", "routing_key", "--silent")
    rows = [line.split("\t") for line in out.stdout.splitlines() if line.strip()]
    return {key for source, destination, key in rows if source == "lienthong.events" and destination == "notify"}


@pytest.fixture
async def two_workers() -> AsyncIterator[tuple[str, list[tuple[Database, AmqpBroker]]]]:
    with temporary_databases(["notify"]) as urls, temporary_vhost() as amqp_url:
        await upgrade_async(MIGRATIONS, urls["notify"], service="notify")
        workers = [(Database(urls["notify"]), AmqpBroker(amqp_url)) for _ in range(2)]
        for _, broker in workers:
            await broker.connect()
        try:
            yield amqp_url.rsplit("/", 1)[1], workers
        finally:
            for db, broker in workers:
                await broker.close()
                await db.dispose()


@pytest.mark.pg
@pytest.mark.amqp
async def test_two_workers_never_unbind_what_a_subscription_wants(two_workers) -> None:  # type: ignore[no-untyped-def]
    vhost, [(db_a, broker_a), (db_b, broker_b)] = two_workers
    bindings = handlers.QueueBindings(BINDABLE)
    settings = get_settings()
    await handlers.consumer(settings, handlers.SubscriptionCache(1.0), bindings).attach(
        broker_a, db_a, batch=10, prefetch=20
    )
    assert _bound(vhost) == set()  # no subscription: the broker routes notify nothing

    now = datetime.now(UTC)
    async with session_scope(db_b) as session:
        session.add(stored_subscription(["document.issued"], now))
        await session.flush()
        await bindings.bind_for(session, broker_b, ["document.issued"])
    assert _bound(vhost) == {"document.#"}
    assert await bindings.reconcile(db_a, broker_a) == ["document"]

    # A writer on B has bound its family and not committed yet when A reconciles: A waits for the
    # commit (the lock), so it reads the new subscription and keeps the binding.
    bound_not_committed = asyncio.Event()

    async def writer() -> None:
        async with session_scope(db_b) as session:
            session.add(stored_subscription(["dossier.#"], now))
            await session.flush()
            await bindings.bind_for(session, broker_b, ["dossier.#"])
            bound_not_committed.set()
            await asyncio.sleep(0.5)

    writing = asyncio.create_task(writer())
    await bound_not_committed.wait()
    wanted = await bindings.reconcile(db_a, broker_a)
    await writing
    assert wanted == ["document", "dossier"]
    assert _bound(vhost) == {"document.#", "dossier.#"}

    async with session_scope(db_b) as session:
        await session.execute(delete(Subscription))
    assert await bindings.reconcile(db_a, broker_a) == []
    assert _bound(vhost) == set()
    # the consumer's own re-attach after a reconnect keeps what the reconciliation made
    await broker_a._attach("notify")
    assert _bound(vhost) == set()
