"""The console's only way to the suite: the gateway's public API, with the user's own token.

Each call the console makes is one method here, so what the console needs from the API is
listed in one place. Calls that will change when APIs being built land (multipart submission,
the clerk's one-call publish, paginated work dossiers) are each behind one method.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog

log = structlog.get_logger("console.api")
SIGN_TIMEOUT = 120.0
# the catalogue and the agencies are public and change a few times a year: every page that lists
# them asked the API again, so each console process keeps them this long (its own edits drop them)
CATALOGUE_SECONDS = 30.0
# the browser's address for the request being served: every call made for it names it, so the
# gateway's per-address limits count people, not the console (when it trusts the console)
CLIENT_IP: ContextVar[str | None] = ContextVar("console_client_ip", default=None)


@dataclass
class ApiError(Exception):
    """A problem+json answer (or a failure to get any answer) from the API."""

    status: int
    title: str = ""
    detail: str = ""
    code: str = ""
    invalid_params: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.detail or self.title}"

    @property
    def is_client_error(self) -> bool:
        return 400 <= self.status < 500

    def message(self, label: Callable[[str], str] = str) -> str:
        """What a person reads: which inputs were wrong (``label`` names a field as the form
        does), else the API's own explanation."""
        wrong = []
        for p in self.invalid_params[:5]:
            path = str(p.get("name") or "")
            field_name = path.rsplit(".", 1)[-1]
            wrong.append(f"{label(field_name)}: {p.get('reason') or ''}".rstrip(": "))
        if wrong:
            return "; ".join(wrong)
        return self.detail or self.title or f"HTTP {self.status}"


@dataclass
class Upload:
    """A file a person chose in a form."""

    filename: str
    content_type: str
    content: bytes


@dataclass
class Binary:
    content: bytes
    media_type: str
    headers: dict[str, str]


