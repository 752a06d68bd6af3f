"""The signing part inside the whole suite (embedded mode): the demo users of every demo agency
sign through the gateway, the clerk fills only the number the document part assigned, an
agency's signing capabilities are readable, and the PKI URLs written into the certificates
answer over real HTTP there."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from cryptography import x509

from gateway.config import RateRule
from services.intake import catalogue_seed
from shared.demo import DEMO_AGENCIES, PROVINCE, demo_agency, username
from tests.suites import Running, embedded

from .conftest import Pki, decision_pdf

DEMO_PIN = "864200"
PDF = {"Content-Type": "application/pdf"}
WARD = "000.00.41.H56"  # receives 1.001193 (khai sinh)
GENEROUS = RateRule(rate=10_000, burst=100_000)


@pytest_asyncio.fixture(scope="module")
async def running(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    # the package's CA and token (SoftHSM is one per process), the suite's own databases
    s = pki.settings
    extra = {
        "signing_dir": str(s.resolved_signing_dir),
        "ca_passphrase_secret": s.ca_passphrase_secret,
        "token_label": s.token_label,
        "token_pin_secret": s.token_pin_secret,
        "token_so_pin_secret": s.token_so_pin_secret,
        "pin_argon2_time_cost": 1,
        "pin_argon2_memory_kib": 1024,
        "demo_pin_secret": DEMO_PIN,
        "password_hash_time_cost": 1,
        "password_hash_memory_kib": 8192,
        "password_hash_parallelism": 1,
        # every demo person signs in here: no login rate limit in the way
        "rate_routes": {},
        "rate_public": GENEROUS,
        "rate_client": GENEROUS,
    }
    async with embedded(tmp_path_factory.mktemp("signing-embedded"), **extra) as suite:
        yield suite


async def _numbered_document(
    client: httpx.AsyncClient, running: Running, agency: str, *, number: bool = True
) -> tuple[int, bytes, str | None]:
    """A draft of ``agency`` written by its specialist, signed by its leader (uploaded), and,
    if ``number``, numbered by its clerk: the document's id, the leader-signed PDF, its code."""
    specialist = await running.auth(username("specialist", agency))
    leader = await running.auth(username("leader", agency))
    clerk = await running.auth(username("clerk", agency))
    person = demo_agency(agency).leader
    created = await client.post(
        "/api/document/documents",
        headers=specialist,
        json={
            "agency": agency,
            "type_key": "QĐ",
            "subject": "Quyết định thử nghiệm cấp số",
            "signer": {"position": demo_agency(agency).leader_position, "full_name": person.full_name},
        },
    )
    assert created.status_code == 201, created.text
    doc_id, etag = created.json()["id"], created.headers["etag"]

    async def upload(body: bytes, stage: str, who: dict[str, str]) -> None:
        nonlocal etag
        r = await client.post(
            f"/api/document/documents/{doc_id}/content",
            params={"stage": stage},
            content=body,
            headers={**who, "If-Match": etag, **PDF},
        )
        assert r.status_code == 201, r.text
        etag = r.headers["etag"]

    draft = decision_pdf()
    await upload(draft, "draft", specialist)
    signed = await client.post("/api/signing/sign", content=draft, headers={**leader, **PDF, "X-Signing-PIN": DEMO_PIN})
    assert signed.status_code == 200, signed.text
    await upload(signed.content, "signed_by_leader", leader)
    if not number:
        return doc_id, signed.content, None
    numbered = await client.post(f"/api/document/documents/{doc_id}/number", headers=clerk, json={})
    assert numbered.status_code == 200, numbered.text
    return doc_id, signed.content, numbered.json()["code"]


