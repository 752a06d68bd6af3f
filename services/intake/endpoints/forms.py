"""What a dossier prints and holds: the receipt (form 01) with its look-up secret, forms 02–05,
and its component files as received."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import lookup_secret, printing
from services.intake.context import Context
from services.intake.dossiers import visible_dossier
from services.intake.endpoints.common import DOSSIER_READERS, PDF, Ctx, Me, Session, pdf_response, settings_of
from services.intake.models import DossierComponent
from services.intake.state import IntakeState
from shared.auth import Caller, allow
from shared.errors import NotFound, problem_responses
from shared.http import StrictRoute

router = APIRouter(prefix="/dossiers", tags=["dossiers"], route_class=StrictRoute)


@router.post(
    "/{code}/receipt",
    response_class=Response,
    responses={200: PDF, **problem_responses(401, 403, 404, 409, 422)},
    **allow("desk_officer", "citizen", "integrator"),
)
async def issue_receipt(
    code: str,
    request: Request,
    rotate_secret: Annotated[
        bool, Query(description="desk only: replace the look-up secret (the printed one stops working)")
    ] = False,
    reason: Annotated[str | None, Query(min_length=1, max_length=500, description="why, with rotate_secret")] = None,
    caller: Caller = Me,
    session: AsyncSession = Session,
    ctx: Context = Ctx,
) -> Response:
    """Form 01 with the dossier's look-up secret (also in the ``Lookup-Secret`` header). The
    first receipt makes the secret; printing again shows the same one, so the paper receipt
    keeps working. ``rotate_secret=true`` with a ``reason`` (desk only) makes a new one and
    records it in the history."""
    dossier = await visible_dossier(session, caller, code, for_update=True)
    secret = await lookup_secret.receipt_secret(session, ctx, caller, dossier, rotate=rotate_secret, reason=reason)
    pdf = await printing.receipt(session, settings_of(request), dossier, secret=secret)
    return pdf_response(pdf, f"{code}-01", {"Lookup-Secret": secret, "Cache-Control": "no-store"})


FORMS = {
    "02": printing.supplement_request,
    "03": printing.refusal,
    "04": printing.apology,
    "05": printing.tracking_sheet,
}


@router.get(
    "/{code}/forms/{form}",
    response_class=Response,
    responses={200: PDF, **problem_responses(401, 403, 404, 409)},
    **allow(*DOSSIER_READERS),
)
async def print_form(
    code: str,
    form: Annotated[
        str, Path(pattern=r"^0[2-5]$", description="02 supplement request, 03 refusal, 04 apology, 05 tracking sheet")
    ],
    caller: Caller = Me,
    session: AsyncSession = Session,
) -> Response:
    dossier = await visible_dossier(session, caller, code)
    return pdf_response(await FORMS[form](session, dossier), f"{code}-{form}")


@router.get(
    "/{code}/files/{sha256}",
    response_class=Response,
    responses=problem_responses(401, 403, 404),
    **allow(*DOSSIER_READERS),
)
async def get_file(
    code: str,
    sha256: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")],
    request: Request,
    caller: Caller = Me,
    session: AsyncSession = Session,
) -> Response:
    """A component file of the dossier, as received."""
    dossier = await visible_dossier(session, caller, code)
    component = (
        (
            await session.execute(
                select(DossierComponent).where(
                    DossierComponent.dossier_id == dossier.id, DossierComponent.sha256 == sha256
                )
            )
        )
        .scalars()
        .first()
    )
    if component is None:
        raise NotFound("no such file in this dossier")
    content = IntakeState.of(request).blobs.get(sha256)
    return Response(content, media_type=component.content_type or "application/octet-stream")
