"""Drafts for signing (Decree 30/2020/NĐ-CP): the prepared fields of a draft — the clerk's
number/symbol, the person's signature, the organisation's seal — where they go on the page, and
the clerk's step that writes the number/symbol into its field."""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO
from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name, pdf_string
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields as sig_fields
from pyhanko.sign.fields import FieldMDPAction, FieldMDPSpec, MDPPerm, SigFieldSpec

from . import stamps
from .fonts import StampTextNotSupported
from .policy import (
    DEFAULT_POLICY,
    InvalidNumberText,
    NumberAlreadyFilled,
    NumberFieldMissing,
    SigningPolicy,
    WrongSigningOrder,
    open_pdf,
)
from .stamps import DEFAULT_RULES, AppearanceRules, PersonBlockGeometry

__all__ = [
    "DEFAULT_LAYOUT",
    "DraftLayout",
    "add_draft_fields",
    "field_by_name",
    "fill_number_field",
    "number_text_of",
    "prepare_draft",
    "signature_count",
]


@dataclass(frozen=True)
class DraftLayout:
    """Where the prepared fields go (PDF points, origin bottom-left, A4 defaults following the
    Decree 30 layout: number/symbol in the left column under the agency name, the signature
    block in the right column after the text)."""

    number_page: int = 0
    number_rect: tuple[float, float, float, float] = (112.0, 688.0, 280.0, 706.0)
    signature_page: int = -1
    person_origin: tuple[float, float] = (320.0, 120.0)
    person_geometry: PersonBlockGeometry = PersonBlockGeometry()
    title_lines: int = 2
    attachment_margins: tuple[float, float] = (42.5, 22.7)  # right 15 mm, top 8 mm: in the margin

    def person_rect(self) -> tuple[float, float, float, float]:
        x, y = self.person_origin
        g = self.person_geometry
        return (x, y, x + g.width, y + g.height)

    def seal_rect(self, rules: AppearanceRules = DEFAULT_RULES) -> tuple[float, float, float, float]:
        """The seal at real size, its right edge a third of the way into the signature image,
        vertically centred on it."""
        ix, iy, iw, ih = self.person_geometry.image_box(self.title_lines, rules)
        x0, y0 = self.person_origin
        d = rules.seal_diameter_mm * stamps.MM
        right = x0 + ix + iw * rules.seal_covers_fraction
        cy = y0 + iy + ih / 2
        return (right - d, cy - d / 2, right, cy + d / 2)

    def attachment_rect(
        self, page_width: float, page_height: float, rules: AppearanceRules = DEFAULT_RULES
    ) -> tuple[float, float, float, float]:
        w, h = stamps.attachment_box_size(rules)
        right, top = self.attachment_margins
        return (page_width - right - w, page_height - top - h, page_width - right, page_height - top)


DEFAULT_LAYOUT = DraftLayout()


def _output(writer: IncrementalPdfFileWriter) -> bytes:
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


# -- draft preparation ------------------------------------------------------------------------


def field_by_name(reader_root: Any, name: str) -> generic.IndirectObject | None:
    try:
        fields = reader_root["/AcroForm"]["/Fields"]
    except KeyError:
        return None
    for ref in fields:
        if ref.get_object().get("/T") == name:
            return ref
    return None


def _ensure_acroform(writer: IncrementalPdfFileWriter) -> generic.DictionaryObject:
    root = writer.root
    try:
        form = root["/AcroForm"]
    except KeyError:
        form = generic.DictionaryObject({pdf_name("/Fields"): generic.ArrayObject()})
        root[pdf_name("/AcroForm")] = writer.add_object(form)
        writer.update_root()
        form = root["/AcroForm"]
    # /DA of text fields names a font that must be in /DR; our own appearance streams carry
    # the embedded DejaVu font, Helvetica only keeps viewers that regenerate them well-formed.
    if "/DR" not in form:
        form[pdf_name("/DR")] = generic.DictionaryObject(
            {
                pdf_name("/Font"): generic.DictionaryObject(
                    {
                        pdf_name("/Helv"): generic.DictionaryObject(
                            {
                                pdf_name("/Type"): pdf_name("/Font"),
                                pdf_name("/Subtype"): pdf_name("/Type1"),
                                pdf_name("/BaseFont"): pdf_name("/Helvetica"),
                            }
                        )
                    }
                )
            }
        )
        writer.update_container(form)
    return form


def _add_number_field(writer: IncrementalPdfFileWriter, layout: DraftLayout, policy: SigningPolicy) -> None:
    form = _ensure_acroform(writer)
    page_ref, _ = writer.find_page_for_modification(layout.number_page)
    x0, y0, x1, y1 = layout.number_rect
    empty_ap = generic.StreamObject(
        {
            pdf_name("/Type"): pdf_name("/XObject"),
            pdf_name("/Subtype"): pdf_name("/Form"),
            pdf_name("/BBox"): generic.ArrayObject([generic.FloatObject(v) for v in (0, 0, x1 - x0, y1 - y0)]),
        },
        stream_data=b"",
    )
    text_field = generic.DictionaryObject(
        {
            pdf_name("/FT"): pdf_name("/Tx"),
            pdf_name("/T"): pdf_string(policy.number_field),
            pdf_name("/TU"): pdf_string("Số và ký hiệu văn bản"),
            # read-only for people in viewers; the clerk's number is written by the system
            pdf_name("/Ff"): generic.NumberObject(1),
            pdf_name("/DA"): pdf_string("/Helv 0 Tf 0 g"),
            pdf_name("/Type"): pdf_name("/Annot"),
            pdf_name("/Subtype"): pdf_name("/Widget"),
            pdf_name("/F"): generic.NumberObject(4),
            pdf_name("/Rect"): generic.ArrayObject([generic.FloatObject(v) for v in (x0, y0, x1, y1)]),
            pdf_name("/P"): page_ref,
            pdf_name("/AP"): generic.DictionaryObject({pdf_name("/N"): writer.add_object(empty_ap)}),
        }
    )
    ref = writer.add_object(text_field)
    _append_to_array(writer, form, "/Fields", ref)
    _append_to_array(writer, page_ref.get_object(), "/Annots", ref)