async def test_demo_leader_and_clerk_sign_through_the_gateway(running: Running) -> None:
    async with running.client() as client:
        clerk = await running.auth("clerk")
        # the province's people keep their bare logins (leader, clerk, …)
        doc_id, signed, code = await _numbered_document(client, running, PROVINCE)
        numbered = await client.post(
            "/api/signing/fill-number", params={"document": doc_id}, content=signed, headers={**clerk, **PDF}
        )
        assert numbered.status_code == 200, numbered.text
        sealed = await client.post(
            "/api/signing/sign",
            params={"kind": "organisation"},
            content=numbered.content,
            headers={**clerk, **PDF, "X-Signing-PIN": DEMO_PIN},
        )
        assert sealed.status_code == 200, sealed.text
        report = (
            await client.post(
                "/api/signing/verify", content=sealed.content, headers={**(await running.auth("citizen")), **PDF}
            )
        ).json()
        assert report["all_ok"] and report["number_text"] == code
        assert [s["signer_name"] for s in report["signatures"]] == ["Phạm Văn Đức", "Ủy ban nhân dân tỉnh Thanh Hóa"]
        certificates = (await client.get("/api/signing/certificates", headers=await running.auth("admin"))).json()
        assert {c["kind"] for c in certificates} == {"person", "organisation"}
    # the package's CA was made with its own URL; the URLs of a CA the suite made itself
    # would be the gateway's — here, check the gateway serves the part's PKI without a token
    async with httpx.AsyncClient(base_url=running.gateway_url) as anonymous:
        crl = await anonymous.get("/api/signing/pki/crl/intermediate.crl")
        assert crl.status_code == 200 and crl.headers["content-type"] == "application/pkix-crl"
        x509.load_der_x509_crl(crl.content)
        ca = await anonymous.get("/api/signing/pki/ca")
        assert len(x509.load_pem_x509_certificates(ca.content)) == 2


async def test_fill_number_writes_only_the_number_the_document_was_assigned(running: Running) -> None:
    async with running.client() as client:
        clerk = {**(await running.auth("clerk")), **PDF}
        # not numbered yet: nothing to fill
        doc_id, signed, _ = await _numbered_document(client, running, PROVINCE, number=False)
        r = await client.post("/api/signing/fill-number", params={"document": doc_id}, content=signed, headers=clerk)
        assert r.status_code == 409 and r.json()["code"] == "document_not_numbered", r.text
        assert r.headers["content-type"].startswith("application/problem+json")

        doc_id, signed, code = await _numbered_document(client, running, PROVINCE)
        assert code
        # free text is refused, whatever it says
        for claimed in ("99/QĐ-UBND", "15/ /CT-UBND"):
            r = await client.post(
                "/api/signing/fill-number",
                params={"document": doc_id, "number": claimed},
                content=signed,
                headers=clerk,
            )
            assert r.status_code == 409 and r.json()["code"] == "number_not_assigned", r.text
            assert r.json()["extra"]["assigned"] == code
        # no such document; no document named at all
        r = await client.post("/api/signing/fill-number", params={"document": 987654}, content=signed, headers=clerk)
        assert r.status_code == 404, r.text
        r = await client.post("/api/signing/fill-number", params={"number": code}, content=signed, headers=clerk)
        assert r.status_code in (400, 422), r.text
        for wrong in (0, -3, 2**40, "bốn"):
            r = await client.post("/api/signing/fill-number", params={"document": wrong}, content=signed, headers=clerk)
            assert r.status_code in (400, 422), r.text
            assert r.headers["content-type"].startswith("application/problem+json")
        # the right document, but not a PDF
        r = await client.post(
            "/api/signing/fill-number",
            params={"document": doc_id},
            content=b"\x89PNG\r\n\x1a\n" + bytes(64),
            headers=clerk,
        )
        assert r.status_code == 415 and r.headers["content-type"].startswith("application/problem+json"), r.text
        # the assigned number, named or not, is filled
        for params in ({"document": doc_id}, {"document": doc_id, "number": code}):
            r = await client.post("/api/signing/fill-number", params=params, content=signed, headers=clerk)
            assert r.status_code == 200, r.text
            assert r.content.startswith(signed)  # an incremental update: the signed bytes untouched
            report = (await client.post("/api/signing/verify", content=r.content, headers=clerk)).json()
            assert report["number_text"] == code and report["signatures"][0]["changes"]["permitted"]
        # a clerk of another agency does not see the document, so cannot fill its number
        other = {**(await running.auth(username("clerk", WARD))), **PDF}
        r = await client.post("/api/signing/fill-number", params={"document": doc_id}, content=signed, headers=other)
        assert r.status_code == 404, r.text


