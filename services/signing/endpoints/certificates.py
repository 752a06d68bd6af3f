"""``/certificates`` — administrators issue (key made in the token), list, revoke, reset PINs — and
``/agencies/{organ_id}/signing``, who signs for an agency."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared import clock
from shared.auth import Caller, allow, current_caller
from shared.errors import Unprocessable, problem_responses
from shared.events import Actor
from shared.http import StrictRoute
from shared.organ_id import is_valid as is_organ_id

from .. import service
from ..keystore import Keystore
from ..models import Certificate
from ..schemas import (
    AgencySignerOut,
    AgencySigningOut,
    CertificateOut,
    CertificateRequest,
    IssuedCertificateOut,
    PinReset,
    PinResetOut,
    RevokeRequest,
)
from .context import Session, keystore_of, pins_of

certificates_router = APIRouter(prefix="/certificates", tags=["certificates"], route_class=StrictRoute)
agencies_router = APIRouter(prefix="/agencies", tags=["certificates"], route_class=StrictRoute)


def _out(row: Certificate, keystore: Keystore, *, full: bool = False) -> dict[str, Any]:
    data = {c: getattr(row, c) for c in CertificateOut.model_fields if hasattr(row, c)}
    if full:
        data["certificate_pem"] = service.certificate_pem(keystore, row)
        data["locked"] = service.locked(keystore, row)
    return data


@certificates_router.post(
    "",
    status_code=201,
    response_model=IssuedCertificateOut,
    responses=problem_responses(401, 403, 422),
    **allow("admin"),
)
async def issue(
    body: CertificateRequest,
    request: Request,
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> dict[str, Any]:
    """Issue a certificate (cấp chứng thư số): a leader's, or an agency's seal. The key pair is
    generated inside the token; the PIN is the one given, or a new one returned here once."""
    caller.require_agency(body.agency)
    keystore = keystore_of(request)
    made = await service.issue_certificate(
        session,
        keystore,
        kind=body.kind,
        agency=body.agency,
        agency_name=body.agency_name,
        issued_by=caller.sub,
        actor=Actor.of(caller),
        user_id=body.user_id,
        full_name=body.full_name,
        position=body.position,
        pin=body.pin,
    )
    return {**_out(made.row, keystore, full=True), "pin": made.pin}


@certificates_router.get(
    "", response_model=list[CertificateOut], responses=problem_responses(401, 403), **allow("leader", "clerk", "admin")
)
async def list_certificates(
    request: Request,
    kind: Literal["person", "organisation"] | None = None,
    owner: str | None = None,
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> list[dict[str, Any]]:
    """Certificates of the caller's agency subtree (newest first)."""
    query = select(Certificate).order_by(Certificate.id.desc())
    if kind:
        query = query.where(Certificate.kind == kind)
    if owner:
        query = query.where(Certificate.owner == owner)
    rows = (await session.execute(query)).scalars().all()
    keystore = keystore_of(request)
    return [_out(r, keystore) for r in rows if caller.acts_in(r.agency)]


@certificates_router.get(
    "/{serial}",
    response_model=CertificateOut,
    responses=problem_responses(401, 403, 404),
    **allow("leader", "clerk", "admin"),
)
async def get_certificate(
    serial: str, request: Request, caller: Caller = Depends(current_caller), session: AsyncSession = Session
) -> dict[str, Any]:
    """One certificate with its PEM and whether its signer is locked by wrong PINs."""
    row = await service.certificate_by_serial(session, serial)
    caller.require_agency(row.agency, hide=True)
    return _out(row, keystore_of(request), full=True)


@certificates_router.post(
    "/{serial}/revoke", response_model=CertificateOut, responses=problem_responses(401, 403, 404, 409), **allow("admin")
)
async def revoke(
    serial: str,
    body: RevokeRequest,
    request: Request,
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> dict[str, Any]:
    """Revoke (thu hồi): OCSP answers ``revoked`` at once, the next CRL lists it, signing with
    it is refused; signatures time-stamped before stay valid."""
    row = await service.certificate_by_serial(session, serial)
    caller.require_agency(row.agency, hide=True)
    keystore = keystore_of(request)
    await service.revoke_certificate(session, keystore, row, reason=body.reason, caller=caller)
    pins_of(request).forget(row.signer_id)
    return _out(row, keystore, full=True)


@certificates_router.post(
    "/{serial}/pin", response_model=PinResetOut, responses=problem_responses(401, 403, 404, 422), **allow("admin")
)
async def reset_pin(
    serial: str,
    body: PinReset,
    request: Request,
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> dict[str, Any]:
    """Set a new PIN for a certificate's signer and lift a lock from wrong PINs."""
    row = await service.certificate_by_serial(session, serial)
    caller.require_agency(row.agency, hide=True)
    pin = body.pin or service.new_pin()
    keystore = keystore_of(request)
    try:
        await asyncio.to_thread(keystore.token.reset_pin, row.signer_id, new_pin=pin)
    except service.TokenError as exc:
        raise Unprocessable(str(exc)) from exc
    pins_of(request).forget(row.signer_id)
    return {"serial": row.serial, "pin": None if body.pin else pin}


@agencies_router.get(
    "/{organ_id}",
    response_model=AgencySigningOut,
    responses=problem_responses(401, 403, 404, 422),
    **allow("leader", "clerk", "admin"),
)
async def agency_signing(
    organ_id: str, request: Request, caller: Caller = Depends(current_caller), session: AsyncSession = Session
) -> dict[str, Any]:
    """What an agency of the caller's subtree can sign with: its seal certificate(s), the one a
    clerk's seal uses by default, and the people who can sign, with their usable certificates."""
    if not is_organ_id(organ_id):
        raise Unprocessable("organ_id must be an OrganId such as 000.00.41.H56")
    caller.require_agency(organ_id, hide=True)
    rows = (
        (
            await session.execute(
                select(Certificate).where(Certificate.agency == organ_id).order_by(Certificate.id.desc())
            )
        )
        .scalars()
        .all()
    )
    now = clock.now()
    usable = [r for r in rows if r.revoked_at is None and r.not_before <= now <= r.not_after]
    seals = [r for r in rows if r.kind == "organisation"]
    signers: dict[str, AgencySignerOut] = {}
    for row in usable:
        if row.kind == "person" and row.owner:
            signer = signers.setdefault(
                row.owner,
                AgencySignerOut(user_id=row.owner, full_name=row.full_name, position=row.position, certificates=[]),
            )
            signer.certificates.append(row.serial)
    keystore = keystore_of(request)
    return {
        "organ_id": organ_id,
        "name": rows[0].agency_name if rows else None,
        "default_seal": next((r.serial for r in usable if r.kind == "organisation"), None),
        "seals": [_out(r, keystore) for r in seals],
        "signers": sorted(signers.values(), key=lambda s: s.user_id),
    }
