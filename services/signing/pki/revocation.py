"""Revocation status as the CA publishes it: CRLs of the root and of the intermediate, and OCSP
answers for the certificates the intermediate issued."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import ocsp

from .config import PkiConfig
from .register import PkiError, Register

__all__ = ["CrlAndOcsp"]


class CrlAndOcsp:
    """The CA's revocation services, mixed into :class:`~.authority.CertificateAuthority`: they
    sign with its keys and read its register (and its ``certificate``/``save``)."""

    config: PkiConfig
    clock: Callable[[], datetime]
    root_certificate: x509.Certificate
    intermediate_certificate: x509.Certificate
    _root_key: rsa.RSAPrivateKey
    _intermediate_key: rsa.RSAPrivateKey
    _state: Register
    _lock: threading.RLock

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


def _issuer_hashes(issuer: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    name_hash = hashes.Hash(algorithm)
    name_hash.update(issuer.subject.public_bytes())
    spki = issuer.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    # the key hash covers the BIT STRING contents of subjectPublicKey, not the whole SPKI
    bit_string = asn1_x509.PublicKeyInfo.load(spki)["public_key"].contents[1:]
    key_hash = hashes.Hash(algorithm)
    key_hash.update(bit_string)
    return name_hash.finalize(), key_hash.finalize()
