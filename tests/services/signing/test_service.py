"""The signing service through HTTP: its app with its lifespan (migrations, keystore, demo seed)
behind httpx, tokens from a key only the tests hold. Issue → sign → number → seal → verify,
judged by the three independent checkers; revocation, PIN limits, another agency's seal, bad
input and a batch of 100."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from asn1crypto import tsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from sqlalchemy import func, select

from services.signing.app import create_app
from services.signing.config import get_settings
from services.signing.drafts import fill_number_field
from services.signing.models import Signature, outbox
from services.signing.schemas import BatchItemOut, BatchOut
from shared import clock
from shared.bus.memory import InProcessBroker
from shared.events import CloudEvent

from .checkers import openssl_verify_signatures, pdfsig, pyhanko_validate
from .conftest import Pki, decision_pdf, signing_settings_for
from .test_pades import _broken_xref_pdf, _encrypted_pdf

AGENCY = "000.00.00.H56"
AGENCY_NAME = "Ủy ban nhân dân tỉnh Thanh Hóa"
OTHER = "000.00.00.H26"
OTHER_NAME = "Ủy ban nhân dân tỉnh Hưng Yên"
NUMBER = "15/QĐ-UBND"
DEMO_PIN = "135790"
PDF = {"Content-Type": "application/pdf"}
MAX_PDF = 3 * 1024 * 1024


@dataclass
class Api:
    client: httpx.AsyncClient
    app: Any
    key: Any
    pki: Pki

    def auth(self, sub: str, role: str, *, agency: str = AGENCY) -> dict[str, str]:
        now = int(time.time())
        claims = {
            "sub": sub,
            "name": sub,
            "roles": [role],
            "agency": agency,
            "iss": "urn:lienthong:identity",
            "aud": "lienthong",
            "iat": now,
            "exp": now + 6 * 3600,  # outlives a slow session: collected at start, used much later
        }
        return {"Authorization": "Bearer " + jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": "test"})}

    def signing(self, sub: str, role: str, pin: str, *, agency: str = AGENCY) -> dict[str, str]:
        return {**self.auth(sub, role, agency=agency), **PDF, "X-Signing-PIN": pin}

    async def events(self, routing_key: str) -> list[CloudEvent]:
        async with self.app.state.runtime.db.sessionmaker() as session:
            rows = await session.execute(
                select(outbox.table.c.body).where(outbox.table.c.routing_key == routing_key).order_by(outbox.table.c.id)
            )
            return [CloudEvent.from_bytes(b) for b in rows.scalars()]

    async def signatures(self) -> int:
        async with self.app.state.runtime.db.sessionmaker() as session:
            return int((await session.execute(select(func.count()).select_from(Signature))).scalar_one())

    async def issue(self, **body: Any) -> dict[str, Any]:
        # the administrator of the certificate's own agency
        r = await self.client.post(
            "/certificates", json=body, headers=self.auth("quan-tri", "admin", agency=body["agency"])
        )
        assert r.status_code == 201, r.text
        return r.json()

    async def issue_leader(self, user: str, pin: str = "246810", *, name: str = "Lê Thị Hạnh") -> dict[str, Any]:
        return await self.issue(
            kind="person",
            agency=AGENCY,
            agency_name=AGENCY_NAME,
            user_id=user,
            full_name=name,
            position="Phó Chủ tịch",
            pin=pin,
        )


@pytest.fixture(scope="module")
async def api(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update(kid="test", alg="ES256")

    async def keys() -> dict[str, Any]:
        return {"keys": [jwk]}

    # the service's own database, the package's CA and token (one SoftHSM per process)
    settings = signing_settings_for(
        pki.directory,
        var_dir=tmp_path_factory.mktemp("signing-service"),
        amqp_url=None,
        database_url="sqlite+aiosqlite:///{var_dir}/{service}.sqlite",
        relay_poll_seconds=0.05,
        demo=True,
        demo_pin_secret=DEMO_PIN,
        max_pdf_bytes=MAX_PDF,
    )
    broker = InProcessBroker()
    await broker.connect()

    async def sink(deliveries: list[Any]) -> None:
        for delivery in deliveries:
            await delivery.ack()

    # the parts that take signing's events (audit, notify, document) stand behind this sink
    await broker.consume("test-sink", ["#"], sink, batch=100, prefetch=100)
    app = create_app(settings, broker=broker, key_source=keys)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://signing", timeout=60) as client:
            yield Api(client=client, app=app, key=key, pki=pki)
    await broker.close()


@pytest.fixture(scope="module")
def draft() -> bytes:
    return decision_pdf()


# -- start-up and PKI -------------------------------------------------------------------------


async def test_first_start_made_the_ca_and_token_under_the_signing_directory(api: Api) -> None:
    base = api.pki.directory
    assert (base / "ca" / "state.json").exists() and (base / "ca" / "pki.json").exists()
    assert (base / "token" / "softhsm2.conf").exists() and any((base / "token" / "tokens").iterdir())
    assert os.environ["SOFTHSM2_CONF"] == str((base / "token" / "softhsm2.conf").resolve())
    ca = await api.client.get("/pki/ca")
    assert ca.status_code == 200
    chain = x509.load_pem_x509_certificates(ca.content)
    assert [c.subject for c in chain] == [
        api.pki.ca.root_certificate.subject,
        api.pki.ca.intermediate_certificate.subject,
    ]


def test_production_refuses_development_secrets_and_creating_a_ca(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="secret still has its development default"):
        get_settings(environment="production", var_dir=tmp_path, ca_create=False, token_create=False)
    with pytest.raises(ValueError, match="ca_create"):
        get_settings(
            environment="production",
            var_dir=tmp_path,
            token_pin_secret="a-real-pin-8642",
            token_so_pin_secret="another-one-9753",
            ca_passphrase_secret="long passphrase here",
            demo_pin_secret="unused-in-production",
        )


async def test_demo_seed_gave_the_leader_a_certificate_and_the_agency_a_seal(api: Api) -> None:
    r = await api.client.get("/certificates", headers=api.auth("quan-tri", "admin"))
    rows = r.json()
    leader = [c for c in rows if c["kind"] == "person" and c["owner"] == "leader"]
    seal = [c for c in rows if c["kind"] == "organisation" and c["agency"] == AGENCY]
    assert leader and seal
    assert leader[0]["full_name"] == "Phạm Văn Đức" and leader[0]["position"] == "Chủ tịch"
    signed = await api.client.post("/sign", content=decision_pdf(), headers=api.signing("leader", "leader", DEMO_PIN))
    assert signed.status_code == 200, signed.text


async def test_urls_in_certificates_are_served_and_revocation_shows_at_once(api: Api) -> None:
    issued = await api.issue_leader("nguoi-thu-hoi", name="Đặng Thu Hồi")
    cert = x509.load_pem_x509_certificate(issued["certificate_pem"].encode())
    base = api.pki.settings.resolved_pki_base_url
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert {str(d.access_location.value) for d in aia} == {f"{base}/ocsp", f"{base}/certs/intermediate.cer"}
    path = lambda url: url.removeprefix(base.rsplit("/pki", 1)[0])  # noqa: E731 - the part's own path
    intermediate = api.pki.ca.intermediate_certificate
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, intermediate, hashes.SHA256()).build()
    der = request.public_bytes(serialization.Encoding.DER)

    async def status() -> ocsp.OCSPCertStatus:
        r = await api.client.post(
            path(f"{base}/ocsp"), content=der, headers={"Content-Type": "application/ocsp-request"}
        )
        assert r.headers["content-type"] == "application/ocsp-response"
        return ocsp.load_der_ocsp_response(r.content).certificate_status

    async def crl() -> x509.CertificateRevocationList:
        r = await api.client.get(path(f"{base}/crl/intermediate.crl"))
        return x509.load_der_x509_crl(r.content)

    assert await status() == ocsp.OCSPCertStatus.GOOD
    first = await crl()
    assert (await crl()).public_bytes(serialization.Encoding.DER) == first.public_bytes(serialization.Encoding.DER)
    assert first.get_revoked_certificate_by_serial_number(cert.serial_number) is None
    r = await api.client.post(
        f"/certificates/{issued['serial']}/revoke",
        json={"reason": "keyCompromise"},
        headers=api.auth("quan-tri", "admin"),
    )
    assert r.status_code == 200 and r.json()["revoked_at"]
    assert await status() == ocsp.OCSPCertStatus.REVOKED
    assert (await crl()).get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    assert (await api.client.get(path(f"{base}/certs/intermediate.cer"))).content == intermediate.public_bytes(
        serialization.Encoding.DER
    )
    revoked = await api.events("certificate.revoked")
    assert revoked[-1].data["serial"] == issued["serial"] and revoked[-1].data["reason"] == "keyCompromise"


async def test_tsa_answers_rfc3161(api: Api) -> None:
    request = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": b"\x01" * 32},
            "nonce": 424242,
            "cert_req": True,
        }
    )
    r = await api.client.post(
        "/pki/tsa", content=request.dump(), headers={"Content-Type": "application/timestamp-query"}
    )
    reply = tsp.TimeStampResp.load(r.content)
    assert reply["status"]["status"].native == "granted"
    assert reply["time_stamp_token"]["content"]["encap_content_info"]["content"].parsed["nonce"].native == 424242


# -- the whole document ----------------------------------------------------------------------


async def test_issue_sign_number_seal_verify_and_three_checkers(api: Api, draft: bytes, tmp_path: Path) -> None:
    leader = await api.issue_leader("chu-tich-moi", name="Trịnh Văn Minh")
    assert leader["pin"] is None  # given by the admin, so not echoed
    seal = await api.issue(kind="organisation", agency=AGENCY, agency_name=AGENCY_NAME)
    assert seal["pin"] and len(seal["pin"]) >= 6  # generated, shown once
    issued = [e.data["serial"] for e in await api.events("certificate.issued")]
    assert leader["serial"] in issued and seal["serial"] in issued

    # the draft has no prepared fields: signing as a person prepares them
    person = await api.client.post("/sign", content=draft, headers=api.signing("chu-tich-moi", "leader", "246810"))
    assert person.status_code == 200, person.text
    assert person.headers["X-Certificate-Serial"] == leader["serial"]
    # the clerk's number (the endpoint asks the document part for it: tests of the whole suite)
    numbered = fill_number_field(person.content, number_text=NUMBER)
    sealed = await api.client.post(
        "/sign",
        params={"kind": "organisation", "certificate": seal["serial"]},
        content=numbered,
        headers=api.signing("van-thu", "clerk", seal["pin"]),
    )
    assert sealed.status_code == 200, sealed.text

    report = (
        await api.client.post("/verify", content=sealed.content, headers={**api.auth("ai-do", "citizen"), **PDF})
    ).json()
    assert report["all_ok"] and report["number_text"] == NUMBER
    first, second = report["signatures"]
    assert first["signer_name"] == "Trịnh Văn Minh" and first["certificate"]["title"] == "Phó Chủ tịch"
    assert first["changes"]["level"] == "FORM_FILLING" and first["changes"]["permitted"]
    assert first["timestamp"]["trusted"] and first["revocation"]["status"] == "good"
    assert second["certificate"]["organ_id"] == AGENCY and second["coverage"] == "ENTIRE_FILE"

    path = tmp_path / "quyet-dinh.pdf"
    path.write_bytes(sealed.content)
    cli = pyhanko_validate(
        path, root=api.pki.root_pem, intermediate=api.pki.intermediate_pem, extra=("--no-revocation-check",)
    )
    assert cli.returncode == 0 and cli.stdout.count(":INTACT:TRUSTED") == 2, cli.stdout + cli.stderr
    assert pdfsig(path).count("Signature Validation: Signature is Valid.") == 2
    assert all(c.ok for c in openssl_verify_signatures(sealed.content, ca_file=api.pki.root_pem, workdir=tmp_path))

    completed = [e.data for e in await api.events("signature.completed")]
    mine = [d for d in completed if d["certificate_serial"] in (leader["serial"], seal["serial"])]
    assert [d["kind"] for d in mine] == ["person", "organisation"]
    assert mine[1]["output_sha256"] == sealed.headers["X-Output-SHA256"]
    assert all(set(d) >= {"input_sha256", "signer", "certificate_serial"} and "pdf" not in d for d in mine)


async def test_b_lt_on_request_embeds_revocation_data(api: Api, draft: bytes) -> None:
    await api.issue_leader("lanh-dao-blt", name="Vũ Thành Long")
    r = await api.client.post(
        "/sign", params={"level": "B-LT"}, content=draft, headers=api.signing("lanh-dao-blt", "leader", "246810")
    )
    assert r.status_code == 200, r.text
    assert r.headers["X-Signature-Level"] == "B-LT"
    report = (await api.client.post("/verify", content=r.content, headers={**api.auth("x", "auditor"), **PDF})).json()
    assert report["signatures"][0]["revocation"]["embedded_data"] and report["all_ok"]


async def test_revoked_certificate_cannot_sign_but_its_earlier_signature_stays_valid(api: Api, draft: bytes) -> None:
    leader = await api.issue_leader("se-bi-thu-hoi", name="Hồ Văn Cường")
    headers = api.signing("se-bi-thu-hoi", "leader", "246810")
    before = await api.client.post("/sign", content=draft, headers=headers)
    assert before.status_code == 200
    with clock.advanced(1.1):  # the revocation is after the time-stamp, to the second
        r = await api.client.post(
            f"/certificates/{leader['serial']}/revoke",
            json={"reason": "keyCompromise"},
            headers=api.auth("quan-tri", "admin"),
        )
        assert r.status_code == 200
        signatures = await api.signatures()
        refused = await api.client.post("/sign", content=draft, headers=headers)
        assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "certificate_revoked"
        assert await api.signatures() == signatures
        failed = (await api.events("signature.failed"))[-1].data
        assert failed["certificate_serial"] == leader["serial"] and failed["code"] == "certificate_revoked"
        report = (
            await api.client.post("/verify", content=before.content, headers={**api.auth("x", "auditor"), **PDF})
        ).json()
        sig = report["signatures"][0]
        assert sig["trusted"] and sig["intact"] and sig["revocation"]["status"] == "good"
        assert sig["revocation"]["checked_at"] == sig["timestamp"]["time"]


async def test_wrong_pins_are_limited_and_an_admin_unlocks(api: Api, draft: bytes) -> None:
    leader = await api.issue_leader("hay-quen", name="Lý Thị Quên")
    left = []
    for _ in range(4):
        r = await api.client.post("/sign", content=draft, headers=api.signing("hay-quen", "leader", "000000"))
        assert r.status_code == 403 and r.json()["code"] == "wrong_pin"
        left.append(r.json()["extra"]["attempts_left"])
    assert left == [4, 3, 2, 1]
    fifth = await api.client.post("/sign", content=draft, headers=api.signing("hay-quen", "leader", "000000"))
    assert fifth.status_code == 423 and fifth.json()["code"] == "signer_locked"
    right = await api.client.post("/sign", content=draft, headers=api.signing("hay-quen", "leader", "246810"))
    assert right.status_code == 423  # locked even with the right PIN
    got = (await api.client.get(f"/certificates/{leader['serial']}", headers=api.auth("quan-tri", "admin"))).json()
    assert got["locked"] is True
    reset = await api.client.post(
        f"/certificates/{leader['serial']}/pin", json={"pin": "975310"}, headers=api.auth("quan-tri", "admin")
    )
    assert reset.status_code == 200
    ok = await api.client.post("/sign", content=draft, headers=api.signing("hay-quen", "leader", "975310"))
    assert ok.status_code == 200


async def test_roles_and_another_agencys_seal_are_refused(api: Api, draft: bytes) -> None:
    other_seal = await api.issue(kind="organisation", agency=OTHER, agency_name=OTHER_NAME, pin="112233")
    leader_signed = await api.client.post("/sign", content=draft, headers=api.signing("leader", "leader", DEMO_PIN))
    numbered = fill_number_field(leader_signed.content, number_text="16/QĐ-UBND")
    r = await api.client.post(
        "/sign",
        params={"kind": "organisation", "certificate": other_seal["serial"]},
        content=numbered,
        headers=api.signing("van-thu", "clerk", "112233"),
    )
    assert r.status_code == 403 and r.json()["code"] == "seal_not_of_your_agency"
    # a clerk cannot sign as a person, a leader cannot apply the seal
    assert (
        await api.client.post("/sign", content=draft, headers=api.signing("van-thu", "clerk", DEMO_PIN))
    ).status_code == 403
    r = await api.client.post(
        "/sign",
        params={"kind": "organisation"},
        content=numbered,
        headers=api.signing("leader", "leader", DEMO_PIN),
    )
    assert r.status_code == 403
    # someone else's certificate
    mine = (
        await api.client.get("/certificates", params={"owner": "leader"}, headers=api.auth("quan-tri", "admin"))
    ).json()
    r = await api.client.post(
        "/sign",
        params={"certificate": mine[0]["serial"]},
        content=draft,
        headers=api.signing("ke-gian", "leader", DEMO_PIN),
    )
    assert r.status_code == 403
    # nobody without a token
    assert (await api.client.post("/sign", content=draft, headers=PDF)).status_code == 401


@pytest.mark.parametrize(
    ("make", "status", "code"),
    [
        (lambda d: b"%PNG\r\n\x1a\n" + b"\0" * 100, 415, "not_a_pdf"),
        (lambda d: _encrypted_pdf(), 422, "encrypted_pdf"),
        (_broken_xref_pdf, 422, "broken_pdf"),
        (lambda d: d[: len(d) // 2], 422, "broken_pdf"),
        (lambda d: d + b"%" + b"0" * MAX_PDF, 413, "payload_too_large"),
    ],
    ids=["not-a-pdf", "encrypted", "broken-xref", "truncated", "too-large"],
)
async def test_bad_input_is_a_clear_problem_and_nothing_is_signed(api: Api, draft: bytes, make, status, code) -> None:
    leader = (
        await api.client.get("/certificates", params={"owner": "leader"}, headers=api.auth("quan-tri", "admin"))
    ).json()[0]
    before, completed = await api.signatures(), len(await api.events("signature.completed"))
    r = await api.client.post("/sign", content=make(draft), headers=api.signing("leader", "leader", DEMO_PIN))
    assert (r.status_code, r.json()["code"]) == (status, code)
    assert r.headers["content-type"] == "application/problem+json"
    assert await api.signatures() == before and len(await api.events("signature.completed")) == completed
    # the token is unharmed: no PIN attempt was spent, and the next signature works
    assert (
        api.pki.token.record(
            next(
                s
                for s in api.pki.token.signer_ids()
                if api.pki.token.certificate(s).serial_number == int(leader["serial"], 16)
            )
        ).failed_attempts
        == 0
    )
    verify = await api.client.post("/verify", content=make(draft), headers={**api.auth("x", "citizen"), **PDF})
    assert verify.status_code == status
    assert (
        await api.client.post("/sign", content=draft, headers=api.signing("leader", "leader", DEMO_PIN))
    ).status_code == 200


async def test_a_leader_signs_a_batch_of_100(api: Api, draft: bytes) -> None:
    files = [("files", (f"van-ban-{i:03}.pdf", draft, "application/pdf")) for i in range(100)]
    headers = {**api.auth("leader", "leader"), "X-Signing-PIN": DEMO_PIN}
    started = time.perf_counter()
    r = await api.client.post("/sign/batch", files=files, headers=headers)
    elapsed = time.perf_counter() - started
    assert r.status_code == 200, r.text[:500]
    body = r.json()
    assert body["signed"] == 100 and body["failed"] == 0
    # the published schema, field for field (the response is put together by hand)
    BatchOut.model_validate(body)
    assert set(body) == set(BatchOut.model_fields)
    assert all(set(item) == set(BatchItemOut.model_fields) for item in body["items"])
    assert [i["filename"] for i in body["items"]][:2] == ["van-ban-000.pdf", "van-ban-001.pdf"]
    one = base64.b64decode(body["items"][57]["pdf_base64"])
    report = (await api.client.post("/verify", content=one, headers={**api.auth("x", "citizen"), **PDF})).json()
    assert report["all_ok"]
    batch = [e for e in await api.events("signature.completed") if e.data["batch_id"] == body["batch_id"]]
    assert len(batch) == 100
    async with api.app.state.runtime.db.sessionmaker() as session:
        rows = (await session.execute(select(Signature).where(Signature.batch_id == body["batch_id"]))).scalars().all()
    assert sorted(r.output_sha256 for r in rows) == sorted(e.data["output_sha256"] for e in batch)
    assert {r.output_sha256 for r in rows} == {
        hashlib.sha256(base64.b64decode(i["pdf_base64"])).hexdigest() for i in body["items"]
    }
    assert elapsed < 60

    mixed = [("files", ("a.pdf", draft, "application/pdf")), ("files", ("b.pdf", b"not a pdf", "application/pdf"))]
    r = await api.client.post("/sign/batch", files=mixed, headers=headers)
    items = BatchOut.model_validate_json(r.content).model_dump()["items"]
    assert items[0]["ok"] and not items[1]["ok"] and items[1]["error"]["code"] == "not_a_pdf"
    assert items[0]["pdf_base64"] and items[1]["pdf_base64"] is None
    too_many = [("files", (f"{i}.pdf", b"%PDF-1.4", "application/pdf")) for i in range(101)]
    r = await api.client.post("/sign/batch", files=too_many, headers=headers)
    assert r.status_code == 422


async def test_every_signing_event_names_its_actor(api: Api, draft: bytes) -> None:
    issued = await api.issue_leader("nguoi-ky-thu", name="Lò Văn Thử")
    revoked = await api.client.post(
        f"/certificates/{issued['serial']}/revoke", json={"reason": "superseded"}, headers=api.auth("quan-tri", "admin")
    )
    assert revoked.status_code == 200, revoked.text
    signed = await api.client.post("/sign", content=draft, headers=api.signing("leader", "leader", DEMO_PIN))
    assert signed.status_code == 200, signed.text
    refused = await api.client.post(
        "/sign", content=b"%PDF-1.7 nothing", headers=api.signing("leader", "leader", DEMO_PIN)
    )
    assert refused.status_code >= 400
    events = [
        e
        for key in ("certificate.issued", "certificate.revoked", "signature.completed", "signature.failed")
        for e in await api.events(key)
    ]
    assert {e.type for e in events} == {
        "vn.lienthong.certificate.issued.v1",
        "vn.lienthong.certificate.revoked.v1",
        "vn.lienthong.signature.completed.v1",
        "vn.lienthong.signature.failed.v1",
    }
    for event in events:
        actor = event.data["actor"]
        if event.data.get("issued_by") == "demo-seed":
            assert actor["kind"] == "system" and "demo seed" in actor["reason"], event.data
        else:
            assert actor["kind"] == "user" and actor["sub"] and actor["roles"], (event.type, event.data)
    completed = [e.data for e in events if e.type.endswith("signature.completed.v1")]
    assert any(d["actor"]["sub"] == d["signer"] == "leader" and d["actor"]["roles"] == ["leader"] for d in completed)
    revoked = [e.data for e in events if e.type.endswith("certificate.revoked.v1")]
    assert all(d["actor"]["sub"] == d["revoked_by"] for d in revoked)


async def test_openapi_documents_the_pin_header_wherever_a_pin_is_needed(api: Api) -> None:
    document = (await api.client.get("/openapi.json")).json()
    needing = {}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "header" and parameter["name"].lower() == "x-signing-pin":
                    needing[(method, path)] = parameter
    assert set(needing) == {("post", "/sign"), ("post", "/sign/batch")}
    for parameter in needing.values():
        assert parameter["required"] is True
        assert "123456" in parameter["description"] and "lock" in parameter["description"]
    fill = document["paths"]["/fill-number"]["post"]
    params = {p["name"]: p for p in fill["parameters"]}
    assert params["document"]["required"] is True and not params["number"].get("required")
