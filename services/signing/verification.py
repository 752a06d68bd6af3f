"""Verification (kiểm tra chữ ký số) of any signed PDF: per signature, who signed, whether the
certificate chains to our trust roots and was not revoked, when it was signed (and time-stamped),
whether the signed bytes are intact, and what changed after it and whether that was permitted."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import DiffResult, ModificationLevel
from pyhanko.sign.fields import enumerate_sig_fields
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.errors import NoDSSFoundError
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.settings import KeyUsageConstraints
from pyhanko.sign.validation.status import PdfSignatureStatus

from shared import clock

from .policy import (
    DEFAULT_POLICY,
    SigningPolicy,
    open_pdf,
)
from .trust import RevocationData, TrustSettings

__all__ = [
    "CertificateInfo",
    "ChangesAfter",
    "RevocationStatus",
    "SignatureReport",
    "TimestampInfo",
    "VerificationReport",
    "verify_pdf",
]

# What a signer's certificate must allow; a seal or a person both sign with nonRepudiation.
SIGNER_KEY_USAGE = KeyUsageConstraints(key_usage={"non_repudiation"})


# -- report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertificateInfo:
    subject: str
    common_name: str | None
    title: str | None
    organisation: str | None
    organ_id: str | None
    serial_hex: str
    issuer: str
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True)
class TimestampInfo:
    time: datetime
    tsa: str
    intact: bool
    trusted: bool


@dataclass(frozen=True)
class RevocationStatus:
    status: str  # "good", "revoked", "unknown"
    revoked_at: datetime | None = None
    reason: str | None = None
    checked_at: datetime | None = None  # the moment the certificate was validated for
    embedded_data: bool = False  # revocation data found inside the PDF (DSS)
    fetch_errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChangesAfter:
    """What later revisions changed after this signature, and whether its permissions allow
    it (the number field and later signatures: yes; anything else: no)."""

    later_revisions: int
    level: str  # ModificationLevel name: NONE, LTA_UPDATES, FORM_FILLING, ANNOTATIONS, OTHER
    changed_fields: tuple[str, ...]
    permitted: bool
    detail: str | None = None


@dataclass(frozen=True)
class SignatureReport:
    field_name: str
    signer_name: str | None
    certificate: CertificateInfo
    chain: tuple[str, ...]
    certification: bool  # certifies the document (DocMDP), versus an approval signature
    docmdp_permission: str | None
    intact: bool  # the signed bytes hash to what was signed
    valid: bool  # the signature value verifies
    trusted: bool  # chains to a trust root and the certificate was usable at `checked_at`
    trust_problem: str | None
    revocation: RevocationStatus
    signing_time: datetime | None  # the signer's own claim (/M)
    timestamp: TimestampInfo | None
    coverage: str
    changes: ChangesAfter
    error: str | None = None

    @property
    def ok(self) -> bool:
        return (
            self.intact and self.valid and self.trusted and self.revocation.status == "good" and self.changes.permitted
        )


@dataclass(frozen=True)
class VerificationReport:
    signatures: list[SignatureReport]
    revisions: int
    number_text: str | None

    @property
    def all_ok(self) -> bool:
        return bool(self.signatures) and all(s.ok for s in self.signatures)


def verify_pdf(
    pdf: bytes,
    *,
    trust: TrustSettings,
    at: datetime | None = None,
    policy: SigningPolicy = DEFAULT_POLICY,
) -> VerificationReport:
    """Verify every signature of ``pdf``. A signature with a trusted time-stamp is judged as of
    the time-stamp (a later revocation does not undo it); one without, as of ``at`` (now)."""
    writer = open_pdf(pdf, policy)
    reader: PdfFileReader = writer.prev
    return asyncio.run(_verify(reader, trust=trust, at=at or clock.now(), policy=policy))


async def _verify(
    reader: PdfFileReader, *, trust: TrustSettings, at: datetime, policy: SigningPolicy
) -> VerificationReport:
    try:
        dss = DocumentSecurityStore.read_dss(reader)
        embedded = RevocationData(
            crls=[c.dump() for c in _dss_items(dss.crls, asn1_crl.CertificateList)],
            ocsps=[o.dump() for o in _dss_items(dss.ocsps, asn1_ocsp.OCSPResponse)],
        )
        dss_certs = list(dss.load_certs())
    except NoDSSFoundError:
        embedded, dss_certs = RevocationData(), []
    sigs, unreadable = _embedded_signatures(reader)
    signature_fields = {s.field_name for s in sigs}
    reports = [_broken_report(name, None, exc) for name, exc in unreadable]
    for sig in sigs:
        try:
            reports.append(
                await _verify_one(
                    reader,
                    sig,
                    trust=trust,
                    at=at,
                    embedded=embedded,
                    dss_certs=dss_certs,
                    allowed_fields={policy.number_field, *signature_fields},
                )
            )
        except Exception as exc:  # a malformed signature is reported, not raised
            reports.append(_broken_report(str(sig.field_name), sig, exc))
    number = None
    try:
        for ref in reader.root["/AcroForm"]["/Fields"]:
            obj = ref.get_object()
            if obj.get("/T") == policy.number_field and str(obj.get("/V", "")).strip():
                number = str(obj["/V"])
    except KeyError:
        pass
    return VerificationReport(signatures=reports, revisions=reader.xrefs.total_revisions, number_text=number)


async def _verify_one(
    reader: PdfFileReader,
    sig: EmbeddedPdfSignature,
    *,
    trust: TrustSettings,
    at: datetime,
    embedded: RevocationData,
    dss_certs: Sequence[asn1_x509.Certificate],
    allowed_fields: set[str],
) -> SignatureReport:
    signer_cert = x509.load_der_x509_certificate(sig.signer_cert.dump())
    other = [*sig.other_embedded_certs, *dss_certs]
    others_crypto = [x509.load_der_x509_certificate(c.dump()) for c in other]
    fetched = trust.collect_revocation_data([signer_cert, *others_crypto])
    combined = RevocationData(crls=[*embedded.crls, *fetched.crls], ocsps=[*embedded.ocsps, *fetched.ocsps])
    # pass 1: integrity, changes and the time-stamp, as of `at`
    vc_now = trust.validation_context(moment=at, extra=combined, other_certs=other)
    status = await async_validate_pdf_signature(
        sig, signer_validation_context=vc_now, key_usage_settings=SIGNER_KEY_USAGE
    )
    checked_at = at
    tst = status.timestamp_validity
    if tst is not None and tst.intact and tst.valid and tst.trusted:
        # pass 2: the certificate as of the time-stamp (point-in-time validation)
        checked_at = tst.timestamp
        vc_then = trust.validation_context(moment=checked_at, extra=combined, other_certs=other)
        cert_status = await async_validate_pdf_signature(
            sig,
            signer_validation_context=vc_then,
            ts_validation_context=vc_now,
            key_usage_settings=SIGNER_KEY_USAGE,
            skip_diff=True,
        )
    else:
        cert_status = status
    return SignatureReport(
        field_name=sig.field_name,
        signer_name=_name_attr(sig.signer_cert, "common_name"),
        certificate=_cert_info(sig.signer_cert),
        chain=tuple(c.subject.human_friendly for c in (cert_status.validation_path or ())),
        certification=sig.docmdp_level is not None and _is_certification(reader, sig),
        docmdp_permission=sig.docmdp_level.name if sig.docmdp_level is not None else None,
        intact=status.intact,
        valid=status.valid,
        trusted=cert_status.trusted,
        trust_problem=(cert_status.trust_problem_indic.name if cert_status.trust_problem_indic else None),
        revocation=_revocation(cert_status, checked_at, bool(embedded.crls or embedded.ocsps), fetched.errors),
        signing_time=status.signer_reported_dt,
        timestamp=(
            TimestampInfo(
                time=tst.timestamp,
                tsa=tst.signing_cert.subject.human_friendly,
                intact=tst.intact and tst.valid,
                trusted=tst.trusted,
            )
            if tst is not None
            else None
        ),
        coverage=status.coverage.name if status.coverage else "UNCLEAR",
        changes=_changes(reader, sig, status, allowed_fields),
    )


def _changes(
    reader: PdfFileReader,
    sig: EmbeddedPdfSignature,
    status: PdfSignatureStatus,
    allowed_fields: set[str],
) -> ChangesAfter:
    later = reader.xrefs.total_revisions - 1 - sig.signed_revision
    diff = status.diff_result
    level = status.modification_level or ModificationLevel.OTHER
    if isinstance(diff, DiffResult):
        changed = tuple(sorted(diff.changed_form_fields))
        unexpected = [f for f in changed if f not in allowed_fields]
        permitted = bool(status.docmdp_ok) and not unexpected
        detail = f"fields outside the permitted ones changed: {unexpected}" if unexpected else None
    elif diff is None:
        changed, permitted, detail = (), status.docmdp_ok is not False, None
    else:
        changed, permitted, detail = (), False, str(diff)
    if level is ModificationLevel.OTHER:
        permitted = False
    return ChangesAfter(
        later_revisions=later,
        level=level.name,
        changed_fields=changed,
        permitted=permitted,
        detail=detail,
    )


def _revocation(
    status: PdfSignatureStatus,
    checked_at: datetime,
    embedded: bool,
    errors: list[str],
) -> RevocationStatus:
    details = status.revocation_details
    if details is not None:
        return RevocationStatus(
            status="revoked",
            revoked_at=details.revocation_date,
            reason=details.revocation_reason.native,
            checked_at=checked_at,
            embedded_data=embedded,
            fetch_errors=tuple(errors),
        )
    # in hard-fail mode a trusted path means revocation data was found and said "good"
    return RevocationStatus(
        status="good" if status.trusted else "unknown",
        checked_at=checked_at,
        embedded_data=embedded,
        fetch_errors=tuple(errors),
    )


def _embedded_signatures(
    reader: PdfFileReader,
) -> tuple[list[EmbeddedPdfSignature], list[tuple[str, Exception]]]:
    """The document's /Sig signatures in signing order, and those whose CMS cannot be read."""
    sigs, unreadable = [], []
    for name, _value, field_ref in enumerate_sig_fields(reader, filled_status=True):
        try:
            sig = EmbeddedPdfSignature(reader, field_ref, name)
        except Exception as exc:  # garbage in /Contents: report the field as broken
            unreadable.append((str(name), exc))
            continue
        if sig.sig_object_type == "/Sig":
            sigs.append(sig)
    sigs.sort(key=lambda s: s.signed_revision)
    return sigs, unreadable


