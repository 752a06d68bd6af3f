"""The clerk's one call (``POST /documents/{id}/publish``): number, write the number in, seal,
store the versions, issue — resumable and idempotent.

Steps, each its own short transaction, with signing's HTTP calls between them and never inside
one (a transaction held across a seal would hold the number series' lock for seconds):

1. look: the document is the leader's signed one (or further along: a call that stopped
   half-way continues), the seal certificate is found through signing's API — anything wrong
   here is a 4xx and nothing changed;
2. number: taken once, in its own transaction (gap-free; a later failure keeps it, never a
   second number);
3. signing writes the number into the signed PDF (``fill-number``) and applies the
   organisation's seal, with the caller's own token and PIN;
4. one transaction stores the numbered and sealed versions and issues (``document.issued``);
   it re-checks that the document did not move meanwhile.

A replay with the same ``Idempotency-Key`` answers what the first call answered.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from services.document import lifecycle, outgoing, storage
from services.document import service as svc
from services.document.lifecycle import Status, Step
from services.document.models import ContentVersion, Document, PublishRequest
from services.document.schemas import PublishOut
from shared import clock
from shared.auth import Caller
from shared.db import Database, insert_ignoring_duplicates, session_scope
from shared.errors import Conflict, ProblemError, ServiceUnavailable, Unprocessable
from shared.events import Actor

PIN_HEADER = "X-Signing-PIN"


class IdempotencyKeyReused(ProblemError):
    status, code, title = 422, "idempotency_key_reused", "This Idempotency-Key was used for a different request"


class NoSeal(ProblemError):
    status, code, title = 422, "no_seal", "No usable seal certificate for this agency"


class SealNotOfYourAgency(ProblemError):
    status, code, title = 403, "seal_not_of_your_agency", "The organisation's seal is applied by its own clerk"


class SigningRefusal(ProblemError):
    """A 4xx from signing, passed on with its status, code and details (a wrong PIN: 403
    ``wrong_pin`` with ``attempts_left``), plus where the document stands."""

    def __init__(self, status: int, body: dict[str, Any], *, where: str) -> None:
        detail = body.get("detail") or body.get("title") or "signing refused"
        extra = body.get("extra")
        super().__init__(f"{detail} ({where})", **(extra if isinstance(extra, dict) else {}))
        self.status = status  # type: ignore[misc]
        self.code = str(body.get("code") or "signing_refused")  # type: ignore[misc]
        self.title = str(body.get("title") or "Signing refused")  # type: ignore[misc]


# --- signing's published API ----------------------------------------------------------------------


@dataclass
class SealCertificate:
    serial: str
    agency: str


@dataclass
class SigningApi:
    """Signing's HTTP API as the caller: their bearer token goes with every call."""

    base_url: str
    authorization: str
    timeout: float
    transport: httpx.AsyncBaseTransport | None = None
    _client: httpx.AsyncClient | None = field(default=None, init=False)

    async def __aenter__(self) -> SigningApi:
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": self.authorization},
            timeout=self.timeout,
            transport=self.transport,
            follow_redirects=False,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def _call(self, method: str, path: str, *, where: str, **kwargs: Any) -> httpx.Response:
        assert self._client is not None
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"signing cannot be reached ({type(exc).__name__}); {where}") from None
        if response.status_code >= 500:
            raise ServiceUnavailable(f"signing answered {response.status_code}; {where}")
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            raise SigningRefusal(response.status_code, body if isinstance(body, dict) else {}, where=where)
        return response

    async def seal_certificate(self, *, agency: str, serial: str | None, where: str) -> SealCertificate:
        """The agency's seal: the one named, or its newest usable organisation certificate."""
        now = clock.now()
        if serial is None:
            listed = (await self._call("GET", "/certificates", params={"kind": "organisation"}, where=where)).json()
            usable = [
                c
                for c in listed
                if c.get("agency") == agency
                and c.get("revoked_at") is None
                and _instant(c["not_before"]) <= now < _instant(c["not_after"])
            ]
            if not usable:
                raise NoSeal(f"agency {agency} has no usable seal certificate in signing; {where}")
            serial = str(usable[0]["serial"])
        try:
            cert = (await self._call("GET", f"/certificates/{serial}", where=where)).json()
        except SigningRefusal as refused:
            if refused.status == 404:
                raise NoSeal(f"signing has no certificate {serial}; {where}") from None
            raise
        if cert.get("kind") != "organisation" or cert.get("agency") != agency:
            raise NoSeal(f"certificate {serial} is not the seal of agency {agency}; {where}")
        if cert.get("revoked_at") is not None or not _instant(cert["not_before"]) <= now < _instant(cert["not_after"]):
            raise NoSeal(f"the seal certificate {serial} is revoked or not valid now; {where}")
        if cert.get("locked"):
            raise NoSeal(f"the seal certificate {serial} is locked after wrong PINs; {where}")
        return SealCertificate(serial=serial, agency=agency)

    async def fill_number(self, pdf: bytes, *, document_id: int, code: str, where: str) -> bytes:
        """Signing writes the document's number into the field prepared in the signed PDF.

        Signing reads the assigned number from this part itself (with the caller's token), so a
        number nobody assigned cannot be written in; ``number`` only makes it refuse a mismatch."""
        response = await self._call(
            "POST",
            "/fill-number",
            params={"document": document_id, "number": code},
            content=pdf,
            headers={"Content-Type": "application/pdf"},
            where=where,
        )
        return response.content

    async def seal(self, pdf: bytes, *, certificate: str, pin: str, where: str) -> bytes:
        response = await self._call(
            "POST",
            "/sign",
            params={"kind": "organisation", "certificate": certificate},
            content=pdf,
            headers={"Content-Type": "application/pdf", PIN_HEADER: pin},
            where=where,
        )
        return response.content


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value)


