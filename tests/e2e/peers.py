"""Independent peers of the end-to-end test: a webhook receiver that verifies Standard Webhooks
signatures with the `standardwebhooks` package, and a plain `pika` AMQP consumer — what an
integrator would run, sharing no code with lienthong."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import pika
from aiohttp import web
from standardwebhooks.webhooks import Webhook


class WebhookReceiver:
    def __init__(self) -> None:
        self.secret: str | None = None
        self.received: list[dict[str, Any]] = []
        self.ids: Counter[str] = Counter()
        self.bad_signatures = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.secret is None:
            return web.Response(status=503)
        try:
            Webhook(self.secret).verify(body, dict(request.headers))
        except Exception:
            self.bad_signatures += 1
            return web.Response(status=400)
        event = json.loads(body)
        self.ids[request.headers["webhook-id"]] += 1
        self.received.append(event)
        return web.Response(status=204)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{self.port}/hook"

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()


class PikaConsumer:
    """Binds its own queue to the exchange, as the integrator's AMQP account may."""

    def __init__(self, amqp_url: str, queue: str = "integrator.e2e") -> None:
        self.params = pika.URLParameters(amqp_url)
        self.queue = queue
        self.events: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError("pika consumer did not attach")

    def _run(self) -> None:
        connection = pika.BlockingConnection(self.params)
        channel = connection.channel()
        channel.exchange_declare("lienthong.events", exchange_type="topic", durable=True, passive=False)
        channel.queue_declare(self.queue, durable=True)
        channel.queue_bind(self.queue, "lienthong.events", routing_key="#")
        self._ready.set()
        while not self._stop.is_set():
            method, properties, body = channel.basic_get(self.queue, auto_ack=False)
            if method is None:
                connection.sleep(0.1)
                continue
            self.events.append(
                {"routing_key": method.routing_key, "content_type": properties.content_type, **json.loads(body)}
            )
            channel.basic_ack(method.delivery_tag)
        connection.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
