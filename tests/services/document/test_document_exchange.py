"""Two agencies in two deployments exchanging documents by edXML: each app has its own database,
exchange identity and the other as partner, and reaches it through an injected HTTP client."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from services.document import edxml
from services.document.app import create_app
from services.document.config import AgencyProfile, ExchangePartner, get_settings
from services.document.exchange.identity import create_development_identity, load_identity
from services.document.models import Document, ExchangeMessage
from shared import clock
from shared.bus.memory import InProcessBroker
from tests.services.document.conftest import DocumentApi
from tests.waiting import eventually

A_ORG = "000.00.00.H56"  # UBND tỉnh Thanh Hóa, in deployment A
B_ORG = "000.00.00.H26"  # UBND tỉnh Hà Nam (stand-in), in deployment B
H_ORG = "000.00.00.H40"  # UBND tỉnh Nghệ An (stand-in): a partner of A whose server never answers
A_TIMEOUT = 2.0  # A's exchange_timeout_seconds: how long A waits for H
PDF = {"Content-Type": "application/pdf"}


@dataclass
class Pair:
    a: DocumentApi
    b: DocumentApi
    b_down: dict[str, bool]
    a_cert: Path
    a_key: Path
    hanging: Hanging


class Hanging:
    """H's server: accepts connections, reads the request and never answers (a real socket, so
    only the client's own timeout ends the wait). ``open`` counts the requests still waiting."""

    def __init__(self) -> None:
        self.open = 0
        self.received = 0
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.received += 1
        try:
            await reader.read()  # until the client gives up and closes
        finally:
            self.open -= 1
            writer.close()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


class _Switchable(httpx.AsyncBaseTransport):
    """B behind a switch: while ``down`` every connection fails, as when its server is away;
    with ``stick`` the next request reaches B and then its sender never hears back, as when the
    worker sending it is killed mid-send."""

    def __init__(self, app: Any, state: dict[str, bool]) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.state = state

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.state["down"]:
            raise httpx.ConnectError("connection refused", request=request)
        response = await self.inner.handle_async_request(request)
        if self.state["stick"]:
            self.state["stick"] = False
            await asyncio.Event().wait()
        return response


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update(kid="test", alg="ES256")

    async def keys() -> dict[str, Any]:
        return {"keys": [jwk]}

    dirs = {name: tmp_path / name for name in ("a", "b")}
    ids = {
        name: create_development_identity(d / "document" / "exchange", common_name=f"deployment {name}")
        for name, d in dirs.items()
    }
    h_cert = create_development_identity(tmp_path / "h", common_name="deployment h")[1]
    hanging = Hanging()
    h_port = await hanging.start()
    common = dict(
        amqp_url=None,
        database_url="sqlite+aiosqlite:///{var_dir}/{service}.sqlite",
        relay_poll_seconds=0.05,
        exchange_poll_seconds=0.05,
        exchange_retry_base_seconds=0.1,
        exchange_retry_max_seconds=0.3,
        max_file_bytes=2 * 1024 * 1024,
    )
    settings_a = get_settings(
        var_dir=dirs["a"],
        **common,
        agencies={A_ORG: AgencyProfile(abbreviation="UBND", name="Ủy ban nhân dân tỉnh Thanh Hóa")},
        exchange_partners={
            B_ORG: ExchangePartner(endpoint="http://b.test/exchange", certificate=ids["b"][1]),
            H_ORG: ExchangePartner(endpoint=f"http://127.0.0.1:{h_port}/exchange", certificate=h_cert),
        },
        exchange_timeout_seconds=A_TIMEOUT,
    )
    settings_b = get_settings(
        var_dir=dirs["b"],
        **common,
        agencies={B_ORG: AgencyProfile(abbreviation="UBND", name="Ủy ban nhân dân tỉnh Hà Nam")},
        exchange_partners={A_ORG: ExchangePartner(endpoint="http://a.test/exchange", certificate=ids["a"][1])},
    )
    apps: dict[str, Any] = {}
    b_down = {"down": False, "stick": False}

    async def sink(deliveries: list[Any]) -> None:
        for delivery in deliveries:
            await delivery.ack()

    # audit and notify take every event in the suite; a sink stands for them on each side
    brokers = {"a": InProcessBroker(), "b": InProcessBroker()}
    for broker in brokers.values():
        await broker.connect()
        await broker.consume("test-sink", ["#"], sink, batch=100, prefetch=100)
    app_a = create_app(
        settings_a,
        broker=brokers["a"],
        key_source=keys,
        # B in process, H over a real socket: one client for every partner, as in production
        exchange_client=lambda: httpx.AsyncClient(
            mounts={"all://b.test": _Switchable(apps["b"], b_down)}, trust_env=False
        ),
    )
    app_b = create_app(
        settings_b,
        broker=brokers["b"],
        key_source=keys,
        exchange_client=lambda: httpx.AsyncClient(transport=httpx.ASGITransport(app=apps["a"])),
    )
    apps.update(a=app_a, b=app_b)
    async with app_a.router.lifespan_context(app_a), app_b.router.lifespan_context(app_b):
        for app in (app_a, app_b):
            await asyncio.wait_for(app.state.runtime.consumers_started.wait(), 10)
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app_a), base_url="http://a.test") as ca,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app_b), base_url="http://b.test") as cb,
        ):
            yield Pair(
                a=DocumentApi(client=ca, app=app_a, broker=app_a.state.runtime.broker, key=key),
                b=DocumentApi(client=cb, app=app_b, broker=app_b.state.runtime.broker, key=key),
                b_down=b_down,
                a_cert=ids["a"][1],
                a_key=ids["a"][0],
                hanging=hanging,
            )
    for broker in brokers.values():
        await broker.close()
    await hanging.stop()