# --- the run ----------------------------------------------------------------------------------------


@dataclass
class Request:
    document_id: int
    caller: Caller
    pin: str
    seal_certificate: str | None
    idempotency_key: str | None

    @property
    def digest(self) -> str:
        what = {"document_id": self.document_id, "seal_certificate": self.seal_certificate}
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def check_publishable(doc: Document) -> None:
    """What can be published: the leader's signed document, or one a call left half-way."""
    lifecycle.check(Step.PUBLISH, doc)


async def _replayed(session: AsyncSession, req: Request) -> dict[str, Any] | None:
    if req.idempotency_key is None:
        return None
    earlier = await session.get(PublishRequest, (req.caller.sub, req.idempotency_key))
    if earlier is None:
        return None
    if earlier.document_id != req.document_id or earlier.request_hash != req.digest:
        raise IdempotencyKeyReused("this Idempotency-Key was used to publish another document or with another body")
    return earlier.answer


async def _remember(session: AsyncSession, req: Request, answer: dict[str, Any] | None = None) -> None:
    if req.idempotency_key is None:
        return
    await session.execute(
        insert_ignoring_duplicates(PublishRequest.__table__),
        {
            "caller": req.caller.sub,
            "key": req.idempotency_key,
            "document_id": req.document_id,
            "request_hash": req.digest,
            "answer": None,
            "created_at": svc.now_utc(),
        },
    )
    if answer is not None:
        row = await session.get(PublishRequest, (req.caller.sub, req.idempotency_key))
        assert row is not None
        row.answer = answer


def _where(doc: Document) -> str:
    if doc.code_text:
        return f"document {doc.id} keeps its number {doc.code_text}; call again to continue"
    return f"document {doc.id} is unchanged"


