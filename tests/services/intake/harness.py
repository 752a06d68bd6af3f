"""The intake app alone, in this event loop: ASGI transport, SQLite (or a given database), an
in-process broker, and tokens minted with a test key the app trusts."""

from __future__ import annotations

import base64
import functools
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from services.intake.app import create_app
from services.intake.config import IntakeSettings, get_settings
from shared.bus import OutgoingMessage
from shared.bus.memory import InProcessBroker
from shared.events import CloudEvent, event_type
from tests.servers import temporary_databases

PROVINCE = "000.00.00.H56"
WARD = "000.00.41.H56"  # UBND phường Hạc Thành: receives 1.001193 (khai sinh)
OTHER_PROVINCE = "000.00.00.H41"
PUBLIC_BASE = "http://portal.test"

# Smallest files filetype recognises by their magic bytes.
PDF_BYTES = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
PNG_BYTES = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000") + b"\x00" * 32


def b64(content: bytes) -> str:
    return base64.b64encode(content).decode()


def pdf_file(content: bytes = PDF_BYTES, name: str = "to-khai.pdf") -> dict[str, str]:
    return {"filename": name, "content_type": "application/pdf", "content_base64": b64(content)}


def birth_registration(
    *, files: bool = False, agency: str = WARD, name: str = "Nguyễn Thị Hồng Nhung"
) -> dict[str, Any]:
    """Đăng ký khai sinh (1.001193): two required components."""
    components = [{"no": n, **({"file": pdf_file(PDF_BYTES + str(n).encode())} if files else {})} for n in (1, 2)]
    return {
        "agency": agency,
        "procedure_code": "1.001193",
        "applicant": {"full_name": name, "id_number": "038090001234", "address": "Phường Hạc Thành, Thanh Hóa"},
        "components": components,
    }


def document_issued(dossier_code: str | None, document_id: int, number: str | None = None) -> dict[str, Any]:
    """``document.issued`` as document sends it: every field its contract requires
    (contracts/events/document.issued.schema.json), for a result of ``dossier_code``."""
    number = number or f"{document_id:02d}/QĐ-UBND"
    code_number, _, code_notation = number.partition("/")
    return {
        "actor": {"kind": "user", "sub": "clerk", "name": "Hoàng Thị Thư", "roles": ["clerk"], "agency": PROVINCE},
        "id": document_id,
        "agency": PROVINCE,
        "code": number,
        "code_number": code_number,
        "code_notation": code_notation,
        "type_key": "QD",
        "type_name": "Quyết định",
        "subject": f"Quyết định số {number}",
        "secret": False,
        "urgency": "thuong",
        "issued_date": "2026-03-10",
        "issued_at": "2026-03-10T09:00:00+07:00",
        "signer_name": "Phạm Văn Đức",
        "recipients": [],
        "dossier_code": dossier_code,
        "work_file_id": None,
        "content_sha256": "ab" * 32,
        "download_path": f"/api/document/documents/{document_id}/content",
    }


