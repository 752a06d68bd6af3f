"""``python -m lienthong dlq list|replay PART``: a part's dead letters, straight from RabbitMQ.

The same as ``GET /api/<part>/dead-letters`` and ``POST /api/<part>/dead-letters/replay`` (admin),
for an operator with the broker's URL and no token at hand. Embedded mode keeps its dead letters
inside the running process: there only the API reaches them.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence

from lienthong import parts
from shared.bus import dead_letter_queue
from shared.bus.amqp import AmqpBroker
from shared.settings import PARTS


def consumer_queues(part: str) -> list[str]:
    mod = parts.module(part)
    return [c.name for c in mod.definition(mod.get_settings()).consumers]


def main(action: str, part: str, *, queue: str | None, ids: Sequence[str] | None, limit: int) -> int:
    if part not in PARTS:
        print(f"unknown part {part!r}; one of {', '.join(PARTS)}", file=sys.stderr)
        return 2
    settings = parts.module(part).get_settings()
    if not settings.amqp_url:
        print(
            "no LIENTHONG_AMQP_URL: embedded mode keeps dead letters in the running process; "
            f"use GET /api/{part}/dead-letters and POST /api/{part}/dead-letters/replay as admin",
            file=sys.stderr,
        )
        return 2
    queues = consumer_queues(part)
    if queue is not None:
        if queue not in queues:
            print(f"{part} has no queue {queue!r}; its queues: {', '.join(queues) or 'none'}", file=sys.stderr)
            return 2
        queues = [queue]
    if not queues:
        print(f"{part} consumes no events: it has no dead letters")
        return 0
    return asyncio.run(_run(action, settings.amqp_url, queues, ids=ids, limit=limit))


async def _run(action: str, url: str, queues: list[str], *, ids: Sequence[str] | None, limit: int) -> int:
    broker = AmqpBroker(url)
    await broker.connect()
    try:
        if action == "list":
            depths = await broker.queue_depths(queues)
            for name in queues:
                print(f"{dead_letter_queue(name)}: {depths.get(dead_letter_queue(name), 0)} waiting")
                for letter in await broker.dead_letters(name, limit=limit):
                    record = {
                        "queue": name,
                        "message_id": letter.message_id,
                        "routing_key": letter.routing_key,
                        "reason": letter.reason,
                        "deliveries": letter.deliveries,
                        "body": letter.body.decode("utf-8", errors="replace"),
                    }
                    print(json.dumps(record, ensure_ascii=False))
        else:
            for name in queues:
                count = await broker.replay_dead_letters(name, message_ids=list(ids) if ids else None)
                print(f"{name}: {count} replayed")
    finally:
        await broker.close()
    return 0
