"""/readyz says 503 when the part cannot serve (its database is away), with the reason in the
body, instead of failing on its own checks."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from shared.app import ServiceDefinition, create_service_app
from shared.bus.memory import InProcessBroker
from shared.settings import Settings, load_settings
from tests import harness


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_readyz_is_503_with_the_reason_when_the_database_is_away(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://nobody@127.0.0.1:{_closed_port()}/nothing"
    settings = load_settings(Settings, "ledger", var_dir=tmp_path, auto_migrate=False, log_json=False,
                             database_url=url)
    definition = ServiceDefinition(
        name="ledger", title="ledger", description="a test part", settings=settings,
        metadata=harness.metadata, migrations=tmp_path, outbox=harness.outbox,
        consumers=[harness.ledger_consumer()],
    )
    broker = InProcessBroker()
    await broker.connect()
    app = create_service_app(definition, broker=broker)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ledger") as client:
            response = await client.get("/readyz")
            assert response.status_code == 503, response.text
            body = response.json()
            assert body["status"] == "down" and body["checks"]["database"] == "unreachable"
            assert (await client.get("/healthz")).status_code == 200
    await broker.close()
