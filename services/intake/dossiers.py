"""Finding a dossier the caller may see, and what every change to one records (its version,
and a history entry for a change that moves no status).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.models import Dossier, DossierEvent
from shared import clock
from shared.auth import Caller
from shared.errors import NotFound

# Who acts on their own dossier: a citizen, or the portal that submitted for them.
OWNER_ROLES = frozenset({"citizen", "integrator"})

# built once, as every action and view reads the dossier: building a query costs about what running it does
_BY_CODE = select(Dossier).where(Dossier.code == bindparam("code"))
_BY_CODE_FOR_UPDATE = _BY_CODE.with_for_update()


async def find_dossier(session: AsyncSession, code: str, *, for_update: bool = False) -> Dossier | None:
    query = _BY_CODE_FOR_UPDATE if for_update else _BY_CODE
    return (await session.execute(query, {"code": code})).scalar_one_or_none()


def may_see(caller: Caller, *, agency: str, owner: str | None) -> bool:
    if caller.has_any(*OWNER_ROLES) and owner is not None and owner == caller.sub:
        return True
    staff = caller.roles - OWNER_ROLES
    return bool(staff) and caller.acts_in(agency)


async def visible_dossier(session: AsyncSession, caller: Caller, code: str, *, for_update: bool = False) -> Dossier:
    """The dossier if the caller may see it; 404 alike for absent and not yours."""
    dossier = await find_dossier(session, code, for_update=for_update)
    if dossier is None or not may_see(caller, agency=dossier.agency, owner=dossier.owner):
        raise NotFound(f"no dossier {code}")
    return dossier


def touch(dossier: Dossier) -> None:
    dossier.version += 1
    dossier.updated_at = clock.now()


def note(
    session: AsyncSession, dossier: Dossier, caller: Caller, action: str, *, at: datetime, details: dict[str, Any]
) -> None:
    """A history entry for what the caller did without moving the status (files added, an
    extension, a new look-up secret), written at the next flush."""
    session.add(
        DossierEvent(
            dossier_id=dossier.id,
            action=action,
            from_status=dossier.status,
            to_status=dossier.status,
            at=at,
            actor=caller.sub,
            actor_name=caller.name,
            details=details,
        )
    )
