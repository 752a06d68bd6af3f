"""The local CA: certificates as validators expect them, CRL, OCSP, RFC 3161, persistence."""

from __future__ import annotations

import hashlib
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from asn1crypto import cms, core, tsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.signing.pki.authority import CertificateAuthority
from services.signing.pki.config import PkiConfig
from services.signing.pki.profiles import DOCUMENT_SIGNING_EKU, organ_id_of
from services.signing.pki.register import PkiError, RevocationReason, UnknownCertificate

from .conftest import AGENCY, AGENCY_ID, Pki


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _ocsp_status(ca: CertificateAuthority, cert: x509.Certificate) -> ocsp.OCSPResponse:
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, ca.intermediate_certificate, hashes.SHA1()).build()
    return ocsp.load_der_ocsp_response(ca.respond_ocsp(request.public_bytes(serialization.Encoding.DER)))


def test_person_certificate_carries_name_title_agency_and_usages(pki: Pki) -> None:
    cert = pki.ca.issue_person_certificate(
        _key().public_key(),
        full_name="Trần Thị Mai",
        position="Phó Chủ tịch",
        organisation_name=AGENCY,
        organ_id=AGENCY_ID,
    )
    subject = cert.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Trần Thị Mai"
    assert subject.get_attributes_for_oid(NameOID.TITLE)[0].value == "Phó Chủ tịch"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == AGENCY
    assert organ_id_of(cert) == AGENCY_ID
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and usage.value.content_commitment
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in eku and DOCUMENT_SIGNING_EKU in eku
    crl_dp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert crl_dp[0].full_name[0].value == pki.ca.config.intermediate_crl_url
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert pki.ca.config.ocsp_url in [d.access_location.value for d in aia]


def test_tsa_certificate_has_critical_time_stamping_usage(pki: Pki) -> None:
    eku = pki.ca.tsa_certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]


def test_chain_verifies_with_openssl(pki: Pki, tmp_path) -> None:
    cert = pki.ca.issue_organisation_certificate(_key().public_key(), organisation_name=AGENCY, organ_id=AGENCY_ID)
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    result = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(pki.root_pem),
            "-untrusted",
            str(pki.intermediate_pem),
            "-purpose",
            "smimesign",
            str(leaf),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_bad_agency_identifier_and_overlong_names_are_refused(pki: Pki) -> None:
    with pytest.raises(PkiError):
        pki.ca.issue_organisation_certificate(_key().public_key(), organisation_name=AGENCY, organ_id="H23")
    with pytest.raises(PkiError):
        pki.ca.issue_organisation_certificate(_key().public_key(), organisation_name="x" * 65, organ_id=AGENCY_ID)


def test_revocation_is_immediate_in_ocsp_and_in_the_next_crl(pki: Pki) -> None:
    cert = pki.ca.issue_person_certificate(
        _key().public_key(),
        full_name="Lê Văn Hùng",
        position="Giám đốc",
        organisation_name=AGENCY,
        organ_id=AGENCY_ID,
    )
    assert _ocsp_status(pki.ca, cert).certificate_status == ocsp.OCSPCertStatus.GOOD
    crl_before = x509.load_der_x509_crl(pki.ca.build_crl())
    assert crl_before.get_revoked_certificate_by_serial_number(cert.serial_number) is None

    pki.ca.revoke(cert.serial_number, reason=RevocationReason.key_compromise)

    answer = _ocsp_status(pki.ca, cert)
    assert answer.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert answer.revocation_reason == x509.ReasonFlags.key_compromise
    crl = x509.load_der_x509_crl(pki.ca.build_crl())
    assert crl.is_signature_valid(pki.ca.intermediate_certificate.public_key())
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == (x509.ReasonFlags.key_compromise)
    number = lambda c: c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number  # noqa: E731
    assert number(crl) > number(crl_before)


def test_ocsp_refuses_garbage_and_other_issuers(pki: Pki) -> None:
    garbage = ocsp.load_der_ocsp_response(pki.ca.respond_ocsp(b"not an OCSP request"))
    assert garbage.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    stranger = pki.ca.tsa_certificate
    request = ocsp.OCSPRequestBuilder().add_certificate(stranger, pki.ca.root_certificate, hashes.SHA256()).build()
    answer = ocsp.load_der_ocsp_response(pki.ca.respond_ocsp(request.public_bytes(serialization.Encoding.DER)))
    assert answer.response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_timestamp_response_verifies_with_openssl_ts(pki: Pki, tmp_path) -> None:
    data = "Quyết định số 15/QĐ-UBND".encode()
    request = tsp.TimeStampReq(
        {
            "version": 1,
            "message_imprint": {
                "hash_algorithm": {"algorithm": "sha256"},
                "hashed_message": hashlib.sha256(data).digest(),
            },
            "nonce": 424242,
            "cert_req": True,
        }
    )
    reply = pki.ca.respond_timestamp(request.dump())
    (tmp_path / "data.txt").write_bytes(data)
    (tmp_path / "reply.tsr").write_bytes(reply)
    (tmp_path / "chain.pem").write_bytes(pki.root_pem.read_bytes() + pki.intermediate_pem.read_bytes())
    result = subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-data",
            str(tmp_path / "data.txt"),
            "-in",
            str(tmp_path / "reply.tsr"),
            "-CAfile",
            str(tmp_path / "chain.pem"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Verification: OK" in result.stdout
    (tmp_path / "data.txt").write_bytes(data + " (sửa)".encode())
    tampered = subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-data",
            str(tmp_path / "data.txt"),
            "-in",
            str(tmp_path / "reply.tsr"),
            "-CAfile",
            str(tmp_path / "chain.pem"),
        ],
        capture_output=True,
        text=True,
    )
    assert tampered.returncode != 0


