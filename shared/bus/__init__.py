"""The event bus behind one interface, with two brokers of the same semantics.

- :class:`~shared.bus.amqp.AmqpBroker`: RabbitMQ (topic exchanges ``lienthong.events`` and, for
  events no integrator may read, ``lienthong.internal``; one durable quorum queue per consumer
  with a delivery limit, dead letters to ``lienthong.dlx``).
- :class:`~shared.bus.memory.InProcessBroker`: the embedded mode's broker, same routing,
  retries and dead letters, inside one process.

Publishing is confirmed: ``publish`` returns how many of the messages, counted from the first,
the broker has taken responsibility for; the outbox relay marks exactly those as sent.
"""

from __future__ import annotations

import abc
import asyncio
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from shared import clock
from shared.aio import wait_event
from shared.events import EXCHANGE, STRUCTURED_CONTENT_TYPE

T = TypeVar("T")


@dataclass(frozen=True)
class OutgoingMessage:
    routing_key: str
    body: bytes
    message_id: str
    headers: dict[str, Any] = field(default_factory=dict)
    content_type: str = STRUCTURED_CONTENT_TYPE  # or BATCH_CONTENT_TYPE: several events
    exchange: str = EXCHANGE  # or INTERNAL_EXCHANGE


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
    content_type: str | None = None  # see shared.events.events_of (None: one event)
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


# how much one arrival moves the estimate of the time between arrivals
_PACE_WEIGHT = 0.2


class Batching(Generic[T]):
    """How a consumer's messages become batches: whatever is waiting, up to ``size``.

    With ``linger`` (seconds), a batch that is not full waits up to that long for more, but only
    while messages are arriving fast: when the recent time between arrivals (a moving average,
    updated on each arrival) is shorter than the linger, so more are due within it. A consumer
    whose cost is mostly per transaction (audit: a few statements per batch, whatever its size)
    then handles a steady 500 events/s in batches of several instead of one or two; a lone event
    after a quiet spell is handed over at once (the gap before it is longer than the linger). The
    wait ends early once the batch is full."""

    def __init__(self, size: int, *, linger: float = 0.0) -> None:
        self.size = size
        self.linger = linger
        self.waiting: asyncio.Queue[T] = asyncio.Queue()
        self.gap = math.inf  # the moving average of the time between arrivals
        self.last_gap = math.inf  # the time before the latest arrival
        self._last_arrival: float | None = None
        self._wanted = 0  # while lingering: how many waiting fill the batch
        self._filled = asyncio.Event()

    def arrived(self, message: T) -> None:
        """The broker's callback for each message."""
        now = clock.monotonic()
        if self._last_arrival is not None:
            self.last_gap = gap = now - self._last_arrival
            self.gap = gap if self.gap == math.inf else self.gap + _PACE_WEIGHT * (gap - self.gap)
        self._last_arrival = now
        self.waiting.put_nowait(message)
        if self._wanted and self.waiting.qsize() >= self._wanted:
            self._filled.set()

    @property
    def arriving_fast(self) -> bool:
        # the latest gap as well as the average: one quiet spell moves the average only a
        # fifth of the way, and the event after it must not wait for followers that are not due
        return max(self.gap, self.last_gap) < self.linger

    async def next(self) -> list[T]:
        """The next batch: at least one message (waits for it), at most ``size``."""
        messages = [await self.waiting.get()]
        self._take_waiting(messages)
        if self.linger and len(messages) < self.size and self.arriving_fast:
            self._wanted = self.size - len(messages)
            self._filled.clear()
            try:
                await wait_event(self._filled, self.linger)
            finally:
                self._wanted = 0
            self._take_waiting(messages)
        return messages

    def _take_waiting(self, messages: list[T]) -> None:
        while len(messages) < self.size and not self.waiting.empty():
            messages.append(self.waiting.get_nowait())


class PublishError(Exception):
    def __init__(self, message: str, *, confirmed: int) -> None:
        super().__init__(message)
        self.confirmed = confirmed


class BusUnavailable(Exception):
    """The broker could not be reached for a change of the topology (a binding)."""


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
        linger: float = 0.0,
        internal: Sequence[str] = (),
    ) -> None:
        """Declare ``queue`` (and its dead-letter queue), bind it, and feed batches to ``handler``.

        ``bindings`` are patterns on ``lienthong.events``, ``internal`` on ``lienthong.internal``.
        ``retired``: bindings an earlier release gave the queue; a durable queue keeps its
        bindings across restarts, so they are removed explicitly. ``linger``: see
        :class:`Batching` (0: a batch is what is waiting, never more)."""

    @abc.abstractmethod
    async def rebind(self, queue: str, *, bind: Sequence[str] = (), unbind: Sequence[str] = ()) -> None:
        """Add ``bind`` to, and remove ``unbind`` from, the bindings of ``queue`` on
        ``lienthong.events`` while it is consumed (the queue is declared first if it does not
        exist yet); a later reconnect keeps the change. For a consumer whose wants change at run
        time: notify binds only the event families some subscription wants. Raises
        :class:`BusUnavailable` when the broker cannot be reached."""

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
