"""Notify's HTTP API (through the gateway at ``/api/notify/…``)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.models import Subscription
from shared.auth import Caller, allow, current_caller
from shared.db import request_session
from shared.errors import problem_responses
from shared.http import StrictRoute

router = APIRouter(prefix="/subscriptions", tags=["webhooks"], route_class=StrictRoute)
Session = Depends(request_session, scope="function")


class SubscriptionOut(BaseModel):
    id: int
    callback_url: str
    event_types: list[str]
    agency: str | None
    active: bool
    created_at: datetime


@router.get("", response_model=list[SubscriptionOut], responses=problem_responses(401, 403),
            **allow("integrator", "admin"))
async def list_subscriptions(
    caller: Caller = Depends(current_caller), session: AsyncSession = Session
) -> list[SubscriptionOut]:
    """The caller's webhook subscriptions."""
    rows = (
        await session.execute(select(Subscription).where(Subscription.owner == caller.sub).order_by(Subscription.id))
    ).scalars().all()
    return [SubscriptionOut.model_validate(r, from_attributes=True) for r in rows]