async def _issue(
    api: DocumentApi,
    pdfs: dict[str, bytes],
    subject: str,
    *,
    secrecy: str = "none",
    recipients: tuple[str, ...] = (B_ORG,),
) -> dict[str, Any]:
    """Draft → leader's signature → number → organisation's signature → issued, in agency A, for B."""
    specialist, leader, clerk = (api.token(r, agency=A_ORG, clearance=3) for r in ("specialist", "leader", "clerk"))
    r = await api.client.post(
        "/documents",
        headers=specialist,
        json={
            "agency": A_ORG,
            "type_key": "CV",
            "unit_abbr": "VP",
            "subject": subject,
            "urgency": "khan",
            "secrecy": secrecy,
            "signer": {"position": "Chủ tịch", "full_name": "Đỗ Minh Tuấn"},
            "recipients": [{"organ_id": organ, "organ_name": f"UBND {organ}"} for organ in recipients],
        },
    )
    assert r.status_code == 201, r.text
    doc = r.json()
    r = await api.client.post(
        f"/documents/{doc['id']}/content",
        content=pdfs["draft"],
        headers={**specialist, **PDF, "If-Match": r.headers["ETag"]},
    )
    r = await api.client.post(
        f"/documents/{doc['id']}/attachments",
        params={"name": "phu-luc.txt"},
        content="Phụ lục: danh sách đơn vị".encode(),
        headers=specialist,
    )
    assert r.status_code == 201, r.text
    etag = (await api.client.get(f"/documents/{doc['id']}", headers=leader)).headers["ETag"]
    r = await api.client.post(
        f"/documents/{doc['id']}/content",
        content=pdfs["leader"],
        params={"stage": "signed_by_leader"},
        headers={**leader, **PDF, "If-Match": etag},
    )
    assert r.status_code == 201, r.text
    assert (await api.client.post(f"/documents/{doc['id']}/number", headers=clerk)).status_code == 200
    etag = (await api.client.get(f"/documents/{doc['id']}", headers=clerk)).headers["ETag"]
    r = await api.client.post(
        f"/documents/{doc['id']}/content",
        content=pdfs["sealed"],
        params={"stage": "sealed"},
        headers={**clerk, **PDF, "If-Match": etag},
    )
    assert r.status_code == 201, r.text
    r = await api.client.post(f"/documents/{doc['id']}/issue", headers=clerk)
    assert r.status_code == 200, r.text
    return r.json()


async def _codes(api: DocumentApi, doc_id: int, headers: dict[str, str]) -> list[str]:
    r = await api.client.get(f"/documents/{doc_id}/exchange", headers=headers)
    assert r.status_code == 200, r.text
    return [s["status_code"] for s in r.json()["statuses"]]


