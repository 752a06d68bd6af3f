"""Visible signature appearances (Decree 30/2020/NĐ-CP, annex I §7–8): the person's blue
signature between position title and name, the organisation's red seal, the text stamp of
attachments, and the number/symbol written into the prepared field.

Appearances are built once into a small template PDF (fonts from ``fonts.py``, images with
Pillow) and imported into each signed document (``pdfimport.py``), so a batch does not subset
fonts or compress images for every file.
"""

from __future__ import annotations

import hashlib
import math
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.images import pil_image
from pyhanko.pdf_utils.layout import BoxConstraints
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import BasePdfFileWriter, PdfFileWriter
from pyhanko.stamp import BaseStampStyle
from pyhanko.stamp.appearances import AnnotAppearances

from .fonts import FONT_DIR, EmbeddedFont, font
from .pdfimport import PreparedImport

__all__ = [
    "AppearanceRules",
    "PrerenderedStyle",
    "TemplateAppearance",
    "attachment_appearance",
    "format_signing_time",
    "number_field_appearance",
    "person_appearance",
    "seal_appearance",
    "seal_image",
    "signature_image",
]

MM = 72 / 25.4  # PDF points per millimetre


@dataclass(frozen=True)
class AppearanceRules:
    """What annex I of Decree 30 prescribes, as data. Times New Roman is not available here;
    DejaVu Serif stands in for it and carries the Vietnamese glyphs."""

    person_ink: tuple[int, int, int] = (0, 56, 168)  # blue, for the handwritten signature
    seal_ink: tuple[int, int, int] = (206, 17, 38)  # red, for the seal
    seal_diameter_mm: float = 36.0  # the seal is shown at real size
    seal_covers_fraction: float = 1 / 3  # of the signature image, on its left
    text_font: str = "DejaVuSerif.ttf"
    text_bold_font: str = "DejaVuSerif-Bold.ttf"
    title_size: float = 13.0  # position title and name: bold
    name_size: float = 13.0
    attachment_size: float = 10.0  # attachment stamp: regular, upright, 10 pt, black
    number_size: float = 13.0
    utc_offset: timedelta = timedelta(hours=7)  # Vietnam time, written as +07:00


DEFAULT_RULES = AppearanceRules()


def format_signing_time(moment: datetime, rules: AppearanceRules = DEFAULT_RULES) -> str:
    """ISO 8601 in Vietnam time with its offset, to the second: 2025-01-20T10:15:30+07:00."""
    return moment.astimezone(timezone(rules.utc_offset)).replace(microsecond=0).isoformat()


# -- images (Pillow) -------------------------------------------------------------------------


def signature_image(
    full_name: str,
    *,
    size: tuple[int, int] = (600, 240),
    ink: tuple[int, int, int] = DEFAULT_RULES.person_ink,
) -> Image.Image:
    """A handwritten-looking signature in blue on a transparent background, deterministic
    for a name (a stand-in for the scanned signature a real deployment would upload)."""
    scale = 3
    w, h = size[0] * scale, size[1] * scale
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    seed = hashlib.sha256(full_name.encode("utf-8")).digest()

    def r(i: int) -> float:
        return seed[i % len(seed)] / 255

    # a prolate cycloid gives the looped, slanted strokes of a running hand
    points: list[tuple[float, float]] = []
    loops = 5 + int(r(0) * 3)
    steps = 1200
    span = 2 * math.pi * loops
    for i in range(steps + 1):
        t = span * i / steps
        amp = h * (0.20 + 0.12 * math.sin(t / loops * (1.5 + r(2)) + r(3) * 6))
        x = w * 0.08 + (w * 0.78) * (t - 1.7 * math.sin(t)) / span + amp * 0.25
        y = h * 0.50 - amp * math.cos(t) - h * 0.10 * (i / steps) + h * 0.05 * math.sin(t / 3 + r(5) * 6)
        points.append((x, y))
    width = int(7 * scale * 0.9)
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        draw.line([(x0, y0), (x1, y1)], fill=(*ink, 255), width=width)
    # the closing flourish under the name, as many signers draw it
    flourish = [
        (w * (0.15 + 0.75 * t), h * (0.80 - 0.10 * t + 0.04 * math.sin(6 * t + r(6) * 3)))
        for t in (i / 200 for i in range(201))
    ]
    draw.line(flourish, fill=(*ink, 255), width=int(width * 0.7), joint="curve")
    return img.resize(size, Image.Resampling.LANCZOS)


