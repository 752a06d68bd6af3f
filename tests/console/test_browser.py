"""The main flow by clicking, in a real headless Chromium, as each role would: the desk receives
a dossier at the counter and prints the receipt, sends it for processing; the specialist drafts
the result in the work dossier; the leader signs with the PIN; the clerk numbers, seals and
issues in one action; intake finishes the dossier by itself; the desk returns it; the citizen
scans the receipt's QR code and reads "returned" — each step checked by what a person sees.

With ``LIENTHONG_SCREENSHOTS=<folder>`` (``make screenshots``) every page is saved as a PNG.
"""

from __future__ import annotations

import asyncio
import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from shared import clock
from tests import suites
from tests.console.browser import VN_DATETIME, Browser, chromium, require_chromium, run_as_person
from tests.e2e.test_main_flow import DEMO_PIN, pdf

T = Browser.t
CODE = re.compile(r"\b\d{3}\.\d{2}\.\d{2}\.H56-\d{6}-\d{4}\b")
# the ward that receives and decides birth registrations (1.001193) in the demo deployment


def qr_url_of(receipt: Path, tmp_path: Path) -> str:
    """What a phone reads from the receipt's QR code (or, without a decoder, the URL printed
    beside it)."""
    try:
        import zxingcpp
        from PIL import Image
    except ImportError:
        zxingcpp = None
    if zxingcpp is not None and shutil.which("pdftoppm"):
        subprocess.run(
            ["pdftoppm", "-r", "150", "-png", "-singlefile", str(receipt), str(tmp_path / "receipt")], check=True
        )
        found = [b.text for b in zxingcpp.read_barcodes(Image.open(tmp_path / "receipt.png"))]
        assert len(found) == 1, found
        return found[0]
    if not shutil.which("pdftotext"):
        pytest.skip("neither a QR decoder (zxing-cpp + pdftoppm) nor pdftotext to read the receipt")
    text = subprocess.run(["pdftotext", str(receipt), "-"], capture_output=True, text=True, check=True).stdout
    return re.search(r"https?://\S+tra-cuu\?\S+", text.replace("\n", "")).group(0)  # type: ignore[union-attr]


