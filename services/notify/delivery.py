"""The delivery worker: sends owed deliveries, signs them, retries with backoff, logs every attempt.

A due delivery is *claimed* by pushing its ``next_attempt_at`` a lease ahead (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, so replicas never claim the same one), sent outside any transaction,
and its outcome written with the attempt in one transaction. A crash mid-attempt leaves the
lease to expire and the delivery is tried again: at-least-once, with the same ``webhook-id``
(the event id), which is what receivers deduplicate on.

Outcomes: 2xx delivered; 410 Gone disables the subscription and cancels what it was still owed;
anything else (including redirects, which are never followed, and timeouts) is retried after
``retry_base · retry_factor^(n-1)`` seconds (±jitter, at most ``retry_max_delay``, or later if the
callback's ``Retry-After`` asks), until ``retry_horizon`` after the event (or its replay).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp
import structlog
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.config import NotifySettings
from services.notify.handlers import DELIVERIES_OWED, subscriptions_changed
from services.notify.models import Attempt, Delivery, Subscription
from services.notify.signatures import webhook_headers
from services.notify.targets import GuardedResolver, TargetRefused, check_url, describe
from shared import clock
from shared.db import Database, session_scope
from shared.delivery import Budget, DeliveryLoop, parse_retry_after
from shared.delivery import backoff as shared_backoff

log = structlog.get_logger("notify.delivery")

USER_AGENT = "lienthong-webhooks/1"


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    subscription_id: int
    url: str
    keys: tuple[str, ...]
    event_id: str
    body: bytes
    attempt: int
    retry_from: datetime


@dataclass(frozen=True)
class Outcome:
    started_at: datetime
    duration_ms: float
    status_code: int | None
    error: str | None
    excerpt: str | None
    retry_after: float | None


def backoff(settings: NotifySettings, attempt: int, *, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    return shared_backoff(
        attempt,
        base=settings.retry_base_seconds,
        factor=settings.retry_factor,
        max_delay=settings.retry_max_delay_seconds,
        jitter=settings.retry_jitter,
        rng=rng,
    )


class Deliverer:
    def __init__(self, settings: NotifySettings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.lease = timedelta(seconds=settings.delivery_timeout_seconds + 30)
        self._wakeup = asyncio.Event()
        self._client: aiohttp.ClientSession | None = None
        self.sent = 0
        # wake up as soon as a transaction that owes deliveries commits
        db.on_commit(DELIVERIES_OWED, self.wake)

    def wake(self) -> None:
        self._wakeup.set()

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(allow_private=self.settings.allow_private_targets),
            limit=self.settings.worker_concurrency * 2,
            limit_per_host=self.settings.worker_concurrency,
            keepalive_timeout=10,
        )
        self._client = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.settings.delivery_timeout_seconds),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=True,
            trust_env=False,
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def run(self) -> None:
        """Background job: forever send what is due."""
        last_purge = 0.0

        async def idle() -> None:
            nonlocal last_purge
            if time.monotonic() - last_purge > 3600:
                last_purge = time.monotonic()
                await self.purge()

        await DeliveryLoop(
            name="notify",
            claim=self.claim,
            attempt=self.attempt,
            target=lambda item: item.subscription_id,
            wake=self._wakeup,
            poll_seconds=self.settings.worker_poll_seconds,
            concurrency=self.settings.worker_concurrency,
            # one slow callback holds a share of the slots, never all of them
            per_target=max(1, self.settings.worker_concurrency // 4),
            idle=idle,
        ).run()

    async def claim(self, budget: Budget | None = None) -> list[Claimed]:
        """Lease due deliveries (those ``budget`` has slots for, when given)."""
        now = clock.now()
        full = budget.full if budget else frozenset()
        conditions = [Delivery.subscription_id.not_in(list(full))] if full else []
        async with session_scope(self.db) as session:
            rows = (
                await session.execute(
                    select(Delivery, Subscription)
                    .join(Subscription, Subscription.id == Delivery.subscription_id)
                    .where(
                        Delivery.status == "pending",
                        Delivery.next_attempt_at <= now,
                        Subscription.active.is_(True),
                        *conditions,
                    )
                    .order_by(Delivery.next_attempt_at, Delivery.id)
                    .limit(self.settings.worker_batch)
                    .with_for_update(skip_locked=True, of=Delivery)
                )
            ).all()
            claimed = []
            for delivery, subscription in rows:
                if budget is not None and not budget.take(subscription.id):
                    continue  # left unleased: the lock ends with this transaction
                delivery.next_attempt_at = now + self.lease
                delivery.attempts += 1
                keys = [subscription.secret]
                if (
                    subscription.previous_secret
                    and subscription.previous_secret_until
                    and subscription.previous_secret_until > now
                ):
                    keys.append(subscription.previous_secret)
                claimed.append(
                    Claimed(
                        delivery_id=delivery.id,
                        subscription_id=subscription.id,
                        url=subscription.callback_url,
                        keys=tuple(keys),
                        event_id=delivery.event_id,
                        body=delivery.body,
                        attempt=delivery.attempts,
                        retry_from=delivery.retry_from,
                    )
                )
        return claimed

    async def send(self, item: Claimed) -> Outcome:
        assert self._client is not None
        started = clock.now()
        t0 = time.perf_counter()
        settings = self.settings
        status: int | None = None
        error: str | None = None
        excerpt: str | None = None
        retry_after: float | None = None
        try:
            check_url(item.url, schemes=settings.callback_schemes, allow_private=settings.allow_private_targets)
            headers = {
                "content-type": "application/cloudevents+json; charset=utf-8",
                "user-agent": USER_AGENT,
                **webhook_headers(item.keys, message_id=item.event_id, timestamp=int(time.time()), body=item.body),
            }
            async with self._client.post(item.url, data=item.body, headers=headers, allow_redirects=False) as response:
                status = response.status
                raw = await response.content.read(settings.response_excerpt_bytes)
                excerpt = raw.decode("utf-8", "replace") or None
                retry_after = parse_retry_after(response.headers.get("Retry-After"), clock.now())
                if 300 <= status < 400:
                    error = f"redirect to {response.headers.get('Location', '?')[:200]} not followed"
        except TargetRefused as exc:
            error = f"target refused: {exc.detail}"
        except TimeoutError:
            error = f"no answer within {settings.delivery_timeout_seconds} s"
        except (aiohttp.ClientError, OSError) as exc:
            error = describe(exc)
        return Outcome(started, (time.perf_counter() - t0) * 1000, status, error, excerpt, retry_after)

    async def attempt(self, item: Claimed) -> None:
        outcome = await self.send(item)
        try:
            await self.record(item, outcome)
        except Exception as exc:  # the lease expires and the delivery is tried again
            log.warning("record_failed", delivery=item.delivery_id, error=repr(exc))

    async def record(self, item: Claimed, outcome: Outcome) -> None:
        settings = self.settings
        now = clock.now()
        async with session_scope(self.db) as session:
            delivery = await session.get(Delivery, item.delivery_id)
            if delivery is None or delivery.status != "pending":
                return  # deleted or cancelled meanwhile
            session.add(
                Attempt(
                    delivery_id=item.delivery_id,
                    subscription_id=item.subscription_id,
                    number=item.attempt,
                    started_at=outcome.started_at,
                    duration_ms=round(outcome.duration_ms, 2),
                    status_code=outcome.status_code,
                    error=outcome.error,
                    response_excerpt=outcome.excerpt,
                )
            )
            delivery.last_attempt_at = outcome.started_at
            delivery.last_status = outcome.status_code
            delivery.last_error = outcome.error
            code = outcome.status_code
            if code is not None and 200 <= code < 300:
                delivery.status, delivery.next_attempt_at, delivery.delivered_at = "delivered", None, now
                self.sent += 1
                return
            if code == 410:
                delivery.status, delivery.next_attempt_at = "failed", None
                await self._disable(session, item.subscription_id, now)
                return
            wait = backoff(settings, item.attempt)
            if outcome.retry_after is not None:
                # honoured as asked; one that reaches past the horizon ends the retries below
                wait = max(wait, outcome.retry_after)
            due = now + timedelta(seconds=wait)
            if due > delivery.retry_from + timedelta(seconds=settings.retry_horizon_seconds):
                delivery.status, delivery.next_attempt_at = "failed", None
                log.info("delivery_given_up", delivery=item.delivery_id, attempts=item.attempt)
            else:
                delivery.next_attempt_at = due

    async def _disable(self, session: AsyncSession, subscription_id: int, now: datetime) -> None:
        subscription = await session.get(Subscription, subscription_id)
        if subscription is not None and subscription.active:
            subscription.active = False
            subscription.disabled_reason = "the callback answered 410 Gone"
            subscription.version += 1
            subscription.updated_at = now
            await subscriptions_changed(session)
            log.info("subscription_disabled", subscription=subscription_id, reason="410")
        await session.execute(
            update(Delivery)
            .where(Delivery.subscription_id == subscription_id, Delivery.status == "pending")
            .values(status="cancelled", next_attempt_at=None)
        )

    async def purge(self) -> None:
        """Forget finished deliveries (and their attempts) after the retention period."""
        before = clock.now() - timedelta(days=self.settings.delivery_retention_days)
        async with session_scope(self.db) as session:
            old = select(Delivery.id).where(Delivery.status != "pending", Delivery.created_at < before)
            await session.execute(delete(Attempt).where(Attempt.delivery_id.in_(old)))
            await session.execute(delete(Delivery).where(Delivery.id.in_(old)))
