"""Trust (what a signature's certificate must chain to) and the revocation data that goes with
it: the Government CA's roots, known intermediates, and CRLs and OCSP answers fetched for the
certificates at hand — what signing checks a signer against and verification judges by."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (
    ExpiredError,
    NotYetValidError,
    PathBuildingError,
    PathValidationError,
    RevokedError,
)

from . import der
from .policy import CertificateExpired, CertificateNotTrusted, CertificateRevoked

__all__ = ["RevocationData", "RevocationFetch", "TrustSettings", "http_fetch"]

RevocationFetch = Callable[[str, bytes | None], bytes]
"""``fetch(url, body)``: GET when ``body`` is None (CRLs), POST an OCSP request otherwise."""


def http_fetch(url: str, body: bytes | None, *, timeout: float = 10.0) -> bytes:
    """Fetch CRLs and OCSP responses over real HTTP."""
    if body is None:
        response = httpx.get(url, timeout=timeout)
    else:
        response = httpx.post(
            url,
            content=body,
            headers={"Content-Type": "application/ocsp-request"},
            timeout=timeout,
        )
    response.raise_for_status()
    return response.content


@dataclass(frozen=True)
class RevocationData:
    crls: list[bytes] = field(default_factory=list)
    ocsps: list[bytes] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class TrustSettings:
    """Trust roots (the Government CA's roots), known intermediates, and how to get revocation
    data. Validation contexts built here never fetch on their own: revocation data is
    collected first (embedded in the PDF, or through ``fetch``) so that validating "as of" a
    past moment works the same offline and online."""

    trust_roots: list[x509.Certificate]
    other_certs: list[x509.Certificate] = field(default_factory=list)
    fetch: RevocationFetch | None = None
    revocation_mode: str = "hard-fail"

    def _known(self) -> list[x509.Certificate]:
        return [*self.trust_roots, *self.other_certs]

    def collect_revocation_data(self, certs: Iterable[x509.Certificate]) -> RevocationData:
        """CRLs (from each certificate's distribution points) and OCSP responses (from its AIA)
        for ``certs`` and their issuers, through ``fetch``."""
        data = RevocationData()
        if self.fetch is None:
            return data
        known = {c.subject.public_bytes(): c for c in self._known()}
        todo = list(certs)
        seen_serials: set[int] = set()
        seen_urls: set[str] = set()
        while todo:
            cert = todo.pop()
            if cert.serial_number in seen_serials or cert.issuer == cert.subject:
                continue
            seen_serials.add(cert.serial_number)
            issuer = known.get(cert.issuer.public_bytes())
            if issuer is not None:
                todo.append(issuer)
            for url in _crl_urls(cert):
                if url in seen_urls:
                    continue
                seen_urls.add(url)
                try:
                    data.crls.append(self.fetch(url, None))
                except Exception as exc:  # any transport or server failure: report, go on
                    data.errors.append(f"CRL {url}: {exc}")
            ocsp_url = _ocsp_url(cert)
            if ocsp_url and issuer is not None:
                request = (
                    ocsp.OCSPRequestBuilder()
                    .add_certificate(cert, issuer, hashes.SHA256())
                    .build()
                    .public_bytes(serialization.Encoding.DER)
                )
                try:
                    data.ocsps.append(self.fetch(ocsp_url, request))
                except Exception as exc:
                    data.errors.append(f"OCSP {ocsp_url}: {exc}")
        return data

    def validation_context(
        self,
        *,
        moment: datetime | None = None,
        certs_to_check: Iterable[x509.Certificate] = (),
        include_hierarchy: bool = False,
        extra: RevocationData | None = None,
        other_certs: Iterable[asn1_x509.Certificate] = (),
    ) -> ValidationContext:
        """A pyHanko/certvalidator context with revocation data for ``certs_to_check`` already
        collected. ``include_hierarchy`` (B-LT signing) also collects for the known intermediates
        and the TSA, since pyHanko embeds what validates the time-stamp's chain too."""
        to_check = list(certs_to_check)
        if include_hierarchy:
            to_check += self.other_certs
        data = self.collect_revocation_data(to_check)
        crls = [*data.crls, *(extra.crls if extra else [])]
        ocsps = [*data.ocsps, *(extra.ocsps if extra else [])]
        return ValidationContext(
            trust_roots=[der.to_asn1(c) for c in self.trust_roots],
            other_certs=[*(der.to_asn1(c) for c in self.other_certs), *other_certs],
            crls=[asn1_crl.CertificateList.load(c) for c in crls],
            ocsps=[asn1_ocsp.OCSPResponse.load(o) for o in ocsps],
            moment=moment,
            # a CRL issued after the moment still proves the certificate was not revoked then
            retroactive_revinfo=True,
            revocation_mode=self.revocation_mode,
            allow_fetching=False,
        )

    def check_signer(self, cert: asn1_x509.Certificate, *, at: datetime) -> None:
        """Refuse to sign with a certificate that is revoked, expired or not from our CA."""
        crypto_cert = x509.load_der_x509_certificate(cert.dump())
        vc = self.validation_context(moment=at, certs_to_check=[crypto_cert])
        validator = CertificateValidator(cert, validation_context=vc)
        try:
            asyncio.run(validator.async_validate_usage({"non_repudiation"}))
        except RevokedError as exc:
            raise CertificateRevoked(str(exc)) from exc
        except (ExpiredError, NotYetValidError) as exc:
            raise CertificateExpired(str(exc)) from exc
        except (PathValidationError, PathBuildingError) as exc:
            raise CertificateNotTrusted(str(exc)) from exc


def _crl_urls(cert: x509.Certificate) -> list[str]:
    try:
        dps = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    return [
        name.value for dp in dps for name in (dp.full_name or []) if isinstance(name, x509.UniformResourceIdentifier)
    ]


def _ocsp_url(cert: x509.Certificate) -> str | None:
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return None
    for desc in aia:
        if desc.access_method == x509.oid.AuthorityInformationAccessOID.OCSP:
            return str(desc.access_location.value)
    return None
