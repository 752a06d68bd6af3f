"""The background delivery of queued edXML messages, on the shared delivery machinery
(:mod:`shared.delivery`): leased, sent concurrently through one HTTP client, retried with
backoff, so a partner being down or hanging delays its own messages but never loses them and
never holds up another partner's.

A message is built in a short read-only session, posted with no transaction open, and its
outcome recorded in another. A worker killed mid-send leaves the lease to expire and the message
is sent again; the receiver refuses a second envelope with the same ``DocumentId`` (409, taken
here as delivered) and ignores a status it already holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import httpx
import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.document import edxml
from services.document import service as svc
from services.document.exchange.identity import EDXML_MEDIA_TYPE, ExchangeKit
from services.document.exchange.inbound import record_status
from services.document.exchange.outbound import build_document_envelope, build_status_message, queue_progress
from services.document.models import Document, ExchangeMessage
from services.document.state import DocumentState
from shared import clock, delivery
from shared.app import ServiceRuntime
from shared.db import Database
from shared.errors import ProblemError

log = structlog.get_logger("exchange")


@dataclass(frozen=True)
class Claimed:
    message_id: int
    partner: str


@dataclass(frozen=True)
class Outcome:
    result: str  # delivered | rejected | retry
    error: str | None = None
    answer: bytes | None = None  # the signed 01 status answering a new envelope
    retry_after: float | None = None


class ExchangeWorker:
    """Sends the queued messages of one deployment through ``client`` (one for the worker's life)."""

    def __init__(self, db: Database, kit: ExchangeKit, blobs: svc.Toolkit, client: httpx.AsyncClient) -> None:
        self.db = db
        self.kit = kit
        self.blobs = blobs
        self.client = client
        settings = kit.settings
        self.lease = timedelta(seconds=settings.exchange_timeout_seconds * 2 + 5)
        self.loop = delivery.DeliveryLoop(
            name="exchange",
            claim=self.claim,
            attempt=self.attempt,
            target=lambda item: item.partner,
            wake=kit.wake,
            poll_seconds=settings.exchange_poll_seconds,
            concurrency=settings.exchange_concurrency,
            per_target=settings.exchange_partner_concurrency,
        )

    async def claim(self, budget: delivery.Budget) -> list[Claimed]:
        """Lease due messages (one per document and partner, oldest first, so statuses keep their
        order), as many as ``budget`` has slots for; the lease is a later ``next_attempt_at``, so another
        replica skips them meanwhile."""
        now = clock.now()
        async with self.db.sessionmaker() as session:
            await queue_progress(session)
            query = select(ExchangeMessage).where(ExchangeMessage.state == "pending")
            if budget.full:
                query = query.where(ExchangeMessage.partner.not_in([str(b) for b in budget.full]))
            query = query.order_by(ExchangeMessage.id).limit(500)
            if self.db.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = (await session.execute(query)).scalars().all()
            blocked: set[tuple[int, str]] = set()
            chosen: list[Claimed] = []
            for row in rows:
                key = (row.document_id, row.partner)
                if key in blocked:
                    continue
                blocked.add(key)
                if row.next_attempt_at <= now and budget.take(row.partner):
                    row.next_attempt_at = now + self.lease
                    chosen.append(Claimed(row.id, row.partner))
            await session.commit()
        return chosen

    async def _build(self, item: Claimed) -> tuple[str, bytes, str] | Outcome | None:
        """The URL and body of a claimed message, an outcome if it cannot be sent, None if it is no longer owed."""
        async with self.db.sessionmaker() as session:
            message = await session.get(ExchangeMessage, item.message_id)
            if message is None or message.state != "pending":
                return None
            partner = self.kit.partners.get(message.partner)
            if partner is None:
                return Outcome("rejected", f"{message.partner} is no longer a configured partner")
            doc = await session.get(Document, message.document_id)
            assert doc is not None
            try:
                if message.kind == "envelope":
                    body = await build_document_envelope(session, self.kit, self.blobs, doc, message)
                    return partner.endpoint.rstrip("/") + "/edxml", body, message.kind
                body = build_status_message(self.kit, doc, message)
                return partner.endpoint.rstrip("/") + "/status", body, message.kind
            except ValueError as exc:
                return Outcome("rejected", f"cannot build the message: {exc}")

    async def _post(self, url: str, body: bytes, kind: str) -> Outcome:
        try:
            answer = await self.client.post(
                url,
                content=body,
                headers={"Content-Type": EDXML_MEDIA_TYPE},
                timeout=self.kit.settings.exchange_timeout_seconds,
            )
        except httpx.TimeoutException:
            return Outcome("retry", f"no answer within {self.kit.settings.exchange_timeout_seconds} s")
        except httpx.HTTPError as exc:
            return Outcome("retry", f"{type(exc).__name__}: {exc}")
        code = answer.status_code
        if answer.is_success:
            return Outcome("delivered", answer=answer.content if kind == "envelope" else None)
        if code == 409 and kind == "envelope":
            return Outcome("delivered")  # an earlier attempt arrived; its answer was lost
        if 400 <= code < 500 and code not in (408, 429):
            return Outcome("rejected", f"{code}: {answer.text[:500]}")
        retry_after = delivery.parse_retry_after(answer.headers.get("Retry-After"), clock.now())
        return Outcome("retry", f"{code}: {answer.text[:300]}", retry_after=retry_after)

    async def attempt(self, item: Claimed) -> None:
        built = await self._build(item)
        if built is None:
            return
        outcome = built if isinstance(built, Outcome) else await self._post(*built)
        await self.record(item, outcome)

    async def record(self, item: Claimed, outcome: Outcome) -> None:
        async with self.db.sessionmaker() as session:
            message = await session.get(ExchangeMessage, item.message_id)
            if message is None or message.state != "pending":
                return  # cancelled (a recall) while it was being sent
            message.attempts += 1
            now = clock.now()
            if outcome.result == "delivered":
                message.state, message.delivered_at, message.last_error = "delivered", now, None
                if outcome.answer:
                    await self._record_answer(session, outcome.answer)
            elif outcome.result == "rejected":
                message.state, message.last_error = "rejected", outcome.error
            else:
                settings = self.kit.settings
                wait = delivery.backoff(
                    message.attempts,
                    base=settings.exchange_retry_base_seconds,
                    max_delay=settings.exchange_retry_max_seconds,
                )
                if outcome.retry_after is not None:
                    wait = max(wait, min(outcome.retry_after, settings.exchange_retry_max_seconds))
                message.last_error = outcome.error
                message.next_attempt_at = now + timedelta(seconds=wait)
            attempts, kind = message.attempts, message.kind
            await session.commit()
        log.info(
            "exchange_attempt",
            message=item.message_id,
            kind=kind,
            partner=item.partner,
            outcome=outcome.result,
            attempts=attempts,
            error=outcome.error,
        )

    async def _record_answer(self, session: AsyncSession, answer: bytes) -> None:
        """The receiver answers an envelope with its signed ``01`` status: keep it like any other."""
        kit = self.kit
        try:
            parsed = edxml.parse_status(answer, cert_validator=kit.all_trusted(), limits=kit.limits)
            kit.require_partner_signed(parsed.status.from_.organ_id, parsed.signer_certificate, parsed.certificates[1:])
            await record_status(session, kit, parsed)
        except (edxml.EdxmlError, ProblemError) as exc:
            log.warning("exchange_answer_unreadable", error=str(exc)[:300])


async def exchange_worker(runtime: ServiceRuntime) -> None:
    """The background job: sends as messages come due, woken when new ones are queued."""
    state = DocumentState.of(runtime)
    async with state.exchange.client_factory() as client:
        await ExchangeWorker(runtime.db, state.exchange, state.toolkit, client).loop.run()
