"""The certificate authority: root and intermediate CA keys, the certificates it issues to people,
organisations and its TSA, and the register of what was issued and revoked."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared import clock

from .config import PkiConfig
from .profiles import (
    authority_name,
    base_builder,
    ca_key_usage,
    check_lengths,
    check_organ_id,
    crl_distribution_point,
    signer_eku,
    signer_key_usage,
)
from .register import (
    CertificateKind,
    IssuedCertificate,
    PkiError,
    Register,
    Revocation,
    RevocationReason,
    UnknownCertificate,
    register_line,
)
from .revocation import CrlAndOcsp
from .serving import PkiServing
from .timestamping import TimeStamping

__all__ = ["CertificateAuthority", "certificates_pem"]

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return clock.now()


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


class CertificateAuthority(CrlAndOcsp, TimeStamping, PkiServing):
    """Root + intermediate CA and TSA, persisted in ``directory``.

    Files: ``root.pem``, ``intermediate.pem``, ``tsa.pem`` (certificates), ``*.key.pem``
    (PKCS#8, encrypted with the passphrase), ``issued/<serial>.pem`` and ``state.json``
    (register of issued certificates, revocations, CRL numbers).
    """

    def __init__(
        self,
        directory: Path,
        *,
        config: PkiConfig,
        root: tuple[rsa.RSAPrivateKey, x509.Certificate],
        intermediate: tuple[rsa.RSAPrivateKey, x509.Certificate],
        tsa: tuple[rsa.RSAPrivateKey, x509.Certificate],
        state: Register,
        clock: Clock = _utc_now,
    ) -> None:
        self.directory = directory
        self.config = config
        self._root_key, self.root_certificate = root
        self._intermediate_key, self.intermediate_certificate = intermediate
        self._tsa_key, self.tsa_certificate = tsa
        self._state = state
        self.clock = clock
        self._lock = threading.RLock()
        self._tsa_serial = int.from_bytes(os.urandom(8), "big")

    # -- creation and persistence ---------------------------------------------------------

    @classmethod
    def create(
        cls,
        directory: str | os.PathLike[str],
        *,
        passphrase: bytes,
        config: PkiConfig | None = None,
        clock: Clock = _utc_now,
    ) -> CertificateAuthority:
        """Create a new CA hierarchy in an empty (or missing) directory and save it."""
        config = config or PkiConfig()
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        if (path / "state.json").exists():
            raise PkiError(f"a CA already exists in {path}")
        now = clock()
        root_key = rsa.generate_private_key(public_exponent=65537, key_size=config.ca_key_size)
        root_name = authority_name(config, config.root_name)
        root_cert = (
            base_builder(root_name, root_name, root_key.public_key(), now, config.root_validity)
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(ca_key_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256())
        )
        inter_key = rsa.generate_private_key(public_exponent=65537, key_size=config.ca_key_size)
        inter_cert = (
            base_builder(
                authority_name(config, config.intermediate_name),
                root_name,
                inter_key.public_key(),
                now,
                config.intermediate_validity,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(ca_key_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(inter_key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
                critical=False,
            )
            .add_extension(crl_distribution_point(config.root_crl_url), critical=False)
            .add_extension(
                x509.AuthorityInformationAccess(
                    [
                        x509.AccessDescription(
                            x509.oid.AuthorityInformationAccessOID.CA_ISSUERS,
                            x509.UniformResourceIdentifier(config.root_cert_url),
                        )
                    ]
                ),
                critical=False,
            )
            .sign(root_key, hashes.SHA256())
        )
        state = Register()
        state.issued[format(inter_cert.serial_number, "x")] = register_line(
            inter_cert, CertificateKind.INTERMEDIATE, "root"
        )
        tsa_key = rsa.generate_private_key(public_exponent=65537, key_size=config.tsa_key_size)
        ca = cls(
            path,
            config=config,
            root=(root_key, root_cert),
            intermediate=(inter_key, inter_cert),
            tsa=(tsa_key, root_cert),  # replaced just below, once the CA can issue
            state=state,
            clock=clock,
        )
        ca.tsa_certificate = ca._issue(
            tsa_key.public_key(),
            subject=authority_name(config, config.tsa_name),
            kind=CertificateKind.TSA,
            key_usage=signer_key_usage(),
            extended_key_usage=x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]),
            eku_critical=True,  # RFC 3161 §2.3: the TSA certificate's EKU must be critical
            validity=config.tsa_validity,
        )
        ca._save_keys(passphrase)
        ca.save()
        return ca

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        *,
        passphrase: bytes,
        config: PkiConfig | None = None,
        clock: Clock = _utc_now,
    ) -> CertificateAuthority:
        """Load a CA saved by :meth:`create`. ``config`` must match the one it was created with
        (the URLs are baked into the certificates already issued)."""
        path = Path(directory)

        def pair(stem: str) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
            key = serialization.load_pem_private_key((path / f"{stem}.key.pem").read_bytes(), password=passphrase)
            assert isinstance(key, rsa.RSAPrivateKey)
            cert = x509.load_pem_x509_certificate((path / f"{stem}.pem").read_bytes())
            return key, cert

        return cls(
            path,
            config=config or PkiConfig(),
            root=pair("root"),
            intermediate=pair("intermediate"),
            tsa=pair("tsa"),
            state=Register.from_json((path / "state.json").read_text(encoding="utf-8")),
            clock=clock,
        )

    def _save_keys(self, passphrase: bytes) -> None:
        enc = serialization.BestAvailableEncryption(passphrase)
        for stem, key, cert in (
            ("root", self._root_key, self.root_certificate),
            ("intermediate", self._intermediate_key, self.intermediate_certificate),
            ("tsa", self._tsa_key, self.tsa_certificate),
        ):
            _write_private(
                self.directory / f"{stem}.key.pem",
                key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc),
            )
            (self.directory / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def save(self) -> None:
        """Write the register (issued certificates, revocations, CRL numbers) atomically."""
        with self._lock:
            tmp = self.directory / "state.json.tmp"
            tmp.write_text(self._state.to_json(), encoding="utf-8")
            tmp.replace(self.directory / "state.json")

    # -- issuing ---------------------------------------------------------------------------

    def issue_person_certificate(
        self,
        public_key: CertificatePublicKeyTypes,
        *,
        full_name: str,
        position: str,
        organisation_name: str,
        organ_id: str,
        email: str | None = None,
        personal_id: str | None = None,
        validity: timedelta | None = None,
    ) -> x509.Certificate:
        """Certificate of a person who signs for an agency (e.g. the chairman, ``Chủ tịch``).

        Subject: CN = full name, title = position, O = agency name, OU = agency OrganId,
        serialNumber = the personal identification number when given.
        """
        check_organ_id(organ_id)
        check_lengths(full_name=full_name, position=position, organisation_name=organisation_name)
        attrs = [
            x509.NameAttribute(NameOID.COUNTRY_NAME, self.config.country),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation_name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, organ_id),
            x509.NameAttribute(NameOID.TITLE, position),
            x509.NameAttribute(NameOID.COMMON_NAME, full_name),
        ]
        if personal_id:
            attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, personal_id))
        return self._issue(
            public_key,
            subject=x509.Name(attrs),
            kind=CertificateKind.PERSON,
            key_usage=signer_key_usage(),
            extended_key_usage=signer_eku(),
            email=email,
            validity=validity,
        )

    def issue_organisation_certificate(
        self,
        public_key: CertificatePublicKeyTypes,
        *,
        organisation_name: str,
        organ_id: str,
        email: str | None = None,
        validity: timedelta | None = None,
    ) -> x509.Certificate:
        """Certificate of an agency's seal (con dấu): CN = O = agency name, OU = OrganId."""
        check_organ_id(organ_id)
        check_lengths(organisation_name=organisation_name)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, self.config.country),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation_name),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, organ_id),
                x509.NameAttribute(NameOID.COMMON_NAME, organisation_name),
            ]
        )
        return self._issue(
            public_key,
            subject=subject,
            kind=CertificateKind.ORGANISATION,
            key_usage=signer_key_usage(),
            extended_key_usage=signer_eku(),
            email=email,
            validity=validity,
        )

    def _issue(
        self,
        public_key: CertificatePublicKeyTypes,
        *,
        subject: x509.Name,
        kind: str,
        key_usage: x509.KeyUsage,
        extended_key_usage: x509.ExtendedKeyUsage,
        eku_critical: bool = False,
        email: str | None = None,
        validity: timedelta | None = None,
    ) -> x509.Certificate:
        cfg = self.config
        builder = (
            base_builder(
                subject,
                self.intermediate_certificate.subject,
                public_key,
                self.clock(),
                validity or cfg.signer_validity,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(key_usage, critical=True)
            .add_extension(extended_key_usage, critical=eku_critical)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._intermediate_key.public_key()),
                critical=False,
            )
            .add_extension(crl_distribution_point(cfg.intermediate_crl_url), critical=False)
            .add_extension(
                x509.AuthorityInformationAccess(
                    [
                        x509.AccessDescription(
                            x509.oid.AuthorityInformationAccessOID.OCSP,
                            x509.UniformResourceIdentifier(cfg.ocsp_url),
                        ),
                        x509.AccessDescription(
                            x509.oid.AuthorityInformationAccessOID.CA_ISSUERS,
                            x509.UniformResourceIdentifier(cfg.intermediate_cert_url),
                        ),
                    ]
                ),
                critical=False,
            )
        )
        if email:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
        cert = builder.sign(self._intermediate_key, hashes.SHA256())
        with self._lock:
            self._state.issued[format(cert.serial_number, "x")] = register_line(cert, kind, "intermediate")
            issued_dir = self.directory / "issued"
            issued_dir.mkdir(exist_ok=True)
            (issued_dir / f"{cert.serial_number:x}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            self.save()
        return cert

    # -- register and revocation -------------------------------------------------------------

    def certificate(self, serial: int) -> x509.Certificate:
        path = self.directory / "issued" / f"{serial:x}.pem"
        if serial == self.intermediate_certificate.serial_number:
            return self.intermediate_certificate
        if not path.exists():
            raise UnknownCertificate(f"serial {serial:x} was not issued here")
        return x509.load_pem_x509_certificate(path.read_bytes())

    def register_entry(self, serial: int) -> IssuedCertificate:
        try:
            return self._state.issued[format(serial, "x")]
        except KeyError:
            raise UnknownCertificate(f"serial {serial:x} was not issued here") from None

    def issued(self) -> list[IssuedCertificate]:
        return list(self._state.issued.values())

    def revoke(
        self,
        serial: int,
        *,
        reason: RevocationReason = RevocationReason.unspecified,
        revoked_at: datetime | None = None,
    ) -> Revocation:
        """Revoke a certificate: OCSP answers ``revoked`` at once, the next CRL lists it."""
        with self._lock:
            entry = self.register_entry(serial)
            if entry.revocation is None:
                when = revoked_at or self.clock()
                entry.revocation = Revocation(reason=reason.value, revoked_at=when.astimezone(UTC).isoformat())
                self.save()
            return entry.revocation

    def revocation_of(self, serial: int) -> Revocation | None:
        entry = self._state.issued.get(format(serial, "x"))
        return entry.revocation if entry else None

    def chain(self) -> list[x509.Certificate]:
        """Intermediate and root, for embedding in signatures and for validators."""
        return [self.intermediate_certificate, self.root_certificate]


def certificates_pem(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
