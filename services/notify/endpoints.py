"""Notify's HTTP API (through the gateway at ``/api/notify/…``): webhook subscriptions, their
deliveries and attempts, replays.

An integrator sees and manages its own subscriptions; an administrator those of their agency's
subtree. Anyone else's subscription is 404.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.config import NotifySettings
from services.notify.events import WebhookTest
from services.notify.handlers import DELIVERIES_OWED, pending_delivery, subscriptions_changed
from services.notify.models import Attempt, Delivery, Subscription
from services.notify.schemas import (
    AttemptOut,
    AttemptPage,
    DeliveryDetail,
    DeliveryOut,
    DeliveryPage,
    DeliveryStatus,
    Replayed,
    ReplayRange,
    SubscriptionCreated,
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionPage,
    SubscriptionPatch,
    SubscriptionSecret,
)
from services.notify.signatures import new_secret
from services.notify.state import NotifyState
from services.notify.targets import check_resolves, check_url
from shared import clock
from shared.auth import Caller, allow, current_caller
from shared.db import request_session
from shared.errors import BadRequest, Conflict, Forbidden, NotFound, ProblemError, problem_responses
from shared.events import Actor, CloudEvent, event_type
from shared.http import IfMatch, StrictRoute, check_if_match, etag_for, id_cursor
from shared.logging import current_request_id, current_traceparent

router = APIRouter(prefix="/subscriptions", tags=["webhooks"], route_class=StrictRoute)
Session = Depends(request_session, scope="function")
Who = Depends(current_caller)
ROLES = ("integrator", "admin")
# ids are database integers: bounded, so a 30-digit id is a 422, not an overflow
SubscriptionId = Annotated[int, Path(ge=1, le=2**62)]
DeliveryId = Annotated[int, Path(ge=1, le=2**62)]


class IdempotencyKeyReused(ProblemError):
    status, code, title = 422, "idempotency_key_reused", "This Idempotency-Key was used for a different request"


def _settings(request: Request) -> NotifySettings:
    return request.app.state.runtime.settings


def _may_manage(caller: Caller, subscription: Subscription) -> bool:
    if subscription.owner == caller.sub or "service" in caller.roles:
        return True
    return "admin" in caller.roles and caller.acts_in(subscription.agency)


async def _subscription(session: AsyncSession, caller: Caller, subscription_id: int) -> Subscription:
    subscription = await session.get(Subscription, subscription_id)
    if subscription is None or not _may_manage(caller, subscription):
        raise NotFound(f"no subscription {subscription_id}")
    return subscription


async def _delivery(session: AsyncSession, subscription: Subscription, delivery_id: int) -> Delivery:
    delivery = await session.get(Delivery, delivery_id)
    if delivery is None or delivery.subscription_id != subscription.id:
        raise NotFound(f"no delivery {delivery_id} for this subscription")
    return delivery


def _out(s: Subscription) -> SubscriptionOut:
    return SubscriptionOut(
        id=s.id,
        callback_url=s.callback_url,
        event_types=list(s.event_types),
        agency=s.agency,
        description=s.description,
        active=s.active,
        disabled_reason=s.disabled_reason,
        created_at=s.created_at,
        updated_at=s.updated_at,
    )


def _delivery_out(d: Delivery) -> DeliveryOut:
    return DeliveryOut(
        id=d.id,
        subscription_id=d.subscription_id,
        event_id=d.event_id,
        event_type=d.event_type,
        status=d.status,  # type: ignore[arg-type]
        attempts=d.attempts,
        next_attempt_at=d.next_attempt_at,
        last_attempt_at=d.last_attempt_at,
        last_status=d.last_status,
        last_error=d.last_error,
        created_at=d.created_at,
        delivered_at=d.delivered_at,
    )


def _attempt_out(a: Attempt) -> AttemptOut:
    return AttemptOut.model_validate(a, from_attributes=True)


async def _check_callback(settings: NotifySettings, url: str) -> None:
    host, port = check_url(url, schemes=settings.callback_schemes, allow_private=settings.allow_private_targets)
    await check_resolves(host, port, allow_private=settings.allow_private_targets)


async def _owe_test_event(session: AsyncSession, subscription: Subscription, now: datetime, caller: Caller) -> Delivery:
    """The test delivery sent on creation, whatever the subscription's event types (its type is
    in the contract): a real signed delivery, logged like any other."""
    data = WebhookTest(
        subscription_id=subscription.id,
        message="Kiểm tra kết nối webhook (test delivery)",
        actor=Actor.of(caller),
    )
    event = CloudEvent(
        id=str(uuid.uuid4()),
        source="urn:lienthong:notify",
        type=event_type("webhook.test"),
        subject=f"subscription:{subscription.id}",
        data=data.model_dump(mode="json"),
        agency=subscription.agency,
        traceparent=current_traceparent(),
        requestid=current_request_id(),
    )
    delivery = Delivery(**pending_delivery(subscription.id, event, now))
    session.add(delivery)
    await session.flush()
    DELIVERIES_OWED.mark(session)
    return delivery


@router.post(
    "",
    status_code=201,
    response_model=SubscriptionCreated,
    responses=problem_responses(401, 403, 409, 422, 503),
    **allow(*ROLES),
)
async def create_subscription(
    body: SubscriptionIn,
    request: Request,
    response: Response,
    idempotency_key: str | None = Header(default=None, min_length=1, max_length=200),
    caller: Caller = Who,
    session: AsyncSession = Session,
) -> SubscriptionCreated:
    """Subscribe a callback URL to event types of an agency subtree; a test event is sent at once.

    The response carries the signing secret, which is never shown again.
    """
    settings = _settings(request)
    agency = body.agency or caller.agency
    if agency is None:
        raise Forbidden("you belong to no agency; name one you may act for")
    caller.require_agency(agency)
    request_hash = hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()
    if idempotency_key is not None:
        earlier = (
            await session.execute(
                select(Subscription).where(
                    Subscription.owner == caller.sub, Subscription.idempotency_key == idempotency_key
                )
            )
        ).scalar_one_or_none()
        if earlier is not None:
            if earlier.request_hash != request_hash:
                raise IdempotencyKeyReused()
            test = (
                await session.execute(
                    select(Delivery.id).where(Delivery.subscription_id == earlier.id).order_by(Delivery.id).limit(1)
                )
            ).scalar_one()
            # answered as the first time (the same status and headers), and said to be a replay
            _created_headers(response, earlier)
            response.headers["Idempotent-Replayed"] = "true"
            return SubscriptionCreated(**_out(earlier).model_dump(), secret=earlier.secret, test_delivery_id=test)
    await _check_callback(settings, body.callback_url)
    owned = (await session.execute(select(func.count()).where(Subscription.owner == caller.sub))).scalar_one()
    if owned >= settings.max_subscriptions_per_owner:
        raise Conflict(f"you have {owned} subscriptions, the most allowed")
    now = clock.now()
    subscription = Subscription(
        owner=caller.sub,
        callback_url=body.callback_url,
        event_types=list(dict.fromkeys(body.event_types)),
        agency=agency,
        description=body.description,
        secret=new_secret(),
        active=True,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        version=1,
        created_at=now,
        updated_at=now,
    )
    session.add(subscription)
    await session.flush()
    await subscriptions_changed(session)
    await _bind(request, session, subscription)
    test = await _owe_test_event(session, subscription, now, caller)
    _created_headers(response, subscription)
    return SubscriptionCreated(**_out(subscription).model_dump(), secret=subscription.secret, test_delivery_id=test.id)


async def _bind(request: Request, session: AsyncSession, subscription: Subscription) -> None:
    """The subscription's event families bound to notify's queue before its transaction commits,
    so an event published after the answer reaches the queue (handlers.QueueBindings)."""
    broker = request.app.state.runtime.broker
    await NotifyState.of(request).bindings.bind_for(session, broker, subscription.event_types)


def _created_headers(response: Response, subscription: Subscription) -> None:
    response.headers["Location"] = f"/api/notify/subscriptions/{subscription.id}"
    response.headers["ETag"] = etag_for(subscription.version)
    response.headers["Cache-Control"] = "no-store"  # the secret is in the body


@router.get("", response_model=SubscriptionPage, responses=problem_responses(400, 401, 403), **allow(*ROLES))
async def list_subscriptions(
    limit: int = Query(default=50, ge=1, le=200),
    cursor: str | None = Query(default=None, max_length=20),
    caller: Caller = Who,
    session: AsyncSession = Session,
) -> SubscriptionPage:
    """Your subscriptions (an administrator: also those of the agency subtree)."""
    stmt = select(Subscription).where(Subscription.id > id_cursor(cursor)).order_by(Subscription.id)
    if "admin" not in caller.roles and "service" not in caller.roles:
        stmt = stmt.where(Subscription.owner == caller.sub).limit(limit + 1)
    # an administrator's subtree is checked here (subscriptions are few)
    visible = [s for s in (await session.execute(stmt)).scalars() if _may_manage(caller, s)]
    page = visible[:limit]
    return SubscriptionPage(items=[_out(s) for s in page], next=str(page[-1].id) if len(visible) > limit else None)


@router.get(
    "/{subscription_id}", response_model=SubscriptionOut, responses=problem_responses(401, 403, 404), **allow(*ROLES)
)
async def get_subscription(
    subscription_id: SubscriptionId, response: Response, caller: Caller = Who, session: AsyncSession = Session
) -> SubscriptionOut:
    subscription = await _subscription(session, caller, subscription_id)
    response.headers["ETag"] = etag_for(subscription.version)
    return _out(subscription)


@router.patch(
    "/{subscription_id}",
    response_model=SubscriptionOut,
    responses=problem_responses(401, 403, 404, 412, 422, 428, 503),
    **allow(*ROLES),
)
async def update_subscription(
    subscription_id: SubscriptionId,
    body: SubscriptionPatch,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
    caller: Caller = Who,
    session: AsyncSession = Session,
) -> SubscriptionOut:
    """Change the callback, event types, agency or description; ``active: true`` re-enables a
    subscription that a 410 disabled. Needs ``If-Match``."""
    subscription = await _subscription(session, caller, subscription_id)
    check_if_match(if_match, etag_for(subscription.version))
    if body.callback_url is not None:
        await _check_callback(_settings(request), body.callback_url)
        subscription.callback_url = body.callback_url
    if body.event_types is not None:
        subscription.event_types = list(dict.fromkeys(body.event_types))
    if body.agency is not None:
        caller.require_agency(body.agency)
        subscription.agency = body.agency
    if body.description is not None:
        subscription.description = body.description
    if body.active is not None:
        subscription.active = body.active
        subscription.disabled_reason = None if body.active else "disabled by its owner"
    subscription.version += 1
    subscription.updated_at = clock.now()
    await session.flush()
    await subscriptions_changed(session)
    if subscription.active:
        await _bind(request, session, subscription)
    response.headers["ETag"] = etag_for(subscription.version)
    return _out(subscription)


@router.delete("/{subscription_id}", status_code=204, responses=problem_responses(401, 403, 404), **allow(*ROLES))
async def delete_subscription(
    subscription_id: SubscriptionId, caller: Caller = Who, session: AsyncSession = Session
) -> Response:
    """Stop delivering and forget the subscription with its deliveries."""
    subscription = await _subscription(session, caller, subscription_id)
    await session.delete(subscription)
    await session.flush()
    await subscriptions_changed(session)
    return Response(status_code=204)


@router.post(
    "/{subscription_id}/secret",
    response_model=SubscriptionSecret,
    responses=problem_responses(401, 403, 404),
    **allow(*ROLES),
)
async def rotate_secret(
    subscription_id: SubscriptionId,
    request: Request,
    response: Response,
    caller: Caller = Who,
    session: AsyncSession = Session,
) -> SubscriptionSecret:
    """A new signing secret, shown once; deliveries carry signatures with both for a while."""
    subscription = await _subscription(session, caller, subscription_id)
    now = clock.now()
    until = now + timedelta(hours=_settings(request).secret_overlap_hours)
    subscription.previous_secret, subscription.previous_secret_until = subscription.secret, until
    subscription.secret = new_secret()
    subscription.version += 1
    subscription.updated_at = now
    await session.flush()
    response.headers["Cache-Control"] = "no-store"
    return SubscriptionSecret(secret=subscription.secret, previous_secret_valid_until=until)


@router.get(
    "/{subscription_id}/deliveries",
    response_model=DeliveryPage,
    responses=problem_responses(400, 401, 403, 404),
    **allow(*ROLES),
)
async def list_deliveries(
    subscription_id: SubscriptionId,
    status: Annotated[DeliveryStatus | None, Query()] = None,
    since: Annotated[datetime | None, Query(description="owed from (inclusive)")] = None,
    until: Annotated[datetime | None, Query(description="owed before (exclusive)")] = None,
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = Query(default=None, max_length=20),
    caller: Caller = Who,
    session: AsyncSession = Session,
) -> DeliveryPage:
    """What the subscription was owed, newest first."""
    subscription = await _subscription(session, caller, subscription_id)
    stmt = select(Delivery).where(Delivery.subscription_id == subscription.id)
    if cursor is not None:
        stmt = stmt.where(Delivery.id < id_cursor(cursor))
    if status is not None:
        stmt = stmt.where(Delivery.status == status)
    for bound in (since, until):
        if bound is not None and bound.tzinfo is None:
            raise BadRequest("give times with a timezone")
    if since is not None:
        stmt = stmt.where(Delivery.created_at >= since)
    if until is not None:
        stmt = stmt.where(Delivery.created_at < until)
    rows = (await session.execute(stmt.order_by(Delivery.id.desc()).limit(limit + 1))).scalars().all()
    return DeliveryPage(
        items=[_delivery_out(d) for d in rows[:limit]], next=str(rows[limit - 1].id) if len(rows) > limit else None
    )


@router.get(
    "/{subscription_id}/deliveries/{delivery_id}",
    response_model=DeliveryDetail,
    responses=problem_responses(401, 403, 404),
    **allow(*ROLES),
)
async def get_delivery(
    subscription_id: SubscriptionId, delivery_id: DeliveryId, caller: Caller = Who, session: AsyncSession = Session
) -> DeliveryDetail:
    """One delivery with every attempt at it."""
    subscription = await _subscription(session, caller, subscription_id)
    delivery = await _delivery(session, subscription, delivery_id)
    attempts = (
        (await session.execute(select(Attempt).where(Attempt.delivery_id == delivery.id).order_by(Attempt.number)))
        .scalars()
        .all()
    )
    return DeliveryDetail(**_delivery_out(delivery).model_dump(), attempts_log=[_attempt_out(a) for a in attempts])


@router.get(
    "/{subscription_id}/attempts",
    response_model=AttemptPage,
    responses=problem_responses(400, 401, 403, 404),
    **allow(*ROLES),
)
async def list_attempts(
    subscription_id: SubscriptionId,
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = Query(default=None, max_length=20),
    caller: Caller = Who,
    session: AsyncSession = Session,
) -> AttemptPage:
    """Every delivery attempt of the subscription, newest first."""
    subscription = await _subscription(session, caller, subscription_id)
    stmt = select(Attempt).where(Attempt.subscription_id == subscription.id)
    if cursor is not None:
        stmt = stmt.where(Attempt.id < id_cursor(cursor))
    rows = (await session.execute(stmt.order_by(Attempt.id.desc()).limit(limit + 1))).scalars().all()
    return AttemptPage(
        items=[_attempt_out(a) for a in rows[:limit]], next=str(rows[limit - 1].id) if len(rows) > limit else None
    )


def _require_active(subscription: Subscription) -> None:
    if not subscription.active:
        raise Conflict("the subscription is disabled; re-enable it (PATCH active: true) first")


@router.post(
    "/{subscription_id}/deliveries/{delivery_id}/replay",
    status_code=202,
    response_model=DeliveryOut,
    responses=problem_responses(401, 403, 404, 409),
    **allow(*ROLES),
)
async def replay_delivery(
    subscription_id: SubscriptionId, delivery_id: DeliveryId, caller: Caller = Who, session: AsyncSession = Session
) -> DeliveryOut:
    """Send one delivery again (same webhook-id), with a fresh day of retries."""
    subscription = await _subscription(session, caller, subscription_id)
    _require_active(subscription)
    delivery = await _delivery(session, subscription, delivery_id)
    now = clock.now()
    delivery.status, delivery.next_attempt_at, delivery.retry_from, delivery.delivered_at = "pending", now, now, None
    await session.flush()
    DELIVERIES_OWED.mark(session)
    return _delivery_out(delivery)


@router.post(
    "/{subscription_id}/replay",
    status_code=202,
    response_model=Replayed,
    responses=problem_responses(401, 403, 404, 409, 422),
    **allow(*ROLES),
)
async def replay_range(
    subscription_id: SubscriptionId,
    body: ReplayRange,
    request: Request,
    caller: Caller = Who,
    session: AsyncSession = Session,
) -> Replayed:
    """Send again what the subscription was owed in a time range (failures only, or all)."""
    subscription = await _subscription(session, caller, subscription_id)
    _require_active(subscription)
    statuses = ("failed", "cancelled") if body.status == "failed" else ("failed", "cancelled", "delivered")
    ids = (
        (
            await session.execute(
                select(Delivery.id)
                .where(
                    Delivery.subscription_id == subscription.id,
                    Delivery.status.in_(statuses),
                    Delivery.created_at >= body.since,
                    Delivery.created_at < body.until,
                )
                .order_by(Delivery.id)
                .limit(_settings(request).replay_limit)
            )
        )
        .scalars()
        .all()
    )
    if ids:
        now = clock.now()
        await session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids))
            .values(status="pending", next_attempt_at=now, retry_from=now, delivered_at=None)
        )
        DELIVERIES_OWED.mark(session)
    return Replayed(replayed=len(ids))