def _broken_report(field_name: str, sig: EmbeddedPdfSignature | None, exc: Exception) -> SignatureReport:
    cert, name = _UNKNOWN_CERT, None
    if sig is not None:
        try:
            cert = _cert_info(sig.signer_cert)
            name = _name_attr(sig.signer_cert, "common_name")
        except Exception:  # the certificate itself may be what is broken
            pass
    return SignatureReport(
        field_name=field_name,
        signer_name=name,
        certificate=cert,
        chain=(),
        certification=False,
        docmdp_permission=None,
        intact=False,
        valid=False,
        trusted=False,
        trust_problem=None,
        revocation=RevocationStatus(status="unknown"),
        signing_time=None,
        timestamp=None,
        coverage="UNCLEAR",
        changes=ChangesAfter(0, ModificationLevel.OTHER.name, (), False, str(exc)),
        error=f"{type(exc).__name__}: {exc}",
    )


# -- helpers ----------------------------------------------------------------------------------

_EPOCH = datetime.min.replace(tzinfo=UTC)
_UNKNOWN_CERT = CertificateInfo("", None, None, None, None, "", "", _EPOCH, _EPOCH)


def _dss_items(refs: Iterable[Any], kind: Any) -> list[Any]:
    out = []
    for ref in refs:
        obj = ref.get_object() if hasattr(ref, "get_object") else ref
        out.append(obj if isinstance(obj, kind) else kind.load(obj.data))
    return out


def _name_attr(cert: asn1_x509.Certificate, attr: str) -> str | None:
    return cert.subject.native.get(attr)


def _cert_info(cert: asn1_x509.Certificate) -> CertificateInfo:
    from shared import organ_id as organ_ids

    subject = cert.subject.native
    ou = subject.get("organizational_unit_name")
    ous = ou if isinstance(ou, list) else [ou] if ou else []
    validity = cert["tbs_certificate"]["validity"]
    return CertificateInfo(
        subject=cert.subject.human_friendly,
        common_name=subject.get("common_name"),
        title=subject.get("title"),
        organisation=subject.get("organization_name"),
        organ_id=next((o for o in ous if organ_ids.is_valid(o)), None),
        serial_hex=format(cert.serial_number, "x"),
        issuer=cert.issuer.human_friendly,
        not_before=validity["not_before"].native,
        not_after=validity["not_after"].native,
    )


def _is_certification(reader: PdfFileReader, sig: EmbeddedPdfSignature) -> bool:
    try:
        perms = reader.root["/Perms"]
        return perms.raw_get("/DocMDP").reference == sig.sig_field.raw_get("/V").reference
    except (KeyError, AttributeError):
        return False