async def test_document_travels_and_statuses_come_back(pair: Pair, pdfs: dict[str, bytes]) -> None:
    a, b = pair.a, pair.b
    a_clerk = a.token("clerk", agency=A_ORG, clearance=3)
    b_clerk, b_leader = b.token("clerk", agency=B_ORG), b.token("leader", agency=B_ORG)
    sent = await _issue(a, pdfs, "Công văn về việc phối hợp kiểm tra hồ sơ đất đai")

    async def arrived() -> list[dict[str, Any]]:
        return (await b.client.get("/documents", params={"direction": "incoming"}, headers=b_clerk)).json()["items"]

    [got] = await eventually(arrived)
    assert got["agency"] == B_ORG and got["arrival_number"] == 1 and got["status"] == "registered"
    assert got["code"] == sent["code"] == "01/UBND-VP" and got["issuing_organ_id"] == A_ORG
    assert got["subject"] == "Công văn về việc phối hợp kiểm tra hồ sơ đất đai" and got["urgency"] == "khan"
    assert got["signer_name"] == "Đỗ Minh Tuấn"
    content = await b.client.get(f"/documents/{got['id']}/content", headers=b_clerk)
    assert content.content == pdfs["sealed"]
    [attachment] = (await b.client.get(f"/documents/{got['id']}/attachments", headers=b_clerk)).json()["items"]
    assert attachment["name"] == "phu-luc.txt"
    [received] = await b.events("document.received")
    assert received.data["source"] == f"edxml:{A_ORG},{clock.vn_today():%Y/%m/%d},01/UBND-VP"

    # A sees the delivery and the receiver's statuses: arrived (the answer), registered
    await eventually(lambda: _has(a, sent["id"], a_clerk, ["01", "03"]))
    view = (await a.client.get(f"/documents/{sent['id']}/exchange", headers=a_clerk)).json()
    [delivery] = view["messages"]
    assert delivery["partner"] == B_ORG and delivery["state"] == "delivered" and delivery["kind"] == "envelope"

    # processing in B flows back as 04 assigned, 05 in progress, 06 completed
    r = await b.client.post(
        f"/documents/{got['id']}/assignments",
        headers=b_leader,
        json={"assignee": "chuyenvien", "assignee_name": "Chuyên viên"},
    )
    assert r.status_code == 201, r.text
    await eventually(lambda: _has(a, sent["id"], a_clerk, ["01", "03", "04"]))
    specialist = b.token("specialist", agency=B_ORG, sub="chuyenvien")
    await b.client.post(f"/documents/{got['id']}/comments", headers=specialist, json={"text": "Đang kiểm tra"})
    await eventually(lambda: _has(a, sent["id"], a_clerk, ["01", "03", "04", "05"]))
    assert (await b.client.post(f"/assignments/{r.json()['id']}/complete", headers=specialist)).status_code == 200
    await eventually(lambda: _has(a, sent["id"], a_clerk, ["01", "03", "04", "05", "06"]))

    # recall across agencies: B withdraws its copy and answers 15
    r = await a.client.post(f"/documents/{sent['id']}/recall", headers=a_clerk, json={"reason": "Sai địa chỉ"})
    assert r.status_code == 200

    async def withdrawn() -> bool:
        return (await b.client.get(f"/documents/{got['id']}", headers=b_clerk)).json()["status"] == "recalled"

    await eventually(withdrawn)
    assert (await b.client.get(f"/documents/{got['id']}/content", headers=b_clerk)).status_code == 404
    await eventually(lambda: _has(a, sent["id"], a_clerk, ["01", "03", "04", "05", "06", "15"]))


async def _has(api: DocumentApi, doc_id: int, headers: dict[str, str], codes: list[str]) -> bool:
    return await _codes(api, doc_id, headers) == codes


async def test_refused_document_and_a_partner_that_was_down(pair: Pair, pdfs: dict[str, bytes]) -> None:
    a, b = pair.a, pair.b
    a_clerk, b_clerk = a.token("clerk", agency=A_ORG, clearance=3), b.token("clerk", agency=B_ORG)
    pair.b_down["down"] = True
    sent = await _issue(a, pdfs, "Công văn gửi nhầm địa chỉ")

    async def failed_once() -> dict[str, Any] | None:
        view = (await a.client.get(f"/documents/{sent['id']}/exchange", headers=a_clerk)).json()
        m = view["messages"]
        return m[0] if m and m[0]["attempts"] >= 2 else None

    pending = await eventually(failed_once)
    assert pending["state"] == "pending" and "ConnectError" in pending["last_error"]
    pair.b_down["down"] = False

    async def arrived() -> list[dict[str, Any]]:
        return (await b.client.get("/documents", params={"direction": "incoming"}, headers=b_clerk)).json()["items"]

    [got] = await eventually(arrived)
    r = await b.client.post(
        f"/documents/{got['id']}/exchange/refuse", headers=b_clerk, json={"reason": "Văn bản không thuộc thẩm quyền"}
    )
    assert r.status_code == 200 and r.json()["status_code"] == "02"
    await eventually(lambda: _has(a, sent["id"], a_clerk, ["01", "03", "02"]))
    view = (await a.client.get(f"/documents/{sent['id']}/exchange", headers=a_clerk)).json()
    assert view["statuses"][-1]["description"] == "Văn bản không thuộc thẩm quyền"
    again = await b.client.post(f"/documents/{got['id']}/exchange/refuse", headers=b_clerk, json={"reason": "x"})
    assert again.status_code == 409


