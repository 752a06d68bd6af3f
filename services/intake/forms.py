"""Biểu mẫu một cửa: printable PDFs of forms 01–05 (receipt, supplement request, refusal,
apology with a new date, tracking sheet), with the DejaVu fonts embedded for Vietnamese text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from urllib.parse import urlsplit

from reportlab.lib import colors
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Spacer

from services.intake.calendar import as_vietnam_time
from services.intake.pdf_layout import (
    QrFlowable,
    esc,
    grid,
    para,
    render,
    signatures,
    table_of,
    vn_datetime,
    vn_duration,
    vn_place_date,
)
from services.intake.workflow import Timeliness

DESK_UNIT = "Bộ phận Tiếp nhận và Trả kết quả"


# ------------------------------------------------------------------ inputs


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuingOffice:
    """Who issues the form: the agency, its superior (header's first line) and the place."""

    superior: str  # e.g. "UBND TỈNH THANH HÓA"
    name: str  # e.g. "SỞ TƯ PHÁP"
    unit: str | None = DESK_UNIT
    place: str = "Thanh Hóa"


@dataclass(frozen=True, slots=True, kw_only=True)
class Applicant:
    name: str
    address: str | None = None
    phone: str | None = None
    email: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedComponent:
    """Thành phần hồ sơ đã nhận: a document, how many copies, original or copy."""

    name: str
    copies: int = 1
    original: bool = True

    def __post_init__(self) -> None:
        if self.copies < 1:
            raise ValueError("a received component has at least one copy")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiptForm:
    """Mẫu 01 — Giấy tiếp nhận hồ sơ và hẹn trả kết quả."""

    office: IssuingOffice
    dossier_code: str
    procedure_code: str
    procedure_name: str
    applicant: Applicant
    components: tuple[ReceivedComponent, ...]
    received_at: datetime
    due_at: datetime
    desk_officer: str
    lookup_secret: str
    lookup_url: str
    processing_hours: Decimal | int | None = None
    result_delivery: str | None = None  # where/how the result is handed over

    def __post_init__(self) -> None:
        object.__setattr__(self, "components", tuple(self.components))
        if not self.components:
            raise ValueError("a receipt lists the components received")
        if as_vietnam_time(self.due_at) < as_vietnam_time(self.received_at):
            raise ValueError("the return date is before the receipt date")
        _check_lookup_url(self.lookup_url)


@dataclass(frozen=True, slots=True, kw_only=True)
class MissingItem:
    name: str
    detail: str | None = None  # what is wrong or how to complete it


@dataclass(frozen=True, slots=True, kw_only=True)
class SupplementRequestForm:
    """Mẫu 02 — Phiếu yêu cầu bổ sung, hoàn thiện hồ sơ: all missing items at once."""

    office: IssuingOffice
    dossier_code: str
    procedure_name: str
    applicant: Applicant
    missing_items: tuple[MissingItem, ...]
    requested_at: datetime
    officer: str
    officer_phone: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "missing_items", tuple(self.missing_items))
        if not self.missing_items:
            raise ValueError("a supplement request lists every missing item (none given)")


@dataclass(frozen=True, slots=True, kw_only=True)
class RefusalForm:
    """Mẫu 03 — Phiếu từ chối tiếp nhận giải quyết hồ sơ, with its reasons."""

    office: IssuingOffice
    procedure_name: str
    applicant: Applicant
    reasons: tuple[str, ...]
    refused_at: datetime
    officer: str
    dossier_code: str | None = None  # a dossier refused at the desk may have no code yet

    def __post_init__(self) -> None:
        object.__setattr__(self, "reasons", tuple(self.reasons))
        if not any(reason.strip() for reason in self.reasons):
            raise ValueError("a refusal states its reasons")


@dataclass(frozen=True, slots=True, kw_only=True)
class ApologyForm:
    """Mẫu 04 — Phiếu xin lỗi và hẹn lại ngày trả kết quả.

    The regulation wants it issued before the original due date; this form does not refuse a
    late one (the applicant still needs the new date), the workflow should flag it.
    """

    office: IssuingOffice
    dossier_code: str
    procedure_name: str
    applicant: Applicant
    received_at: datetime
    original_due_at: datetime
    new_due_at: datetime
    reason: str
    issued_at: datetime
    signer_name: str
    signer_title: str

    def __post_init__(self) -> None:
        if as_vietnam_time(self.new_due_at) <= as_vietnam_time(self.original_due_at):
            raise ValueError("the new return date must be after the original one")
        if not self.reason.strip():
            raise ValueError("an apology states why the result is late")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackingEntry:
    """One hand-off on the tracking sheet."""

    from_whom: str
    to_whom: str
    handed_at: datetime
    step_due_at: datetime | None = None
    timeliness: Timeliness | None = None  # None while the receiving step is not finished
    note: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackingSheetForm:
    """Mẫu 05 — Phiếu kiểm soát quá trình giải quyết hồ sơ."""

    office: IssuingOffice
    dossier_code: str
    procedure_name: str
    applicant: Applicant
    received_at: datetime
    due_at: datetime
    entries: tuple[TrackingEntry, ...] = field(default_factory=tuple)
    processing_units: str | None = None
    coordinating_units: str | None = None
    # the result, once the dossier is finished: the issued document's number and date
    result_number: str | None = None
    result_issued_at: datetime | None = None
    finished_at: datetime | None = None
    finished_timeliness: Timeliness | None = None
    returned_at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", tuple(self.entries))


