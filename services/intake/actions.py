"""Workflow actions taken by people: who may take each, what its body carries, and the 409
when the status does not allow it (the rules themselves are ``workflow``'s).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.components import checked_components
from services.intake.context import Context
from services.intake.dossiers import OWNER_ROLES, visible_dossier
from services.intake.models import Dossier, IssuedResult, ProcedureVersion
from services.intake.results import apply_pending_result, issued_result_named, result_of
from services.intake.schemas import ActionRequest, DossierOut
from services.intake.transition import transition
from services.intake.views import dossier_out, record
from services.intake.workflow import FINISHABLE, Action, TransitionNotAllowed, allowed_actions, next_status
from shared.auth import Caller
from shared.errors import Conflict, Forbidden, NotFound, Unprocessable
from shared.events import Actor

# Who may take each action. Staff act only inside their agency subtree; a citizen (or the
# portal that submitted for them) only on their own dossier.
ACTION_ROLES: dict[Action, frozenset[str]] = {
    Action.ACCEPT: frozenset({"desk_officer"}),
    Action.REFUSE: frozenset({"desk_officer"}),
    Action.START_PROCESSING: frozenset({"desk_officer"}),
    Action.REQUEST_SUPPLEMENT: frozenset({"desk_officer", "specialist"}),
    Action.SUPPLEMENT_RECEIVED: frozenset({"desk_officer", "citizen", "integrator"}),
    Action.REQUEST_FEES: frozenset({"specialist", "leader"}),
    Action.FEES_PAID: frozenset({"desk_officer", "specialist"}),
    Action.WITHDRAW: frozenset({"desk_officer", "citizen", "integrator"}),
    Action.STOP: frozenset({"specialist", "leader"}),
    Action.FINISH: frozenset({"specialist", "leader"}),
    Action.RETURN_RESULT: frozenset({"desk_officer"}),
}

# Body fields each action needs (required) and may carry (allowed besides ``note``).
ACTION_FIELDS: dict[Action, tuple[frozenset[str], frozenset[str]]] = {
    Action.ACCEPT: (frozenset(), frozenset()),
    Action.REFUSE: (frozenset({"reasons"}), frozenset()),
    Action.START_PROCESSING: (frozenset(), frozenset({"to_whom", "allotted_hours"})),
    Action.REQUEST_SUPPLEMENT: (frozenset({"missing_items"}), frozenset()),
    Action.SUPPLEMENT_RECEIVED: (frozenset(), frozenset({"components"})),
    Action.REQUEST_FEES: (frozenset(), frozenset({"amount_vnd"})),
    Action.FEES_PAID: (frozenset(), frozenset()),
    Action.WITHDRAW: (frozenset(), frozenset()),
    Action.STOP: (frozenset({"reasons"}), frozenset()),
    Action.FINISH: (frozenset({"result"}), frozenset()),
    Action.RETURN_RESULT: (frozenset(), frozenset()),
}


def _check_fields(action: Action, body: ActionRequest) -> None:
    required, allowed = ACTION_FIELDS[action]
    given = {name for name in body.model_fields_set if getattr(body, name) is not None} - {"note"}
    missing = sorted(required - given)
    extra = sorted(given - required - allowed)
    if missing:
        raise Unprocessable(f"{action} needs: {', '.join(missing)}", missing=missing)
    if extra:
        raise Unprocessable(f"{action} does not take: {', '.join(extra)}", not_taken=extra)


def _authorise(caller: Caller, action: Action, dossier: Dossier) -> None:
    roles = ACTION_ROLES[action]
    if "service" in caller.roles:
        return
    if not caller.roles & roles:
        raise Forbidden(f"{action} needs one of the roles: {', '.join(sorted(roles))}")
    staff_roles = (caller.roles & roles) - OWNER_ROLES
    if staff_roles and caller.acts_in(dossier.agency):
        return
    if caller.roles & roles & OWNER_ROLES and dossier.owner == caller.sub:
        return
    raise Forbidden(f"{action} on this dossier is not yours to take")


async def act(
    session: AsyncSession, ctx: Context, caller: Caller, code: str, action_name: str, body: ActionRequest
) -> DossierOut:
    try:
        action = Action(action_name)
    except ValueError:
        raise NotFound(f"no action {action_name}; actions: {', '.join(a.value for a in Action)}") from None
    dossier = await visible_dossier(session, caller, code, for_update=True)
    _authorise(caller, action, dossier)
    _check_fields(action, body)
    try:
        target = next_status(dossier.status, action, paused_from=dossier.paused_from)
    except TransitionNotAllowed as exc:
        raise Conflict(
            str(exc),
            status=dossier.status,
            allowed_actions=[str(a) for a in allowed_actions(dossier.status, paused_from=dossier.paused_from)],
        ) from None
    checked = []
    if body.components:
        version = await session.get(ProcedureVersion, dossier.procedure_version_id)
        assert version is not None
        checked = await checked_components(ctx, version, body.components, online=False, prefix="components")
    issued: IssuedResult | None = None
    if action is Action.FINISH:
        assert body.result is not None  # _check_fields
        issued = await issued_result_named(session, dossier, body.result.document_number)
    await transition(
        session,
        ctx,
        dossier,
        action,
        target,
        actor=caller.sub,
        actor_name=caller.name,
        by=Actor.of(caller),
        body=body,
        new_components=checked,
        result=result_of(issued) if issued else None,
    )
    if issued is not None:
        issued.applied_at = dossier.finished_at
    elif target in FINISHABLE:
        # a result issued while the dossier could not take it is applied as soon as it can
        await apply_pending_result(session, ctx, dossier)
    return await dossier_out(session, ctx, record(dossier))
