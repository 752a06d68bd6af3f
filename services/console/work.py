"""The console's pages for processing: the specialist drafts the result in the work dossier,
the leader signs (PIN asked once, for one document or several), the clerk numbers, seals and
issues in one action and keeps the registers."""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from services.console.api import ApiError
from services.console.dashboard import _day
from services.console.endpoints import pdf_response
from services.console.i18n import N_
from services.console.web import Visit, require, visit
from shared import clock

router = APIRouter(include_in_schema=False)
V = Depends(visit)

# the result documents a specialist drafts most (Decree 30 annex III); the API knows them all
RESULT_TYPES = (("QĐ", N_("Decision")), ("GP", N_("Permit")), ("CV", N_("Official letter")), ("TB", N_("Notice")))
PDF_MAGIC = b"%PDF-"


@router.get("/xu-ly")
async def my_work(v: Visit = V) -> Response:
    user = require(v, "specialist", "leader", "clerk", "admin")
    # four independent questions: asked at once, the page waits for the slowest, not the sum
    work_files, drafts, assignments, processing = await asyncio.gather(
        v.api.work_files(user.token, status="open"),
        v.api.documents(user.token, status="draft", direction="outgoing", limit=50),
        v.api.my_assignments(user.token),
        v.api.dossiers(user.token, status=4, limit=v.settings.page_size),
    )
    processing = processing["items"]
    # an assignment names its document by id; a person reads it by what it is about (asked only
    # when there is one: in the embedded mode every call costs the one process its time)
    incoming = await v.api.documents(user.token, direction="incoming", limit=100) if assignments else []
    subjects = {d["id"]: d for d in incoming}
    # due soonest first; a work dossier opened earlier is due earlier
    processing.sort(key=lambda d: d.get("due_at") or "9999")
    assignments.sort(key=lambda a: a.get("due_date") or "9999")
    work_files.sort(key=lambda w: w.get("opened_at") or "")
    return v.render(
        "work.html",
        work_files=work_files[: v.settings.page_size * 5],
        drafts=drafts,
        assignments=assignments,
        assigned_documents=subjects,
        processing=processing,
    )


@router.get("/xu-ly/ho-so-cong-viec/{work_file_id}")
async def work_file_page(work_file_id: int, v: Visit = V) -> Response:
    user = require(v, "specialist", "leader", "clerk", "admin")
    work_file = await v.api.work_file(user.token, work_file_id)
    documents = await v.api.documents(user.token, work_file_id=work_file_id, limit=50)
    return v.render("workfile.html", wf=work_file, documents=documents, types=RESULT_TYPES, values={}, error=None)


@router.post("/xu-ly/ho-so-cong-viec/{work_file_id}")
async def draft_result(work_file_id: int, request: Request, v: Visit = V) -> Response:
    """Draft the result in the work dossier and send it to the leader: the draft, its PDF, and a
    comment that it waits for signature."""
    user = require(v, "specialist", "leader")
    work_file = await v.api.work_file(user.token, work_file_id)
    form = await request.form()
    values = {k: str(val) for k, val in form.items() if isinstance(val, str)}
    upload = form.get("pdf")
    error = None
    content = b""
    if isinstance(upload, UploadFile) and upload.filename:
        content = await upload.read(v.settings.max_upload_mb * 1024 * 1024 + 1)
    if not values.get("subject", "").strip():
        error = v._("Enter what the document is about.")
    elif not content.startswith(PDF_MAGIC):
        error = v._("Choose the result as a PDF file.")
    elif len(content) > v.settings.max_upload_mb * 1024 * 1024:
        error = v._("A scan is larger than the limit of {mb} MB.").format(mb=v.settings.max_upload_mb)
    if error is None:
        draft: dict[str, Any] = {
            "agency": work_file["organ_id"],
            "type_key": values.get("type_key") or "QĐ",
            "subject": values["subject"].strip(),
            "work_file_id": work_file_id,
        }
        if work_file.get("dossier_code"):
            draft["dossier_code"] = work_file["dossier_code"]
        if values.get("signer_name", "").strip() and values.get("signer_position", "").strip():
            draft["signer"] = {
                "full_name": values["signer_name"].strip(),
                "position": values["signer_position"].strip(),
            }
        try:
            created, etag = await v.api.create_draft(user.token, draft)
            await v.api.upload_content(user.token, created["id"], content, stage="draft", etag=etag)
            await v.api.comment(user.token, created["id"], v._("Submitted to the leader for signature."))
        except ApiError as exc:
            if not exc.is_client_error:
                raise
            error = v.problem(exc)
        else:
            return v.redirect(
                f"/xu-ly/ho-so-cong-viec/{work_file_id}", notice=v._("The draft was sent to the leader for signature.")
            )
    documents = await v.api.documents(user.token, work_file_id=work_file_id, limit=50)
    return v.render(
        "workfile.html", status=400, wf=work_file, documents=documents, types=RESULT_TYPES, values=values, error=error
    )


