"""Local stand-in for the Government CA (Ban Cơ yếu Chính phủ): root and intermediate CA, signer
certificates for people and organisations, a TSA, CRLs, OCSP and RFC 3161 time-stamps.

All state (keys, certificates, serial registry, revocations) lives in a directory chosen by the
caller, so the signing service can persist it and expose ``/pki/...`` over HTTP. CA and TSA keys
are kept on disk encrypted with a passphrase (development only: in production these keys belong
to the real CA); signers' keys never come here — only their public keys, see ``token.py``.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from shared import clock
from shared import organ_id as organ_ids

from . import der

__all__ = [
    "DOCUMENT_SIGNING_EKU",
    "CertificateAuthority",
    "CertificateKind",
    "IssuedCertificate",
    "PkiConfig",
    "PkiError",
    "Revocation",
    "RevocationReason",
    "TimestampRejected",
    "UnknownCertificate",
    "certificates_pem",
    "organ_id_of",
    "to_asn1",
]

# RFC 9336 id-kp-documentSigning; validators that know it prefer it over emailProtection.
DOCUMENT_SIGNING_EKU = ObjectIdentifier("1.3.6.1.5.5.7.3.36")

RevocationReason = x509.ReasonFlags
Clock = Callable[[], datetime]


class PkiError(Exception):
    """A CA operation that cannot be carried out."""


class UnknownCertificate(PkiError):
    """No certificate with this serial number was issued by this CA."""


class TimestampRejected(PkiError):
    """The TSA refuses a request (RFC 3161 status "rejection")."""

    def __init__(self, failure: str, text: str) -> None:
        super().__init__(text)
        self.failure = failure


def _utc_now() -> datetime:
    return clock.now()


@dataclass(frozen=True)
class PkiConfig:
    """Names, URLs and lifetimes of the local CA. ``base_url`` is where the service serves /pki."""

    base_url: str = "http://127.0.0.1:8003/pki"
    country: str = "VN"
    root_name: str = "Local Government Root CA"
    intermediate_name: str = "Local Government Signing CA"
    tsa_name: str = "Local Government Time-Stamping Authority"
    organisation: str = "Ban Cơ yếu Chính phủ (local stand-in)"
    ca_key_size: int = 3072
    tsa_key_size: int = 2048
    root_validity: timedelta = timedelta(days=20 * 365)
    intermediate_validity: timedelta = timedelta(days=10 * 365)
    tsa_validity: timedelta = timedelta(days=5 * 365)
    signer_validity: timedelta = timedelta(days=3 * 365)
    crl_validity: timedelta = timedelta(days=1)
    ocsp_validity: timedelta = timedelta(hours=1)
    tsa_policy_oid: str = "1.3.6.1.4.1.99999.1.1"  # private arc: a stand-in policy, not a real one

    @property
    def root_crl_url(self) -> str:
        return f"{self.base_url}/crl/root.crl"

    @property
    def intermediate_crl_url(self) -> str:
        return f"{self.base_url}/crl/intermediate.crl"

    @property
    def ocsp_url(self) -> str:
        return f"{self.base_url}/ocsp"

    @property
    def tsa_url(self) -> str:
        return f"{self.base_url}/tsa"

    @property
    def root_cert_url(self) -> str:
        return f"{self.base_url}/certs/root.cer"

    @property
    def intermediate_cert_url(self) -> str:
        return f"{self.base_url}/certs/intermediate.cer"


class CertificateKind:
    PERSON = "person"
    ORGANISATION = "organisation"
    TSA = "tsa"
    INTERMEDIATE = "intermediate"


@dataclass
class Revocation:
    reason: str  # a ``x509.ReasonFlags`` value, e.g. "keyCompromise"
    revoked_at: str  # ISO 8601


@dataclass
class IssuedCertificate:
    """One line of the CA's register of issued certificates."""

    serial: int
    kind: str
    subject: str
    not_before: str
    not_after: str
    issuer: str  # "root" or "intermediate"
    revocation: Revocation | None = None


