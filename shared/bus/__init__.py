"""The event bus behind one interface, with two brokers of the same semantics.

- :class:`~shared.bus.amqp.AmqpBroker`: RabbitMQ (topic exchange ``lienthong.events``, one
  durable quorum queue per consumer with a delivery limit, dead letters to ``lienthong.dlx``).
- :class:`~shared.bus.memory.InProcessBroker`: the embedded mode's broker, same routing,
  retries and dead letters, inside one process.

Publishing is confirmed: ``publish`` returns how many of the messages, counted from the first,
the broker has taken responsibility for; the outbox relay marks exactly those as sent.
"""

from __future__ import annotations

import abc
import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class OutgoingMessage:
    routing_key: str
    body: bytes
    message_id: str
    headers: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeadLetter:
    message_id: str | None
    routing_key: str
    body: bytes
    reason: str
    deliveries: int


class Delivery(abc.ABC):
    """One message handed to a consumer; it must be acked or rejected exactly once."""

    body: bytes
    routing_key: str
    message_id: str | None
    delivery_count: int
    acks_in_bulk: bool = False  # True where ack(multiple=True) settles all earlier deliveries

    @abc.abstractmethod
    async def ack(self, *, multiple: bool = False) -> None:
        """multiple=True also acks every earlier delivery of this consumer (one frame a batch)."""

    @abc.abstractmethod
    async def reject(self, *, requeue: bool) -> None:
        """requeue=True: try again later (counts towards the delivery limit); False: dead-letter now."""


BatchHandler = Callable[[list[Delivery]], Awaitable[None]]


async def hand_over(handler: BatchHandler, deliveries: list[Delivery], *, pause: float) -> None:
    """Give one batch to a consumer's handler, the same way for every broker.

    The handler settles each delivery itself; if it blows up instead, every delivery of the batch
    goes back for another try (counting towards the delivery limit) so nothing is stranded, and
    the broker pauses before the next batch rather than spin on a failing dependency."""
    try:
        await handler(deliveries)
    except asyncio.CancelledError:
        raise
    except Exception:
        for delivery in deliveries:
            await delivery.reject(requeue=True)
        await asyncio.sleep(pause)


class PublishError(Exception):
    def __init__(self, message: str, *, confirmed: int) -> None:
        super().__init__(message)
        self.confirmed = confirmed


class Broker(abc.ABC):
    @abc.abstractmethod
    async def connect(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @property
    @abc.abstractmethod
    def connected(self) -> bool: ...

    @abc.abstractmethod
    async def publish(self, messages: Sequence[OutgoingMessage]) -> int:
        """Publish in order; return the length of the confirmed prefix (all, unless it raises)."""

    @abc.abstractmethod
    async def consume(
        self,
        queue: str,
        bindings: Sequence[str],
        handler: BatchHandler,
        *,
        batch: int,
        prefetch: int,
        retired: Sequence[str] = (),
    ) -> None:
        """Declare ``queue`` (and its dead-letter queue), bind it, and feed batches to ``handler``.

        ``retired``: bindings an earlier release gave the queue; a durable queue keeps its
        bindings across restarts, so they are removed explicitly."""

    @abc.abstractmethod
    def consumers_attached(self) -> dict[str, bool]: ...

    @abc.abstractmethod
    async def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]: ...

    @abc.abstractmethod
    async def replay_dead_letters(self, queue: str, *, message_ids: Sequence[str] | None = None) -> int:
        """Put dead letters of ``queue`` back into ``queue`` (all, or those ids), and only there:
        the other consumers of the event had it already. Return how many."""

    @abc.abstractmethod
    async def queue_depths(self, queues: Sequence[str] | None = None) -> dict[str, int]:
        """Messages waiting in each of ``queues`` (default: the consumers attached here) and in
        its dead-letter queue, keyed by queue name."""


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: ``*`` is exactly one word, ``#`` zero or more."""
    parts = []
    for word in pattern.split("."):
        if word == "#":
            parts.append(r"(?:[^.]+(?:\.[^.]+)*)?")
        elif word == "*":
            parts.append(r"[^.]+")
        else:
            parts.append(re.escape(word))
    regex = r"\.".join(parts)
    # "#" may swallow its neighbouring dots: a.# matches "a"
    regex = regex.replace(r"\.(?:[^.]+(?:\.[^.]+)*)?", r"(?:\.[^.]+)*").replace(
        r"(?:[^.]+(?:\.[^.]+)*)?\.", r"(?:[^.]+\.)*"
    )
    return re.fullmatch(regex, routing_key) is not None


DLQ_SUFFIX = ".dlq"
# The routing key a replayed dead letter was first published with: a replay goes straight to
# the one queue through the default exchange, whose routing key is the queue's name.
ORIGINAL_ROUTING_KEY = "x-lienthong-routing-key"


def dead_letter_queue(queue: str) -> str:
    return f"{queue}{DLQ_SUFFIX}"
