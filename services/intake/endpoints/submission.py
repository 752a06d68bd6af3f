"""Bodies that carry files: a dossier's submission (JSON with base64, or multipart streamed to
disk) and files added to a component later, with the body limits the gateway enforces."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import components, submission, uploads
from services.intake.config import IntakeSettings
from services.intake.context import Context
from services.intake.endpoints.common import Ctx, Me, Session, with_body
from services.intake.schemas import DossierOut, DossierSubmission
from shared.auth import Caller, allow
from shared.errors import PayloadTooLarge, Unprocessable, UnsupportedMediaType, problem_responses
from shared.http import StrictRoute

router = APIRouter(prefix="/dossiers", tags=["dossiers"], route_class=StrictRoute)


# The submission's two forms, as the OpenAPI shows them (the body is read by hand: a multipart
# body is streamed to disk, never parsed into memory by the framework first).
_SUBMISSION_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/DossierSubmission"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["dossier"],
                "properties": {
                    "dossier": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "description": "the DossierSubmission as JSON, its components listed without file contents",
                    }
                },
                "patternProperties": {
                    "^component-[0-9]{1,3}$": {
                        "type": "string",
                        "format": "binary",
                        "description": "a file of component <no>; repeat the part for a component of several files",
                    }
                },
                "additionalProperties": False,
            },
            "encoding": {"dossier": {"contentType": "application/json"}},
        },
    },
}


def submission_schemas(app: FastAPI, settings: IntakeSettings) -> None:
    """Put ``DossierSubmission`` (and what it uses) in the app's OpenAPI components: the route
    that takes it reads its body by hand, so the framework does not list it by itself. And say
    how large the file routes' bodies may be (``x-max-body-bytes``), which the gateway enforces
    at the edge instead of its generic upload limit."""
    original = app.openapi
    limits = {
        ("/dossiers", "post"): files_body_limit(settings),
        ("/dossiers/{code}/components/{no}/files", "post"): settings.max_dossier_bytes + MULTIPART_OVERHEAD,
    }

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = original()
        schema = DossierSubmission.model_json_schema(ref_template="#/components/schemas/{model}")
        found = document.setdefault("components", {}).setdefault("schemas", {})
        # a model another route lists already (Applicant, ComponentIn…) is kept as listed there:
        # the same class, written out by the framework
        for name, definition in {**schema.pop("$defs", {}), "DossierSubmission": schema}.items():
            found.setdefault(name, definition)
        for (path, method), limit in limits.items():
            document["paths"][path][method]["x-max-body-bytes"] = limit
        return document

    app.openapi = openapi  # type: ignore[method-assign]


async def _json_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"a JSON submission is at most {limit} bytes; send large files as multipart/form-data")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"a JSON submission is at most {limit} bytes; send large files as multipart/form-data"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _submission(raw: str | bytes, *, prefix: tuple[str, ...]) -> DossierSubmission:
    try:
        return DossierSubmission.model_validate_json(raw)
    except ValidationError as exc:
        # the same 422 (or 400 for JSON that is not JSON) as a body the framework parsed
        raise RequestValidationError(
            [{**e, "loc": (*prefix, *e.get("loc", ()))} for e in exc.errors(include_url=False, include_context=False)]
        ) from None


@router.post(
    "",
    status_code=201,
    response_model=DossierOut,
    responses={
        200: {"description": "replay of an Idempotency-Key"},
        **problem_responses(400, 401, 403, 409, 413, 415, 422),
    },
    **with_body(allow("citizen", "desk_officer", "integrator"), _SUBMISSION_BODY),
)
async def submit_dossier(
    request: Request,
    response: Response,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
    caller: Caller = Me,
    session: AsyncSession = Session,
    ctx: Context = Ctx,
) -> DossierOut:
    """Submit a dossier: online by a citizen or portal (status 1) or at the desk (status 2, the
    clock starts). Two forms: JSON with files as base64 in ``components[].file`` (small files),
    or ``multipart/form-data`` with the same JSON in a part named ``dossier`` and each file as a
    part named ``component-<no>`` (streamed; up to ``max_file_bytes`` a file and
    ``max_dossier_bytes`` together). The same ``Idempotency-Key`` with the same body answers the
    first dossier again (200), with another body 409."""
    settings = ctx.settings
    if uploads.is_multipart(request):
        async with uploads.receive_form(
            request,
            incoming=ctx.blobs.incoming,
            file_parts=components.UPLOAD_PART.pattern,
            text_parts=frozenset({"dossier"}),
            max_file_bytes=settings.max_file_bytes,
            max_total_bytes=settings.max_dossier_bytes,
            max_files=settings.max_files_per_request,
            accepted=settings.accepted_file_types,
        ) as form:
            if "dossier" not in form.fields:
                raise Unprocessable("a multipart submission carries its JSON in a part named dossier", field="dossier")
            body = _submission(form.fields["dossier"], prefix=("body", "dossier"))
            view, created = await submission.submit(
                session, ctx, caller, body, idempotency_key=idempotency_key, uploads=form.files
            )
    else:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media and media != "application/json" and not media.endswith("+json"):
            raise UnsupportedMediaType("send application/json or multipart/form-data", accepted=SUBMISSION_MEDIA)
        body = _submission(await _json_body(request, json_submission_limit(settings)), prefix=("body",))
        view, created = await submission.submit(session, ctx, caller, body, idempotency_key=idempotency_key)
    if not created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return view


SUBMISSION_MEDIA = ["application/json", "multipart/form-data"]


MULTIPART_OVERHEAD = 1024 * 1024  # the dossier part and the parts' headers


def json_submission_limit(settings: IntakeSettings) -> int:
    """A JSON submission carries its files in base64 (4/3 larger), a few of them at most."""
    return settings.max_file_bytes * 4 // 3 * 3 + 1024 * 1024


def files_body_limit(settings: IntakeSettings) -> int:
    """The largest body of the routes under ``/dossiers``: a JSON submission, or a multipart one
    whose files stay within the dossier's total."""
    return max(json_submission_limit(settings), settings.max_dossier_bytes + MULTIPART_OVERHEAD)


