"""RabbitMQ through aio-pika: confirmed, persistent, mandatory publishing; quorum queues.

Every consumer owns one durable quorum queue bound to ``lienthong.events`` (and, for internal
events, ``lienthong.internal``) with a delivery limit; past it RabbitMQ dead-letters the message
through ``lienthong.dlx`` into ``<queue>.dlq`` (at-least-once dead-lettering, so even a poison
message is never dropped).
Robust connections re-declare queues, bindings and consumers after any reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel, AbstractRobustConnection

from shared.aio import stop_tasks
from shared.bus import (
    ORIGINAL_ROUTING_KEY,
    BatchHandler,
    Batching,
    Broker,
    BusUnavailable,
    DeadLetter,
    Delivery,
    OutgoingMessage,
    PublishError,
    dead_letter_queue,
    hand_over,
)
from shared.events import DEAD_LETTER_EXCHANGE, EXCHANGE, INTERNAL_EXCHANGE, STRUCTURED_CONTENT_TYPE

log = structlog.get_logger("amqp")
REBIND_TIMEOUT = 10.0  # seconds for each step of a binding change: a request waits on it


def queue_arguments(queue: str, *, delivery_limit: int) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        "x-dead-letter-routing-key": queue,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


class _AmqpDelivery(Delivery):
    acks_in_bulk = True

    def __init__(self, message: AbstractIncomingMessage) -> None:
        self._message = message
        self.body = message.body
        headers = message.headers or {}
        original = headers.get(ORIGINAL_ROUTING_KEY)
        if isinstance(original, bytes):
            original = original.decode()
        self.routing_key = str(original) if original else message.routing_key or ""
        self.message_id = message.message_id
        self.content_type = message.content_type
        # quorum queues count earlier deliveries in x-delivery-count
        self.delivery_count = int(headers.get("x-delivery-count", 0) or 0) + 1

    async def ack(self, *, multiple: bool = False) -> None:
        # After a reconnect the channel this came on is gone; the broker redelivers it and the
        # inbox recognises it, so a failed ack is harmless.
        with contextlib.suppress(Exception):
            await self._message.ack(multiple=multiple)

    async def reject(self, *, requeue: bool) -> None:
        with contextlib.suppress(Exception):
            await self._message.nack(requeue=requeue)


class AmqpBroker(Broker):
    def __init__(
        self,
        url: str,
        *,
        delivery_limit: int = 5,
        publish_timeout: float = 15.0,
        in_flight: int = 500,
    ) -> None:
        self.url = url
        self.delivery_limit = delivery_limit
        self.publish_timeout = publish_timeout
        self.in_flight = in_flight
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractRobustChannel | None = None
        self._exchanges: dict[str, aio_pika.abc.AbstractExchange] = {}  # by name: events, internal
        self._consumers: dict[str, tuple[AbstractRobustChannel, asyncio.Task[None]]] = {}
        # queue → (bindings, retired bindings, handler, batch, prefetch, linger, internal
        # bindings): what _attach needs again after a reconnect
        self._specs: dict[str, tuple[list[str], list[str], BatchHandler, int, int, float, list[str]]] = {}
        self._watchdog: asyncio.Task[None] | None = None
        self._publish_lock = asyncio.Lock()

    async def connect(self) -> None:
        self._connection = await aio_pika.connect_robust(
            self.url, client_properties={"connection_name": "lienthong"}, reconnect_interval=1
        )
        self._publish_channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        self._exchanges = await self._declare_topology(self._publish_channel)

    async def _declare_topology(self, channel: AbstractRobustChannel) -> dict[str, aio_pika.abc.AbstractExchange]:
        await channel.declare_exchange(DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True)
        return {
            name: await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
            for name in (EXCHANGE, INTERNAL_EXCHANGE)
        }

    async def close(self) -> None:
        if self._watchdog is not None:
            await stop_tasks([self._watchdog])
            self._watchdog = None
        self._specs.clear()
        for channel, task in self._consumers.values():
            await stop_tasks([task])
            with contextlib.suppress(Exception):
                await channel.close()
        self._consumers.clear()
        if self._connection:
            with contextlib.suppress(Exception):
                await self._connection.close()
        self._connection = None

    @property
    def connected(self) -> bool:
        return bool(self._connection and not self._connection.is_closed and self._connection.connected.is_set())

    async def publish(self, messages: Sequence[OutgoingMessage]) -> int:
        if not self.connected or not self._exchanges:
            raise PublishError("not connected to RabbitMQ", confirmed=0)
        async with self._publish_lock:  # one ordered stream of publishes per process
            # A sliding window of unconfirmed messages: tasks start in creation order and the
            # semaphore wakes them first-in first-out, so frames reach the broker in order while
            # confirms come back pipelined.
            window = asyncio.Semaphore(self.in_flight)

            async def publish_in_window(message: OutgoingMessage) -> None:
                async with window:
                    await self._publish_one(message)

            tasks = [asyncio.ensure_future(publish_in_window(m)) for m in messages]
            results = await asyncio.gather(*tasks, return_exceptions=True)
        confirmed = 0
        for result in results:
            if isinstance(result, BaseException):
                raise PublishError(f"publish not confirmed: {result!r}", confirmed=confirmed)
            confirmed += 1
        return confirmed

    async def _publish_one(self, message: OutgoingMessage) -> None:
        await self._exchanges[message.exchange].publish(
            aio_pika.Message(
                message.body,
                message_id=message.message_id,
                content_type=message.content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers=message.headers or None,
            ),
            routing_key=message.routing_key,
            mandatory=True,
            timeout=self.publish_timeout,
        )

    async def consume(
        self,
        queue: str,
        bindings: Sequence[str],
        handler: BatchHandler,
        *,
        batch: int,
        prefetch: int,
        retired: Sequence[str] = (),
        linger: float = 0.0,
        internal: Sequence[str] = (),
    ) -> None:
        self._specs[queue] = (
            list(bindings),
            [r for r in retired if r not in bindings],
            handler,
            batch,
            prefetch,
            linger,
            list(internal),
        )
        await self._attach(queue)
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.create_task(self._watch(), name="amqp-consumer-watchdog")

    async def _attach(self, queue: str) -> None:
        assert self._connection is not None
        bindings, retired, handler, batch, prefetch, linger, internal = self._specs[queue]
        old = self._consumers.pop(queue, None)
        if old is not None:
            old[1].cancel()
            with contextlib.suppress(Exception):
                await old[0].close()
        channel = await self._connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=prefetch)
        exchanges = await self._declare_topology(channel)
        dlq = await channel.declare_queue(dead_letter_queue(queue), durable=True, arguments={"x-queue-type": "quorum"})
        await dlq.bind(DEAD_LETTER_EXCHANGE, routing_key=queue)
        q = await channel.declare_queue(
            queue, durable=True, arguments=queue_arguments(queue, delivery_limit=self.delivery_limit)
        )
        for binding in bindings:
            await q.bind(exchanges[EXCHANGE], routing_key=binding)
        for binding in internal:
            await q.bind(exchanges[INTERNAL_EXCHANGE], routing_key=binding)
        for binding in retired:
            await q.unbind(exchanges[EXCHANGE], routing_key=binding)  # RabbitMQ: a no-op when not bound
        batching: Batching[AbstractIncomingMessage] = Batching(batch, linger=linger)

        async def on_message(message: AbstractIncomingMessage) -> None:
            batching.arrived(message)

        await q.consume(on_message, no_ack=False, consumer_tag=f"lienthong.{queue}")
        task = asyncio.create_task(self._work(batching, handler), name=f"consume:{queue}")
        self._consumers[queue] = (channel, task)

    async def rebind(self, queue: str, *, bind: Sequence[str] = (), unbind: Sequence[str] = ()) -> None:
        if not self.connected or self._connection is None:
            raise BusUnavailable("not connected to RabbitMQ")
        try:
            channel = await asyncio.wait_for(self._connection.channel(publisher_confirms=False), REBIND_TIMEOUT)
            try:
                q = await asyncio.wait_for(
                    channel.declare_queue(
                        queue, durable=True, arguments=queue_arguments(queue, delivery_limit=self.delivery_limit)
                    ),
                    REBIND_TIMEOUT,
                )
                for binding in bind:
                    await asyncio.wait_for(q.bind(EXCHANGE, routing_key=binding), REBIND_TIMEOUT)
                for binding in unbind:
                    await asyncio.wait_for(q.unbind(EXCHANGE, routing_key=binding), REBIND_TIMEOUT)
            finally:
                with contextlib.suppress(Exception):
                    await channel.close()
        except (aiormq.exceptions.AMQPError, ConnectionError, TimeoutError) as exc:
            raise BusUnavailable(f"RabbitMQ: {exc!r}") from exc
        spec = self._specs.get(queue)
        if spec is not None:  # what a re-attach after a reconnect binds and unbinds
            bindings, retired, *rest = spec
            bindings = [b for b in bindings if b not in unbind] + [b for b in bind if b not in bindings]
            self._specs[queue] = (bindings, [r for r in retired if r not in bind], *rest)  # type: ignore[assignment]

    async def _watch(self, every: float = 5.0) -> None:
        """Re-attach a consumer the robust connection did not bring back.

        aio-pika restores channels and consumers after a reconnect, but a restore can fail (a
        quorum queue still electing its leader after the broker restarted) and leave a channel
        with no consumer behind it. Every few seconds, while connected, a consumer whose channel
        is closed, whose worker died, or whose queue has no consumer at all is attached afresh.
        """
        while True:
            await asyncio.sleep(every)
            if not self.connected or self._connection is None:
                continue
            try:
                probe = await self._connection.channel(publisher_confirms=False)
            except Exception:
                continue
            try:
                for queue in list(self._specs):
                    channel, task = self._consumers.get(queue, (None, None))
                    lost = channel is None or channel.is_closed or task is None or task.done()
                    if not lost:
                        declared = await probe.declare_queue(queue, passive=True)
                        lost = (declared.declaration_result.consumer_count or 0) == 0
                    if lost:
                        log.warning("amqp_consumer_reattached", queue=queue)
                        await self._attach(queue)
            except Exception as exc:
                log.info("amqp_watchdog_retry", error=repr(exc)[:200])
            finally:
                with contextlib.suppress(Exception):
                    await probe.close()

    async def _work(self, batching: Batching[AbstractIncomingMessage], handler: BatchHandler) -> None:
        while True:
            deliveries: list[Delivery] = [_AmqpDelivery(m) for m in await batching.next()]
            await hand_over(handler, deliveries, pause=0.2)

    def consumers_attached(self) -> dict[str, bool]:
        attached = {}
        for name, (channel, task) in self._consumers.items():
            attached[name] = self.connected and not channel.is_closed and not task.done()
        return attached

    async def _with_channel(self):  # type: ignore[no-untyped-def]
        assert self._connection is not None
        return await self._connection.channel(publisher_confirms=True)

    async def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        channel = await self._with_channel()
        letters: list[DeadLetter] = []
        try:
            dlq = await channel.get_queue(dead_letter_queue(queue), ensure=True)
            # Looking is reading without acking: closing the channel puts them all back.
            for _ in range(limit):
                message = await dlq.get(no_ack=False, fail=False)
                if message is None:
                    break
                letters.append(_dead_letter(message))
        finally:
            await channel.close()
        return letters

    async def replay_dead_letters(self, queue: str, *, message_ids: Sequence[str] | None = None) -> int:
        channel = await self._with_channel()
        replayed = 0
        try:
            dlq = await channel.get_queue(dead_letter_queue(queue), ensure=True)
            skipped = []
            # One pass over what is there now: a letter that dies again while we replay lands
            # behind the ones we have not looked at, and is not replayed twice.
            for _ in range(dlq.declaration_result.message_count or 0):
                message = await dlq.get(no_ack=False, fail=False)
                if message is None:
                    break
                if message_ids is not None and message.message_id not in message_ids:
                    skipped.append(message)
                    continue
                letter = _dead_letter(message)
                headers = {k: v for k, v in (message.headers or {}).items() if not k.startswith("x-")}
                headers[ORIGINAL_ROUTING_KEY] = letter.routing_key
                await channel.default_exchange.publish(
                    aio_pika.Message(
                        message.body,
                        message_id=message.message_id,
                        content_type=message.content_type or STRUCTURED_CONTENT_TYPE,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        headers=headers,
                    ),
                    routing_key=queue,
                    mandatory=True,
                )
                await message.ack()
                replayed += 1
            for message in skipped:
                await message.nack(requeue=True)
        finally:
            await channel.close()
        return replayed

    async def queue_depths(self, queues: Sequence[str] | None = None) -> dict[str, int]:
        depths: dict[str, int] = {}
        channel = await self._with_channel()
        try:
            for name in list(self._consumers) if queues is None else queues:
                for qname in (name, dead_letter_queue(name)):
                    try:
                        q = await channel.declare_queue(qname, passive=True)
                        depths[qname] = q.declaration_result.message_count or 0
                    except aiormq.exceptions.ChannelNotFoundEntity:
                        depths[qname] = 0  # not declared yet: nothing waits in it
                        channel = await self._with_channel()
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
        return depths


def _dead_letter(message: AbstractIncomingMessage) -> DeadLetter:
    deaths = (message.headers or {}).get("x-death") or []
    first = deaths[0] if deaths else {}
    keys = first.get("routing-keys") if isinstance(first, dict) else None
    # a letter replayed once went through the default exchange: its first key is in a header
    routing_key = (message.headers or {}).get(ORIGINAL_ROUTING_KEY) or (keys[0] if keys else None)
    routing_key = routing_key or message.routing_key or ""
    if isinstance(routing_key, bytes):
        routing_key = routing_key.decode()
    reason = first.get("reason", "unknown") if isinstance(first, dict) else "unknown"
    count = int(first.get("count", 0)) if isinstance(first, dict) else 0
    return DeadLetter(
        message_id=message.message_id,
        routing_key=str(routing_key),
        body=message.body,
        reason=str(reason.decode() if isinstance(reason, bytes) else reason),
        deliveries=count,
    )
