"""Certificate profiles of the local CA: the subject names, key usages and extensions of CA and
signer certificates, and the checks on what goes into a subject."""

from __future__ import annotations

from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from shared import organ_id as organ_ids

from .config import PkiConfig
from .register import PkiError

__all__ = [
    "DOCUMENT_SIGNING_EKU",
    "base_builder",
    "ca_key_usage",
    "check_lengths",
    "check_organ_id",
    "crl_distribution_point",
    "organ_id_of",
    "signer_eku",
    "signer_key_usage",
    "authority_name",
]

# RFC 9336 id-kp-documentSigning; validators that know it prefer it over emailProtection.
DOCUMENT_SIGNING_EKU = ObjectIdentifier("1.3.6.1.5.5.7.3.36")


def organ_id_of(cert: x509.Certificate) -> str | None:
    """The agency identifier (mã định danh) carried in the certificate subject's OU."""
    for attr in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME):
        value = str(attr.value)
        if organ_ids.is_valid(value):
            return value
    return None


def authority_name(config: PkiConfig, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, config.country),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, config.organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def base_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: CertificatePublicKeyTypes,
    now: datetime,
    validity: timedelta,
) -> x509.CertificateBuilder:
    # back-date a little so a freshly issued certificate is valid on machines with clock skew
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + validity)
    )


def ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def signer_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=True,  # nonRepudiation: PAdES validators require it for signers
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def signer_eku() -> x509.ExtendedKeyUsage:
    # emailProtection is what NSS (pdfsig) checks for document signers; documentSigning is
    # the purpose-built one from RFC 9336
    return x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, DOCUMENT_SIGNING_EKU])


def crl_distribution_point(url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(url)],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
        ]
    )


def check_lengths(**values: str | None) -> None:
    # X.520 upper bounds (ub-common-name etc.): 64 characters
    for name, value in values.items():
        if value is not None and not 1 <= len(value) <= 64:
            raise PkiError(f"{name} must be 1 to 64 characters, got {len(value)}")


def check_organ_id(organ_id: str) -> None:
    if not organ_ids.is_valid(organ_id):
        raise PkiError(f"not an agency identifier (OrganId): {organ_id!r}")