def main_flow_by_clicking(b: Browser, tmp_path: Path) -> None:
    scan = tmp_path / "to-khai.pdf"
    scan.write_bytes(pdf(["TỜ KHAI ĐĂNG KÝ KHAI SINH", "Người yêu cầu: Nguyễn Thị Hồng Nhung"]))
    result = tmp_path / "quyet-dinh.pdf"
    result.write_bytes(pdf(["ỦY BAN NHÂN DÂN TỈNH THANH HÓA", "QUYẾT ĐỊNH", "Về việc đăng ký khai sinh"]))

    # anyone: the start page, and when a procedure would be due
    b.go("/")
    b.sees(T("Look up a dossier"), T("When would it be due?"))
    b.shot("01-start")
    b.click(T("Calculate a due date"))
    b.fill(T("Procedure: name or code"), "khai sinh")
    b.submit(T("Search"))
    b.click_starting("1.001193")
    b.sees(T("Result due"), T("Processing time"))
    assert VN_DATETIME.search(b.text), b.text
    b.shot("02-due-date")

    # the desk officer receives a dossier at the counter
    b.log_in("desk_officer.41")
    assert b.heading() == T("Desk")
    b.click(T("Receive a dossier"))
    b.fill(T("Procedure: name or code"), "1.001193")
    b.submit(T("Search"))
    b.shot("03-receive-search")
    b.click_starting("1.001193")
    b.sees(T("Result due if received now"), T("Components received"))
    due_text = b.driver.find_element("id", "due").text
    assert VN_DATETIME.fullmatch(due_text), due_text
    # a 4xx from the API comes back on the form, with what was typed kept
    b.fill(T("Full name"), "Nguyễn Thị Hồng Nhung")
    b.fill(T("Phone"), "0912 345 678 999 999 999 999")
    b.submit(T("Receive the dossier"))
    b.sees(f"{T('Phone')}: ")
    assert b.field(T("Full name")).get_attribute("value") == "Nguyễn Thị Hồng Nhung"
    b.fill(T("Phone"), "0912345678")
    b.fill(T("Address"), "Phường Hạc Thành, tỉnh Thanh Hóa")
    for element in b.driver.find_elements("css selector", "input[type=file]"):
        element.send_keys(str(scan))
    b.shot("04-receive-form")
    b.submit(T("Receive the dossier"))
    code = CODE.search(b.heading()).group(0)  # type: ignore[union-attr]
    b.sees(T("Dossier {code} received.").format(code=code), T("Accepted"), "Nguyễn Thị Hồng Nhung")
    b.shot("05-dossier-accepted")

    # the receipt (form 01) comes out as a PDF; its QR code opens the public look-up
    b.submit(T("Print the receipt (form 01)"), navigates=False)
    receipt = b.downloaded(".pdf")
    qr_url = qr_url_of(receipt, tmp_path)
    assert "/tra-cuu?code=" in qr_url and code in qr_url
    main_window = b.driver.current_window_handle
    for handle in b.driver.window_handles:
        if handle != main_window:
            b.driver.switch_to.window(handle)
            b.driver.close()
    b.driver.switch_to.window(main_window)

    # … and sends it for processing
    b.click(T("Send for processing"))
    b.fill(T("Hand over to"), "Công chức tư pháp - hộ tịch")
    b.submit(T("Send for processing"))
    b.sees(T("Being processed"))

    # a citizen with a phone scans the QR code: no log-in, status in words, Vietnamese dates
    b.driver.delete_all_cookies()
    b.driver.set_window_size(390, 844)
    b.go(qr_url)
    b.sees(code, T("Being processed"), T("Date received"), T("Result due"))
    assert VN_DATETIME.search(b.text)
    b.shot("06-lookup-phone", width=390)
    b.driver.set_window_size(1280, 900)

    # the specialist drafts the result in the work dossier and sends it to the leader
    b.log_in("specialist.41")
    assert b.heading() == T("My work")
    b.until(lambda: code in b.text, what="the work dossier of the dossier")
    b.shot("07-my-work")
    work_file_link = next(
        a
        for a in b.driver.find_elements("css selector", "main td a")
        if "/xu-ly/ho-so-cong-viec/" in a.get_attribute("href")
    )
    work_file_link.click()
    b.fill(T("What it is about"), "Quyết định đăng ký khai sinh cho cháu Nguyễn Minh Khang")
    b.fill(T("Signer's position"), "Chủ tịch")
    b.fill(T("Signer's name"), "Phạm Văn Đức")
    b.attach(T("The draft as PDF"), result)
    b.submit(T("Send to the leader for signature"))
    b.sees(T("The draft was sent to the leader for signature."), T("Draft"))
    b.shot("08-work-dossier")

    # the leader signs with the PIN (and has the province's figures a click away)
    b.log_in("leader.41")
    assert b.heading() == T("Documents waiting for my signature")
    b.sees("Quyết định đăng ký khai sinh cho cháu Nguyễn Minh Khang")
    b.shot("09-to-sign")
    b.fill(T("Signing PIN (asked once for all the documents chosen)"), "000000")
    b.submit(T("Sign the chosen documents"))
    b.sees(T("The PIN is wrong or the key is locked."))
    b.fill(T("Signing PIN (asked once for all the documents chosen)"), DEMO_PIN)
    b.submit(T("Sign the chosen documents"))
    b.sees(T("Signed: {n} document(s).").format(n=1), T("Nothing waits for your signature."))
    b.click(T("Dashboard"))
    b.sees(T("Indicators per agency"), T("Directive 15 report"))
    b.shot("15-dashboard")

    # the clerk numbers, seals and issues in one action
    b.log_in("clerk.41")
    assert b.heading() == T("Signed, to number, seal and issue")
    b.sees("Quyết định đăng ký khai sinh cho cháu Nguyễn Minh Khang")
    b.shot("10-clerk")
    b.fill(T("Seal PIN"), DEMO_PIN)
    b.submit(T("Number, seal and issue"))
    number = re.search(r"\b\d{2,}/QĐ-\S+", b.text)
    assert number, b.text
    b.sees(T("Issued as number {number}.").format(number=number.group(0).rstrip(".")))
    b.click(T("Registers"))
    b.sees(T("Outgoing documents register"), number.group(0).rstrip("."))
    b.shot("11-register")

    # intake finishes the dossier by itself; the desk returns the result
    b.log_in("desk_officer.41")
    b.click(T("Waiting to be returned"))
    b.until(lambda: code in b.text, what="the dossier finished by document.issued")
    b.shot("12-desk-waiting")
    b.click(code)
    b.sees(T("Finished, result ready"), number.group(0).rstrip("."))
    b.submit(T("Return the result"))
    b.sees(T("Result returned"))
    b.shot("13-dossier-returned")
    b.click(T("Log out"))
    b.sees(T("You have logged out."))

    # the citizen's look-up from the QR code shows it returned, in Vietnamese and in English
    b.go(qr_url)
    b.sees(T("Result returned"), T("The result has been returned to you."))
    assert len(VN_DATETIME.findall(b.text)) >= 3
    b.shot("14-lookup-returned")
    b.click("English")
    b.sees("Result returned", "Date received")
    b.click("Tiếng Việt")
    b.sees(T("Result returned"))

    # the auditor finds the dossier's steps in the audit log and checks one entry's proof
    b.log_in("auditor")
    assert b.heading() == T("Audit log")
    b.fill(T("Subject (e.g. a dossier code)"), code)
    b.submit(T("Search"))
    b.sees("vn.lienthong.dossier.received.v1")
    b.shot("16-audit-log")
    b.follow("main td a[href^='/kiem-toan/']")
    verified = T("Verified: this record is entry {index} of the signed log of {size} entries.").split("{")[0]
    b.until(lambda: verified in b.text, what="a checkpoint covering the entry")
    b.shot("17-audit-entry")

    # the administrator: accounts and the working calendar
    b.log_in("admin")
    assert b.heading() == T("Dashboard")
    b.click(T("Accounts"))
    b.sees("Lê Văn Tiếp", T("Desk officer"), T("New account"))
    b.shot("18-accounts")
    b.click(T("Calendar"))
    b.sees("Tết Nguyên Đán", T("Announced swaps"))
    b.shot("19-calendar")


