"""Several notify replicas on one PostgreSQL database never claim the same delivery."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from services.notify.app import MIGRATIONS
from services.notify.config import get_settings
from services.notify.delivery import Deliverer
from services.notify.models import Delivery
from shared.db import Database, session_scope
from shared.migrations import upgrade_async
from tests.servers import temporary_databases
from tests.services.notify.notify_support import stored_subscription

pytestmark = pytest.mark.pg


async def test_replicas_claim_disjoint_deliveries() -> None:
    with temporary_databases(["notify"]) as urls:
        await upgrade_async(MIGRATIONS, urls["notify"], service="notify")
        databases = [Database(urls["notify"]) for _ in range(3)]
        try:
            now = datetime.now(UTC)
            async with session_scope(databases[0]) as session:
                subscription = stored_subscription(["#"], now)
                session.add(subscription)
                await session.flush()
                for i in range(60):
                    session.add(
                        Delivery(
                            subscription_id=subscription.id,
                            event_id=f"e-{i}",
                            event_type="t",
                            body=b"{}",
                            status="pending",
                            attempts=0,
                            next_attempt_at=now,
                            retry_from=now,
                            created_at=now,
                        )
                    )
            settings = get_settings(worker_batch=25)
            workers = [Deliverer(settings, db) for db in databases]
            claimed = await asyncio.gather(*(w.claim() for w in workers))
            ids = [c.delivery_id for batch in claimed for c in batch]
            assert len(ids) == len(set(ids)) == 60
            # claimed deliveries are leased: nobody claims them again meanwhile
            assert await workers[0].claim() == []
        finally:
            for db in databases:
                await db.dispose()
