"""The embedded mode's broker: AMQP topic routing, retries and dead letters inside one process.

It keeps no messages on disk, so its publisher "confirm" comes only once every queue the
message was routed to has handled it (acked or dead-lettered). The outbox row stays unsent
until then, and a crash before that makes the relay publish it again after restart: the same
at-least-once promise as RabbitMQ's, bought with the relay waiting on the consumers.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from shared.aio import stop_tasks
from shared.bus import (
    BatchHandler,
    Broker,
    BusUnavailable,
    DeadLetter,
    Delivery,
    OutgoingMessage,
    PublishError,
    dead_letter_queue,
    hand_over,
    topic_matches,
)
from shared.events import INTERNAL_EXCHANGE


@dataclass
class _Copy:
    message: OutgoingMessage
    handled: asyncio.Future[None]
    deliveries: int = 0


@dataclass
class _Queue:
    name: str
    bindings: list[str]
    internal: list[str]  # bindings on the internal exchange
    ready: deque[_Copy] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    dead: list[DeadLetter] = field(default_factory=list)
    dead_messages: list[OutgoingMessage] = field(default_factory=list)
    worker: asyncio.Task[None] | None = None


class _MemoryDelivery(Delivery):
    def __init__(self, broker: InProcessBroker, queue: _Queue, copy: _Copy) -> None:
        self._broker, self._queue, self._copy = broker, queue, copy
        self.body = copy.message.body
        self.routing_key = copy.message.routing_key
        self.message_id = copy.message.message_id
        self.content_type = copy.message.content_type
        self.delivery_count = copy.deliveries
        self._settled = False

    async def ack(self, *, multiple: bool = False) -> None:
        # settling is per delivery here; the batch's own loop acks each one
        if not self._settled:
            self._settled = True
            _resolve(self._copy.handled)

    async def reject(self, *, requeue: bool) -> None:
        if self._settled:
            return
        self._settled = True
        if requeue and self._copy.deliveries < self._broker.delivery_limit:
            self._queue.ready.append(self._copy)
            self._queue.wakeup.set()
            return
        reason = "delivery_limit" if requeue else "rejected"
        self._queue.dead.append(
            DeadLetter(
                message_id=self.message_id,
                routing_key=self.routing_key,
                body=self.body,
                reason=reason,
                deliveries=self._copy.deliveries,
            )
        )
        self._queue.dead_messages.append(self._copy.message)
        _resolve(self._copy.handled)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class InProcessBroker(Broker):
    def __init__(self, *, delivery_limit: int = 5, confirm_timeout: float = 60.0) -> None:
        self.delivery_limit = delivery_limit
        self.confirm_timeout = confirm_timeout
        self._queues: dict[str, _Queue] = {}
        self._open = False

    async def connect(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False
        for queue in self._queues.values():
            if queue.worker:
                await stop_tasks([queue.worker])
                queue.worker = None

    @property
    def connected(self) -> bool:
        return self._open

    async def publish(self, messages: Sequence[OutgoingMessage]) -> int:
        if not self._open:
            raise PublishError("in-process broker is closed", confirmed=0)
        pending: list[asyncio.Future[None]] = []
        loop = asyncio.get_running_loop()
        for index, message in enumerate(messages):
            targets = [
                q
                for q in self._queues.values()
                if any(
                    topic_matches(b, message.routing_key)
                    for b in (q.internal if message.exchange == INTERNAL_EXCHANGE else q.bindings)
                )
            ]
            if not targets:
                # Like mandatory publishing on RabbitMQ: an event nobody can receive yet is not
                # taken, so the outbox keeps it until a consumer has declared its queue.
                await self._wait(pending)
                raise PublishError(f"no queue bound for {message.routing_key}", confirmed=index)
            for queue in targets:
                copy = _Copy(message=message, handled=loop.create_future())
                queue.ready.append(copy)
                queue.wakeup.set()
                pending.append(copy.handled)
        await self._wait(pending)
        return len(messages)

    async def _wait(self, pending: list[asyncio.Future[None]]) -> None:
        if pending:
            try:
                await asyncio.wait_for(asyncio.gather(*pending), self.confirm_timeout)
            except TimeoutError as exc:
                raise PublishError("consumers did not handle the messages in time", confirmed=0) from exc

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
        # ``linger`` is not needed here: the embedded suite's events arrive a few at a time, and
        # a batch that waits would only add latency
        q = self._queues.setdefault(queue, _Queue(name=queue, bindings=list(bindings), internal=list(internal)))
        q.bindings, q.internal = list(bindings), list(internal)
        if q.worker is None or q.worker.done():
            q.worker = asyncio.create_task(self._work(q, handler, batch), name=f"consume:{queue}")

    async def rebind(self, queue: str, *, bind: Sequence[str] = (), unbind: Sequence[str] = ()) -> None:
        if not self._open:
            raise BusUnavailable("in-process broker is closed")
        q = self._queues.setdefault(queue, _Queue(name=queue, bindings=[], internal=[]))
        q.bindings = [b for b in q.bindings if b not in unbind] + [b for b in bind if b not in q.bindings]

    async def _work(self, queue: _Queue, handler: BatchHandler, batch: int) -> None:
        while True:
            if not queue.ready:
                queue.wakeup.clear()
                await queue.wakeup.wait()
                continue
            deliveries: list[Delivery] = []
            while queue.ready and len(deliveries) < batch:
                copy = queue.ready.popleft()
                copy.deliveries += 1
                deliveries.append(_MemoryDelivery(self, queue, copy))
            await hand_over(handler, deliveries, pause=0.05)

    def consumers_attached(self) -> dict[str, bool]:
        return {name: bool(q.worker and not q.worker.done()) for name, q in self._queues.items()}

    async def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        q = self._queues.get(queue)
        return list(q.dead[:limit]) if q else []

    async def replay_dead_letters(self, queue: str, *, message_ids: Sequence[str] | None = None) -> int:
        q = self._queues.get(queue)
        if not q:
            return 0
        keep_dead, keep_messages, replay = [], [], []
        for dead, message in zip(q.dead, q.dead_messages, strict=True):
            if message_ids is None or dead.message_id in message_ids:
                replay.append(message)
            else:
                keep_dead.append(dead)
                keep_messages.append(message)
        q.dead, q.dead_messages = keep_dead, keep_messages
        loop = asyncio.get_running_loop()
        for message in replay:
            q.ready.append(_Copy(message=message, handled=loop.create_future()))
        q.wakeup.set()
        return len(replay)

    async def queue_depths(self, queues: Sequence[str] | None = None) -> dict[str, int]:
        depths: dict[str, int] = {}
        for name in self._queues if queues is None else queues:
            q = self._queues.get(name)
            depths[name] = len(q.ready) if q else 0
            depths[dead_letter_queue(name)] = len(q.dead) if q else 0
        return depths
