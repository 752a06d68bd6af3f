"""The layout every one-stop-shop form shares: DejaVu fonts embedded (Vietnamese text, no
font left out of the PDF), paragraph styles, tables, signature blocks, QR codes, and how an
administrative paper writes dates and durations."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from io import BytesIO
from pathlib import Path
from xml.sax.saxutils import escape

import qrcode
from qrcode.constants import ERROR_CORRECT_M
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER, TA_JUSTIFY
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Flowable, KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from services.intake.calendar import as_vietnam_time

FONT_DIR = Path(__file__).resolve().parents[2] / "shared" / "fonts"
FONT = "DejaVuSans"
FONT_BOLD = "DejaVuSans-Bold"

# Thanh Hóa counts processing time in working hours, 8 to a working day [confirmed]; the
# receipt states it in days when it is a whole number of them.
HOURS_PER_WORKING_DAY = Decimal(8)


@functools.cache
def register_fonts() -> None:
    pdfmetrics.registerFont(TTFont(FONT, str(FONT_DIR / "DejaVuSans.ttf")))
    pdfmetrics.registerFont(TTFont(FONT_BOLD, str(FONT_DIR / "DejaVuSans-Bold.ttf")))
    pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=FONT_BOLD, italic=FONT, boldItalic=FONT_BOLD)


@functools.cache
def styles() -> dict[str, ParagraphStyle]:
    register_fonts()
    body = ParagraphStyle("body", fontName=FONT, fontSize=10.5, leading=14.5, alignment=TA_JUSTIFY)
    return {
        "body": body,
        "small": ParagraphStyle("small", parent=body, fontSize=8.5, leading=11),
        "cell": ParagraphStyle("cell", parent=body, fontSize=9, leading=11.5, alignment=0),
        "cell_head": ParagraphStyle(
            "cell_head", parent=body, fontName=FONT_BOLD, fontSize=9, leading=11.5,
            alignment=TA_CENTER,
        ),
        "center": ParagraphStyle("center", parent=body, alignment=TA_CENTER),
        "head": ParagraphStyle("head", parent=body, fontSize=9.5, leading=12.5, alignment=TA_CENTER),
        "head_bold": ParagraphStyle(
            "head_bold", parent=body, fontName=FONT_BOLD, fontSize=9.5, leading=12.5,
            alignment=TA_CENTER,
        ),
        "center_bold": ParagraphStyle(
            "center_bold", parent=body, fontName=FONT_BOLD, alignment=TA_CENTER
        ),
        "title": ParagraphStyle(
            "title", parent=body, fontName=FONT_BOLD, fontSize=13, leading=17,
            alignment=TA_CENTER, spaceBefore=8, spaceAfter=8,
        ),
    }


def para(text: str, style: str = "body") -> Paragraph:
    return Paragraph(text, styles()[style])


def esc(text: str | None) -> str:
    return escape(text or "")


def table_of(rows: list[list[object]], widths: Sequence[float], commands: list[tuple]) -> Table:
    """A Table whose cells default to DejaVu: reportlab sets each cell's font, Helvetica by
    default, even for cells holding paragraphs; that would reference a non-embedded font."""
    table = Table(rows, colWidths=list(widths), repeatRows=1 if len(rows) > 1 else 0)
    table.setStyle(TableStyle([("FONTNAME", (0, 0), (-1, -1), FONT), *commands]))
    return table


def vn_datetime(moment: datetime) -> str:
    """'15 giờ 30 phút, ngày 16 tháng 04 năm 2026' in Vietnam time."""
    local = as_vietnam_time(moment)
    return f"{local:%H} giờ {local:%M} phút, ngày {local:%d} tháng {local:%m} năm {local:%Y}"


def vn_place_date(place: str, day: date) -> str:
    """'Thanh Hóa, ngày 16 tháng 04 năm 2026' (the dateline of an administrative paper)."""
    return f"{place}, ngày {day:%d} tháng {day:%m} năm {day:%Y}"


def vn_duration(hours: Decimal | int) -> str:
    value = Decimal(hours)
    days, rest = divmod(value, HOURS_PER_WORKING_DAY)
    if rest == 0:
        return f"{int(days):02d} ngày làm việc"
    return f"{value.normalize():f} giờ làm việc"


def signatures(left: tuple[str, str] | None, right: tuple[str, str]) -> Flowable:
    """Signature blocks: (title, name); the name goes under room for a signature."""

    def block(title: str, name: str) -> list[Flowable]:
        return [
            para(esc(title.upper()), "center_bold"),
            para("<i>(Ký và ghi rõ họ tên)</i>", "center"),
            Spacer(1, 22 * mm),
            para(esc(name), "center_bold"),
        ]

    row = [block(*left) if left else Spacer(1, 1), block(*right)]
    table = table_of([row], [87 * mm, 87 * mm], [("VALIGN", (0, 0), (-1, -1), "TOP")])
    return KeepTogether([Spacer(1, 8), table])


def grid(
    header: Sequence[str], rows: Sequence[Sequence[str]], widths: Sequence[float]
) -> Table:
    data: list[list[object]] = [[para(esc(h), "cell_head") for h in header]]
    data += [[para(esc(cell), "cell") for cell in row] for row in rows]
    return table_of(
        data,
        widths,
        [
            ("GRID", (0, 0), (-1, -1), 0.5, colors.black),
            ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
        ],
    )


def render(title: str, subject: str, story: list[Flowable]) -> bytes:
    register_fonts()
    buffer = BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=20 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=15 * mm,
        title=title,
        subject=subject,
        author="lienthong",
        creator="lienthong intake",
        lang="vi-VN",
        # Otherwise the canvas starts in Helvetica: referenced by the PDF but not embedded.
        initialFontName=FONT,
    )
    document.build(story)
    return buffer.getvalue()


class QrFlowable(Flowable):
    """A QR code drawn as vector squares (sharp at any print size, no image, no font)."""

    def __init__(self, payload: str, size: float = 32 * mm) -> None:
        super().__init__()
        code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=4)
        code.add_data(payload)
        code.make(fit=True)
        self.matrix: list[list[bool]] = code.get_matrix()
        self.width = self.height = size

    def draw(self) -> None:
        count = len(self.matrix)
        module = self.width / count
        self.canv.setFillColor(colors.black)
        for row, cells in enumerate(self.matrix):
            for column, dark in enumerate(cells):
                if dark:
                    y = self.height - (row + 1) * module
                    self.canv.rect(column * module, y, module, module, stroke=0, fill=1)