class Api:
    def __init__(self, base_url: str, *, timeout: float = 60.0, transport: httpx.AsyncBaseTransport | None = None):
        self.client = httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport)

        self._catalogue: dict[tuple[Any, ...], tuple[float, Any]] = {}

    async def close(self) -> None:
        await self.client.aclose()

    async def _public_cached(self, key: tuple[Any, ...], fetch: Callable[[], Awaitable[Any]]) -> Any:
        """A public answer kept ``CATALOGUE_SECONDS``; only public reads (no token) come here,
        so what one person's page fetched may be shown to anyone."""
        kept = self._catalogue.get(key)
        if kept is not None and time.monotonic() - kept[0] < CATALOGUE_SECONDS:
            return kept[1]
        value = await fetch()
        if len(self._catalogue) > 1000:  # a bound, not a policy: searches vary without end
            self._catalogue.clear()
        self._catalogue[key] = (time.monotonic(), value)
        return value

    def forget_catalogue(self) -> None:
        """After a change made through this console: the next page reads it fresh."""
        self._catalogue.clear()

    # --- plumbing ------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        client_ip: str | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        client_ip = client_ip or CLIENT_IP.get()
        if client_ip:
            # believed only when the gateway lists the console among its trusted_proxies
            sent["X-Forwarded-For"] = client_ip
        try:
            try:
                response = await self.client.request(method, path, headers=sent, **kwargs)
            except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                # a kept-alive connection the gateway closed just as it was reused: a read is
                # asked again once on a fresh one (a write is not: it may have been done)
                if method != "GET":
                    raise
                log.info("api_retried", path=path, error=type(exc).__name__)
                response = await self.client.request(method, path, headers=sent, **kwargs)
        except httpx.TimeoutException as exc:
            raise ApiError(504, "timeout", "The system took too long to answer.") from exc
        except httpx.HTTPError as exc:
            log.warning("api_unreachable", path=path, error=type(exc).__name__)
            raise ApiError(503, "unavailable", "The system is not answering.") from exc
        if response.status_code >= 400:
            raise _problem(response)
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self._call(method, path, **kwargs)).json()

    async def _binary(self, method: str, path: str, **kwargs: Any) -> Binary:
        r = await self._call(method, path, **kwargs)
        return Binary(r.content, r.headers.get("content-type", "application/octet-stream"), dict(r.headers))

    # --- identity ------------------------------------------------------------------------

    async def password_token(self, username: str, password: str, *, client_ip: str | None = None) -> dict[str, Any]:
        return await self._json(
            "POST",
            "/api/auth/token",
            data={"grant_type": "password", "username": username, "password": password},
            client_ip=client_ip,
        )

    # --- public --------------------------------------------------------------------------

    async def lookup(self, code: str, secret: str, *, client_ip: str | None = None) -> dict[str, Any]:
        return await self._json(
            "GET", "/api/intake/lookup", params={"code": code, "secret": secret}, client_ip=client_ip
        )

    async def procedures(self, *, q: str | None = None, agency: str | None = None) -> list[dict[str, Any]]:
        params = {k: v for k, v in {"q": q, "agency": agency}.items() if v}

        async def fetch() -> list[dict[str, Any]]:
            found = await self._json("GET", "/api/intake/procedures", params=params)
            return found["items"] if isinstance(found, dict) else found

        return await self._public_cached(("procedures", q, agency), fetch)

    async def procedure(self, code: str) -> dict[str, Any]:
        return await self._public_cached(
            ("procedure", code), lambda: self._json("GET", f"/api/intake/procedures/{code}")
        )

    async def add_procedure_version(self, token: str, code: str, version: dict[str, Any]) -> dict[str, Any]:
        return await self._json("POST", f"/api/intake/procedures/{code}/versions", token=token, json=version)

    async def due(self, *, procedure: str, accepted_at: str) -> dict[str, Any]:
        return await self._json(
            "GET", "/api/intake/calendar/due", params={"procedure": procedure, "accepted_at": accepted_at}
        )

    async def agencies(self, *, under: str | None = None) -> list[dict[str, Any]]:
        async def fetch() -> list[dict[str, Any]]:
            found = await self._json("GET", "/api/intake/agencies", params={"under": under} if under else {})
            return found["items"] if isinstance(found, dict) else found

        return await self._public_cached(("agencies", under), fetch)

    # --- reports -------------------------------------------------------------------------

    async def indicators(self, token: str, *, agency: str | None, start: Any, end: Any, csv: bool = False) -> Any:
        params: dict[str, Any] = {"from": str(start), "to": str(end)}
        if agency:
            params["agency"] = agency
        if csv:
            return await self._binary("GET", "/api/intake/indicators", token=token, params={**params, "format": "csv"})
        return await self._json("GET", "/api/intake/indicators", token=token, params=params)

    async def indicators_by_agency(
        self, token: str, *, agency: str | None, start: Any, end: Any
    ) -> list[dict[str, Any]]:
        """An agency's indicators and each of its direct units', in one call."""
        params: dict[str, Any] = {"from": str(start), "to": str(end)}
        if agency:
            params["agency"] = agency
        found = await self._json("GET", "/api/intake/indicators/by-agency", token=token, params=params)
        return found["items"]

    async def directive15(self, token: str, *, start: Any, end: Any, csv: bool = False) -> Any:
        params: dict[str, Any] = {"from": str(start), "to": str(end)}
        if csv:
            return await self._binary(
                "GET", "/api/document/reports/directive15", token=token, params={**params, "format": "csv"}
            )
        return await self._json("GET", "/api/document/reports/directive15", token=token, params=params)

    # --- accounts (built-in identity provider) ---------------------------------------------

    async def users(self, token: str, **filters: Any) -> dict[str, Any]:
        params = {k: v for k, v in filters.items() if v not in (None, "")}
        return await self._json("GET", "/api/auth/users", token=token, params=params)

    async def create_user(self, token: str, user: dict[str, Any]) -> dict[str, Any]:
        return await self._json("POST", "/api/auth/users", token=token, json=user)

    async def set_user_active(self, token: str, username: str, active: bool) -> None:
        current = await self._call("GET", f"/api/auth/users/{username}", token=token)
        await self._call(
            "PATCH",
            f"/api/auth/users/{username}",
            token=token,
            json={"active": active},
            headers={"If-Match": current.headers.get("etag", "")},
        )

    async def colleagues(self, token: str, *, role: str) -> list[dict[str, Any]]:
        """The active people of the caller's own agency who hold ``role`` (names, no secrets),
        every page of them: an agency's people fit in one or two."""
        found: list[dict[str, Any]] = []
        params: dict[str, Any] = {"role": role, "limit": 500}
        for _ in range(20):
            page = await self._json("GET", "/api/auth/colleagues", token=token, params=params)
            found += page["items"]
            if not page.get("next"):
                break
            params["cursor"] = page["next"]
        return found

    # --- calendar ------------------------------------------------------------------------

    async def calendar_year(self, year: int) -> dict[str, Any]:
        return await self._json("GET", f"/api/intake/calendar/{year}")

    async def calendar_overrides(self, token: str, year: int) -> list[dict[str, Any]]:
        return await self._json("GET", "/api/intake/calendar/overrides", token=token, params={"year": year})

    async def put_calendar_override(self, token: str, day: Any, *, working: bool, reason: str) -> None:
        await self._call(
            "PUT", f"/api/intake/calendar/overrides/{day}", token=token, json={"working": working, "reason": reason}
        )

    async def delete_calendar_override(self, token: str, day: Any) -> None:
        await self._call("DELETE", f"/api/intake/calendar/overrides/{day}", token=token)

    # --- audit ---------------------------------------------------------------------------

    async def audit_entries(self, token: str, **filters: Any) -> dict[str, Any]:
        params = {k: v for k, v in filters.items() if v not in (None, "")}
        return await self._json("GET", "/api/audit/entries", token=token, params=params)

    async def latest_checkpoint(self) -> dict[str, Any] | None:
        """The newest signed checkpoint, None before the first one is signed."""
        try:
            return await self._json("GET", "/api/audit/checkpoints/latest")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def inclusion_proof(self, *, index: int, size: int) -> dict[str, Any]:
        return await self._json("GET", "/api/audit/proofs/inclusion", params={"index": index, "size": size})

    # --- dossiers ------------------------------------------------------------------------

    async def submit_dossier(
        self, token: str, submission: dict[str, Any], files: dict[int, Upload], *, idempotency_key: str
    ) -> dict[str, Any]:
        """Submit a dossier with its scans: ``multipart/form-data``, the JSON in the part
        ``dossier`` and each scan streamed as a part ``component-<no>`` (no base64, no 1 MiB cap)."""
        parts = [("dossier", (None, json.dumps(submission, ensure_ascii=False).encode(), "application/json"))]
        for no, upload in sorted(files.items()):
            parts.append((f"component-{no}", (upload.filename, upload.content, upload.content_type)))
        return await self._json(
            "POST", "/api/intake/dossiers", token=token, files=parts, headers={"Idempotency-Key": idempotency_key}
        )

    async def dossiers(self, token: str, **filters: Any) -> dict[str, Any]:
        params = {k: v for k, v in filters.items() if v not in (None, "")}
        return await self._json("GET", "/api/intake/dossiers", token=token, params=params)

    async def dossier(self, token: str, code: str) -> dict[str, Any]:
        return await self._json("GET", f"/api/intake/dossiers/{code}", token=token)

    async def history(self, token: str, code: str) -> dict[str, Any]:
        return await self._json("GET", f"/api/intake/dossiers/{code}/history", token=token)

    async def act(self, token: str, code: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._json("POST", f"/api/intake/dossiers/{code}/actions/{action}", token=token, json=body)

    async def receipt(self, token: str, code: str) -> Binary:
        return await self._binary("POST", f"/api/intake/dossiers/{code}/receipt", token=token)

    async def form(self, token: str, code: str, form: str) -> Binary:
        return await self._binary("GET", f"/api/intake/dossiers/{code}/forms/{form}", token=token)

    async def dossier_file(self, token: str, code: str, sha256: str) -> Binary:
        return await self._binary("GET", f"/api/intake/dossiers/{code}/files/{sha256}", token=token)

    # --- documents -----------------------------------------------------------------------

    async def work_files(self, token: str, **filters: Any) -> list[dict[str, Any]]:
        """Work dossiers; accepts a bare list (today) or a page ``{items, next}`` (soon)."""
        params = {k: v for k, v in filters.items() if v not in (None, "")}
        found = await self._json("GET", "/api/document/workfiles", token=token, params=params)
        return found["items"] if isinstance(found, dict) else found

    async def my_assignments(self, token: str) -> list[dict[str, Any]]:
        found = await self._json(
            "GET", "/api/document/assignments", token=token, params={"mine": "true", "status": "open", "limit": 50}
        )
        return found["items"] if isinstance(found, dict) else found

    async def work_file(self, token: str, work_file_id: int) -> dict[str, Any]:
        return await self._json("GET", f"/api/document/workfiles/{work_file_id}", token=token)

    async def documents(self, token: str, **filters: Any) -> list[dict[str, Any]]:
        params = {k: v for k, v in filters.items() if v not in (None, "")}
        found = await self._json("GET", "/api/document/documents", token=token, params=params)
        return found["items"] if isinstance(found, dict) else found

    async def assign_document(self, token: str, document_id: int, assignment: dict[str, Any]) -> dict[str, Any]:
        return await self._json(
            "POST", f"/api/document/documents/{document_id}/assignments", token=token, json=assignment
        )

    async def document(self, token: str, document_id: int) -> tuple[dict[str, Any], str]:
        r = await self._call("GET", f"/api/document/documents/{document_id}", token=token)
        return r.json(), r.headers.get("etag", "")

    async def create_draft(self, token: str, draft: dict[str, Any]) -> tuple[dict[str, Any], str]:
        r = await self._call("POST", "/api/document/documents", token=token, json=draft)
        return r.json(), r.headers.get("etag", "")

    async def upload_content(self, token: str, document_id: int, pdf: bytes, *, stage: str, etag: str) -> str:
        r = await self._call(
            "POST",
            f"/api/document/documents/{document_id}/content",
            token=token,
            params={"stage": stage},
            content=pdf,
            headers={"If-Match": etag, "Content-Type": "application/pdf"},
        )
        return r.headers.get("etag", "")

    async def content(self, token: str, document_id: int) -> Binary:
        return await self._binary("GET", f"/api/document/documents/{document_id}/content", token=token)

    async def comment(self, token: str, document_id: int, text: str) -> None:
        await self._call("POST", f"/api/document/documents/{document_id}/comments", token=token, json={"text": text})

    async def register(self, token: str, direction: str, *, agency: str, year: int, csv: bool = False) -> Any:
        params: dict[str, Any] = {"agency": agency, "year": year}
        if csv:
            params["format"] = "csv"
            return await self._binary("GET", f"/api/document/registers/{direction}", token=token, params=params)
        return await self._json("GET", f"/api/document/registers/{direction}", token=token, params=params)

    # --- signatures ----------------------------------------------------------------------

    async def sign_as_leader(self, token: str, document_id: int, pin: str) -> None:
        """The leader's signature: the draft's PDF signed with the leader's own key, uploaded back."""
        _, etag = await self.document(token, document_id)
        draft = await self.content(token, document_id)
        signed = await self._call(
            "POST",
            "/api/signing/sign",
            token=token,
            params={"kind": "person"},
            content=draft.content,
            headers={"X-Signing-PIN": pin, "Content-Type": "application/pdf"},
            timeout=SIGN_TIMEOUT,
        )
        await self.upload_content(token, document_id, signed.content, stage="signed_by_leader", etag=etag)

    async def publish(self, token: str, document_id: int, pin: str, *, idempotency_key: str) -> dict[str, Any]:
        """The clerk's one action: number, seal and issue (document's ``…/publish``, resumable
        and idempotent); the document as issued, its ``code`` the number."""
        return await self._json(
            "POST",
            f"/api/document/documents/{document_id}/publish",
            token=token,
            json={},
            headers={"X-Signing-PIN": pin, "Idempotency-Key": idempotency_key},
            timeout=SIGN_TIMEOUT,
        )


def _problem(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return ApiError(
        status=response.status_code,
        title=str(body.get("title") or ""),
        detail=str(body.get("detail") or body.get("error_description") or body.get("error") or ""),
        code=str(body.get("code") or ""),
        invalid_params=list(body.get("invalid_params") or []),
    )