async def test_secret_documents_do_not_travel(pair: Pair, pdfs: dict[str, bytes]) -> None:
    a = pair.a
    a_clerk = a.token("clerk", agency=A_ORG, clearance=3)
    sent = await _issue(a, pdfs, "Văn bản mật", secrecy="mat")

    async def decided() -> list[dict[str, Any]]:
        return (await a.client.get(f"/documents/{sent['id']}/exchange", headers=a_clerk)).json()["messages"]

    [m] = await eventually(decided)
    assert m["state"] == "not_sent"
    assert await _count(pair.b) == 0


def _envelope(
    pair: Pair,
    *,
    document_id: str = "000.00.00.H56,2026/01/05,07/UBND-VP",
    key: Any = None,
    cert: Any = None,
    subject: str = "Công văn thử",
) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    header = edxml.MessageHeader(
        from_=edxml.Organization(A_ORG, "Ủy ban nhân dân tỉnh Thanh Hóa"),
        to=(edxml.Organization(B_ORG, "UBND tỉnh Hà Nam"),),
        code=edxml.DocumentCode("07", "UBND-VP"),
        promulgation_info=edxml.PromulgationInfo("Thanh Hóa", date(2026, 1, 5)),
        document_type=edxml.DocumentType("CV", "Công văn"),
        subject=subject,
        document_id=document_id,
    )
    key = key or serialization.load_pem_private_key(pair.a_key.read_bytes(), None)
    cert = cert or x509.load_pem_x509_certificate(pair.a_cert.read_bytes())
    return edxml.build_envelope(
        header, [edxml.Attachment(b"%PDF-1.4 test", "application/pdf", "vb.pdf")], signing_key=key, certificate=cert
    )


async def _count(api: DocumentApi) -> int:
    async with api.runtime.db.sessionmaker() as session:
        return (await session.execute(select(func.count()).select_from(Document))).scalar_one()


async def _post(api: DocumentApi, data: bytes, path: str = "/exchange/edxml") -> httpx.Response:
    return await api.client.post(path, content=data, headers={"Content-Type": "application/xml"})


