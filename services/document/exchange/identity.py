"""Who this deployment is on the exchange network and whom it trusts: the signing key and
certificate, the partner agencies and their certificates, the HTTP client that reaches them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from services.document import edxml
from services.document.config import DocumentSettings, ExchangePartner
from shared import clock

EDXML_MEDIA_TYPE = "application/xml"


@dataclass(frozen=True)
class ExchangeIdentity:
    """The key and certificate this deployment signs edXML messages with."""

    key: PrivateKeyTypes
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()


def _load_certs(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def create_development_identity(directory: Path, *, common_name: str) -> tuple[Path, Path]:
    """A self-signed RSA key and certificate for development, kept in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    if key_path.exists() and cert_path.exists():
        return key_path, cert_path
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lienthong (development)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    now = clock.now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=5 * 365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def load_identity(settings: DocumentSettings) -> ExchangeIdentity:
    """The configured identity; in development a generated one under ``var_dir/document/exchange``."""
    key_path, cert_path = settings.exchange_key_file, settings.exchange_cert_file
    if key_path is None or cert_path is None:
        if settings.environment == "production":
            raise RuntimeError("exchange_key_file and exchange_cert_file are required in production")
        first = next(iter(settings.agencies.values()), None)
        key_path, cert_path = create_development_identity(
            settings.exchange_dir, common_name=first.name if first else "lienthong"
        )
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise RuntimeError("the exchange key must be RSA (edXML signatures are RSA-SHA256)")
    chain = tuple(c for p in settings.exchange_chain_files for c in _load_certs(p))
    return ExchangeIdentity(key=key, certificate=_load_certs(cert_path)[0], chain=chain)


ClientFactory = Callable[[], httpx.AsyncClient]


@dataclass
class ExchangeKit:
    """What the exchange needs at run time: who we are, whom we trust, how we reach them."""

    settings: DocumentSettings
    identity: ExchangeIdentity
    partners: dict[str, ExchangePartner]
    partner_certs: dict[str, list[x509.Certificate]]
    client_factory: ClientFactory
    limits: edxml.Limits = field(default_factory=edxml.Limits)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def all_trusted(self) -> edxml.CertValidator:
        return edxml.make_cert_validator([c for certs in self.partner_certs.values() for c in certs])

    def require_partner_signed(self, organ: str, signer: x509.Certificate, others: Sequence[x509.Certificate]) -> None:
        """The message's From must be a partner, and the signer that partner's certificate:
        a trusted partner cannot speak for another agency."""
        certs = self.partner_certs.get(organ)
        if certs is None:
            raise edxml.UnknownCertificate(f"{organ} is not an exchange partner of this deployment")
        edxml.make_cert_validator(certs)(signer, others)


def build_kit(settings: DocumentSettings, *, client_factory: ClientFactory | None = None) -> ExchangeKit:
    timeout = settings.exchange_timeout_seconds
    return ExchangeKit(
        settings=settings,
        identity=load_identity(settings),
        partners=dict(settings.exchange_partners),
        partner_certs={organ: _load_certs(p.certificate) for organ, p in settings.exchange_partners.items()},
        client_factory=client_factory or (lambda: httpx.AsyncClient(timeout=timeout)),
        limits=edxml.Limits(max_bytes=settings.exchange_max_bytes),
    )


def is_partner(settings: DocumentSettings, organ: str | None) -> bool:
    return bool(organ) and organ not in settings.agencies and organ in settings.exchange_partners