async def publish(
    *, db: Database, kit: svc.Toolkit, signing: SigningApi, req: Request
) -> tuple[dict[str, Any], str]:
    """Run (or continue) the publication; the answer and the document's new ETag."""
    actor = Actor.of(req.caller)
    steps: list[str] = []

    # 1. look, without changing anything
    async with session_scope(db) as session:
        answer = await _replayed(session, req)
        if answer is not None:
            return answer, f'"{answer["version"]}"'
        doc = await svc.get_visible(session, req.caller, req.document_id)
        check_publishable(doc)
        agency, status = doc.agency, doc.status
        where = _where(doc)
    seal: SealCertificate | None = None
    if status != Status.SEALED:
        if req.caller.agency != agency and "service" not in req.caller.roles:
            raise SealNotOfYourAgency(f"the seal of {agency} is applied by a clerk of {agency}; {where}")
        seal = await signing.seal_certificate(agency=agency, serial=req.seal_certificate, where=where)

    # 2. the number, once
    async with session_scope(db) as session:
        doc = await svc.get_visible(session, req.caller, req.document_id, lock=True)
        check_publishable(doc)
        if doc.status == Status.SIGNED_BY_LEADER:
            await outgoing.number_once(session, doc, settings=kit.settings, actor=actor)
            steps.append("numbered")
        await _remember(session, req)
        version, status = doc.version, doc.status
        current = await storage.latest_content(session, doc)
        if current is None:
            raise Conflict("the document has no signed file")
        numbered_in = doc.content_version > (doc.numbered_at_version or 0)
        current_blob, current_signatures = current.blob, current.signatures
        code = doc.code_text or ""
        where = _where(doc)

    # 3. signing writes the number in and seals (no transaction open)
    filled: bytes | None = None
    sealed: bytes | None = None
    if status == Status.NUMBERED:
        current_bytes = storage.read_blob(kit, current_blob)
        if numbered_in:
            base = current_bytes  # a version with the number written in was uploaded by hand
        else:
            filled = await signing.fill_number(current_bytes, document_id=req.document_id, code=code, where=where)
            if not filled.startswith(current_bytes):
                raise Unprocessable(f"signing's numbered PDF does not append to the signed one; {where}")
            steps.append("number_filled")
            base = filled
        assert seal is not None
        sealed = await signing.seal(base, certificate=seal.serial, pin=req.pin, where=where)
        if not sealed.startswith(base):
            raise Unprocessable(f"signing's sealed PDF does not append to the numbered one; {where}")
        steps.append("sealed")

    # 4. store the versions and issue, if nobody moved the document meanwhile
    staged = [_stage(kit, data) for data in (filled, sealed) if data is not None]
    try:
        async with session_scope(db) as session:
            doc = await svc.get_visible(session, req.caller, req.document_id, lock=True)
            if doc.version != version:
                answer = await _replayed(session, req)
                if answer is not None:
                    return answer, f'"{answer["version"]}"'
                raise Conflict(f"the document changed while it was being sealed (now {doc.status}); call again")
            secret = svc.secrecy_of(doc).is_secret
            stages = [Status.NUMBERED, Status.SEALED][2 - len(staged) :]
            counts = [storage.count_signatures(path) for path, _, _ in staged]
            if sealed is not None and counts[-1] <= current_signatures:
                raise Unprocessable(f"signing's sealed PDF carries no new signature; {where}")
            # every check is done: only now do the files move into the store
            for stage, (path, sha, size), counted in zip(stages, staged, counts, strict=True):
                file = storage.Staged(path=path, sha256=sha, size=size, head=b"")
                blob = storage.commit_blob(kit, file, secret=secret)
                doc.content_version += 1
                session.add(
                    ContentVersion(
                        document_id=doc.id,
                        number=doc.content_version,
                        sha256=sha,
                        blob=blob,
                        size=size,
                        media_type="application/pdf",
                        filename=f"{doc.code_text or 'van-ban'}-{stage}.pdf".replace("/", "-"),
                        signatures=counted,
                        stage=stage,
                        uploaded_by=req.caller.sub,
                        uploaded_at=svc.now_utc(),
                    )
                )
                lifecycle.move(lifecycle.UPLOADS[stage], doc)
            await session.flush()
            await outgoing.issue(session, doc, actor=actor)
            steps.append("issued")
            answer = PublishOut(
                **svc.to_out(doc), seal_certificate=seal.serial if seal else None, steps=steps  # type: ignore[arg-type]
            ).model_dump(mode="json")
            await _remember(session, req, answer)
    finally:
        for path, _, _ in staged:
            path.unlink(missing_ok=True)  # moved into the store when committed; else left no trace
    return answer, f'"{answer["version"]}"'


def _stage(kit: svc.Toolkit, data: bytes) -> tuple[Path, str, int]:
    """Spool signing's answer to a temporary file beside the store (moved in at commit)."""
    with kit.blobs.spool() as spool:
        spool.write(data)
    return Path(spool.name), hashlib.sha256(data).hexdigest(), len(data)

