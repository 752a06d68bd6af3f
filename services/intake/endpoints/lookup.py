"""Tra cứu hồ sơ: the public look-up by code and receipt secret, rate-limited per client."""

from __future__ import annotations

import hmac
import ipaddress
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import lookup_secret
from services.intake.endpoints.common import Session, settings_of
from services.intake.models import Dossier
from services.intake.schemas import LookupOut
from services.intake.workflow import DossierStatus
from shared.auth import public
from shared.errors import NotFound, TooManyRequests, problem_responses
from shared.http import StrictRoute

router = APIRouter(tags=["lookup"], route_class=StrictRoute)


class RateLimiter:
    """Token bucket per client address, in this process (the gateway limits across replicas)."""

    def __init__(self, per_minute: int, *, max_clients: int = 50_000) -> None:
        self.capacity = float(per_minute)
        self.refill = per_minute / 60.0
        self.max_clients = max_clients
        self.buckets: dict[str, tuple[float, float]] = {}

    def take(self, client: str) -> float:
        """0 when admitted, else seconds until the next token."""
        now = time.monotonic()
        tokens_, last = self.buckets.get(client, (self.capacity, now))
        tokens_ = min(self.capacity, tokens_ + (now - last) * self.refill)
        if tokens_ < 1:
            self.buckets[client] = (tokens_, now)
            return (1 - tokens_) / self.refill
        if len(self.buckets) >= self.max_clients and client not in self.buckets:
            self.buckets = {k: v for k, v in self.buckets.items() if v[0] + (now - v[1]) * self.refill < self.capacity}
        self.buckets[client] = (tokens_ - 1, now)
        return 0.0


def client_address(request: Request, trusted: list[str]) -> str:
    peer = request.client.host if request.client else "unknown"
    if peer not in trusted:
        return peer
    forwarded = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(forwarded):
        if hop not in trusted:
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return peer


_NOT_FOUND = "no dossier with this code and secret"

# what the look-up shows and its check, as a plain row (a public route: kept cheap)
_DOSSIER = Dossier.__table__.c
_LOOKED_UP = select(
    _DOSSIER.code,
    _DOSSIER.status,
    _DOSSIER.received_at,
    _DOSSIER.accepted_at,
    _DOSSIER.due_at,
    _DOSSIER.finished_at,
    _DOSSIER.returned_at,
    _DOSSIER.lookup_hash,
).where(_DOSSIER.code == bindparam("code"))


@router.get("/lookup", response_model=LookupOut, responses=problem_responses(404, 429), **public())
async def public_lookup(
    request: Request,
    code: Annotated[str, Query(max_length=40)],
    secret: Annotated[str, Query(max_length=40)],
    session: AsyncSession = Session,
) -> LookupOut:
    """Tra cứu hồ sơ: status and dates of a dossier for whoever holds its receipt (code and
    secret). A wrong code and a wrong secret get the same 404, and tries are rate-limited."""
    settings = settings_of(request)
    limiter: RateLimiter = request.app.state.runtime.extras["lookup_limiter"]
    wait = limiter.take(client_address(request, settings.trusted_proxies))
    if wait:
        raise TooManyRequests("too many look-ups; try again later", headers={"Retry-After": str(int(wait) + 1)})
    given = lookup_secret.lookup_hash(settings, code, secret.strip().upper())
    dossier = (await session.execute(_LOOKED_UP, {"code": code})).mappings().first()
    stored = dossier["lookup_hash"] if dossier is not None and dossier["lookup_hash"] else "0" * 64
    # compare even when there is no dossier, so that timing does not tell codes apart
    if not hmac.compare_digest(given, stored) or dossier is None:
        raise NotFound(_NOT_FOUND)
    return LookupOut(
        code=dossier["code"],
        status=dossier["status"],
        status_label=DossierStatus(dossier["status"]).label_vi,
        received_at=dossier["received_at"],
        accepted_at=dossier["accepted_at"],
        due_at=dossier["due_at"],
        finished_at=dossier["finished_at"],
        returned_at=dossier["returned_at"],
    )