@router.get("/van-ban/{document_id}/noi-dung")
async def document_pdf(document_id: int, v: Visit = V) -> Response:
    user = require(v, "specialist", "leader", "clerk", "admin", "auditor", "desk_officer")
    return pdf_response(v, await v.api.content(user.token, document_id), f"van-ban-{document_id}.pdf")


# --- the leader -------------------------------------------------------------------------------


async def _waiting_for_signature(v: Visit, token: str) -> list[dict[str, Any]]:
    drafts = await v.api.documents(token, status="draft", direction="outgoing", limit=100)
    return [d for d in drafts if d.get("content_version")]


WAITING_ASSIGNMENT = ("received", "registered")


async def _waiting_for_assignment(v: Visit, token: str) -> list[dict[str, Any]]:
    arrived = await v.api.documents(token, direction="incoming", limit=100)
    return [d for d in arrived if d.get("status") in WAITING_ASSIGNMENT]


# who may be handed an incoming document to process: the agency's specialists
HANDLER_ROLE = "specialist"


async def _leader_page(
    v: Visit,
    token: str,
    *,
    status: int = 200,
    error: str | None = None,
    chosen: set[int] | None = None,
    assign_error: tuple[int, str] | None = None,
    values: dict[str, Any] | None = None,
) -> Response:
    signing, incoming = await asyncio.gather(_waiting_for_signature(v, token), _waiting_for_assignment(v, token))
    # the picker's people only when there is something to assign
    handlers = await v.api.colleagues(token, role=HANDLER_ROLE) if incoming else []
    handlers.sort(key=lambda p: (p["full_name"], p["username"]))
    return v.render(
        "sign.html",
        status=status,
        documents=signing,
        error=error,
        chosen=chosen or set(),
        incoming=incoming,
        handlers=handlers,
        assign_error=assign_error,
        values=values or {},
    )


@router.get("/ky-duyet")
async def to_sign(v: Visit = V) -> Response:
    user = require(v, "leader")
    return await _leader_page(v, user.token)


@router.post("/ky-duyet/giao/{document_id}")
async def assign_incoming(document_id: int, request: Request, v: Visit = V) -> Response:
    """Giao xử lý: an incoming document to one of the agency's specialists, chosen by name, with
    co-handlers (phối hợp) if wanted, and a due date (or the urgency's)."""
    user = require(v, "leader")
    form = await request.form()
    values: dict[str, Any] = {k: str(form.get(k) or "").strip() for k in ("assignee", "due_date")}
    values["support"] = [str(x) for x in form.getlist("support") if isinstance(x, str) and x != values["assignee"]]
    due = _day(values["due_date"]) if values["due_date"] else None
    handlers = {p["username"]: p for p in await v.api.colleagues(user.token, role=HANDLER_ROLE)}
    error = None
    if values["assignee"] not in handlers or any(s not in handlers for s in values["support"]):
        error = v._("Choose who processes it from the list of your agency's specialists.")
    elif values["due_date"] and due is None:
        error = v._("Enter the due date as dd/mm/yyyy, or leave it empty to follow its urgency.")
    if error:
        return await _leader_page(v, user.token, status=400, assign_error=(document_id, error), values=values)
    main = handlers[values["assignee"]]
    assignment: dict[str, Any] = {"assignee": main["username"], "assignee_name": main["full_name"], "role": "main"}
    if due:
        assignment["due_date"] = due.isoformat()
    try:
        done = await v.api.assign_document(user.token, document_id, assignment)
        for username in values["support"]:
            # co-handlers work to the main handler's due date, whichever way it was set
            await v.api.assign_document(
                user.token,
                document_id,
                {
                    "assignee": username,
                    "assignee_name": handlers[username]["full_name"],
                    "role": "support",
                    "due_date": str(done["due_date"]),
                },
            )
    except ApiError as exc:
        if not exc.is_client_error:
            raise
        return await _leader_page(
            v, user.token, status=exc.status, assign_error=(document_id, v.problem(exc)), values=values
        )
    notice = v._("Assigned to {name}, due {day}.").format(
        name=done.get("assignee_name") or main["full_name"], day=v.fmt.day(date.fromisoformat(str(done["due_date"])))
    )
    if values["support"]:
        notice += " " + v._("With: {names}.").format(
            names=", ".join(handlers[s]["full_name"] for s in values["support"])
        )
    return v.redirect("/ky-duyet", notice=notice)


