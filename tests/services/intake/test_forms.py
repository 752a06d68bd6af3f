"""Printable forms 01–05 checked with independent tools (poppler's pdftotext and pdffonts, a QR
decoder), and the demo catalogue the forms are filled from."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import replace
from datetime import datetime, time
from pathlib import Path

import pytest

from services.intake import catalogue_seed as seed
from services.intake.calendar import VN_TZ, WorkingCalendar
from services.intake.forms import (
    ApologyForm,
    Applicant,
    IssuingOffice,
    MissingItem,
    ReceiptForm,
    ReceivedComponent,
    RefusalForm,
    SupplementRequestForm,
    TrackingEntry,
    TrackingSheetForm,
    apology_pdf,
    receipt_pdf,
    receipt_qr_payload,
    refusal_pdf,
    supplement_request_pdf,
    tracking_sheet_pdf,
)
from services.intake.workflow import Timeliness
from tests.servers import missing


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} (poppler-utils) is not installed: PDF content checks cannot run"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    """Text as poppler extracts it, whitespace collapsed (table cells wrap lines)."""
    source = tmp_path / "form.pdf"
    source.write_bytes(pdf)
    out = subprocess.run(
        [_require("pdftotext"), "-enc", "UTF-8", str(source), "-"],
        check=True,
        capture_output=True,
    )
    return " ".join(out.stdout.decode("utf-8").split())


def pdf_fonts(pdf: bytes, tmp_path: Path) -> list[tuple[str, str]]:
    """(font name, embedded yes/no) rows from pdffonts."""
    source = tmp_path / "fonts.pdf"
    source.write_bytes(pdf)
    out = subprocess.run(
        [_require("pdffonts"), str(source)], check=True, capture_output=True, text=True
    ).stdout
    rows = []
    for line in out.splitlines()[2:]:
        name, *_rest = line.split()
        emb = re.search(r"\s(yes|no)\s+(yes|no)\s+(yes|no)\s", line)
        assert emb, line
        rows.append((name, emb.group(1)))
    return rows


def vn(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=VN_TZ)


WARD = seed.agency(seed.PHUONG_HAC_THANH)
OFFICE = IssuingOffice(superior="UBND tỉnh Thanh Hóa", name=WARD.name)
NHUNG = Applicant(
    name="Nguyễn Thị Hồng Nhung",
    address="Số 12 phố Lê Lợi, phường Hạc Thành, tỉnh Thanh Hóa",
    phone="0912 345 678",
)
KHAI_SINH = next(p for p in seed.PROCEDURES if p.code == "1.001193")
DOSSIER = "000.00.41.H56-260415-0007"
LOOKUP_URL = f"https://dichvucong.thanhhoa.example/tra-cuu?ma={DOSSIER}&k=K7Q2-9XMP"


def make_receipt() -> ReceiptForm:
    received = vn(4, 15, 15, 30)  # Wednesday, after the 15:00 cut-off
    due = WorkingCalendar().due_date(
        received, KHAI_SINH.processing_hours, cutoff=KHAI_SINH.cutoff
    )
    assert due is not None
    return ReceiptForm(
        office=OFFICE,
        dossier_code=DOSSIER,
        procedure_code=KHAI_SINH.code,
        procedure_name=KHAI_SINH.name,
        applicant=NHUNG,
        components=[
            ReceivedComponent(name=c.name, copies=c.copies, original=c.original_required)
            for c in KHAI_SINH.components
        ]
        + [ReceivedComponent(name="Giấy chứng nhận kết hôn của cha mẹ", original=False)],
        received_at=received,
        due_at=due,
        desk_officer="Lê Văn Đức",
        lookup_secret="K7Q2-9XMP",
        lookup_url=LOOKUP_URL,
        processing_hours=KHAI_SINH.processing_hours,
    )


# ------------------------------------------------------------------ form 01

def test_receipt_text(tmp_path: Path) -> None:
    text = pdf_text(receipt_pdf(make_receipt()), tmp_path)
    for expected in (
        "GIẤY TIẾP NHẬN HỒ SƠ VÀ HẸN TRẢ KẾT QUẢ",
        "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM",
        "UBND PHƯỜNG HẠC THÀNH",
        f"Mã hồ sơ: {DOSSIER}",
        "Nguyễn Thị Hồng Nhung",
        "Thủ tục đăng ký khai sinh (mã thủ tục 1.001193)",
        "Tờ khai đăng ký khai sinh",
        "Giấy chứng nhận kết hôn của cha mẹ",
        "Bản chính",
        "Bản sao",
        "01 ngày làm việc",
        "Thời gian nhận hồ sơ: 15 giờ 30 phút, ngày 15 tháng 04 năm 2026",
        # After the cut-off: the clock starts Thursday 07:30, one working day → 17:30.
        "Thời gian trả kết quả giải quyết hồ sơ: 17 giờ 30 phút, ngày 16 tháng 04 năm 2026",
        "Mã tra cứu (bí mật): K7Q2-9XMP",
        "Lê Văn Đức",
        "Thanh Hóa, ngày 15 tháng 04 năm 2026",
    ):
        assert expected in text, expected


def test_only_embedded_dejavu_fonts(tmp_path: Path) -> None:
    fonts = pdf_fonts(receipt_pdf(make_receipt()), tmp_path)
    names = {name.split("+")[-1] for name, _ in fonts}
    assert names == {"DejaVuSans", "DejaVuSans-Bold"}
    assert all(embedded == "yes" for _, embedded in fonts), fonts


def test_receipt_qr_payload_is_the_lookup_url() -> None:
    assert receipt_qr_payload(make_receipt()) == LOOKUP_URL


def test_receipt_qr_code_decodes_to_the_lookup_url(tmp_path: Path) -> None:
    try:
        import zxingcpp
        from PIL import Image as image_module
    except ImportError:
        missing("no QR decoder (zxing-cpp and Pillow, dev dependencies)")
    source = tmp_path / "receipt.pdf"
    source.write_bytes(receipt_pdf(make_receipt()))
    subprocess.run(
        [_require("pdftoppm"), "-r", "150", "-png", "-singlefile", str(source), str(tmp_path / "page")],
        check=True,
    )
    found = zxingcpp.read_barcodes(image_module.open(tmp_path / "page.png"))
    assert [barcode.text for barcode in found] == [LOOKUP_URL]


@pytest.mark.parametrize("url", ["javascript:alert(1)", "/tra-cuu?ma=1", "https://a.vn/x y"])
def test_receipt_refuses_a_lookup_url_that_is_not_absolute_http(url: str) -> None:
    with pytest.raises(ValueError):
        replace(make_receipt(), lookup_url=url)


def test_receipt_escapes_markup_in_user_text(tmp_path: Path) -> None:
    receipt = make_receipt()
    tricky = Applicant(name="Trần Văn <b>A</b> & Co")
    text = pdf_text(receipt_pdf(replace(receipt, applicant=tricky)), tmp_path)
    assert "Trần Văn <b>A</b> & Co" in text


# ------------------------------------------------------------------ forms 02–05

def test_supplement_request_lists_every_missing_item(tmp_path: Path) -> None:
    form = SupplementRequestForm(
        office=OFFICE,
        dossier_code=DOSSIER,
        procedure_name="Thủ tục cấp giấy phép xây dựng mới đối với nhà ở riêng lẻ",
        applicant=NHUNG,
        missing_items=[
            MissingItem(name="Bản vẽ mặt bằng móng", detail="Thiếu chữ ký của đơn vị thiết kế"),
            MissingItem(name="Bản sao Giấy chứng nhận quyền sử dụng đất"),
            MissingItem(name="Ảnh chụp hiện trạng công trình", detail="02 ảnh, khổ 10 x 15 cm"),
        ],
        requested_at=vn(4, 16, 9),
        officer="Phạm Quốc Huy",
        officer_phone="0237 3852 000",
    )
    text = pdf_text(supplement_request_pdf(form), tmp_path)
    assert "PHIẾU YÊU CẦU BỔ SUNG, HOÀN THIỆN HỒ SƠ" in text
    for item in form.missing_items:
        assert item.name in text
    assert "Thiếu chữ ký của đơn vị thiết kế" in text
    assert "Phạm Quốc Huy theo số điện thoại 0237 3852 000" in text
    with pytest.raises(ValueError):
        replace(form, missing_items=[])


def test_refusal_states_its_reasons(tmp_path: Path) -> None:
    form = RefusalForm(
        office=OFFICE,
        procedure_name="Thủ tục đăng ký kết hôn",
        applicant=Applicant(name="Hoàng Minh Tuấn"),
        reasons=[
            "Hồ sơ không thuộc thẩm quyền giải quyết của UBND phường Hạc Thành",
            "Người yêu cầu chưa đủ tuổi kết hôn theo Luật Hôn nhân và gia đình",
        ],
        refused_at=vn(4, 16, 10),
        officer="Lê Văn Đức",
    )
    text = pdf_text(refusal_pdf(form), tmp_path)
    assert "PHIẾU TỪ CHỐI TIẾP NHẬN GIẢI QUYẾT HỒ SƠ" in text
    assert "1. Hồ sơ không thuộc thẩm quyền giải quyết của UBND phường Hạc Thành" in text
    assert "2. Người yêu cầu chưa đủ tuổi kết hôn" in text
    assert "Hoàng Minh Tuấn" in text
    with pytest.raises(ValueError):
        replace(form, reasons=["  "])


def test_apology_gives_the_new_date_and_the_reason(tmp_path: Path) -> None:
    form = ApologyForm(
        office=OFFICE,
        dossier_code=DOSSIER,
        procedure_name="Thủ tục đăng ký lại khai sinh",
        applicant=NHUNG,
        received_at=vn(4, 13, 8),
        original_due_at=vn(4, 17, 17, 30),
        new_due_at=vn(4, 22, 17, 30),
        reason="Cần xác minh thông tin tại nơi đăng ký khai sinh trước đây.",
        issued_at=vn(4, 16, 14),
        signer_name="Đỗ Thị Thu Hà",
        signer_title="Chủ tịch UBND phường",
    )
    text = pdf_text(apology_pdf(form), tmp_path)
    assert "PHIẾU XIN LỖI VÀ HẸN LẠI NGÀY TRẢ KẾT QUẢ" in text
    assert "17 giờ 30 phút, ngày 17 tháng 04 năm 2026" in text
    assert "hẹn trả kết quả vào: 17 giờ 30 phút, ngày 22 tháng 04 năm 2026" in text
    assert "Cần xác minh thông tin tại nơi đăng ký khai sinh trước đây." in text
    assert "Đỗ Thị Thu Hà" in text
    with pytest.raises(ValueError):
        replace(form, new_due_at=form.original_due_at)


def test_tracking_sheet_records_every_hand_off(tmp_path: Path) -> None:
    form = TrackingSheetForm(
        office=OFFICE,
        dossier_code=DOSSIER,
        procedure_name=KHAI_SINH.name,
        applicant=NHUNG,
        received_at=vn(4, 15, 15, 30),
        due_at=vn(4, 16, 17, 30),
        processing_units="Công chức Tư pháp - Hộ tịch",
        entries=[
            TrackingEntry(
                from_whom="Lê Văn Đức",
                to_whom="Trần Thị Mai",
                handed_at=vn(4, 16, 7, 45),
                step_due_at=vn(4, 16, 15, 30),
                timeliness=Timeliness.EARLY,
            ),
            TrackingEntry(
                from_whom="Trần Thị Mai",
                to_whom="Đỗ Thị Thu Hà",
                handed_at=vn(4, 16, 10),
                step_due_at=vn(4, 16, 16, 30),
                timeliness=Timeliness.ON_TIME,
                note="Trình ký",
            ),
            TrackingEntry(
                from_whom="Đỗ Thị Thu Hà",
                to_whom="Lê Văn Đức",
                handed_at=vn(4, 16, 17),
                step_due_at=vn(4, 16, 16, 45),
                timeliness=Timeliness.LATE,
            ),
        ],
    )
    text = pdf_text(tracking_sheet_pdf(form), tmp_path)
    assert "PHIẾU KIỂM SOÁT QUÁ TRÌNH GIẢI QUYẾT HỒ SƠ" in text
    for word in ("Trước hạn", "Đúng hạn", "Quá hạn", "Trần Thị Mai", "Trình ký", "07:45 16/04/2026"):
        assert word in text, word


# ------------------------------------------------------------------ demo catalogue

ORGAN_ID = re.compile(r"^\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}$")


def is_valid_organ_id(code: str) -> bool:
    """Decision 20/2020/QĐ-TTg shape, and a level is only set if the one above it is."""
    if not ORGAN_ID.match(code):
        return False
    level4, level3, level2, _ = code.split(".")
    return not (level3 != "00" and level2 == "00") and not (level4 != "000" and level3 == "00")


def organ_level(code: str) -> int:
    level4, level3, level2, _ = code.split(".")
    return 1 + (level2 != "00") + (level3 != "00") + (level4 != "000")


def organ_parent(code: str) -> str | None:
    level4, level3, level2, level1 = code.split(".")
    if level4 != "000":
        return f"000.{level3}.{level2}.{level1}"
    if level3 != "00":
        return f"000.00.{level2}.{level1}"
    if level2 != "00":
        return f"000.00.00.{level1}"
    return None


@pytest.mark.parametrize(
    ("code", "valid"),
    [
        ("000.00.00.H56", True),
        ("000.17.22.H56", True),
        ("000.00.18.G12", True),
        ("000.17.00.H56", False),  # level 3 without level 2
        ("000.00.00.h56", False),
        ("00.00.00.H56", False),
        ("000.00.00.H56 ", False),
    ],
)
def test_organ_id_helper(code: str, valid: bool) -> None:
    assert is_valid_organ_id(code) is valid


def test_agency_tree_is_consistent_with_its_codes() -> None:
    codes = [a.code for a in seed.AGENCIES]
    assert len(codes) == len(set(codes))
    assert seed.agency("000.00.00.H56").name == "UBND tỉnh Thanh Hóa"
    for agency in seed.AGENCIES:
        assert is_valid_organ_id(agency.code), agency.code
        assert agency.code.endswith(".H56")
        assert agency.level == organ_level(agency.code), agency.code
        assert agency.parent_code == organ_parent(agency.code), agency.code
        if agency.parent_code is not None:
            assert agency.parent_code in codes
    assert {a.level for a in seed.AGENCIES} == {1, 2, 3, 4}
    assert any(a.name.startswith("UBND phường") or a.name.startswith("UBND xã") for a in seed.AGENCIES)


def test_procedure_catalogue() -> None:
    procedures = seed.PROCEDURES
    assert len(procedures) >= 15
    codes = [p.code for p in procedures]
    assert len(codes) == len(set(codes))
    agencies = {a.code for a in seed.AGENCIES}
    for p in procedures:
        assert re.fullmatch(r"\d\.\d{6}", p.code), p.code
        assert p.name.startswith("Thủ tục "), p.name
        assert p.processing_hours > 0 and p.fee_vnd >= 0
        assert p.components and all(c.copies >= 1 and c.name for c in p.components)
        assert p.receiving_agency in agencies
        assert p.code_at_agency == f"{p.code}.{p.receiving_agency}"
        assert p.cutoff in (None, time(15, 0))
    assert len({p.sector for p in procedures}) >= 9
    assert {p.online_level for p in procedures} == {seed.OnlineLevel.FULL, seed.OnlineLevel.PARTIAL}
    assert KHAI_SINH.processing_hours == 8 and KHAI_SINH.cutoff == time(15, 0)
    assert seed.procedures_received_by(seed.PHUONG_HAC_THANH)