def _append_to_array(
    writer: IncrementalPdfFileWriter,
    owner: generic.DictionaryObject,
    key: str,
    ref: generic.IndirectObject,
) -> None:
    """Append to an array that may be direct in ``owner`` or an indirect object of its own,
    marking whichever object changed for the incremental update."""
    if key not in owner:
        owner[pdf_name(key)] = generic.ArrayObject([ref])
        writer.update_container(owner)
        return
    owner[key].append(ref)
    if isinstance(owner.raw_get(key), generic.IndirectObject):
        writer.update_container(owner[key])
    else:
        writer.update_container(owner)


def add_draft_fields(
    writer: IncrementalPdfFileWriter,
    layout: DraftLayout,
    policy: SigningPolicy,
    rules: AppearanceRules,
) -> None:
    if field_by_name(writer.root, policy.number_field) is None:
        _add_number_field(writer, layout, policy)
    if field_by_name(writer.root, policy.person_field) is None:
        sig_fields.append_signature_field(
            writer,
            SigFieldSpec(
                sig_field_name=policy.person_field,
                on_page=layout.signature_page,
                box=layout.person_rect(),
                readable_field_name="Chữ ký của người có thẩm quyền",
                # After the person signs, only the clerk's number and the seal may follow.
                field_mdp_spec=FieldMDPSpec(
                    FieldMDPAction.EXCLUDE,
                    fields=[policy.number_field, policy.organisation_field],
                ),
                doc_mdp_update_value=MDPPerm.FILL_FORMS,
            ),
        )
    if field_by_name(writer.root, policy.organisation_field) is None:
        sig_fields.append_signature_field(
            writer,
            SigFieldSpec(
                sig_field_name=policy.organisation_field,
                on_page=layout.signature_page,
                box=layout.seal_rect(rules),
                readable_field_name="Chữ ký số của cơ quan, tổ chức",
                field_mdp_spec=FieldMDPSpec(FieldMDPAction.ALL),
            ),
        )


def prepare_draft(
    pdf: bytes,
    *,
    layout: DraftLayout = DEFAULT_LAYOUT,
    policy: SigningPolicy = DEFAULT_POLICY,
    rules: AppearanceRules = DEFAULT_RULES,
) -> bytes:
    """Add the number/symbol text field and the empty signature fields of the person and of
    the organisation (seal over the left third of the signature image) in one revision."""
    writer = open_pdf(pdf, policy)
    if signature_count(writer.prev):
        raise WrongSigningOrder("the draft is already signed")
    add_draft_fields(writer, layout, policy, rules)
    return _output(writer)


# -- number/symbol --------------------------------------------------------------------------


def fill_number_field(
    pdf: bytes,
    *,
    number_text: str,
    policy: SigningPolicy = DEFAULT_POLICY,
    rules: AppearanceRules = DEFAULT_RULES,
) -> bytes:
    """The clerk's step (văn thư cấp số): write the number/symbol into the prepared field in an
    incremental update that the person's signature permits (form filling of that field only)."""
    number_text = (number_text or "").strip()
    if not number_text or len(number_text) > policy.max_number_text:
        raise InvalidNumberText(f"number/symbol must be 1 to {policy.max_number_text} characters")
    writer = open_pdf(pdf, policy)
    ref = field_by_name(writer.root, policy.number_field)
    if ref is None:
        raise NumberFieldMissing(f"no {policy.number_field!r} field; prepare the draft first")
    text_field = ref.get_object()
    if str(text_field.get("/V", "")).strip():
        raise NumberAlreadyFilled(f"the document already has number {text_field['/V']}")
    x0, y0, x1, y1 = (float(v) for v in text_field["/Rect"])
    try:
        appearance = stamps.number_field_appearance(
            number_text=number_text, width=abs(x1 - x0), height=abs(y1 - y0), rules=rules
        )
        ap_ref = appearance.reference_in(writer)
    except StampTextNotSupported as exc:
        raise InvalidNumberText(str(exc)) from exc
    text_field[pdf_name("/V")] = pdf_string(number_text)
    text_field[pdf_name("/AP")] = generic.DictionaryObject({pdf_name("/N"): ap_ref})
    writer.update_container(text_field)
    return _output(writer)


def number_text_of(pdf: bytes, *, policy: SigningPolicy = DEFAULT_POLICY) -> str | None:
    writer = open_pdf(pdf, policy)
    ref = field_by_name(writer.root, policy.number_field)
    if ref is None:
        return None
    value = str(ref.get_object().get("/V", "")).strip()
    return value or None


def signature_count(reader: PdfFileReader) -> int:
    # counts filled signature fields without parsing their CMS (a broken one must not crash us)
    return sum(1 for _ in sig_fields.enumerate_sig_fields(reader, filled_status=True))