def seal_image(
    agency_name: str,
    *,
    diameter_px: int = 480,
    ink: tuple[int, int, int] = DEFAULT_RULES.seal_ink,
    font_file: Path = FONT_DIR / "DejaVuSans-Bold.ttf",
) -> Image.Image:
    """A round red seal: the agency name around the rim, a star in the centre."""
    scale = 2
    d = diameter_px * scale
    img = Image.new("RGBA", (d, d), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    colour = (*ink, 235)
    c = d / 2
    rim = d * 0.035
    draw.ellipse([rim / 2, rim / 2, d - rim / 2, d - rim / 2], outline=colour, width=int(rim))
    inner = d * 0.31
    draw.ellipse([c - inner, c - inner, c + inner, c + inner], outline=colour, width=int(rim / 2))
    # five-pointed star
    star_r, star_ri = d * 0.17, d * 0.068
    star = []
    for k in range(10):
        ang = -math.pi / 2 + k * math.pi / 5
        rad = star_r if k % 2 == 0 else star_ri
        star.append((c + rad * math.cos(ang), c + rad * math.sin(ang)))
    draw.polygon(star, fill=colour)
    # the name around the rim, clockwise over the top
    text = unicodedata.normalize("NFC", agency_name.upper())
    text_radius = d * 0.40
    font_size = int(d * 0.085)
    pil_font = ImageFont.truetype(str(font_file), font_size)
    advances = [pil_font.getlength(ch) for ch in text]
    total = sum(advances) + font_size * 0.1 * len(text)
    arc = min(total / text_radius, math.radians(300))
    if total / text_radius > math.radians(300):
        font_size = int(font_size * math.radians(300) * text_radius / total)
        pil_font = ImageFont.truetype(str(font_file), font_size)
        advances = [pil_font.getlength(ch) for ch in text]
        total = sum(advances) + font_size * 0.1 * len(text)
        arc = total / text_radius
    angle = -math.pi / 2 - arc / 2
    for ch, adv in zip(text, advances, strict=True):
        step = (adv + font_size * 0.1) / text_radius
        mid = angle + step / 2
        glyph = Image.new("RGBA", (font_size * 2, font_size * 2), (0, 0, 0, 0))
        ImageDraw.Draw(glyph).text((font_size, font_size), ch, font=pil_font, fill=colour, anchor="mm")
        glyph = glyph.rotate(-math.degrees(mid + math.pi / 2), resample=Image.Resampling.BICUBIC)
        gx = c + text_radius * math.cos(mid) - font_size
        gy = c + text_radius * math.sin(mid) - font_size
        img.alpha_composite(glyph, (int(gx), int(gy)))
        angle += step
    return img.resize((diameter_px, diameter_px), Image.Resampling.LANCZOS)


# -- appearance XObjects -------------------------------------------------------------------


@dataclass(frozen=True)
class TextLine:
    text: str
    font: EmbeddedFont
    size: float
    x: float  # left edge, or centre when ``centred``
    y: float  # baseline
    centred: bool = False
    rgb: tuple[float, float, float] = (0, 0, 0)


@dataclass(frozen=True)
class ImagePlacement:
    image: Image.Image
    x: float
    y: float
    width: float
    height: float


@dataclass
class _Drawing:
    width: float
    height: float
    lines: list[TextLine] = field(default_factory=list)
    images: list[ImagePlacement] = field(default_factory=list)

    def build(self, writer: BasePdfFileWriter, image_refs: Sequence[generic.IndirectObject]) -> generic.IndirectObject:
        ops: list[bytes] = []
        xobjects = generic.DictionaryObject()
        for i, (placement, ref) in enumerate(zip(self.images, image_refs, strict=True)):
            name = f"/Im{i}"
            xobjects[pdf_name(name)] = ref
            ops.append(
                b"q %g 0 0 %g %g %g cm %s Do Q"
                % (placement.width, placement.height, placement.x, placement.y, name.encode())
            )
        fonts = generic.DictionaryObject()
        font_names: dict[int, str] = {}
        for line in self.lines:
            key = id(line.font)
            if key not in font_names:
                font_names[key] = f"/F{len(font_names)}"
                fonts[pdf_name(font_names[key])] = line.font.reference_in(writer)
            x = line.x - line.font.width(line.text, line.size) / 2 if line.centred else line.x
            ops.append(
                b"BT %g %g %g rg %s %g Tf 1 0 0 1 %g %g Tm %s Tj ET"
                % (
                    *line.rgb,
                    font_names[key].encode(),
                    line.size,
                    x,
                    line.y,
                    line.font.show(line.text),
                )
            )
        resources = generic.DictionaryObject()
        if fonts:
            resources[pdf_name("/Font")] = fonts
        if xobjects:
            resources[pdf_name("/XObject")] = xobjects
        stream = generic.StreamObject(
            {
                pdf_name("/Type"): pdf_name("/XObject"),
                pdf_name("/Subtype"): pdf_name("/Form"),
                pdf_name("/BBox"): generic.ArrayObject(
                    [
                        generic.FloatObject(0),
                        generic.FloatObject(0),
                        generic.FloatObject(self.width),
                        generic.FloatObject(self.height),
                    ]
                ),
                pdf_name("/Resources"): resources,
            },
            stream_data=b"\n".join(ops),
        )
        stream.compress()
        return writer.add_object(stream)


class TemplateAppearance:
    """An appearance rendered once into a template PDF; :meth:`reference_in` puts the whole
    form XObject (fonts and images included) into a document being signed."""

    def __init__(self, drawing: _Drawing) -> None:
        self.width, self.height = drawing.width, drawing.height
        writer = PdfFileWriter(stream_xrefs=False)
        refs = [pil_image(p.image, writer) for p in drawing.images]
        writer.root["/LienthongAppearance"] = drawing.build(writer, refs)
        buf = BytesIO()
        writer.write(buf)
        self._objects = PreparedImport(PdfFileReader(BytesIO(buf.getvalue())).root.raw_get("/LienthongAppearance"))

    def reference_in(self, writer: BasePdfFileWriter) -> generic.IndirectObject:
        return self._objects.reference_in(writer)


class DynamicAppearance:
    """An appearance whose text changes per document (times, numbers): only the fonts come
    from a template; the content stream is written into each document."""

    def __init__(self, drawing: _Drawing) -> None:
        if drawing.images:
            raise ValueError("dynamic appearances carry text only")
        self.drawing = drawing
        self.width, self.height = drawing.width, drawing.height

    def reference_in(self, writer: BasePdfFileWriter) -> generic.IndirectObject:
        return self.drawing.build(writer, [])


Appearance = TemplateAppearance | DynamicAppearance


@dataclass(frozen=True)
class PrerenderedStyle(BaseStampStyle):
    """pyHanko stamp style that puts a ready appearance into the signature widget."""

    appearance: Any = None
    border_width: int = 0

    def create_stamp(self, writer: BasePdfFileWriter, box: BoxConstraints, text_params: dict[str, Any]) -> _PlacedStamp:
        return _PlacedStamp(self.appearance, writer)


class _PlacedStamp:
    def __init__(self, appearance: Appearance, writer: BasePdfFileWriter) -> None:
        self._appearance = appearance
        self._writer = writer

    def as_appearances(self) -> AnnotAppearances:
        return AnnotAppearances(normal=self._appearance.reference_in(self._writer))


# -- the four appearances of annex I -------------------------------------------------------


@dataclass(frozen=True)
class PersonBlockGeometry:
    """Where things sit inside the person's signature box (points, origin bottom-left)."""

    width: float = 220.0
    height: float = 150.0
    image_width: float = 150.0
    image_height: float = 60.0
    line_gap: float = 3.0

    def image_box(self, title_lines: int, rules: AppearanceRules = DEFAULT_RULES) -> tuple[float, float, float, float]:
        """(x, y, w, h) of the signature image: centred between the title and the name."""
        name_top = rules.name_size + self.line_gap
        title_bottom = self.height - title_lines * (rules.title_size + self.line_gap)
        y = name_top + (title_bottom - name_top - self.image_height) / 2
        return (self.width - self.image_width) / 2, y, self.image_width, self.image_height


def person_appearance(
    *,
    title_lines: Iterable[str],
    full_name: str,
    image: Image.Image | None = None,
    geometry: PersonBlockGeometry = PersonBlockGeometry(),
    title_slots: int | None = None,
    rules: AppearanceRules = DEFAULT_RULES,
) -> TemplateAppearance:
    """The signer's block: position title (bold, e.g. "TM. ỦY BAN NHÂN DÂN" / "CHỦ TỊCH"),
    the blue signature image centred below it, and the full name under the image.
    ``title_slots`` (lines reserved for the title) keeps the image where the draft's seal field
    expects it, however many title lines this signer has."""
    titles = list(title_lines)
    slots = title_slots if title_slots is not None else len(titles)
    if len(titles) > slots:
        raise ValueError(f"{len(titles)} title lines do not fit in {slots}")
    bold = font(rules.text_bold_font)
    drawing = _Drawing(geometry.width, geometry.height)
    y = geometry.height - rules.title_size
    for line in titles:
        drawing.lines.append(TextLine(line, bold, rules.title_size, geometry.width / 2, y, True))
        y -= rules.title_size + geometry.line_gap
    drawing.lines.append(TextLine(full_name, bold, rules.name_size, geometry.width / 2, geometry.line_gap, True))
    x, iy, w, h = geometry.image_box(slots, rules)
    drawing.images.append(ImagePlacement(image or signature_image(full_name, ink=rules.person_ink), x, iy, w, h))
    return TemplateAppearance(drawing)


def seal_appearance(
    *, agency_name: str, image: Image.Image | None = None, rules: AppearanceRules = DEFAULT_RULES
) -> TemplateAppearance:
    """The organisation's red seal at real size (``rules.seal_diameter_mm``)."""
    d = rules.seal_diameter_mm * MM
    drawing = _Drawing(d, d)
    drawing.images.append(ImagePlacement(image or seal_image(agency_name, ink=rules.seal_ink), 0, 0, d, d))
    return TemplateAppearance(drawing)


def attachment_box_size(rules: AppearanceRules = DEFAULT_RULES) -> tuple[float, float]:
    return 170.0, rules.attachment_size * 2 + 8


def attachment_appearance(
    *, number_text: str, signed_at: datetime, rules: AppearanceRules = DEFAULT_RULES
) -> DynamicAppearance:
    """Top-right stamp of an attachment: number/symbol and signing time, serif 10 pt, black,
    right-aligned, no image."""
    width, height = attachment_box_size(rules)
    serif = font(rules.text_font)
    size = rules.attachment_size
    lines = [number_text, format_signing_time(signed_at, rules)]
    drawing = _Drawing(width, height)
    y = height - size
    for text in lines:
        drawing.lines.append(TextLine(text, serif, size, width - serif.width(text, size), y))
        y -= size + 2
    return DynamicAppearance(drawing)


def number_field_appearance(
    *, number_text: str, width: float, height: float, rules: AppearanceRules = DEFAULT_RULES
) -> DynamicAppearance:
    """Appearance of the filled number/symbol field (serif, upright, black)."""
    serif = font(rules.text_font)
    size = rules.number_size
    drawing = _Drawing(width, height)
    drawing.lines.append(TextLine(number_text, serif, size, 1.0, (height - size) / 2 + 2))
    return DynamicAppearance(drawing)


@lru_cache(maxsize=256)
def cached_person_appearance(
    title_lines: tuple[str, ...],
    full_name: str,
    geometry: PersonBlockGeometry = PersonBlockGeometry(),
    title_slots: int | None = None,
    rules: AppearanceRules = DEFAULT_RULES,
) -> TemplateAppearance:
    """Generated signature images are deterministic, so appearances are cached per signer."""
    return person_appearance(
        title_lines=title_lines, full_name=full_name, geometry=geometry, title_slots=title_slots, rules=rules
    )


@lru_cache(maxsize=256)
def cached_seal_appearance(agency_name: str, rules: AppearanceRules = DEFAULT_RULES) -> TemplateAppearance:
    return seal_appearance(agency_name=agency_name, rules=rules)