def test_every_agency_of_the_demo_catalogue_is_a_demo_agency() -> None:
    demo = {a.code for a in DEMO_AGENCIES}
    for procedure in catalogue_seed.PROCEDURES:
        deciding = getattr(procedure, "deciding_agencies", None) or getattr(procedure, "deciding_agency", None) or ()
        for code in {procedure.receiving_agency, *([deciding] if isinstance(deciding, str) else deciding)}:
            assert code in demo, f"{procedure.code} is received or decided at {code}, which has no demo people"
    names = {a.code: a.name for a in catalogue_seed.AGENCIES}
    assert demo <= set(names), "every demo agency is one of the catalogue's agencies"


async def test_every_demo_agency_has_its_seal_its_people_and_they_sign(running: Running) -> None:
    async with running.client() as client:
        admin = await running.auth("admin")
        for agency in DEMO_AGENCIES:
            capabilities = await client.get(f"/api/signing/agencies/{agency.code}", headers=admin)
            assert capabilities.status_code == 200, capabilities.text
            body = capabilities.json()
            assert body["organ_id"] == agency.code and body["name"] == agency.name
            assert body["default_seal"] and body["default_seal"] in {s["serial"] for s in body["seals"]}
            leader = agency.leader
            signers = {s["user_id"]: s for s in body["signers"]}
            assert leader.username in signers and signers[leader.username]["certificates"], body
            assert signers[leader.username]["full_name"] == leader.full_name
            for person in agency.people:  # every demo person can sign in
                assert await running.token(person.username)

        # the ward's own people take a document through: leader.41 signs, clerk.41 numbers and seals
        doc_id, signed, code = await _numbered_document(client, running, WARD)
        clerk = await running.auth(username("clerk", WARD))
        numbered = await client.post(
            "/api/signing/fill-number", params={"document": doc_id}, content=signed, headers={**clerk, **PDF}
        )
        assert numbered.status_code == 200, numbered.text
        capabilities = (await client.get(f"/api/signing/agencies/{WARD}", headers=clerk)).json()
        sealed = await client.post(
            "/api/signing/sign",
            params={"kind": "organisation", "certificate": capabilities["default_seal"]},
            content=numbered.content,
            headers={**clerk, **PDF, "X-Signing-PIN": DEMO_PIN},
        )
        assert sealed.status_code == 200, sealed.text
        report = (await client.post("/api/signing/verify", content=sealed.content, headers={**clerk, **PDF})).json()
        assert report["all_ok"] and report["number_text"] == code
        first, second = report["signatures"]
        assert first["signer_name"] == demo_agency(WARD).leader.full_name
        assert second["certificate"]["organ_id"] == WARD and second["signer_name"] == "Ủy ban nhân dân phường Hạc Thành"


async def test_agency_capabilities_are_for_its_own_staff(running: Running) -> None:
    async with running.client() as client:
        ward_clerk = await running.auth(username("clerk", WARD))
        other = await client.get("/api/signing/agencies/000.00.42.H56", headers=ward_clerk)
        assert other.status_code == 404, other.text  # outside the clerk's agency: not even its existence
        for who in ("citizen", "specialist", "desk_officer"):
            r = await client.get(f"/api/signing/agencies/{WARD}", headers=await running.auth(who))
            assert r.status_code == 403, (who, r.text)
        bad = await client.get("/api/signing/agencies/not-an-organ-id", headers=await running.auth("admin"))
        assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
        unseen = await client.get("/api/signing/agencies/000.00.99.H56", headers=await running.auth("admin"))
        assert unseen.status_code == 200 and unseen.json() == {
            "organ_id": "000.00.99.H56",
            "name": None,
            "default_seal": None,
            "seals": [],
            "signers": [],
        }