# ------------------------------------------------------------------ helpers


def _check_lookup_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc or any(c.isspace() for c in url):
        raise ValueError(f"look-up URL must be an absolute http(s) URL, got {url!r}")


def receipt_qr_payload(form: ReceiptForm) -> str:
    """What the receipt's QR code encodes: the caller's look-up URL, unchanged."""
    _check_lookup_url(form.lookup_url)
    return form.lookup_url


def _header(office: IssuingOffice, issued: datetime, number: str | None) -> list[Flowable]:
    left: list[Flowable] = [
        para(esc(office.superior.upper()), "head"),
        para(esc(office.name.upper()), "head_bold"),
    ]
    if office.unit:
        left.append(para(esc(office.unit.upper()), "head_bold"))
    if number:
        left.append(para(f"Số: {esc(number)}", "head"))
    right = [
        para("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "head_bold"),
        para("Độc lập - Tự do - Hạnh phúc", "head_bold"),
        Spacer(1, 4),
        para(f"<i>{esc(vn_place_date(office.place, as_vietnam_time(issued).date()))}</i>", "head"),
    ]
    table = table_of(
        [[left, right]],
        [85 * mm, 90 * mm],
        [
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), 0),
            ("RIGHTPADDING", (0, 0), (-1, -1), 0),
        ],
    )
    return [table, Spacer(1, 6)]


def _applicant_lines(applicant: Applicant) -> list[Flowable]:
    lines = [para(f"Ông/bà: <b>{esc(applicant.name)}</b>")]
    if applicant.address:
        lines.append(para(f"Địa chỉ: {esc(applicant.address)}"))
    contact = " — ".join(
        part
        for part in (
            f"Số điện thoại: {esc(applicant.phone)}" if applicant.phone else "",
            f"Email: {esc(applicant.email)}" if applicant.email else "",
        )
        if part
    )
    if contact:
        lines.append(para(contact))
    return lines


# ------------------------------------------------------------------ forms


def receipt_pdf(form: ReceiptForm) -> bytes:
    """Mẫu 01: receipt and appointment, with the look-up secret and a QR code."""
    story = _header(form.office, form.received_at, form.dossier_code)
    story.append(para("GIẤY TIẾP NHẬN HỒ SƠ VÀ HẸN TRẢ KẾT QUẢ", "title"))
    story.append(para(f"Mã hồ sơ: <b>{esc(form.dossier_code)}</b>", "center"))
    story.append(Spacer(1, 6))
    story.append(para(f"{esc(form.office.unit or form.office.name)} — {esc(form.office.name)} tiếp nhận hồ sơ của:"))
    story += _applicant_lines(form.applicant)
    story.append(
        para(
            f"Nội dung yêu cầu giải quyết: <b>{esc(form.procedure_name)}</b> "
            f"(mã thủ tục {esc(form.procedure_code)})"
        )
    )
    story.append(para("1. Thành phần hồ sơ nộp gồm:"))
    rows = [
        [str(i), c.name, f"{c.copies:02d}", "Bản chính" if c.original else "Bản sao"]
        for i, c in enumerate(form.components, start=1)
    ]
    story.append(grid(["TT", "Tên giấy tờ", "Số lượng", "Loại bản"], rows, [12 * mm, 112 * mm, 22 * mm, 29 * mm]))
    story.append(Spacer(1, 4))
    story.append(para("2. Số lượng hồ sơ: 01 (bộ)"))
    if form.processing_hours is not None:
        story.append(
            para(f"3. Thời gian giải quyết hồ sơ theo quy định: {vn_duration(form.processing_hours)}")
        )
    story.append(para(f"4. Thời gian nhận hồ sơ: {vn_datetime(form.received_at)}"))
    story.append(para(f"5. Thời gian trả kết quả giải quyết hồ sơ: <b>{vn_datetime(form.due_at)}</b>"))
    if form.result_delivery:
        story.append(para(f"6. Nhận kết quả tại: {esc(form.result_delivery)}"))

    lookup = [
        para("<b>Tra cứu tình trạng hồ sơ</b>"),
        para(f"Mã hồ sơ: {esc(form.dossier_code)}"),
        para(f"Mã tra cứu (bí mật): <b>{esc(form.lookup_secret)}</b>"),
        para("Quét mã QR hoặc truy cập:", "small"),
        para(esc(form.lookup_url), "small"),
    ]
    box = table_of(
        [[lookup, QrFlowable(receipt_qr_payload(form))]],
        [135 * mm, 40 * mm],
        [("BOX", (0, 0), (-1, -1), 0.5, colors.black), ("VALIGN", (0, 0), (-1, -1), "MIDDLE")],
    )
    story += [Spacer(1, 8), box]
    story.append(signatures(("Người nộp hồ sơ", form.applicant.name), ("Người tiếp nhận hồ sơ", form.desk_officer)))
    return render("Giấy tiếp nhận hồ sơ và hẹn trả kết quả", form.dossier_code, story)