@router.post(
    "/{code}/components/{no}/files",
    status_code=201,
    response_model=DossierOut,
    responses={
        200: {"description": "every file was already there: nothing added"},
        **problem_responses(400, 401, 403, 404, 409, 413, 415, 422),
    },
    **with_body(
        allow("citizen", "integrator", "desk_officer"),
        {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                                "description": "one or more parts named file",
                            }
                        },
                        "additionalProperties": False,
                    }
                }
            },
        },
    ),
)
async def add_component_files(
    code: str,
    no: Annotated[int, Path(ge=1, le=100, description="the component's number in the procedure")],
    request: Request,
    response: Response,
    caller: Caller = Me,
    session: AsyncSession = Session,
    ctx: Context = Ctx,
) -> DossierOut:
    """Add file(s) to a component of a dossier that takes them: submitted online and not yet
    accepted (1), or waiting for a supplement (5). Streamed like a multipart submission, within
    the per-file and per-dossier limits; a file the component already has is not added again.
    Emits ``dossier.files_added``."""
    if not uploads.is_multipart(request):
        raise UnsupportedMediaType("send the files as multipart/form-data parts named file")
    settings = ctx.settings
    room = await components.files_room(session, ctx, caller, code, no)
    # nothing is written yet: end the read so that no connection is held while the body streams
    # in (add_files checks again, under the dossier's lock)
    await session.rollback()
    async with uploads.receive_form(
        request,
        incoming=ctx.blobs.incoming,
        file_parts="file",
        max_file_bytes=settings.max_file_bytes,
        max_total_bytes=max(room, 0),
        max_files=settings.max_files_per_request,
        accepted=settings.accepted_file_types,
    ) as form:
        view, added = await components.add_files(session, ctx, caller, code, no, form.files.get("file", []))
    if not added:
        response.status_code = 200
    return view
