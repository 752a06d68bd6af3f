"""Signing's HTTP API (through the gateway at ``/api/signing/…``).

* ``/pki/…`` — public: CA certificates, CRLs, OCSP and the RFC 3161 TSA, at the URLs the
  issued certificates name.
* ``/certificates`` — administrators issue (key made in the token), list, revoke, reset PINs.
* ``/sign``, ``/sign/batch``, ``/fill-number`` — the PDF goes in as the raw body
  (``application/pdf``; a batch as ``multipart/form-data`` files), options in the query, the
  signer's PIN in the ``X-Signing-PIN`` header; the signed PDF comes back as the body.
* ``/verify`` — any signed-in user: a PDF in, the verification report out.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared import clock
from shared.auth import ROLES, Caller, allow, current_caller, public
from shared.db import request_session
from shared.errors import NotFound, ProblemError, Unprocessable, UnsupportedMediaType, problem_responses
from shared.events import Actor
from shared.http import StrictRoute, raw_body_route
from shared.organ_id import is_valid as is_organ_id

from . import pades, service
from .documents import DocumentsClient
from .drafts import fill_number_field
from .keystore import Keystore
from .models import Certificate
from .pki.register import UnknownCertificate
from .policy import SigningRefused, open_pdf
from .schemas import (
    AgencySignerOut,
    AgencySigningOut,
    BatchItemOut,
    BatchOut,
    CertificateOut,
    CertificateRequest,
    IssuedCertificateOut,
    PinReset,
    PinResetOut,
    RevokeRequest,
    SignatureOut,
    VerificationOut,
)
from .service import PinCache, SigningProblem, sha256_hex
from .verification import verify_pdf

Session = Depends(request_session, scope="function")
PIN_HEADER = "X-Signing-PIN"
PIN_DESCRIPTION = (
    "The signer's own PIN, of the certificate signed with (a leader's, or the agency's seal for a clerk); "
    "5 wrong PINs in a row lock it until an administrator sets a new one. Demo deployments: every demo "
    "certificate's PIN is 123456 (LIENTHONG_SIGNING_DEMO_PIN_SECRET)."
)
Kind = Literal["person", "organisation", "attachment"]
Level = Literal["B-T", "B-LT"]

pki_router = APIRouter(prefix="/pki", tags=["pki"], route_class=StrictRoute)
certificates_router = APIRouter(prefix="/certificates", tags=["certificates"], route_class=StrictRoute)
signing_router = APIRouter(tags=["signing"], route_class=StrictRoute)
agencies_router = APIRouter(prefix="/agencies", tags=["certificates"], route_class=StrictRoute)


def _keystore(request: Request) -> Keystore:
    return request.app.state.runtime.extras["keystore"]


def _pins(request: Request) -> PinCache:
    return request.app.state.runtime.extras["pins"]


# -- PKI ------------------------------------------------------------------------------------------


@pki_router.get(
    "/ca", response_class=Response, **public(), responses={200: {"content": {"application/x-pem-file": {}}}}
)
async def ca_certificates(request: Request) -> Response:
    """The root and intermediate CA certificates (PEM): what a relying party installs as trust."""
    return Response(_keystore(request).ca_chain_pem(), media_type="application/x-pem-file")


@pki_router.get("/certs/{name}", response_class=Response, **public(), responses=problem_responses(404))
async def ca_certificate(name: str, request: Request) -> Response:
    """One CA certificate in DER (``root.cer``, ``intermediate.cer``), as named in the AIA."""
    return _serve_pki(request, f"certs/{name}", None)


@pki_router.get("/crl/{name}", response_class=Response, **public(), responses=problem_responses(404))
async def crl(name: str, request: Request) -> Response:
    """A CRL (``intermediate.crl`` for signers, ``root.crl`` for the intermediate), served from
    cache until it is due for refresh, rebuilt at once after a revocation."""
    keystore = _keystore(request)
    issuer = {"intermediate.crl": "intermediate", "root.crl": "root"}.get(name)
    if issuer is None:
        raise NotFound(f"no CRL {name}")
    der = await asyncio.to_thread(keystore.crl, issuer)
    return Response(der, media_type="application/pkix-crl", headers={"Cache-Control": "max-age=300"})


@pki_router.post("/ocsp", response_class=Response, **raw_body_route("application/ocsp-request"))
async def ocsp_post(request: Request) -> Response:
    """OCSP responder (RFC 6960): a DER request in, a signed response out; answers revocations
    the moment they are made."""
    return _serve_pki(request, "ocsp", await request.body())


@pki_router.get("/ocsp/{encoded:path}", response_class=Response, **public())
async def ocsp_get(encoded: str, request: Request) -> Response:
    """OCSP by GET (RFC 6960 appendix A): the DER request, base64, URL-encoded, in the path."""
    try:
        der = base64.b64decode(encoded.replace("-", "+").replace("_", "/") + "==", validate=False)
    except (binascii.Error, ValueError):
        der = b""
    return _serve_pki(request, "ocsp", der)


@pki_router.post("/tsa", response_class=Response, **raw_body_route("application/timestamp-query"))
async def tsa(request: Request) -> Response:
    """RFC 3161 time-stamping: a DER ``TimeStampReq`` in, a ``TimeStampResp`` out."""
    return _serve_pki(request, "tsa", await request.body())


def _serve_pki(request: Request, path: str, body: bytes | None) -> Response:
    keystore = _keystore(request)
    try:
        content, media_type = keystore.ca.handle(f"{keystore.ca.config.base_url}/{path}", body)
    except UnknownCertificate as exc:
        raise NotFound(str(exc)) from exc
    return Response(content, media_type=media_type)


# -- certificates -------------------------------------------------------------------------------


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
    keystore = _keystore(request)
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
    keystore = _keystore(request)
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
    return _out(row, _keystore(request), full=True)


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
    keystore = _keystore(request)
    await service.revoke_certificate(session, keystore, row, reason=body.reason, caller=caller)
    _pins(request).forget(row.signer_id)
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
    keystore = _keystore(request)
    try:
        await asyncio.to_thread(keystore.token.reset_pin, row.signer_id, new_pin=pin)
    except service.TokenError as exc:
        raise Unprocessable(str(exc)) from exc
    _pins(request).forget(row.signer_id)
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
    keystore = _keystore(request)
    return {
        "organ_id": organ_id,
        "name": rows[0].agency_name if rows else None,
        "default_seal": next((r.serial for r in usable if r.kind == "organisation"), None),
        "seals": [_out(r, keystore) for r in seals],
        "signers": sorted(signers.values(), key=lambda s: s.user_id),
    }


# -- signing ----------------------------------------------------------------------------------


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
    keystore = _keystore(request)
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
        pins = _pins(request)
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
    keystore = _keystore(request)
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
        pins = _pins(request)
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
    keystore = _keystore(request)
    documents: DocumentsClient = request.app.state.runtime.extras["documents"]
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
    keystore = _keystore(request)
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


routers = [pki_router, certificates_router, agencies_router, signing_router]
