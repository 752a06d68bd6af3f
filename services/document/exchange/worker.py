"""The background delivery of queued edXML messages: leased, sent over HTTP, retried with
backoff, so a partner being down delays a message but never loses it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.document import edxml
from services.document import service as svc
from services.document.config import DocumentSettings
from services.document.exchange.identity import EDXML_MEDIA_TYPE, ExchangeKit
from services.document.exchange.inbound import record_status
from services.document.exchange.outbound import build_document_envelope, build_status_message, queue_progress
from services.document.models import (
    Document,
    ExchangeMessage,
)
from shared.aio import wait_event
from shared.db import Database
from shared.errors import ProblemError

log = structlog.get_logger("exchange")


def _backoff(settings: DocumentSettings, attempts: int) -> timedelta:
    seconds = settings.exchange_retry_base_seconds * (2 ** max(attempts - 1, 0))
    return timedelta(seconds=min(seconds, settings.exchange_retry_max_seconds))


async def _claim(db: Database, kit: ExchangeKit, *, limit: int = 20) -> list[int]:
    """Lease due messages (one per document and partner, oldest first, so statuses keep their
    order); the lease is a later ``next_attempt_at``, so another replica skips them meanwhile."""
    now = svc.now_utc()
    lease = now + timedelta(seconds=kit.settings.exchange_timeout_seconds * 2 + 5)
    async with db.sessionmaker() as session:
        await queue_progress(session)
        query = (
            select(ExchangeMessage).where(ExchangeMessage.state == "pending").order_by(ExchangeMessage.id).limit(500)
        )
        if db.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = (await session.execute(query)).scalars().all()
        blocked: set[tuple[int, str]] = set()
        chosen: list[int] = []
        for row in rows:
            key = (row.document_id, row.partner)
            if key in blocked:
                continue
            blocked.add(key)
            if row.next_attempt_at <= now and len(chosen) < limit:
                row.next_attempt_at = lease
                chosen.append(row.id)
        await session.commit()
    return chosen


async def _attempt(db: Database, kit: ExchangeKit, blobs: svc.Toolkit, message_id: int) -> None:
    async with db.sessionmaker() as session:
        message = await session.get(ExchangeMessage, message_id)
        if message is None or message.state != "pending":
            return
        doc = await session.get(Document, message.document_id)
        assert doc is not None
        partner = kit.partners.get(message.partner)
        error: str | None = None
        outcome = "retry"
        answer: httpx.Response | None = None
        if partner is None:
            outcome, error = "rejected", f"{message.partner} is no longer a configured partner"
        else:
            try:
                if message.kind == "envelope":
                    body = await build_document_envelope(session, kit, blobs, doc, message)
                    url = partner.endpoint.rstrip("/") + "/edxml"
                else:
                    body = build_status_message(kit, doc, message)
                    url = partner.endpoint.rstrip("/") + "/status"
            except ValueError as exc:
                outcome, error = "rejected", f"cannot build the message: {exc}"
            else:
                try:
                    async with kit.client_factory() as client:
                        answer = await client.post(url, content=body, headers={"Content-Type": EDXML_MEDIA_TYPE})
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                else:
                    if answer.is_success:
                        outcome = "delivered"
                    elif answer.status_code == 409 and message.kind == "envelope":
                        outcome = "delivered"  # an earlier attempt arrived; its answer was lost
                    elif 400 <= answer.status_code < 500 and answer.status_code not in (408, 429):
                        outcome, error = "rejected", f"{answer.status_code}: {answer.text[:500]}"
                    else:
                        error = f"{answer.status_code}: {answer.text[:300]}"
        message.attempts += 1
        now = svc.now_utc()
        if outcome == "delivered":
            message.state, message.delivered_at, message.last_error = "delivered", now, None
            if message.kind == "envelope" and answer is not None and answer.status_code != 409:
                await _record_answer(session, kit, answer)
        elif outcome == "rejected":
            message.state, message.last_error = "rejected", error
        else:
            message.last_error = error
            message.next_attempt_at = now + _backoff(kit.settings, message.attempts)
        await session.commit()
    log.info(
        "exchange_attempt",
        message=message_id,
        kind=message.kind,
        partner=message.partner,
        outcome=outcome,
        attempts=message.attempts,
        error=error,
    )


async def _record_answer(session: AsyncSession, kit: ExchangeKit, answer: httpx.Response) -> None:
    """The receiver answers an envelope with its signed ``01`` status: keep it like any other."""
    try:
        parsed = edxml.parse_status(answer.content, cert_validator=kit.all_trusted(), limits=kit.limits)
        kit.require_partner_signed(parsed.status.from_.organ_id, parsed.signer_certificate, parsed.certificates[1:])
        await record_status(session, kit, parsed)
    except (edxml.EdxmlError, ProblemError) as exc:
        log.warning("exchange_answer_unreadable", error=str(exc)[:300])


async def run_once(db: Database, kit: ExchangeKit, blobs: svc.Toolkit) -> int:
    """One pass: queue progress statuses, then try every due message. Returns how many were tried."""
    chosen = await _claim(db, kit)
    for message_id in chosen:
        await _attempt(db, kit, blobs, message_id)
    return len(chosen)


async def exchange_worker(runtime: Any) -> None:
    """The background job: a pass every ``exchange_poll_seconds``, or at once when woken."""
    kit: ExchangeKit = runtime.extras["exchange"]
    blobs: svc.Toolkit = runtime.extras["toolkit"]
    while True:
        tried = await run_once(runtime.db, kit, blobs)
        if tried:
            continue
        kit.wake.clear()
        await wait_event(kit.wake, kit.settings.exchange_poll_seconds)