async def test_main_flow_by_clicking_in_chromium(tmp_path: Path) -> None:
    require_chromium()
    async with suites.embedded(tmp_path / "suite", checkpoint_every_seconds=1.0) as running:
        with chromium() as browser:
            browser.base = running.gateway_url
            await asyncio.to_thread(run_as_person, main_flow_by_clicking, browser, tmp_path)


def desk_leader_admin_by_clicking(b: Browser, tmp_path: Path) -> None:
    # the desk drops a scan on the zone (a real drop event, carrying a file) and sends the form
    b.log_in("desk_officer.41")
    b.click(T("Receive a dossier"))
    b.fill(T("Procedure: name or code"), "1.001193")
    b.submit(T("Search"))
    b.click_starting("1.001193")
    b.sees(T("Drop the scan here, or press Enter to choose a file"))
    zone = b.driver.find_element("css selector", "#file-1 + .drop")
    assert zone.get_attribute("tabindex") == "0" and zone.get_attribute("role") == "button"
    scan = base64.b64encode(pdf(["GIẤY CHỨNG SINH", "Số: 125/GCS"])).decode()
    b.driver.execute_script(
        "const bytes = Uint8Array.from(atob(arguments[1]), c => c.charCodeAt(0));"
        "const t = new DataTransfer();"
        "t.items.add(new File([bytes], 'giay-chung-sinh.pdf', {type: 'application/pdf'}));"
        "arguments[0].dispatchEvent(new DragEvent('drop', {dataTransfer: t, bubbles: true, cancelable: true}));",
        zone,
        scan,
    )
    b.sees("giay-chung-sinh.pdf (0,0 MB)")
    b.fill(T("Full name"), "Trần Văn Bình")
    b.fill(T("Phone"), "0912345678")
    b.fill(T("Address"), "Phường Hạc Thành, tỉnh Thanh Hóa")
    b.shot("20-receive-dropped")
    b.submit(T("Receive the dossier"))
    code = CODE.search(b.heading()).group(0)  # type: ignore[union-attr]
    b.sees(T("Dossier {code} received.").format(code=code), "giay-chung-sinh.pdf")

    # the leader assigns the incoming document by picking the ward's specialist by name; a due
    # date in the past is refused on its form, the choice kept
    b.log_in("leader.41")
    b.sees(T("Incoming documents waiting for assignment"), "Đề nghị phối hợp rà soát hộ tịch")
    b.choose(T("Processed by"), "Nguyễn Văn Hộ (specialist.41)")
    b.fill(T("Due date (empty: by its urgency)"), "01/01/2020")
    b.submit(T("Assign"))
    from selenium.webdriver.support.ui import Select

    assert Select(b.field(T("Processed by"))).first_selected_option.text == "Nguyễn Văn Hộ (specialist.41)"
    b.fill(T("Due date (empty: by its urgency)"), "31/12/2099")
    b.shot("21-leader-assign")
    b.submit(T("Assign"))
    b.sees(T("Assigned to {name}, due {day}.").format(name="Nguyễn Văn Hộ", day="31/12/2099"))

    # the specialist finds it in "my work", by what it is about
    b.log_in("specialist.41")
    assert b.heading() == T("My work")
    b.sees(T("Assigned to me"), "Đề nghị phối hợp rà soát hộ tịch", "31/12/2099")

    # the administrator changes the procedure's first component in a version in force today; an
    # unknown agency is refused on the form, with everything typed kept
    today = clock.vn_today().strftime("%d/%m/%Y")
    b.log_in("admin")
    b.go("/quan-tri/thu-tuc/1.001193")
    b.fill(T("In force from"), today)
    b.fill("1. " + T("Component name"), "Tờ khai đăng ký khai sinh (mẫu 2026)")
    b.choose(T("Original or copy"), T("copy accepted"))
    b.fill(T("Number of copies"), "2")
    b.fill(T("Receiving agencies (codes, comma-separated)"), "999.99.99.H56")
    b.submit(T("Add the version"))
    b.sees("999.99.99.H56")
    assert b.field("1. " + T("Component name")).get_attribute("value") == "Tờ khai đăng ký khai sinh (mẫu 2026)"
    assert b.field(T("In force from")).get_attribute("value") == today
    b.fill(T("Receiving agencies (codes, comma-separated)"), "000.00.41.H56")
    b.submit(T("Add the version"))
    b.sees(today, "Tờ khai đăng ký khai sinh (mẫu 2026)")
    b.shot("22-procedure-components")
    # … and a later version, from the form as it now starts
    b.fill(T("In force from"), "01/01/2031")
    b.fill(T("Processing time (working hours)"), "6")
    b.submit(T("Add the version"))
    b.sees("01/01/2031", "6 giờ làm việc")
    b.shot("22-procedure-version")

    # the desk's checklist for that procedure shows the component as changed
    b.log_in("desk_officer.41")
    b.click(T("Receive a dossier"))
    b.fill(T("Procedure: name or code"), "1.001193")
    b.submit(T("Search"))
    b.click_starting("1.001193")
    b.sees("1. Tờ khai đăng ký khai sinh (mẫu 2026)", T("copy accepted"), T("{n} copies").format(n=2))


async def test_drop_a_scan_assign_a_document_edit_a_procedure(tmp_path: Path) -> None:
    require_chromium()
    async with suites.embedded(tmp_path / "suite") as running:
        async with running.client() as api:
            r = await api.post(
                "/api/document/documents/incoming",
                headers=await running.auth("clerk.41"),
                json={
                    "agency": "000.00.41.H56",
                    "type_key": "CV",
                    "subject": "Đề nghị phối hợp rà soát hộ tịch",
                    "issuing_organ": {"organ_id": "000.00.00.H56", "organ_name": "Sở Tư pháp"},
                },
            )
            assert r.status_code == 201, r.text
        with chromium() as browser:
            browser.base = running.gateway_url
            await asyncio.to_thread(run_as_person, desk_leader_admin_by_clicking, browser, tmp_path)
