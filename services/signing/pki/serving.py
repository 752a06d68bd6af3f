"""The CA's ``/pki`` URLs (CRLs, CA certificates, OCSP, the TSA) as bytes in and out: what the
HTTP endpoints serve, and what validators in this process fetch without HTTP."""

from __future__ import annotations

from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .config import PkiConfig
from .register import UnknownCertificate

__all__ = ["PkiServing"]


class PkiServing:
    """Mixed into :class:`~.authority.CertificateAuthority`, whose CRLs, OCSP and TSA it serves."""

    config: PkiConfig
    root_certificate: x509.Certificate
    intermediate_certificate: x509.Certificate

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
