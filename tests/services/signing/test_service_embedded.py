"""The signing part inside the whole suite (embedded mode): the demo users sign through the
gateway, and the PKI URLs written into the certificates answer over real HTTP there."""

from __future__ import annotations

from pathlib import Path

import httpx
from cryptography import x509

from tests.suites import embedded

from .conftest import Pki, decision_pdf

DEMO_PIN = "864200"
PDF = {"Content-Type": "application/pdf"}


async def test_demo_leader_and_clerk_sign_through_the_gateway(pki: Pki, tmp_path: Path) -> None:
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
    }
    async with embedded(tmp_path, **extra) as running:
        async with running.client() as client:
            leader, clerk = await running.auth("leader"), await running.auth("clerk")
            signed = await client.post(
                "/api/signing/sign", content=decision_pdf(), headers={**leader, **PDF, "X-Signing-PIN": DEMO_PIN}
            )
            assert signed.status_code == 200, signed.text
            numbered = await client.post(
                "/api/signing/fill-number",
                params={"number": "20/QĐ-UBND"},
                content=signed.content,
                headers={**clerk, **PDF},
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
            assert report["all_ok"] and [s["signer_name"] for s in report["signatures"]] == [
                "Phạm Văn Đức",
                "Ủy ban nhân dân tỉnh Thanh Hóa",
            ]
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
