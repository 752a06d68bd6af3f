"""PAdES signing (ký số) of official documents per Decree 30/2020/NĐ-CP: the person's signature,
the organisation's seal, attachments and batches, into the fields ``drafts.py`` prepares — PAdES
B-T by default (signature time-stamp), B-LT on request (revocation data embedded in the DSS)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from PIL import Image
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields as sig_fields
from pyhanko.sign.fields import FieldMDPAction, FieldMDPSpec, MDPPerm, SigFieldSpec, SigSeedSubFilter
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers import PdfSignatureMetadata, PdfSigner, Signer
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko.sign.signers.pdf_signer import DSSContentSettings, SigDSSPlacementPreference
from pyhanko.sign.timestamps import TimeStamper

from shared import clock

from . import stamps
from .drafts import DEFAULT_LAYOUT, DraftLayout, add_draft_fields, field_by_name, signature_count
from .fonts import StampTextNotSupported, font
from .policy import (
    DEFAULT_POLICY,
    CertificateExpired,
    InvalidAppearance,
    InvalidNumberText,
    SealNotOfYourAgency,
    SigningPolicy,
    SigningRefused,
    WrongSigningOrder,
    open_pdf,
)
from .stamps import DEFAULT_RULES, AppearanceRules, PrerenderedStyle
from .trust import TrustSettings

__all__ = [
    "BatchItem",
    "sign_batch",
    "sign_pdf",
]

Kind = Literal["person", "organisation", "attachment"]
Level = Literal["B-T", "B-LT"]


def _cert_value(cert: asn1_x509.Certificate, attr: str) -> str | None:
    for rdn in cert.subject.chosen:
        for type_value in rdn:
            if type_value["type"].native == attr:
                return str(type_value["value"].native)
    return None


@dataclass
class _Job:
    """What every document of one signing call shares: the signer, the appearance, the
    validation context — built once per batch."""

    signer: Signer
    kind: Kind
    field_name: str
    level: Level
    timestamper: TimeStamper | None
    trust: TrustSettings | None
    policy: SigningPolicy
    layout: DraftLayout
    rules: AppearanceRules
    appearance: Any  # stamps.TemplateAppearance for person/organisation
    number_text: str | None = None
    validation_context: Any = None
    meta: PdfSignatureMetadata | None = None


def _make_job(
    *,
    signer: Signer,
    kind: Kind,
    field_name: str | None,
    level: Level,
    timestamper: TimeStamper | None,
    trust: TrustSettings | None,
    acting_organ_id: str | None,
    title_lines: Sequence[str] | None,
    full_name: str | None,
    agency_name: str | None,
    number_text: str | None,
    appearance_image: Image.Image | None,
    policy: SigningPolicy,
    layout: DraftLayout,
    rules: AppearanceRules,
    signing_time: datetime,
) -> _Job:
    if kind not in ("person", "organisation", "attachment"):
        raise ValueError(f"unknown kind {kind!r}")
    if level not in ("B-T", "B-LT"):
        raise ValueError(f"unknown PAdES level {level!r}")
    if timestamper is None:
        raise ValueError("PAdES B-T and B-LT need a time-stamper")
    cert: asn1_x509.Certificate = signer.signing_cert
    _check_validity_period(cert, signing_time)
    if trust is not None:
        trust.check_signer(cert, at=signing_time)
    if kind in ("organisation", "attachment") and acting_organ_id is not None:
        organ_id = _cert_value(cert, "organizational_unit_name")
        if organ_id != acting_organ_id:
            raise SealNotOfYourAgency(f"the seal belongs to agency {organ_id}, not to {acting_organ_id}")
    field_name = (
        field_name
        or {
            "person": policy.person_field,
            "organisation": policy.organisation_field,
            "attachment": policy.attachment_field,
        }[kind]
    )
    try:
        if kind == "person":
            titles = tuple(title_lines or (_cert_value(cert, "title") or "",))
            name = full_name or _cert_value(cert, "common_name") or ""
            if appearance_image is not None:  # a scanned signature supplied by the signer
                appearance: Any = stamps.person_appearance(
                    title_lines=titles,
                    full_name=name,
                    image=appearance_image,
                    geometry=layout.person_geometry,
                    title_slots=layout.title_lines,
                    rules=rules,
                )
            else:
                appearance = stamps.cached_person_appearance(
                    titles, name, layout.person_geometry, layout.title_lines, rules
                )
        elif kind == "organisation":
            agency = agency_name or _cert_value(cert, "organization_name") or ""
            if appearance_image is not None:  # the agency's registered seal image
                appearance = stamps.seal_appearance(agency_name=agency, image=appearance_image, rules=rules)
            else:
                appearance = stamps.cached_seal_appearance(agency, rules)
        else:
            appearance = None
            if not number_text:
                raise InvalidNumberText("an attachment's stamp needs the main document's number")
            font(rules.text_font).check(number_text)
    except StampTextNotSupported as exc:
        raise InvalidNumberText(str(exc)) from exc
    except ValueError as exc:  # too many title lines for the layout
        raise InvalidAppearance(str(exc)) from exc
    job = _Job(
        signer=signer,
        kind=kind,
        field_name=field_name,
        level=level,
        timestamper=timestamper,
        trust=trust,
        policy=policy,
        layout=layout,
        rules=rules,
        appearance=appearance,
        number_text=number_text,
    )
    if level == "B-LT":
        if trust is None:
            raise ValueError("B-LT needs trust settings to collect revocation data")
        job.validation_context = trust.validation_context(
            certs_to_check=[x509.load_der_x509_certificate(cert.dump())], include_hierarchy=True
        )
    job.meta = PdfSignatureMetadata(
        field_name=field_name,
        md_algorithm="sha256",
        subfilter=SigSeedSubFilter.PADES,
        # The person's signature certifies the document (DocMDP P=2, "form filling and
        # signing"): viewers then flag any other change. Its field's /Lock (FieldMDP, set by
        # prepare_draft) narrows form filling to the number field and the seal. An approval
        # signature with FieldMDP alone would not stop new annotations or page edits.
        certify=kind == "person",
        docmdp_permissions=MDPPerm.FILL_FORMS,
        embed_validation_info=level == "B-LT",
        validation_context=job.validation_context,
        # one revision per signature: DSS written with the signature, no VRI needed
        dss_settings=DSSContentSettings(placement=SigDSSPlacementPreference.TOGETHER_WITH_SIGNATURE, include_vri=False),
    )
    return job


def _check_validity_period(cert: asn1_x509.Certificate, at: datetime) -> None:
    validity = cert["tbs_certificate"]["validity"]
    if at < validity["not_before"].native or at > validity["not_after"].native:
        raise CertificateExpired(
            f"certificate valid {validity['not_before'].native:%Y-%m-%d} to "
            f"{validity['not_after'].native:%Y-%m-%d}, not at {at:%Y-%m-%d %H:%M}"
        )


def _prepare_fields_for(writer: IncrementalPdfFileWriter, job: _Job) -> None:
    reader = writer.prev
    existing = signature_count(reader)
    if job.kind == "person":
        if existing:
            raise WrongSigningOrder("the person signs first; this document is already signed")
        # a draft that skipped prepare_draft gets its fields in the signature's own revision
        add_draft_fields(writer, job.layout, job.policy, job.rules)
    elif job.kind == "organisation":
        ref = field_by_name(writer.root, job.field_name)
        if ref is None:
            raise WrongSigningOrder("no seal field: the person must sign the prepared draft first")
        if "/V" in ref.get_object():
            raise WrongSigningOrder("the organisation has already signed this document")
        person = field_by_name(writer.root, job.policy.person_field)
        if person is None or "/V" not in person.get_object():
            raise WrongSigningOrder("the person signs before the organisation")
        number = field_by_name(writer.root, job.policy.number_field)
        if number is None or not str(number.get_object().get("/V", "")).strip():
            raise WrongSigningOrder("the clerk writes the number/symbol before the seal")
    else:
        if field_by_name(writer.root, job.field_name) is None:
            x0, y0, x1, y1 = _media_box(writer, 0)
            rect = job.layout.attachment_rect(x1 - x0, y1 - y0, job.rules)
            rect = (rect[0] + x0, rect[1] + y0, rect[2] + x0, rect[3] + y0)
            sig_fields.append_signature_field(
                writer,
                SigFieldSpec(
                    sig_field_name=job.field_name,
                    on_page=0,
                    box=tuple(round(v, 2) for v in rect),
                    readable_field_name="Chữ ký số của cơ quan trên tệp đính kèm",
                    field_mdp_spec=FieldMDPSpec(FieldMDPAction.ALL),
                ),
            )


def _media_box(writer: IncrementalPdfFileWriter, page_index: int) -> tuple[float, ...]:
    page_ref, _ = writer.find_page_for_modification(page_index)
    node = page_ref.get_object()
    while node is not None:  # /MediaBox is inheritable from the page tree
        if "/MediaBox" in node:
            return tuple(float(v) for v in node["/MediaBox"])
        node = node.get("/Parent")
    return (0.0, 0.0, 595.28, 841.89)


async def _sign_document(pdf: bytes | IncrementalPdfFileWriter, job: _Job, signing_time: datetime) -> bytes:
    writer = pdf if isinstance(pdf, IncrementalPdfFileWriter) else open_pdf(pdf, job.policy)
    _prepare_fields_for(writer, job)
    if job.kind == "attachment":
        assert job.number_text is not None
        appearance: Any = stamps.attachment_appearance(
            number_text=job.number_text, signed_at=signing_time, rules=job.rules
        )
    else:
        appearance = job.appearance
    assert job.meta is not None
    pdf_signer = PdfSigner(
        job.meta,
        job.signer,
        timestamper=job.timestamper,
        stamp_style=PrerenderedStyle(appearance=appearance),
    )
    try:
        session = pdf_signer.init_signing_session(writer, existing_fields_only=True)
        # one instant for /M, the CMS and the attachment stamp
        session.system_time = signing_time
        validation_info = await session.perform_presign_validation(writer)
        tbs = session.prepare_tbs_document(validation_info=validation_info, bytes_reserved=job.policy.bytes_reserved)
        prepared, output = tbs.digest_tbs_document()
        post = await tbs.perform_signature(
            document_digest=prepared.document_digest,
            pdf_cms_signed_attrs=PdfCMSSignedAttributes(signing_time=signing_time),
        )
        await post.post_signature_processing(output)
    except SigningError as exc:
        raise WrongSigningOrder(f"pyHanko refused to sign: {exc}") from exc
    return output.getvalue()


def sign_pdf(
    pdf: bytes | IncrementalPdfFileWriter,
    *,
    signer: Signer,
    kind: Kind,
    timestamper: TimeStamper,
    field_name: str | None = None,
    level: Level = "B-T",
    trust: TrustSettings | None = None,
    acting_organ_id: str | None = None,
    title_lines: Sequence[str] | None = None,
    full_name: str | None = None,
    agency_name: str | None = None,
    number_text: str | None = None,
    appearance_image: Image.Image | None = None,
    signing_time: datetime | None = None,
    policy: SigningPolicy = DEFAULT_POLICY,
    layout: DraftLayout = DEFAULT_LAYOUT,
    rules: AppearanceRules = DEFAULT_RULES,
) -> bytes:
    """Sign one PDF. ``kind``: ``person`` (certifies, blue signature between ``title_lines``
    and ``full_name`` — both default to the certificate's title and CN), ``organisation`` (red
    seal over the person's signature, after the number is filled), ``attachment`` (text stamp
    with ``number_text`` and the signing time, top right of page 1). ``trust`` checks the
    certificate (chain, expiry, revocation) before signing and feeds B-LT. ``pdf`` may be what
    :func:`open_pdf` made of the bytes, so a caller that checked them first parses them once."""
    signing_time = signing_time or clock.now()
    job = _make_job(
        signer=signer,
        kind=kind,
        field_name=field_name,
        level=level,
        timestamper=timestamper,
        trust=trust,
        acting_organ_id=acting_organ_id,
        title_lines=title_lines,
        full_name=full_name,
        agency_name=agency_name,
        number_text=number_text,
        appearance_image=appearance_image,
        policy=policy,
        layout=layout,
        rules=rules,
        signing_time=signing_time,
    )
    return asyncio.run(_sign_document(pdf, job, signing_time))


@dataclass
class BatchItem:
    """Outcome for one document of a batch: the signed bytes or the refusal."""

    index: int
    pdf: bytes | None = None
    error: SigningRefused | None = None


@dataclass
class BatchResult:
    items: list[BatchItem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def signed(self) -> int:
        return sum(1 for i in self.items if i.pdf is not None)


def sign_batch(
    pdfs: Sequence[bytes],
    *,
    signer: Signer,
    kind: Kind,
    timestamper: TimeStamper,
    max_batch: int = 100,
    field_name: str | None = None,
    level: Level = "B-T",
    trust: TrustSettings | None = None,
    acting_organ_id: str | None = None,
    title_lines: Sequence[str] | None = None,
    full_name: str | None = None,
    agency_name: str | None = None,
    number_text: str | None = None,
    appearance_image: Image.Image | None = None,
    signing_time: datetime | None = None,
    policy: SigningPolicy = DEFAULT_POLICY,
    layout: DraftLayout = DEFAULT_LAYOUT,
    rules: AppearanceRules = DEFAULT_RULES,
) -> BatchResult:
    """Sign up to ``max_batch`` PDFs with one signer (same options as :func:`sign_pdf`): the
    certificate check, the appearance, the validation context and the token session are set up
    once. A document that cannot be signed is reported in its item; the others go on."""
    if len(pdfs) > max_batch:
        raise ValueError(f"at most {max_batch} documents per batch")
    signing_time = signing_time or clock.now()
    started = time.perf_counter()
    job = _make_job(
        signer=signer,
        kind=kind,
        field_name=field_name,
        level=level,
        timestamper=timestamper,
        trust=trust,
        acting_organ_id=acting_organ_id,
        title_lines=title_lines,
        full_name=full_name,
        agency_name=agency_name,
        number_text=number_text,
        appearance_image=appearance_image,
        policy=policy,
        layout=layout,
        rules=rules,
        signing_time=signing_time,
    )

    async def run() -> list[BatchItem]:
        items = []
        for index, pdf in enumerate(pdfs):
            try:
                items.append(BatchItem(index, pdf=await _sign_document(pdf, job, signing_time)))
            except SigningRefused as exc:
                items.append(BatchItem(index, error=exc))
        return items

    items = asyncio.run(run())
    return BatchResult(items=items, seconds=time.perf_counter() - started)
