"""The RFC 3161 time-stamping authority (TSA) of the local CA, and the pyHanko time-stamper that
asks it in-process."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pyhanko.sign.timestamps import TimeStamper
from pyhanko.sign.timestamps.common_utils import get_nonce

from .. import der
from .config import PkiConfig
from .register import PkiError

__all__ = ["LocalTimeStamper", "TimeStamping", "TimestampRejected"]


class TimestampRejected(PkiError):
    """The TSA refuses a request (RFC 3161 status "rejection")."""

    def __init__(self, failure: str, text: str) -> None:
        super().__init__(text)
        self.failure = failure


class TimeStamping:
    """The TSA, mixed into :class:`~.authority.CertificateAuthority`, which keeps its key and
    certificate with its own."""

    config: PkiConfig
    clock: Callable[[], datetime]
    intermediate_certificate: x509.Certificate
    tsa_certificate: x509.Certificate
    _tsa_key: rsa.RSAPrivateKey
    _tsa_serial: int
    _lock: threading.RLock

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
            tsa = der.to_asn1(self.tsa_certificate)
            # ESS signing-certificate-v2 binds the token to this TSA certificate (RFC 5816)
            ess = tsp.SigningCertificateV2(
                {"certs": [{"hash_algorithm": {"algorithm": "sha256"}, "cert_hash": _sha256(tsa.dump())}]}
            )
            sid = cms.SignerIdentifier(
                name="issuer_and_serial_number",
                value={"issuer": tsa.issuer, "serial_number": tsa.serial_number},
            )
            chain = (tsa, der.to_asn1(self.intermediate_certificate))
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


class LocalTimeStamper(TimeStamper):
    """RFC 3161 time-stamps from our own TSA, in-process (no HTTP round trip)."""

    def __init__(self, ca: TimeStamping) -> None:
        super().__init__(include_nonce=True)
        self._ca = ca

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        return self._ca.timestamp_response(req)

    async def async_timestamp(self, message_digest: bytes, md_algorithm: str) -> cms.ContentInfo:
        # The same token the TSA would answer a request with, without building that request
        # and unpacking the response in between: the TSA is in this process.
        nonce = get_nonce() if self.include_nonce else None
        return der.EncodedContentInfo.of(self._ca.timestamp_token(message_digest, md_algorithm, nonce=nonce))


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
    return der.sequence(status)