@dataclass
class _State:
    issued: dict[str, IssuedCertificate] = field(default_factory=dict)  # key: serial in hex
    crl_numbers: dict[str, int] = field(default_factory=lambda: {"root": 0, "intermediate": 0})

    def to_json(self) -> str:
        return json.dumps(
            {
                "issued": {k: asdict(v) for k, v in self.issued.items()},
                "crl_numbers": self.crl_numbers,
            },
            ensure_ascii=False,
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> _State:
        raw = json.loads(text)
        issued = {}
        for key, value in raw["issued"].items():
            rev = value.pop("revocation")
            issued[key] = IssuedCertificate(**value, revocation=Revocation(**rev) if rev else None)
        return cls(issued=issued, crl_numbers=raw["crl_numbers"])


def organ_id_of(cert: x509.Certificate) -> str | None:
    """The agency identifier (mã định danh) carried in the certificate subject's OU."""
    for attr in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME):
        value = str(attr.value)
        if organ_ids.is_valid(value):
            return value
    return None


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


class CertificateAuthority:
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
        state: _State,
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
        root_name = _name(config, config.root_name)
        root_cert = (
            _base_builder(root_name, root_name, root_key.public_key(), now, config.root_validity)
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256())
        )
        inter_key = rsa.generate_private_key(public_exponent=65537, key_size=config.ca_key_size)
        inter_cert = (
            _base_builder(
                _name(config, config.intermediate_name),
                root_name,
                inter_key.public_key(),
                now,
                config.intermediate_validity,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(inter_key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
                critical=False,
            )
            .add_extension(_crl_dp(config.root_crl_url), critical=False)
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
        state = _State()
        state.issued[format(inter_cert.serial_number, "x")] = _register_line(
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
            subject=_name(config, config.tsa_name),
            kind=CertificateKind.TSA,
            key_usage=_signer_key_usage(),
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
            state=_State.from_json((path / "state.json").read_text(encoding="utf-8")),
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
        _check_organ_id(organ_id)
        _check_lengths(full_name=full_name, position=position, organisation_name=organisation_name)
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
            key_usage=_signer_key_usage(),
            extended_key_usage=_signer_eku(),
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
        _check_organ_id(organ_id)
        _check_lengths(organisation_name=organisation_name)
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
            key_usage=_signer_key_usage(),
            extended_key_usage=_signer_eku(),
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
            _base_builder(
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
            .add_extension(_crl_dp(cfg.intermediate_crl_url), critical=False)
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
            self._state.issued[format(cert.serial_number, "x")] = _register_line(cert, kind, "intermediate")
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

    # -- CRL ---------------------------------------------------------------------------------

    def build_crl(self, *, issuer: str = "intermediate", now: datetime | None = None) -> bytes:
        """A fresh DER CRL of the intermediate (end-entity certificates) or of the root
        (intermediate CA certificates), with reason codes and revocation times."""
        if issuer not in ("root", "intermediate"):
            raise PkiError(f"unknown CRL issuer {issuer!r}")
        now = now or self.clock()
        key, cert = (
            (self._root_key, self.root_certificate)
            if issuer == "root"
            else (self._intermediate_key, self.intermediate_certificate)
        )
        with self._lock:
            self._state.crl_numbers[issuer] += 1
            number = self._state.crl_numbers[issuer]
            entries = [e for e in self._state.issued.values() if e.issuer == issuer]
            self.save()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(cert.subject)
            .last_update(now)
            .next_update(now + self.config.crl_validity)
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                critical=False,
            )
        )
        for entry in entries:
            if entry.revocation is None:
                continue
            revoked_at = datetime.fromisoformat(entry.revocation.revoked_at)
            if revoked_at > now:
                continue
            revoked = x509.RevokedCertificateBuilder().serial_number(entry.serial)
            revoked = revoked.revocation_date(revoked_at)
            reason = x509.ReasonFlags(entry.revocation.reason)
            if reason is not x509.ReasonFlags.unspecified:
                # RFC 5280 §5.3.1: "unspecified" should not appear as a reason code
                revoked = revoked.add_extension(x509.CRLReason(reason), critical=False)
            builder = builder.add_revoked_certificate(revoked.build())
        return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    # -- OCSP --------------------------------------------------------------------------------

    def respond_ocsp(self, request_der: bytes, *, now: datetime | None = None) -> bytes:
        """Answer a DER OCSP request for certificates issued by the intermediate CA; the
        response is signed by the intermediate itself (RFC 6960 §4.2.2.2, CA as responder)."""
        try:
            request = ocsp.load_der_ocsp_request(request_der)
        except ValueError:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST).public_bytes(
                serialization.Encoding.DER
            )
        issuer = self.intermediate_certificate
        expected_name_hash, expected_key_hash = _issuer_hashes(issuer, request.hash_algorithm)
        if request.issuer_name_hash != expected_name_hash or request.issuer_key_hash != expected_key_hash:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED).public_bytes(
                serialization.Encoding.DER
            )
        now = now or self.clock()
        entry = self._state.issued.get(format(request.serial_number, "x"))
        builder = ocsp.OCSPResponseBuilder()
        next_update = now + self.config.ocsp_validity
        if entry is None or entry.issuer != "intermediate":
            builder = builder.add_response_by_hash(
                issuer_name_hash=request.issuer_name_hash,
                issuer_key_hash=request.issuer_key_hash,
                serial_number=request.serial_number,
                algorithm=request.hash_algorithm,
                cert_status=ocsp.OCSPCertStatus.UNKNOWN,
                this_update=now,
                next_update=next_update,
                revocation_time=None,
                revocation_reason=None,
            )
        else:
            revoked_at = datetime.fromisoformat(entry.revocation.revoked_at) if entry.revocation else None
            is_revoked = revoked_at is not None and revoked_at <= now
            reason = x509.ReasonFlags(entry.revocation.reason) if entry.revocation else None
            builder = builder.add_response(
                cert=self.certificate(entry.serial),
                issuer=issuer,
                algorithm=request.hash_algorithm,
                cert_status=(ocsp.OCSPCertStatus.REVOKED if is_revoked else ocsp.OCSPCertStatus.GOOD),
                this_update=now,
                next_update=next_update,
                revocation_time=revoked_at if is_revoked else None,
                revocation_reason=reason if is_revoked else None,
            )
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, issuer)
        for ext in request.extensions:
            if isinstance(ext.value, x509.OCSPNonce):
                builder = builder.add_extension(ext.value, critical=False)
        return builder.sign(self._intermediate_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    # -- RFC 3161 time-stamps ----------------------------------------------------------------

    def timestamp_response(self, request: tsp.TimeStampReq, *, now: datetime | None = None) -> tsp.TimeStampResp:
        """Answer a parsed time-stamp request; raises :class:`TimestampRejected` when it cannot be
        granted."""
        imprint: tsp.MessageImprint = request["message_imprint"]
        policy = request["req_policy"].native
        if policy is not None and policy != self.config.tsa_policy_oid:
            raise TimestampRejected("unaccepted_policy", f"policy {policy} not offered")
        token = self._timestamp_token(
            imprint["hash_algorithm"]["algorithm"].native,
            imprint["hashed_message"].native,
            # the token repeats the request's imprint (RFC 3161 §2.4.2), in DER
            imprint_der=imprint.dump(force=True),
            nonce=request["nonce"].native,
            with_certificates=bool(request["cert_req"].native),
            now=now,
        )
        return tsp.TimeStampResp.load(der.sequence(self._tsa_parts["granted"], token))

    def timestamp_token(
        self, digest: bytes, md_name: str, *, nonce: int | None = None, now: datetime | None = None
    ) -> bytes:
        """A time-stamp token (DER ``TimeStampToken``, certificates included) for a digest, without
        the request and response around it: what the signer in this process asks for."""
        return self._timestamp_token(md_name, digest, imprint_der=None, nonce=nonce, with_certificates=True, now=now)

    def _timestamp_token(
        self,
        md_name: str,
        digest: bytes,
        *,
        imprint_der: bytes | None,
        nonce: int | None,
        with_certificates: bool,
        now: datetime | None,
    ) -> bytes:
        if md_name not in _TSA_DIGESTS:
            raise TimestampRejected("bad_alg", f"unsupported digest {md_name}")
        if len(digest) != _TSA_DIGESTS[md_name].digest_size:
            raise TimestampRejected("bad_data_format", "digest length does not match algorithm")
        parts = self._tsa_parts
        if imprint_der is None:
            imprint_der = der.sequence(_digest_algorithm(md_name), der.octet_string(digest))
        gen_time = (now or self.clock()).astimezone(UTC)
        with self._lock:
            self._tsa_serial += 1
            serial = self._tsa_serial
        # Encoded by hand from cached parts: the same DER asn1crypto would make, for a fraction
        # of the CPU (see der.py)
        tst_info = der.sequence(
            parts["tst_head"],  # version v1, policy
            imprint_der,
            der.integer(serial),
            der.generalized_time(gen_time),
            der.integer(nonce) if nonce is not None else b"",
            parts["tst_tsa"],
        )
        signed_attrs = der.set_of(
            parts["content_type_attr"],
            der.sequence(parts["signing_time_oid"], der.tlv(0x31, der.utc_time(gen_time))),
            parts["ess_attr"],
            der.sequence(parts["message_digest_oid"], der.tlv(0x31, der.octet_string(_sha256(tst_info)))),
        )
        signature = self._tsa_key.sign(signed_attrs, padding.PKCS1v15(), hashes.SHA256())
        signer_info = der.sequence(
            parts["signer_head"],  # version v1, sid, digest algorithm
            der.retag(signed_attrs, 0xA0),  # [0] IMPLICIT
            parts["signature_algorithm"],
            der.octet_string(signature),
        )
        signed_data = der.sequence(
            parts["signed_data_head"],  # version v3, digest algorithms
            der.sequence(parts["tst_info_oid"], der.explicit(0, der.octet_string(tst_info))),
            parts["certificates"] if with_certificates else b"",
            der.tlv(0x31, signer_info),
        )
        return der.sequence(parts["signed_data_oid"], der.explicit(0, signed_data))

    @property
    def _tsa_parts(self) -> dict[str, bytes]:
        """DER of the parts of every time-stamp token that never change."""
        cached = getattr(self, "_tsa_parts_cache", None)
        if cached is None or cached[0] is not self.tsa_certificate:
            tsa = to_asn1(self.tsa_certificate)
            # ESS signing-certificate-v2 binds the token to this TSA certificate (RFC 5816)
            ess = tsp.SigningCertificateV2(
                {"certs": [{"hash_algorithm": {"algorithm": "sha256"}, "cert_hash": _sha256(tsa.dump())}]}
            )
            sid = cms.SignerIdentifier(
                name="issuer_and_serial_number",
                value={"issuer": tsa.issuer, "serial_number": tsa.serial_number},
            )
            chain = (tsa, to_asn1(self.intermediate_certificate))
            certificates = cms.CertificateSet([cms.CertificateChoices(name="certificate", value=c) for c in chain])
            parts = {
                "granted": tsp.PKIStatusInfo({"status": "granted"}).dump(),
                "tst_head": der.integer(1) + core.ObjectIdentifier(self.config.tsa_policy_oid).dump(),
                "tst_tsa": der.explicit(0, asn1_x509.GeneralName(name="directory_name", value=tsa.subject).dump()),
                "content_type_attr": _attr("content_type", "tst_info").dump(),
                "signing_time_oid": cms.CMSAttributeType("signing_time").dump(),
                "message_digest_oid": cms.CMSAttributeType("message_digest").dump(),
                "ess_attr": _attr("signing_certificate_v2", ess).dump(),
                "signer_head": der.integer(1) + sid.dump() + _digest_algorithm("sha256"),
                "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "sha256_rsa"}).dump(),
                "signed_data_head": der.integer(3) + der.tlv(0x31, _digest_algorithm("sha256")),
                "tst_info_oid": cms.ContentType("tst_info").dump(),
                "certificates": der.retag(certificates.dump(), 0xA0),  # [0] IMPLICIT
                "signed_data_oid": cms.ContentType("signed_data").dump(),
            }
            cached = (self.tsa_certificate, parts)
            self._tsa_parts_cache = cached
        return cached[1]

    def respond_timestamp(self, request_der: bytes, *, now: datetime | None = None) -> bytes:
        """RFC 3161 over bytes: DER ``TimeStampReq`` in, DER ``TimeStampResp`` out."""
        try:
            request = tsp.TimeStampReq.load(request_der)
            _ = request.native  # force a full parse so garbage is refused here
        except (ValueError, TypeError):
            return _tsa_rejection("bad_request", "not a DER TimeStampReq")
        try:
            return self.timestamp_response(request, now=now).dump()
        except TimestampRejected as exc:
            return _tsa_rejection(exc.failure, str(exc))

    # -- HTTP-shaped entry point -----------------------------------------------------------

    def handle(self, url: str, body: bytes | None = None) -> tuple[bytes, str]:
        """Serve a ``/pki`` URL the way the service's HTTP endpoints will: CRLs and CA
        certificates by GET (``body`` None), OCSP and RFC 3161 by POST. Returns the body and
        its media type; raises :class:`UnknownCertificate` for an unknown path (→ 404)."""
        cfg = self.config
        routes_get = {
            cfg.intermediate_crl_url: lambda: (self.build_crl(issuer="intermediate"), "application/pkix-crl"),
            cfg.root_crl_url: lambda: (self.build_crl(issuer="root"), "application/pkix-crl"),
            cfg.root_cert_url: lambda: (
                self.root_certificate.public_bytes(serialization.Encoding.DER),
                "application/pkix-cert",
            ),
            cfg.intermediate_cert_url: lambda: (
                self.intermediate_certificate.public_bytes(serialization.Encoding.DER),
                "application/pkix-cert",
            ),
        }
        if body is None and url in routes_get:
            return routes_get[url]()
        if body is not None and url == cfg.ocsp_url:
            return self.respond_ocsp(body), "application/ocsp-response"
        if body is not None and url == cfg.tsa_url:
            return self.respond_timestamp(body), "application/timestamp-reply"
        raise UnknownCertificate(f"nothing served at {url}")

    def in_process_fetch(self) -> Callable[[str, bytes | None], bytes]:
        """A revocation fetcher for validators that reaches this CA without HTTP (tests,
        and the signing service talking to its own CA)."""

        def fetch(url: str, body: bytes | None) -> bytes:
            return self.handle(url, body)[0]

        return fetch

    # -- asn1crypto views (pyHanko speaks asn1crypto) --------------------------------------

    def chain(self) -> list[x509.Certificate]:
        """Intermediate and root, for embedding in signatures and for validators."""
        return [self.intermediate_certificate, self.root_certificate]


# -- helpers ---------------------------------------------------------------------------------

_TSA_DIGESTS: dict[str, hashes.HashAlgorithm] = {
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}


@functools.cache
def _digest_algorithm(md_name: str) -> bytes:
    return algos.DigestAlgorithm({"algorithm": md_name}).dump()


def _sha256(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize()


def to_asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _attr(name: str, value: object) -> cms.CMSAttribute:
    return cms.CMSAttribute({"type": name, "values": (value,)})


def _tsa_rejection(failure: str, text: str) -> bytes:
    status = tsp.PKIStatusInfo(
        {
            "status": "rejection",
            "status_string": [text],
            "fail_info": tsp.PKIFailureInfo({failure}),
        }
    ).dump()
    # asn1crypto insists on a token when building a TimeStampResp; RFC 3161 has none on
    # rejection, so the SEQUENCE { status } is written by hand
    return b"\x30" + _der_length(len(status)) + status


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _name(config: PkiConfig, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, config.country),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, config.organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _base_builder(
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


def _ca_key_usage() -> x509.KeyUsage:
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


def _signer_key_usage() -> x509.KeyUsage:
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


def _signer_eku() -> x509.ExtendedKeyUsage:
    # emailProtection is what NSS (pdfsig) checks for document signers; documentSigning is
    # the purpose-built one from RFC 9336
    return x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, DOCUMENT_SIGNING_EKU])


def _crl_dp(url: str) -> x509.CRLDistributionPoints:
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


def _register_line(cert: x509.Certificate, kind: str, issuer: str) -> IssuedCertificate:
    return IssuedCertificate(
        serial=cert.serial_number,
        kind=kind,
        subject=cert.subject.rfc4514_string(),
        not_before=cert.not_valid_before_utc.isoformat(),
        not_after=cert.not_valid_after_utc.isoformat(),
        issuer=issuer,
    )


def _check_lengths(**values: str | None) -> None:
    # X.520 upper bounds (ub-common-name etc.): 64 characters
    for name, value in values.items():
        if value is not None and not 1 <= len(value) <= 64:
            raise PkiError(f"{name} must be 1 to 64 characters, got {len(value)}")


def _check_organ_id(organ_id: str) -> None:
    if not organ_ids.is_valid(organ_id):
        raise PkiError(f"not an agency identifier (OrganId): {organ_id!r}")


def _issuer_hashes(issuer: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    name_hash = hashes.Hash(algorithm)
    name_hash.update(issuer.subject.public_bytes())
    spki = issuer.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    # the key hash covers the BIT STRING contents of subjectPublicKey, not the whole SPKI
    bit_string = asn1_x509.PublicKeyInfo.load(spki)["public_key"].contents[1:]
    key_hash = hashes.Hash(algorithm)
    key_hash.update(bit_string)
    return name_hash.finalize(), key_hash.finalize()


def certificates_pem(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
