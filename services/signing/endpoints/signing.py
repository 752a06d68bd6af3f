"""``/sign``, ``/sign/batch``, ``/fill-number`` — the PDF goes in as the raw body (``application/pdf``;
a batch as ``multipart/form-data`` files), options in the query, the signer's PIN in the
``X-Signing-PIN`` header; the signed PDF comes back as the body — and ``/verify``: any signed-in
user, a PDF in, the verification report out."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from shared import clock
from shared.auth import ROLES, Caller, current_caller
from shared.errors import ProblemError, Unprocessable, UnsupportedMediaType, problem_responses
from shared.http import StrictRoute, raw_body_route

from .. import pades, service
from ..drafts import fill_number_field
from ..models import Certificate
from ..policy import SigningRefused, open_pdf
from ..schemas import (
    BatchItemOut,
    BatchOut,
    SignatureOut,
    VerificationOut,
)
from ..service import SigningProblem, sha256_hex
from ..verification import verify_pdf
from .context import Session, documents_of, keystore_of, pins_of

PIN_HEADER = "X-Signing-PIN"
PIN_DESCRIPTION = (
    "The signer's own PIN, of the certificate signed with (a leader's, or the agency's seal for a clerk); "
    "5 wrong PINs in a row lock it until an administrator sets a new one. Demo deployments: every demo "
    "certificate's PIN is 123456 (LIENTHONG_SIGNING_DEMO_PIN_SECRET)."
)
Kind = Literal["person", "organisation", "attachment"]
Level = Literal["B-T", "B-LT"]

signing_router = APIRouter(tags=["signing"], route_class=StrictRoute)


def _signature_headers(out: SignatureOut) -> dict[str, str]:
    return {
        "X-Certificate-Serial": out.certificate_serial,
        "X-Signature-Kind": out.kind,
        "X-Signature-Level": out.level,
        "X-Input-SHA256": out.input_sha256,
        "X-Output-SHA256": out.output_sha256,
        "X-Signed-At": out.signed_at.isoformat(),
    }


def _pdf_response(pdf: bytes, out: SignatureOut | None = None) -> Response:
    return Response(pdf, media_type="application/pdf", headers=_signature_headers(out) if out else None)


def _level(request: Request, level: Level | None) -> str:
    return level or request.app.state.runtime.settings.default_level


@signing_router.post(
    "/sign",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}, **problem_responses(401, 403, 404, 409, 413, 415, 422, 423)},
    **raw_body_route("application/pdf", "leader", "clerk"),
)
async def sign(
    request: Request,
    kind: Kind = "person",
    level: Level | None = None,
    certificate: str | None = Query(default=None, description="serial (hex); default: yours / your agency's seal"),
    number: str | None = Query(default=None, max_length=50, description="attachment: the main document's number"),
    pin: str = Header(alias=PIN_HEADER, min_length=1, max_length=64, description=PIN_DESCRIPTION),
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> Response:
    """Sign one PDF, PAdES B-T (B-LT on request). ``person``: the leader's own certificate; the
    draft's fields are prepared if missing. ``organisation``: the clerk's agency's seal, after the
    number is filled. ``attachment``: the seal's text stamp at the top right of page 1."""
    keystore = keystore_of(request)
    pdf = await request.body()
    digest = sha256_hex(pdf)
    row: Certificate | None = None
    level_ = _level(request, level)
    try:
        row = await service.certificate_for(
            session, caller, kind="person" if kind == "person" else "organisation", serial=certificate
        )
        signed_at = clock.now()
        service.check_usable(keystore, row, at=signed_at)
        options = service.sign_options(keystore, kind=kind, level=level_, caller=caller, number=number)
        pins = pins_of(request)
        signer_id = row.signer_id

        def work() -> bytes:
            document = open_pdf(pdf, keystore.policy)  # bad input is refused before the PIN is tried
            signer = pins.signer(keystore, signer_id, pin)
            return pades.sign_pdf(document, signer=signer, signing_time=signed_at, **options)

        try:
            output = await asyncio.to_thread(work)
        except SigningRefused as exc:
            raise SigningProblem(exc) from exc
    except ProblemError as problem:
        await service.record_failure(session, kind=kind, caller=caller, row=row, input_sha=digest, problem=problem)
        raise
    signature = await service.record_signature(
        session,
        row=row,
        kind=kind,
        level=level_,
        caller=caller,
        input_sha=digest,
        input_bytes=len(pdf),
        output=output,
        signed_at=signed_at,
    )
    return _pdf_response(output, _signature_out(signature))


