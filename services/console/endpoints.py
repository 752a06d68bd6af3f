"""The console's pages for citizens and the desk: look-up, due dates, log-in, receiving a
dossier, the desk's lists and the dossier page with the actions its status allows."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from services.console.api import ApiError, Binary, Upload
from services.console.i18n import LOCALES, N_
from services.console.web import LANG_COOKIE, ROLE_HOMES, Visit, end_session, require, safe_next, start_session, visit
from shared import clock, organ_id
from shared.errors import Unauthorized

router = APIRouter(include_in_schema=False)
V = Depends(visit)

CODE = re.compile(r"^[0-9A-Z.]{13}-\d{6}-\d{4}$")
PROCEDURE = re.compile(r"^\d\.\d{6}$")
# who may take which action (intake answers 403 anyway; the console shows only the buttons that work)
ACTION_ROLES = {
    "accept": {"desk_officer"},
    "refuse": {"desk_officer"},
    "start_processing": {"desk_officer"},
    "request_supplement": {"desk_officer", "specialist"},
    "supplement_received": {"desk_officer", "citizen"},
    "request_fees": {"specialist", "leader"},
    "fees_paid": {"desk_officer", "specialist"},
    "withdraw": {"desk_officer", "citizen"},
    "stop": {"specialist", "leader"},
    "finish": {"specialist", "leader"},
    "return_result": {"desk_officer"},
}
# actions that need more than a click: the fields their form asks for
ACTION_FORMS = {
    "refuse": "reasons",
    "stop": "reasons",
    "request_supplement": "missing_items",
    "request_fees": "amount_vnd",
    "finish": "result",
    "start_processing": "handoff",
    # ends the dossier for good: a page to confirm (and say why), never one stray click
    "withdraw": "note",
}
DOSSIER_VIEWERS = ("desk_officer", "specialist", "leader", "admin", "auditor", "citizen")


def pdf_response(v: Visit, binary: Binary, filename: str) -> Response:
    response = Response(binary.content, media_type=binary.media_type or "application/pdf")
    response.headers["Content-Disposition"] = f'inline; filename="{filename}"'
    return v.finish(response)


# --- home, language, log-in ------------------------------------------------------------------


@router.get("/")
async def home(v: Visit = V) -> Response:
    if v.user and v.user.home != "/":
        return v.redirect(v.user.home)
    return v.render("home.html")


@router.post("/ngon-ngu")
async def switch_language(request: Request, v: Visit = V) -> Response:
    form = await request.form()
    lang = str(form.get("lang") or "")
    if lang in LOCALES:
        v.set_cookies.append((LANG_COOKIE, lang, 365 * 24 * 3600))
    return v.redirect(safe_next(str(form.get("next") or "/")))


@router.get("/dang-nhap")
async def login_form(v: Visit = V, next: str = "/") -> Response:
    return v.render("login.html", next=safe_next(next), username="", error=None)


@router.post("/dang-nhap")
async def login(request: Request, v: Visit = V) -> Response:
    form = await request.form()
    username = str(form.get("username") or "").strip()
    password = str(form.get("password") or "")
    next_url = safe_next(str(form.get("next") or "/"))
    error = None
    if not username or not password:
        error = v._("Enter your user name and password.")
    else:
        try:
            token = await v.api.password_token(username, password, client_ip=v.client_ip)
            claims = await request.app.state.runtime.verifier.verify(token["access_token"])
        except Unauthorized:
            # the token came from the gateway but its keys could not be fetched to check it
            error = v._("The system is not answering; try again shortly.")
        except ApiError as exc:
            if exc.status == 429:
                error = v._("Too many attempts; wait a moment and try again.")
            elif exc.is_client_error:
                error = v._("Wrong user name or password, or the account is locked.")
            else:
                error = v._("The system is not answering; try again shortly.")
        else:
            await start_session(v, token, claims)
            if next_url == "/":
                next_url = next((ROLE_HOMES[r] for r in sorted(claims.roles) if r in ROLE_HOMES), "/")
            return v.redirect(next_url)
    return v.render("login.html", status=400, next=next_url, username=username, error=error)


@router.post("/dang-xuat")
async def logout(v: Visit = V) -> Response:
    await end_session(v)
    v.user = None
    return v.redirect("/", notice=v._("You have logged out."))


# --- public: look-up and due dates ------------------------------------------------------------

BRING = {
    1: N_("Nothing to do yet: the desk will check your dossier and accept it or tell you what is missing."),
    2: N_("Nothing to do now: come back on the due date with this receipt."),
    3: N_("Your dossier was not accepted. The refusal (form 03) gives the reasons."),
    4: N_("Nothing to do now: come back on the due date with this receipt."),
    5: N_("Bring the missing papers the desk listed (form 02) to the desk; the clock waits for you."),
    6: N_("Pay the fees the agency asked for; processing goes on once they are paid."),
    7: N_("You withdrew this dossier."),
    8: N_("Processing of this dossier was stopped."),
    9: N_("Your result is ready: bring this receipt and your identity card to the desk to collect it."),
    10: N_("The result has been returned to you."),
}


@router.get("/tra-cuu")
async def lookup(v: Visit = V, code: str = "", secret: str = "") -> Response:
    code, secret = code.strip().upper(), secret.strip()
    found: dict[str, Any] | None = None
    error = None
    status = 200
    if code or secret:
        limiter = v.request.app.state.runtime.extras["lookup_limiter"]
        if not CODE.match(code) or not secret:
            error, status = v._("Enter the dossier code and the look-up code printed on your receipt."), 400
        elif not limiter.allow(v.client_ip or "?"):
            error, status = v._("Too many look-ups from your connection; wait a minute and try again."), 429
        else:
            try:
                found = await v.api.lookup(code, secret, client_ip=v.client_ip)
            except ApiError as exc:
                if exc.status == 404:
                    error, status = (
                        v._("No dossier matches this code and look-up code. Check both on your receipt."),
                        404,
                    )
                elif exc.status == 429:
                    error, status = v._("Too many look-ups from your connection; wait a minute and try again."), 429
                elif exc.is_client_error:
                    error, status = v._("Enter the dossier code and the look-up code printed on your receipt."), 400
                else:
                    raise
    bring = v._(BRING[found["status"]]) if found and found["status"] in BRING else None
    return v.render("lookup.html", status=status, code=code, secret=secret, found=found, error=error, bring=bring)


async def search_procedures(v: Visit, q: str) -> list[dict[str, Any]]:
    """By name (the API's search, accents optional) or by the start of the national code."""
    if re.fullmatch(r"\d[\d.]*", q):
        return [p for p in await v.api.procedures() if p["code"].startswith(q)]
    return await v.api.procedures(q=q)


def _local_input(value: str, tz: str) -> datetime | None:
    """A date and time as people write it here, ``dd/mm/yyyy HH:MM``, in Vietnam's time."""
    try:
        moment = datetime.strptime(value.strip(), "%d/%m/%Y %H:%M")  # noqa: DTZ007 - the zone is set next
    except ValueError:
        return None
    return moment.replace(tzinfo=ZoneInfo(tz))


@router.get("/han-giai-quyet")
async def due_date(v: Visit = V, q: str = "", procedure: str = "", received: str = "") -> Response:
    q, procedure = q.strip(), procedure.strip()
    procedures: list[dict[str, Any]] = []
    chosen = None
    due = None
    error = None
    received = received.strip() or v.fmt.dt(clock.now())
    try:
        if procedure:
            if not PROCEDURE.match(procedure):
                error = v._("Choose a procedure from the list.")
            else:
                chosen = (await v.api.procedure(procedure)).get("current")
                moment = _local_input(received, v.settings.timezone)
                if moment is None:
                    error = v._("Enter the date and time the dossier would be received.")
                elif chosen:
                    due = await v.api.due(procedure=procedure, accepted_at=moment.isoformat())
        elif q:
            procedures = await search_procedures(v, q)
    except ApiError as exc:
        if not exc.is_client_error:
            raise
        error = v._("No such procedure.") if exc.status == 404 else v.problem(exc)
    return v.render("due.html", q=q, procedures=procedures[:50], chosen=chosen, due=due, received=received, error=error)


# --- the desk -------------------------------------------------------------------------------

DESK_VIEWS = ("today", "waiting", "overdue", "online", "all")


@router.get("/mot-cua")
async def desk_lists(
    v: Visit = V,
    view: str = "today",
    applicant: str = "",
    procedure: str = "",
    status: str = "",
    cursor: str = "",
) -> Response:
    user = require(v, "desk_officer", "leader", "specialist", "admin")
    view = view if view in DESK_VIEWS else "today"
    filters: dict[str, Any] = {"limit": v.settings.page_size, "cursor": cursor or None}
    today = clock.vn_today().isoformat()
    if view == "today":
        filters.update(received_from=today, received_to=today)
    elif view == "waiting":
        filters["status"] = 9
    elif view == "overdue":
        filters["overdue"] = "true"
    elif view == "online":
        filters["status"] = 1
    if applicant.strip():
        filters["applicant"] = applicant.strip()
    if PROCEDURE.match(procedure.strip()):
        filters["procedure"] = procedure.strip()
    if status.isdigit() and view in ("today", "all"):
        filters["status"] = int(status)
    error = None
    page: dict[str, Any] = {"items": [], "next": None}
    try:
        page = await v.api.dossiers(user.token, **filters)
    except ApiError as exc:
        if not exc.is_client_error:
            raise
        error = v.problem(exc)
    return v.render(
        "desk.html",
        view=view,
        views=DESK_VIEWS,
        page=page,
        applicant=applicant,
        procedure=procedure,
        status_filter=status,
        cursor=cursor,
        error=error,
    )


def _default_agency(user_agency: str | None, receiving: list[str]) -> str | None:
    if user_agency in receiving:
        return user_agency
    for agency in receiving:
        if user_agency and organ_id.within(agency, user_agency):
            return agency
    return user_agency


async def _intake_form_context(v: Visit, procedure: str) -> dict[str, Any]:
    found = await v.api.procedure(procedure)
    current = found.get("current")
    if current is None:
        raise ApiError(404, detail=v._("This procedure is not in force today."))
    now = clock.now()
    due = await v.api.due(procedure=procedure, accepted_at=now.isoformat())
    user = v.user
    assert user is not None
    agencies = [a for a in current["receiving_agencies"] if user.agency and organ_id.within(a, user.agency)]
    if user.agency and user.agency not in agencies:
        agencies.insert(0, user.agency)
    return {
        "chosen": current,
        "due": due,
        "agencies": agencies,
        "default_agency": _default_agency(user.agency, current["receiving_agencies"]),
    }


@router.get("/mot-cua/tiep-nhan")
async def receive_form(v: Visit = V, q: str = "", procedure: str = "") -> Response:
    require(v, "desk_officer")
    procedures: list[dict[str, Any]] = []
    context: dict[str, Any] = {"chosen": None}
    error = None
    try:
        if PROCEDURE.match(procedure.strip()):
            context = await _intake_form_context(v, procedure.strip())
        elif q.strip():
            procedures = await search_procedures(v, q.strip())
            if not procedures:
                error = v._("No procedure matches; try part of its name or its code, e.g. 1.001193.")
    except ApiError as exc:
        if not exc.is_client_error:
            raise
        error = v.problem(exc)
    return v.render(
        "receive.html",
        q=q,
        procedures=procedures[:50],
        error=error,
        values={},
        checked=None,
        idem=str(uuid.uuid4()),
        **context,
    )


@router.post("/mot-cua/tiep-nhan")
async def receive(request: Request, v: Visit = V) -> Response:
    user = require(v, "desk_officer")
    form = await request.form()
    procedure = str(form.get("procedure") or "")
    values = {k: str(val) for k, val in form.items() if isinstance(val, str)}
    if not PROCEDURE.match(procedure):
        return v.redirect("/mot-cua/tiep-nhan")
    context = await _intake_form_context(v, procedure)
    components = []
    files: dict[int, Upload] = {}
    checked = set()
    limit = v.settings.max_upload_mb * 1024 * 1024
    error = None
    for spec in context["chosen"]["components"]:
        no = spec["no"]
        if not form.get(f"have-{no}"):
            continue
        checked.add(no)
        copies = str(form.get(f"copies-{no}") or "1")
        entry: dict[str, Any] = {
            "no": no,
            "original": form.get(f"kind-{no}") == "original",
            "copies": int(copies) if copies.isdigit() and 1 <= int(copies) <= 20 else 1,
        }
        components.append(entry)
        upload = form.get(f"file-{no}")
        if isinstance(upload, UploadFile) and upload.filename:
            content = await upload.read(limit + 1)
            if len(content) > limit:
                error = v._("A scan is larger than the limit of {mb} MB.").format(mb=v.settings.max_upload_mb)
            elif content:
                files[no] = Upload(upload.filename, upload.content_type or "application/octet-stream", content)
    applicant = {
        "full_name": values.get("full_name", "").strip(),
        "id_number": values.get("id_number", "").strip() or None,
        "phone": values.get("phone", "").strip() or None,
        "email": values.get("email", "").strip() or None,
        "address": values.get("address", "").strip() or None,
    }
    if not applicant["full_name"]:
        error = v._("Enter the applicant's full name.")
    if error is None:
        submission = {
            "agency": values.get("agency") or context["default_agency"],
            "procedure_code": procedure,
            "applicant": {k: val for k, val in applicant.items() if val},
            "components": components,
        }
        try:
            created = await v.api.submit_dossier(
                user.token, submission, files, idempotency_key=values.get("idempotency_key") or str(uuid.uuid4())
            )
        except ApiError as exc:
            if not exc.is_client_error:
                raise
            error = v.problem(exc)
        else:
            return v.redirect(
                f"/ho-so/{created['code']}",
                notice=v._("Dossier {code} received.").format(code=created["code"]),
            )
    return v.render(
        "receive.html",
        status=400,
        q="",
        procedures=[],
        error=error,
        values=values,
        checked=checked,
        idem=str(uuid.uuid4()),
        **context,
    )


# --- the dossier page -------------------------------------------------------------------------


def _check_code(code: str) -> str:
    if not CODE.match(code):
        raise ApiError(404, detail="no such dossier")
    return code


@router.get("/ho-so/{code}")
async def dossier_page(code: str, v: Visit = V) -> Response:
    user = require(v, *DOSSIER_VIEWERS)
    _check_code(code)
    dossier = await v.api.dossier(user.token, code)
    history = await v.api.history(user.token, code)
    actions = [a for a in dossier.get("allowed_actions", []) if user.has(*ACTION_ROLES.get(a, ()))]
    forms = []
    if dossier["status"] in (5,) or any(e["action"] == "request_supplement" for e in history["events"]):
        forms.append(("02", v._("Supplement request (form 02)")))
    if dossier["status"] == 3:
        forms.append(("03", v._("Refusal (form 03)")))
    forms.append(("05", v._("Tracking sheet (form 05)")))
    return v.render(
        "dossier.html",
        d=dossier,
        history=history,
        actions=actions,
        action_forms=ACTION_FORMS,
        forms=forms,
        can_print_receipt=user.has("desk_officer") and dossier["status"] not in (1, 3),
    )


@router.post("/ho-so/{code}/bien-nhan")
async def receipt(code: str, v: Visit = V) -> Response:
    user = require(v, "desk_officer")
    _check_code(code)
    return pdf_response(v, await v.api.receipt(user.token, code), f"{code}-01.pdf")


@router.get("/ho-so/{code}/mau/{form}")
async def form_pdf(code: str, form: str, v: Visit = V) -> Response:
    user = require(v, *DOSSIER_VIEWERS)
    _check_code(code)
    if form not in ("02", "03", "04", "05"):
        raise ApiError(404, detail="no such form")
    return pdf_response(v, await v.api.form(user.token, code, form), f"{code}-{form}.pdf")


@router.get("/ho-so/{code}/tep/{sha256}")
async def dossier_file(code: str, sha256: str, v: Visit = V) -> Response:
    user = require(v, *DOSSIER_VIEWERS)
    _check_code(code)
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ApiError(404, detail="no such file")
    binary = await v.api.dossier_file(user.token, code, sha256)
    response = Response(binary.content, media_type=binary.media_type)
    response.headers["Content-Disposition"] = "attachment"
    return v.finish(response)


@router.get("/ho-so/{code}/hanh-dong/{action}")
async def action_form(code: str, action: str, v: Visit = V) -> Response:
    user = require(v, *DOSSIER_VIEWERS)
    _check_code(code)
    if action not in ACTION_ROLES or not user.has(*ACTION_ROLES[action]):
        raise ApiError(404, detail="no such action")
    dossier = await v.api.dossier(user.token, code)
    return v.render("action.html", d=dossier, action=action, kind=ACTION_FORMS.get(action), values={}, error=None)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _action_body(action: str, values: dict[str, str]) -> dict[str, Any]:
    kind = ACTION_FORMS.get(action)
    body: dict[str, Any] = {}
    if values.get("note", "").strip():
        body["note"] = values["note"].strip()
    if kind == "reasons":
        body["reasons"] = _lines(values.get("reasons", ""))
    elif kind == "missing_items":
        body["missing_items"] = [{"name": line} for line in _lines(values.get("missing_items", ""))]
    elif kind == "amount_vnd":
        amount = values.get("amount_vnd", "").replace(".", "").replace(",", "").strip()
        body["amount_vnd"] = int(amount) if amount.isdigit() else amount
    elif kind == "result":
        body["result"] = {"summary": values.get("summary", "").strip()}
        if values.get("document_number", "").strip():
            body["result"]["document_number"] = values["document_number"].strip()
    elif kind == "handoff":
        if values.get("to_whom", "").strip():
            body["to_whom"] = values["to_whom"].strip()
        if values.get("allotted_hours", "").strip():
            body["allotted_hours"] = values["allotted_hours"].strip()
    return body


@router.post("/ho-so/{code}/hanh-dong/{action}")
async def take_action(code: str, action: str, request: Request, v: Visit = V) -> Response:
    user = require(v, *DOSSIER_VIEWERS)
    _check_code(code)
    if action not in ACTION_ROLES:
        raise ApiError(404, detail="no such action")
    form = await request.form()
    values = {k: str(val) for k, val in form.items() if isinstance(val, str)}
    try:
        await v.api.act(user.token, code, action, _action_body(action, values))
    except ApiError as exc:
        if not exc.is_client_error or exc.status == 404:
            raise
        dossier = await v.api.dossier(user.token, code)
        return v.render(
            "action.html",
            status=exc.status,
            d=dossier,
            action=action,
            kind=ACTION_FORMS.get(action),
            values=values,
            error=v.problem(exc),
        )
    return v.redirect(f"/ho-so/{code}", notice=v._("Done: {action}.").format(action=v.fmt.action(action)))