def supplement_request_pdf(form: SupplementRequestForm) -> bytes:
    """Mẫu 02: every missing item in one request."""
    story = _header(form.office, form.requested_at, form.dossier_code)
    story.append(para("PHIẾU YÊU CẦU BỔ SUNG, HOÀN THIỆN HỒ SƠ", "title"))
    story.append(para(f"Mã hồ sơ: <b>{esc(form.dossier_code)}</b>", "center"))
    story.append(Spacer(1, 6))
    story.append(para(f"{esc(form.office.unit or form.office.name)} — {esc(form.office.name)} tiếp nhận hồ sơ của:"))
    story += _applicant_lines(form.applicant)
    story.append(para(f"Nội dung yêu cầu giải quyết: <b>{esc(form.procedure_name)}</b>"))
    story.append(para("Yêu cầu hoàn thiện hồ sơ gồm những nội dung sau:"))
    rows = [[str(i), item.name, item.detail or ""] for i, item in enumerate(form.missing_items, start=1)]
    story.append(grid(["TT", "Giấy tờ, nội dung cần bổ sung", "Lý do, hướng dẫn"], rows, [12 * mm, 85 * mm, 78 * mm]))
    story.append(Spacer(1, 6))
    contact = f" theo số điện thoại {esc(form.officer_phone)}" if form.officer_phone else ""
    story.append(
        para(
            "Trong quá trình hoàn thiện hồ sơ, nếu có vướng mắc, ông/bà liên hệ với "
            f"{esc(form.officer)}{contact} để được hướng dẫn."
        )
    )
    story.append(signatures(None, ("Người hướng dẫn", form.officer)))
    return render("Phiếu yêu cầu bổ sung, hoàn thiện hồ sơ", form.dossier_code, story)


def refusal_pdf(form: RefusalForm) -> bytes:
    """Mẫu 03: refusal to accept the dossier, with the reasons."""
    story = _header(form.office, form.refused_at, form.dossier_code)
    story.append(para("PHIẾU TỪ CHỐI TIẾP NHẬN GIẢI QUYẾT HỒ SƠ", "title"))
    if form.dossier_code:
        story.append(para(f"Mã hồ sơ: <b>{esc(form.dossier_code)}</b>", "center"))
    story.append(Spacer(1, 6))
    story.append(para(f"{esc(form.office.unit or form.office.name)} — {esc(form.office.name)} tiếp nhận hồ sơ của:"))
    story += _applicant_lines(form.applicant)
    story.append(para(f"Nội dung yêu cầu giải quyết: <b>{esc(form.procedure_name)}</b>"))
    story.append(
        para(
            "Qua xem xét, cơ quan, đơn vị tiếp nhận hồ sơ thông báo không tiếp nhận, giải quyết "
            "hồ sơ này với lý do cụ thể như sau:"
        )
    )
    for i, reason in enumerate((r for r in form.reasons if r.strip()), start=1):
        story.append(para(f"{i}. {esc(reason)}"))
    story.append(para("Xin thông báo để ông/bà được biết và thực hiện./."))
    story.append(signatures(None, ("Người tiếp nhận hồ sơ", form.officer)))
    return render("Phiếu từ chối tiếp nhận giải quyết hồ sơ", form.dossier_code or "", story)