def _signature_out(signature: Any) -> SignatureOut:
    return SignatureOut(
        certificate_serial=signature.certificate_serial,
        kind=signature.kind,
        level=signature.level,
        input_sha256=signature.input_sha256,
        output_sha256=signature.output_sha256,
        signed_at=signature.signed_at,
    )


@signing_router.post(
    "/sign/batch",
    response_model=BatchOut,
    responses=problem_responses(401, 403, 404, 413, 415, 422, 423),
    **raw_body_route("multipart/form-data", "leader", "clerk"),
)
async def sign_batch(
    request: Request,
    kind: Kind = "person",
    level: Level | None = None,
    certificate: str | None = Query(default=None, description="serial (hex); default: yours / your agency's seal"),
    number: str | None = Query(default=None, max_length=50),
    pin: str = Header(alias=PIN_HEADER, min_length=1, max_length=64, description=PIN_DESCRIPTION),
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> Response:
    """Sign up to ``max_batch`` PDFs (multipart files, any field name) with one PIN entry; one
    result per file, in order, with the signed PDF in base64 or the item's problem."""
    keystore = keystore_of(request)
    settings = request.app.state.runtime.settings
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise UnsupportedMediaType("send the PDFs as multipart/form-data files")
    form = await request.form(max_files=settings.max_batch + 1, max_fields=settings.max_batch + 10)
    files = [(v.filename, await v.read()) for _, v in form.multi_items() if hasattr(v, "read")]
    await form.close()
    if not files:
        raise Unprocessable("no PDF files in the request")
    if len(files) > settings.max_batch:
        raise Unprocessable(f"at most {settings.max_batch} documents per batch, got {len(files)}")
    level_ = _level(request, level)
    batch_id = str(uuid.uuid4())
    row: Certificate | None = None
    try:
        row = await service.certificate_for(
            session, caller, kind="person" if kind == "person" else "organisation", serial=certificate
        )
        signed_at = clock.now()
        service.check_usable(keystore, row, at=signed_at)
        options = service.sign_options(keystore, kind=kind, level=level_, caller=caller, number=number)
        pins = pins_of(request)
        signer_id = row.signer_id

        def work() -> pades.BatchResult:
            signer = pins.signer(keystore, signer_id, pin)
            return pades.sign_batch(
                [pdf for _, pdf in files],
                signer=signer,
                signing_time=signed_at,
                max_batch=settings.max_batch,
                **options,
            )

        try:
            result = await asyncio.to_thread(work)
        except SigningRefused as exc:
            raise SigningProblem(exc) from exc
    except ProblemError as problem:
        await service.record_failure(
            session, kind=kind, caller=caller, row=row, input_sha=None, problem=problem, batch_id=batch_id
        )
        raise
    items: list[list[bytes]] = []  # the response's items, as JSON
    signatures = iter(
        await service.record_signatures(
            session,
            row=row,
            kind=kind,
            level=level_,
            caller=caller,
            documents=[(files[item.index][1], item.pdf) for item in result.items if item.pdf is not None],
            signed_at=signed_at,
            batch_id=batch_id,
        )
    )
    for item in result.items:
        name, original = files[item.index]
        if item.pdf is None:
            assert item.error is not None
            problem = SigningProblem(item.error)
            await service.record_failure(
                session,
                kind=kind,
                caller=caller,
                row=row,
                input_sha=sha256_hex(original),
                problem=problem,
                batch_id=batch_id,
                alone=False,
            )
            items.append(
                _batch_item_json(
                    BatchItemOut(
                        index=item.index,
                        filename=name,
                        ok=False,
                        error={
                            "status": problem.status,
                            "code": problem.code,
                            "title": problem.title,
                            "detail": problem.detail,
                        },
                    )
                )
            )
            continue
        out = BatchItemOut(index=item.index, filename=name, ok=True, signature=_signature_out(next(signatures)))
        items.append(_batch_item_json(out, item.pdf))
    # a BatchOut, put together from its items' JSON
    head = BatchOut(batch_id=batch_id, signed=result.signed, failed=len(items) - result.signed, items=[])
    body = [head.model_dump_json(exclude={"items"}).encode()[:-1], b',"items":[']
    for index, item_json in enumerate(items):
        body += [b"," if index else b"", *item_json]
    return Response(b"".join([*body, b"]}"]), media_type="application/json")


def _batch_item_json(out: BatchItemOut, pdf: bytes | None = None) -> list[bytes]:
    """One item of a batch's response as JSON (in pieces, joined once for the whole response),
    with the signed PDF's base64 (if any) added as the encoder gives it: it needs no escaping,
    and a JSON encoder would scan each of its characters again (a batch's response is some
    15 MB)."""
    if pdf is None:
        return [out.model_dump_json().encode()]
    fields = out.model_dump_json(exclude={"pdf_base64"}).encode()[:-1]  # without the closing brace
    return [fields, b',"pdf_base64":"', base64.b64encode(pdf), b'"}']


@signing_router.post(
    "/fill-number",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}, **problem_responses(401, 403, 404, 409, 413, 415, 422, 503)},
    **raw_body_route("application/pdf", "clerk"),
)
async def fill_number(
    request: Request,
    # the document part's ids are 32-bit: a larger one names no document (and must not reach its SQL)
    document: int = Query(
        ge=1, le=2**31 - 1, description="the document's id in the document part; its assigned number is filled"
    ),
    number: str | None = Query(
        default=None,
        min_length=1,
        max_length=50,
        description="optional check: the number and symbol you expect (e.g. 15/QĐ-UBND); 409 if the document "
        "was assigned another",
    ),
    caller: Caller = Depends(current_caller),
) -> Response:
    """The clerk's step (cấp số): write the number/symbol the system assigned to ``document``
    (read from the document part with your own token) into the prepared field, as an incremental
    update the leader's signature permits. Nothing but the assigned number can be filled: a
    document not numbered yet is 409 ``document_not_numbered``, a ``number`` that is not its
    assignment 409 ``number_not_assigned``."""
    keystore = keystore_of(request)
    documents = documents_of(request)
    code = await documents.assigned_code(
        document, authorization=request.headers.get("authorization", ""), claimed=number
    )
    pdf = await request.body()
    try:
        output = await asyncio.to_thread(fill_number_field, pdf, number_text=code, policy=keystore.policy)
    except SigningRefused as exc:
        raise SigningProblem(exc) from exc
    return Response(output, media_type="application/pdf", headers={"X-Output-SHA256": sha256_hex(output)})


@signing_router.post(
    "/verify",
    response_model=VerificationOut,
    responses=problem_responses(401, 413, 415, 422),
    **raw_body_route("application/pdf", *(r for r in ROLES if r != "service")),
)
async def verify(request: Request, caller: Caller = Depends(current_caller)) -> dict[str, Any]:
    """Verify every signature of a PDF against our trust roots: signer and chain, revocation
    (embedded, or from our CA in-process), signing time and time-stamp, integrity, and what
    changed after each signature and whether that was permitted."""
    keystore = keystore_of(request)
    pdf = await request.body()
    try:
        report = await asyncio.to_thread(verify_pdf, pdf, trust=keystore.trust, policy=keystore.policy)
    except SigningRefused as exc:
        raise SigningProblem(exc) from exc
    signatures = []
    for sig in report.signatures:
        data = dataclasses.asdict(sig)
        data["ok"] = sig.ok
        signatures.append(data)
    return {
        "all_ok": report.all_ok,
        "revisions": report.revisions,
        "number_text": report.number_text,
        "sha256": sha256_hex(pdf),
        "signatures": signatures,
    }