@router.post("/ky-duyet")
async def sign(request: Request, v: Visit = V) -> Response:
    """Sign one document or several with the PIN given once."""
    user = require(v, "leader")
    form = await request.form()
    pin = str(form.get("pin") or "")
    chosen = {int(x) for x in form.getlist("document") if isinstance(x, str) and x.isdigit()}
    error = None
    signed: list[int] = []
    if not chosen:
        error = v._("Choose at least one document to sign.")
    elif not pin:
        error = v._("Enter your signing PIN.")
    else:
        for document_id in sorted(chosen):
            try:
                await v.api.sign_as_leader(user.token, document_id, pin)
                signed.append(document_id)
            except ApiError as exc:
                if not exc.is_client_error:
                    raise
                error = _signing_message(v, exc)
                break
    if error is None:
        return v.redirect("/ky-duyet", notice=v._("Signed: {n} document(s).").format(n=len(signed)))
    if signed:
        error = v._("Signed: {n} document(s).").format(n=len(signed)) + " " + error
    return await _leader_page(v, user.token, status=400, error=error, chosen=chosen - set(signed))


def _signing_message(v: Visit, exc: ApiError) -> str:
    if exc.status in (401, 403, 423) and re.search(r"pin", v.problem(exc), re.IGNORECASE):
        return v._("The PIN is wrong or the key is locked.") + f" ({v.problem(exc)})"
    return v.problem(exc)


# --- the clerk --------------------------------------------------------------------------------


@router.get("/van-thu")
async def clerk_home(v: Visit = V) -> Response:
    user = require(v, "clerk")
    documents, issued = await _clerk_lists(v, user.token)
    return v.render("clerk.html", documents=documents, issued=issued, error=None, failed=None)


async def _clerk_lists(v: Visit, token: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What waits for the clerk and what was issued last, asked at once."""
    waiting, issued = await asyncio.gather(
        v.api.documents(token, status="signed_by_leader", direction="outgoing", limit=100),
        v.api.documents(token, status="issued", direction="outgoing", limit=10),
    )
    return waiting, issued


@router.post("/van-thu/{document_id}/ban-hanh")
async def publish(document_id: int, request: Request, v: Visit = V) -> Response:
    user = require(v, "clerk")
    form = await request.form()
    pin = str(form.get("pin") or "")
    error = None
    if not pin:
        error = v._("Enter your signing PIN.")
    else:
        try:
            # the same key for the same document and PIN: a double click issues once
            key = f"publish-{document_id}-{hashlib.sha256((user.sub + pin).encode()).hexdigest()[:16]}"
            number = await v.api.publish(user.token, document_id, pin, idempotency_key=key)
        except ApiError as exc:
            if not exc.is_client_error:
                raise
            error = _signing_message(v, exc)
        else:
            return v.redirect("/van-thu", notice=v._("Issued as number {number}.").format(number=number["code"]))
    documents, issued = await _clerk_lists(v, user.token)
    return v.render("clerk.html", status=400, documents=documents, issued=issued, error=error, failed=document_id)


@router.get("/van-thu/so")
async def registers(v: Visit = V, direction: str = "outgoing", year: int = 0, format: str = "") -> Response:
    user = require(v, "clerk", "leader", "admin", "auditor")
    direction = direction if direction in ("outgoing", "incoming") else "outgoing"
    year = year if 1900 <= year <= 2999 else clock.vn_today().year
    if not user.agency:
        raise ApiError(403, detail="no agency")
    if format == "csv":
        binary = await v.api.register(user.token, direction, agency=user.agency, year=year, csv=True)
        response = Response(binary.content, media_type="text/csv; charset=utf-8")
        response.headers["Content-Disposition"] = f'attachment; filename="so-van-ban-{direction}-{year}.csv"'
        return v.finish(response)
    table = await v.api.register(user.token, direction, agency=user.agency, year=year)
    return v.render("registers.html", direction=direction, year=year, table=table)
