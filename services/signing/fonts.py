"""The stamp fonts: a fixed subset of a TrueType font (ASCII, Vietnamese, Latin-1 and the
punctuation official documents use) embedded once with pyHanko's ``GlyphAccumulator`` and
imported into each document; text outside the subset is refused."""

from __future__ import annotations

import logging
import threading
import unicodedata
import weakref
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from typing import Any

from fontTools.ttLib import TTFont
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.font.opentype import GlyphAccumulatorFactory
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import BasePdfFileWriter, PdfFileWriter

from .pdfimport import PreparedImport

__all__ = ["CHARSET", "FONT_DIR", "EmbeddedFont", "StampTextNotSupported", "font"]

FONT_DIR = Path(__file__).resolve().parents[2] / "shared" / "fonts"


class StampTextNotSupported(ValueError):
    """The text contains a character outside the embedded glyph set."""


def _vietnamese_letters() -> str:
    tones = ["", "\u0300", "\u0301", "\u0309", "\u0303", "\u0323"]
    vowels = "aăâeêioôơuưy"
    out = []
    for v in vowels + vowels.upper():
        for t in tones:
            out.append(unicodedata.normalize("NFC", v + t))
    return "".join(out) + "đĐ"


# ASCII, Vietnamese, Latin-1 letters and the punctuation official documents use
CHARSET = "".join(
    dict.fromkeys(
        "".join(chr(c) for c in range(0x20, 0x7F))
        + _vietnamese_letters()
        + "".join(chr(c) for c in range(0xC0, 0x100))
        + "–—…“”‘’°§№×·«»"
    )
)


class EmbeddedFont:
    """A fixed subset of a TrueType font, embedded once (Type0/CIDFontType2 with ToUnicode, by
    pyHanko's GlyphAccumulator) into a template PDF and imported into each document."""

    def __init__(self, path: Path) -> None:
        self.path = path
        tt = TTFont(str(path), lazy=True)
        self._upem = tt["head"].unitsPerEm
        cmap = tt.getBestCmap()
        hmtx = tt["hmtx"]
        self._glyphs: dict[str, tuple[int, int]] = {}
        for ch in CHARSET:
            name = cmap.get(ord(ch))
            if name is None:
                continue
            self._glyphs[ch] = (tt.getGlyphID(name), hmtx[name][0])
        writer = PdfFileWriter(stream_xrefs=False)
        # fontTools warns about dropping DejaVu's FontForge timestamp table; nothing to act on
        logging.getLogger("fontTools.subset").setLevel(logging.ERROR)
        engine = GlyphAccumulatorFactory(str(path)).create_font_engine(writer)
        for ch in self._glyphs:
            engine.shape(ch)  # one by one, so no ligature hides a glyph
        writer.root["/LienthongFont"] = engine.as_resource()
        buf = BytesIO()
        writer.write(buf)
        # pyHanko writes /W in font units (DejaVu: 2048 per em) and positions every glyph
        # itself; plain Tj needs the PDF's 1/1000 em, so copy the font with scaled widths.
        first = PdfFileReader(BytesIO(buf.getvalue()))
        final = PdfFileWriter(stream_xrefs=False)
        font_ref = final.import_object(first.root.raw_get("/LienthongFont"))
        cid_font = font_ref.get_object()["/DescendantFonts"][0].get_object()
        cid_font[pdf_name("/W")] = _scaled_widths(cid_font["/W"], 1000 / self._upem)
        final.root["/LienthongFont"] = font_ref
        buf = BytesIO()
        final.write(buf)
        self._objects = PreparedImport(PdfFileReader(BytesIO(buf.getvalue())).root.raw_get("/LienthongFont"))
        self._imported: weakref.WeakKeyDictionary[Any, generic.IndirectObject] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def check(self, text: str) -> str:
        text = unicodedata.normalize("NFC", text)
        missing = sorted({ch for ch in text if ch not in self._glyphs})
        if missing:
            raise StampTextNotSupported(f"characters not in the stamp font: {''.join(missing)!r}")
        return text

    def width(self, text: str, size: float) -> float:
        text = self.check(text)
        return sum(self._glyphs[ch][1] for ch in text) * size / self._upem

    def show(self, text: str) -> bytes:
        """Hex string operand for ``Tj`` (Identity-H: two-byte glyph ids)."""
        text = self.check(text)
        return b"<" + b"".join(b"%04x" % self._glyphs[ch][0] for ch in text) + b">"

    def reference_in(self, writer: BasePdfFileWriter) -> generic.IndirectObject:
        """The font's reference in ``writer``, importing it on first use."""
        with self._lock:
            ref = self._imported.get(writer)
            if ref is None:
                ref = self._objects.reference_in(writer)
                self._imported[writer] = ref
            return ref


def _scaled_widths(widths: generic.ArrayObject, factor: float) -> generic.ArrayObject:
    out = generic.ArrayObject()
    for item in widths:
        if isinstance(item, generic.ArrayObject):
            out.append(generic.ArrayObject(generic.NumberObject(round(w * factor)) for w in item))
        else:
            out.append(item)
    return out


@lru_cache(maxsize=8)
def font(name: str) -> EmbeddedFont:
    return EmbeddedFont(FONT_DIR / name)