def apology_pdf(form: ApologyForm) -> bytes:
    """Mẫu 04: apology for the delay and the new return date, with the reason."""
    story = _header(form.office, form.issued_at, form.dossier_code)
    story.append(para("PHIẾU XIN LỖI VÀ HẸN LẠI NGÀY TRẢ KẾT QUẢ", "title"))
    story.append(para(f"Kính gửi: ông/bà <b>{esc(form.applicant.name)}</b>", "center"))
    story.append(Spacer(1, 6))
    story.append(
        para(
            f"Ngày {as_vietnam_time(form.received_at):%d/%m/%Y}, {esc(form.office.name)} tiếp nhận "
            f"giải quyết hồ sơ của ông/bà, mã hồ sơ <b>{esc(form.dossier_code)}</b>, về việc: "
            f"{esc(form.procedure_name)}."
        )
    )
    story.append(para(f"Thời gian hẹn trả kết quả giải quyết hồ sơ: {vn_datetime(form.original_due_at)}."))
    story.append(
        para(
            "Tuy nhiên đến nay, cơ quan chưa trả kết quả giải quyết hồ sơ cho ông/bà đúng hạn. "
            f"Lý do: {esc(form.reason)}"
        )
    )
    story.append(
        para(
            f"Sự chậm trễ này đã gây phiền hà cho ông/bà. {esc(form.office.name)} xin lỗi ông/bà "
            f"và hẹn trả kết quả vào: <b>{vn_datetime(form.new_due_at)}</b>."
        )
    )
    story.append(para("Xin trân trọng cảm ơn sự hợp tác của ông/bà./."))
    story.append(signatures(None, (form.signer_title, form.signer_name)))
    return render("Phiếu xin lỗi và hẹn lại ngày trả kết quả", form.dossier_code, story)


def tracking_sheet_pdf(form: TrackingSheetForm) -> bytes:
    """Mẫu 05: every hand-off with its step deadline and whether it was early, on time or late."""
    story = _header(form.office, form.received_at, form.dossier_code)
    story.append(para("PHIẾU KIỂM SOÁT QUÁ TRÌNH GIẢI QUYẾT HỒ SƠ", "title"))
    story.append(para(f"Mã hồ sơ: <b>{esc(form.dossier_code)}</b>", "center"))
    story.append(Spacer(1, 6))
    story.append(para(f"Người nộp: <b>{esc(form.applicant.name)}</b>"))
    story.append(para(f"Thủ tục: {esc(form.procedure_name)}"))
    story.append(para(f"Thời gian tiếp nhận: {vn_datetime(form.received_at)}"))
    story.append(para(f"Thời gian hẹn trả kết quả: {vn_datetime(form.due_at)}"))
    if form.processing_units:
        story.append(para(f"Cơ quan, bộ phận giải quyết hồ sơ: {esc(form.processing_units)}"))
    if form.coordinating_units:
        story.append(para(f"Cơ quan phối hợp giải quyết hồ sơ: {esc(form.coordinating_units)}"))
    story.append(Spacer(1, 4))
    short: Callable[[datetime | None], str] = lambda moment: (  # noqa: E731
        f"{as_vietnam_time(moment):%H:%M %d/%m/%Y}" if moment else ""
    )
    rows = [
        [
            str(i),
            entry.from_whom,
            entry.to_whom,
            short(entry.handed_at),
            short(entry.step_due_at),
            entry.timeliness.label_vi if entry.timeliness else "",
            entry.note or "",
        ]
        for i, entry in enumerate(form.entries, start=1)
    ]
    story.append(
        grid(
            [
                "TT",
                "Bên giao",
                "Bên nhận",
                "Thời gian giao, nhận",
                "Hạn xử lý của bước",
                "Kết quả (trước hạn/ đúng hạn/ quá hạn)",
                "Ghi chú",
            ],
            rows,
            [9 * mm, 33 * mm, 33 * mm, 26 * mm, 26 * mm, 25 * mm, 23 * mm],
        )
    )
    if form.finished_at is not None:
        story.append(Spacer(1, 6))
        number = f"văn bản số <b>{esc(form.result_number)}</b>" if form.result_number else "văn bản"
        issued = f" ngày {as_vietnam_time(form.result_issued_at):%d/%m/%Y}" if form.result_issued_at else ""
        story.append(para(f"Kết quả giải quyết: {number}{issued}"))
        grade = f" ({form.finished_timeliness.label_vi.lower()})" if form.finished_timeliness else ""
        story.append(para(f"Hoàn thành giải quyết: {vn_datetime(form.finished_at)}{grade}"))
    if form.returned_at is not None:
        story.append(para(f"Trả kết quả: {vn_datetime(form.returned_at)}"))
    return render("Phiếu kiểm soát quá trình giải quyết hồ sơ", form.dossier_code, story)