def test_time_stamp_tokens_are_der_and_carry_what_was_asked(pki: Pki) -> None:
    """The TSA writes its tokens by hand (der.py): each is the DER asn1crypto would write
    (re-encoded from its parsed fields: the same bytes), whatever the lengths of nonce, serial
    number and time, and is signed by the TSA."""
    tsa_key = pki.ca.tsa_certificate.public_key()
    assert isinstance(tsa_key, rsa.RSAPublicKey)
    for i in range(60):
        digest = hashlib.sha256(str(i).encode()).digest()
        nonce = (1 << i) + i  # 1 to 8 bytes, top bit set or not
        now = datetime(2026, 11, 28, 7, 0, i, (i * 15625) % 1_000_000, tzinfo=UTC)  # fractions of 0 to 6 digits
        token = pki.ca.timestamp_token(digest, "sha256", nonce=nonce, now=now)
        parsed = cms.ContentInfo.load(token)
        assert parsed.dump(force=True) == token
        tst_info = parsed["content"]["encap_content_info"]["content"].parsed
        assert tst_info["message_imprint"]["hashed_message"].native == digest
        assert tst_info["nonce"].native == nonce and tst_info["gen_time"].native == now
        assert tst_info["gen_time"].dump() == core.GeneralizedTime(now).dump()
        signer_info = parsed["content"]["signer_infos"][0]
        signed_attrs = signer_info["signed_attrs"].untag().dump()  # signed as a SET
        tsa_key.verify(signer_info["signature"].native, signed_attrs, padding.PKCS1v15(), hashes.SHA256())


@pytest.mark.parametrize(
    "request_der",
    [
        b"\x30\x03junk",
        tsp.TimeStampReq(
            {
                "version": 1,
                "message_imprint": {
                    "hash_algorithm": {"algorithm": "md5"},
                    "hashed_message": hashlib.md5(b"x").digest(),
                },
            }
        ).dump(),
    ],
    ids=["not-der", "md5"],
)
def test_unacceptable_timestamp_requests_get_a_rejection(pki: Pki, tmp_path, request_der: bytes) -> None:
    (tmp_path / "reply.tsr").write_bytes(pki.ca.respond_timestamp(request_der))
    shown = subprocess.run(
        ["openssl", "ts", "-reply", "-in", str(tmp_path / "reply.tsr"), "-text"],
        capture_output=True,
        text=True,
    )
    assert "Status: Rejected" in shown.stdout, shown.stdout + shown.stderr


def test_http_shaped_routes(pki: Pki) -> None:
    body, media = pki.ca.handle(pki.ca.config.intermediate_crl_url)
    assert media == "application/pkix-crl"
    assert x509.load_der_x509_crl(body).issuer == pki.ca.intermediate_certificate.subject
    body, media = pki.ca.handle(pki.ca.config.root_cert_url)
    assert x509.load_der_x509_certificate(body) == pki.ca.root_certificate
    with pytest.raises(UnknownCertificate):
        pki.ca.handle(pki.ca.config.base_url + "/../../etc/passwd")


def test_state_survives_a_reload_and_keys_are_encrypted(tmp_path) -> None:
    config = PkiConfig(ca_key_size=2048, base_url="http://127.0.0.1:9999/pki")
    ca = CertificateAuthority.create(tmp_path / "ca", passphrase=b"secret", config=config)
    cert = ca.issue_organisation_certificate(_key().public_key(), organisation_name=AGENCY, organ_id=AGENCY_ID)
    revoked_at = datetime.now(UTC) - timedelta(minutes=1)
    ca.revoke(cert.serial_number, reason=RevocationReason.superseded, revoked_at=revoked_at)

    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "ca" / "root.key.pem").read_bytes()
    with pytest.raises((ValueError, TypeError)):
        CertificateAuthority.load(tmp_path / "ca", passphrase=b"wrong", config=config)
    again = CertificateAuthority.load(tmp_path / "ca", passphrase=b"secret", config=config)
    assert again.root_certificate == ca.root_certificate
    assert again.certificate(cert.serial_number) == cert
    assert again.revocation_of(cert.serial_number).reason == "superseded"
    crl = x509.load_der_x509_crl(again.build_crl())
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    with pytest.raises(PkiError):
        CertificateAuthority.create(tmp_path / "ca", passphrase=b"secret", config=config)