async def test_bad_envelopes_are_refused_and_nothing_is_stored(pair: Pair, tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    b = pair.b
    good = _envelope(pair)
    tampered = good.replace("Công văn thử".encode(), "Công văn sửa".encode())
    stranger_key, stranger_cert = create_development_identity(tmp_path / "stranger", common_name="kẻ lạ")
    unknown = _envelope(
        pair,
        key=serialization.load_pem_private_key(stranger_key.read_bytes(), None),
        cert=x509.load_pem_x509_certificate(stranger_cert.read_bytes()),
    )
    unsigned = re.sub(rb"<ds:Signature.*</ds:Signature>", b"", good, flags=re.S)
    cases = {
        "malformed": (b"<edXML:edXML xmlns:edXML='http://www.mic.gov.vn/TBT/QCVN_102_2016'><oops>", 400),
        "unsigned": (unsigned, 400),
        "tampered": (tampered, 400),
        "unknown certificate": (unknown, 403),
        "too large": (b"<x>" + b"a" * (33 * 1024 * 1024) + b"</x>", 413),
    }
    for name, (data, status) in cases.items():
        r = await _post(b, data)
        assert r.status_code == status, (name, r.text[:300])
        assert r.headers["content-type"] == "application/problem+json", name
    assert await _count(b) == 0

    first = await _post(b, good)
    assert first.status_code == 200, first.text
    answer = edxml.parse_status(first.content, trusted_certs=[load_identity(b.runtime.settings).certificate])
    assert answer.status.status_code is edxml.StatusCode.ARRIVED
    assert answer.status.response_for.document_id == "000.00.00.H56,2026/01/05,07/UBND-VP"
    duplicate = await _post(b, good)
    assert duplicate.status_code == 409 and duplicate.headers["content-type"] == "application/problem+json"
    assert await _count(b) == 1

    # a status about a document B never sent is refused; an unsigned one too
    status = edxml.build_status(
        edxml.StatusMessage(
            from_=edxml.Organization(A_ORG),
            status_code=edxml.StatusCode.ARRIVED,
            timestamp=datetime.now(UTC),
            response_for=edxml.ResponseFor(B_ORG, "99/UBND", date(2026, 1, 5), "000.00.00.H26,2026/01/05,99/UBND"),
        ),
        signing_key=serialization.load_pem_private_key(pair.a_key.read_bytes(), None),
        certificate=x509.load_pem_x509_certificate(pair.a_cert.read_bytes()),
    )
    assert (await _post(b, status, "/exchange/status")).status_code == 404
    assert (await _post(b, b"<not-xml", "/exchange/status")).status_code == 400
    async with b.runtime.db.sessionmaker() as session:
        queued = (await session.execute(select(ExchangeMessage.status_code))).scalars().all()
    assert queued == ["03"]  # only the accepted envelope's "registered" is on its way back


async def _messages(api: DocumentApi, doc_id: int) -> dict[str, dict[str, Any]]:
    """A document's deliveries by partner (envelopes only)."""
    headers = api.token("clerk", agency=A_ORG, clearance=3)
    view = (await api.client.get(f"/documents/{doc_id}/exchange", headers=headers)).json()
    return {m["partner"]: m for m in view["messages"] if m["kind"] == "envelope"}


async def test_a_hanging_partner_does_not_hold_up_another(pair: Pair, pdfs: dict[str, bytes]) -> None:
    a, b = pair.a, pair.b
    b_clerk = b.token("clerk", agency=B_ORG)
    # H's messages are queued first: a worker sending one at a time would wait out H's timeout first
    other = await _issue(a, pdfs, "Công văn chỉ gửi Nghệ An", recipients=(H_ORG,))
    both = await _issue(a, pdfs, "Công văn gửi Nghệ An và Hà Nam", recipients=(H_ORG, B_ORG))

    async def arrived() -> list[dict[str, Any]]:
        return (await b.client.get("/documents", params={"direction": "incoming"}, headers=b_clerk)).json()["items"]

    [got] = await eventually(arrived, within=A_TIMEOUT * 0.75)
    assert got["subject"] == "Công văn gửi Nghệ An và Hà Nam"

    # A records B's answer just after B stored the document: wait for that record, not past it
    async def b_delivered() -> dict[str, dict[str, Any]] | None:
        messages = await _messages(a, both["id"])
        return messages if messages[B_ORG]["state"] == "delivered" else None

    delivered = await eventually(b_delivered, within=A_TIMEOUT * 0.75)
    # ...and H is still being waited for: its requests are open, nothing recorded yet
    assert pair.hanging.open >= 1
    assert delivered[H_ORG]["state"] == "pending" and delivered[H_ORG]["attempts"] == 0

    async def timed_out() -> dict[str, Any] | None:
        m = (await _messages(a, other["id"]))[H_ORG]
        return m if m["attempts"] >= 1 else None

    waited = await eventually(timed_out, within=A_TIMEOUT * 3)
    assert waited["state"] == "pending" and waited["last_error"] == f"no answer within {A_TIMEOUT} s"
    assert pair.hanging.received >= 2  # both documents were tried at H, neither lost


async def test_a_worker_killed_mid_send_sends_again_and_the_receiver_keeps_one(
    pair: Pair, pdfs: dict[str, bytes]
) -> None:
    a, b = pair.a, pair.b
    b_clerk = b.token("clerk", agency=B_ORG)
    pair.b_down["stick"] = True  # the envelope reaches B, the sender never learns it
    sent = await _issue(a, pdfs, "Công văn gửi khi máy chủ gặp sự cố")

    async def arrived() -> list[dict[str, Any]]:
        return (await b.client.get("/documents", params={"direction": "incoming"}, headers=b_clerk)).json()["items"]

    await eventually(arrived)
    await asyncio.sleep(0.5)  # many poll intervals: the lease keeps it from being sent again meanwhile
    m = (await _messages(a, sent["id"]))[B_ORG]
    assert m["state"] == "pending" and m["attempts"] == 0
    assert await _count(b) == 1

    # the lease runs out (it outlasts two timeouts): the message goes again, B knows the DocumentId
    with clock.shifted(clock.now() + timedelta(seconds=A_TIMEOUT * 2 + 6)):

        async def delivered() -> dict[str, Any] | None:
            m = (await _messages(a, sent["id"]))[B_ORG]
            return m if m["state"] == "delivered" else None

        m = await eventually(delivered)
    assert m["attempts"] == 1 and m["last_error"] is None
    assert await _count(b) == 1
    assert len(await arrived()) == 1