@functools.cache
def _key() -> tuple[Any, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update(kid="intake-test", alg="RS256", use="sig")
    return key, jwk


USERS: dict[str, tuple[str, list[str], str | None]] = {
    "citizen": ("Nguyễn Thị Hồng Nhung", ["citizen"], None),
    "citizen2": ("Lê Văn Hai", ["citizen"], None),
    "desk_officer": ("Lê Văn Tiếp", ["desk_officer"], PROVINCE),
    "ward_desk": ("Trịnh Thị Phường", ["desk_officer"], WARD),
    "other_desk": ("Hồ Văn Nghệ", ["desk_officer"], OTHER_PROVINCE),
    "specialist": ("Trần Thị Chuyên", ["specialist"], PROVINCE),
    "other_specialist": ("Phan Văn Khác", ["specialist"], OTHER_PROVINCE),
    "leader": ("Phạm Văn Đức", ["leader"], PROVINCE),
    "clerk": ("Hoàng Thị Thư", ["clerk"], PROVINCE),
    "admin": ("Đỗ Quản Trị", ["admin"], PROVINCE),
    "auditor": ("Vũ Kiểm Toán", ["auditor"], PROVINCE),
    "integrator": ("Cổng dịch vụ công tỉnh", ["integrator"], PROVINCE),
}


@dataclass
class Intake:
    app: FastAPI
    client: httpx.AsyncClient
    broker: InProcessBroker
    settings: IntakeSettings
    published: list[CloudEvent]

    def token(self, user: str) -> str:
        name, roles, agency = USERS[user]
        key, _ = _key()
        now = int(time.time())
        claims = {
            "sub": user,
            "name": name,
            "roles": roles,
            "agency": agency,
            "iss": self.settings.token_issuer,
            "aud": self.settings.token_audience,
            "iat": now,
            "exp": now + 6 * 3600,  # outlives a slow session: collected at start, used much later
        }
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "intake-test"})

    def as_(self, user: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user)}", **extra}

    async def submit(
        self, user: str = "desk_officer", body: dict[str, Any] | None = None, **headers: str
    ) -> dict[str, Any]:
        r = await self.client.post(
            "/dossiers",
            json=body or birth_registration(files=user != "desk_officer"),
            headers=self.as_(user, **headers),
        )
        assert r.status_code == 201, r.text
        return r.json()

    async def act(self, user: str, code: str, action: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return await self.client.post(f"/dossiers/{code}/actions/{action}", json=body or {}, headers=self.as_(user))

    async def issue(self, code: str, document_id: int, number: str | None = None) -> CloudEvent:
        """What document says when it issues a dossier's result (``document.issued``)."""
        return await self.publish("document.issued", document_issued(code, document_id, number))

    async def publish(self, routing_key: str, data: dict[str, Any], *, event_id: str | None = None) -> CloudEvent:
        event = CloudEvent(
            id=event_id or str(uuid.uuid4()),
            source="urn:lienthong:document",
            type=event_type(routing_key),
            subject=f"document:{data.get('id')}",
            data=data,
        )
        await self.broker.publish(
            [OutgoingMessage(routing_key=routing_key, body=event.to_bytes(), message_id=event.id)]
        )
        return event


@asynccontextmanager
async def running_intake(tmp_path: Path, **overrides: Any) -> AsyncIterator[Intake]:
    _, jwk = _key()

    async def keys() -> dict[str, Any]:
        return {"keys": [jwk]}

    settings = get_settings(
        **{"var_dir": tmp_path, "demo": True, "log_json": False, "public_base_url": PUBLIC_BASE, **overrides}
    )
    broker = InProcessBroker()
    await broker.connect()
    seen: list[CloudEvent] = []

    async def sink(deliveries: list[Any]) -> None:
        # stands for the other parts: the in-process broker refuses events nobody is bound to
        for delivery in deliveries:
            seen.append(CloudEvent.from_bytes(delivery.body))
            await delivery.ack()

    await broker.consume("test-sink", ["#"], sink, batch=100, prefetch=100)
    app = create_app(settings, broker=broker, key_source=keys)
    try:
        async with app.router.lifespan_context(app):
            await app.state.runtime.consumers_started.wait()
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
                yield Intake(app=app, client=client, broker=broker, settings=settings, published=seen)
    finally:
        await broker.close()


@asynccontextmanager
async def intake_on(backend: str, tmp_path: Path) -> AsyncIterator[Intake]:
    """The intake app on ``backend``: "sqlite" (the embedded mode's) or "pg" (a fresh database)."""
    if backend == "sqlite":
        async with running_intake(tmp_path) as intake:
            yield intake
        return
    with temporary_databases(["intake"]) as urls:
        async with running_intake(tmp_path, database_url=urls["intake"]) as intake:
            yield intake
