"""PAdES signing per Decree 30: person, clerk's number, seal, attachment, B-LT, refusals —
judged by the pyHanko CLI, poppler's pdfsig and openssl cms, and by looking at the page."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from services.signing import fonts, policy, stamps
from services.signing.drafts import DraftLayout, fill_number_field, prepare_draft
from services.signing.pades import sign_batch, sign_pdf
from services.signing.pdfimport import PreparedImport
from services.signing.policy import (
    BrokenPdf,
    EncryptedPdf,
    NotAPdf,
    NumberAlreadyFilled,
    PdfTooLarge,
    SealNotOfYourAgency,
    SigningPolicy,
    WrongSigningOrder,
)
from services.signing.stamps import DEFAULT_RULES, MM
from services.signing.verification import verify_pdf

from .checkers import openssl_verify_signatures, pdfsig, pyhanko_validate
from .conftest import AGENCY_ID, PIN, Pki, decision_pdf

NUMBER = "15/QĐ-UBND"
TITLE = ("TM. ỦY BAN NHÂN DÂN", "CHỦ TỊCH")


@dataclass
class SignedDecision:
    draft: bytes
    person_signed: bytes
    numbered: bytes
    sealed: bytes
    path: Path


@pytest.fixture(scope="module")
def decision(pki: Pki, draft_pdf: bytes, tmp_path_factory) -> SignedDecision:
    draft = prepare_draft(draft_pdf)
    person = pki.token.signer("chu-tich", pin=PIN)
    seal = pki.token.signer("ubnd-tinh", pin=PIN)
    person_signed = sign_pdf(
        draft,
        signer=person,
        kind="person",
        timestamper=pki.timestamper,
        title_lines=TITLE,
        trust=pki.trust,
    )
    numbered = fill_number_field(person_signed, number_text=NUMBER)
    sealed = sign_pdf(
        numbered,
        signer=seal,
        kind="organisation",
        timestamper=pki.timestamper,
        trust=pki.trust,
        acting_organ_id=AGENCY_ID,
    )
    path = tmp_path_factory.mktemp("decision") / "quyet-dinh.pdf"
    path.write_bytes(sealed)
    return SignedDecision(draft, person_signed, numbered, sealed, path)


def _pyhanko_lines(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    return {line.split(":", 1)[0]: line for line in result.stdout.splitlines() if line.startswith("chu_ky")}


def test_person_number_seal_valid_for_pyhanko_cli(pki: Pki, decision: SignedDecision) -> None:
    result = pyhanko_validate(
        decision.path,
        root=pki.root_pem,
        intermediate=pki.intermediate_pem,
        extra=("--no-revocation-check",),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = _pyhanko_lines(result)
    person, seal = lines["chu_ky_nguoi_ky"], lines["chu_ky_co_quan"]
    assert ":INTACT:TRUSTED" in person and "TIMESTAMP_TOKEN<INTACT:TRUSTED>" in person
    # the clerk's number was form filling the person's signature allows
    assert "EXTENDED_WITH_FORM_FILLING" in person and "ACCEPTABLE_MODIFICATIONS" in person
    assert ":INTACT:TRUSTED" in seal and "UNTOUCHED" in seal


def test_person_number_seal_valid_for_pdfsig(decision: SignedDecision) -> None:
    report = pdfsig(decision.path)
    assert report.count("Signature Validation: Signature is Valid.") == 2, report
    assert "Signer Certificate Common Name: Nguyễn Văn Đức" in report
    assert "Signature Type: ETSI.CAdES.detached" in report
    # the seal, applied last, covers the whole file
    assert report.rstrip().split("Signature #2:")[1].count("Total document signed") == 1


def test_person_number_seal_valid_for_openssl_cms(pki: Pki, decision: SignedDecision, tmp_path: Path) -> None:
    checks = openssl_verify_signatures(decision.sealed, ca_file=pki.root_pem, workdir=tmp_path)
    assert len(checks) == 2
    assert all(c.ok for c in checks), [c.output for c in checks]


def test_our_verifier_reports_both_signatures(pki: Pki, decision: SignedDecision) -> None:
    report = verify_pdf(decision.sealed, trust=pki.trust)
    assert report.all_ok
    assert report.number_text == NUMBER
    person, seal = report.signatures
    assert person.signer_name == "Nguyễn Văn Đức"
    assert person.certificate.title == "Chủ tịch" and person.certificate.organ_id == AGENCY_ID
    assert person.certification and person.docmdp_permission == "FILL_FORMS"
    assert person.changes.level == "FORM_FILLING"
    assert set(person.changes.changed_fields) == {"so_ky_hieu", "chu_ky_co_quan"}
    assert person.timestamp is not None and person.timestamp.trusted
    assert seal.changes.level == "NONE" and seal.coverage == "ENTIRE_FILE"
    assert seal.revocation.status == "good"


def test_page_shows_signature_seal_and_vietnamese_text(decision: SignedDecision, tmp_path: Path) -> None:
    subprocess.run(
        ["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", str(decision.path), str(tmp_path / "page")],
        check=True,
    )
    page = Image.open(next(tmp_path.glob("page*.png"))).convert("RGB")
    layout = DraftLayout()
    scale = 60 / 72
    page_h = page.height / scale

    def crop(rect: tuple[float, float, float, float]) -> Image.Image:
        x0, y0, x1, y1 = rect
        return page.crop((int(x0 * scale), int((page_h - y1) * scale), int(x1 * scale), int((page_h - y0) * scale)))

    def pixels(img: Image.Image) -> list[tuple[int, int, int]]:
        raw = img.tobytes()
        return [tuple(raw[i : i + 3]) for i in range(0, len(raw), 3)]

    def count(img: Image.Image, test) -> int:
        return sum(1 for px in pixels(img) if test(px))

    block = crop(layout.person_rect())
    blue = count(block, lambda p: p[2] > 120 and p[0] < 90 and p[1] < 120)
    seal = crop(layout.seal_rect())
    red = count(seal, lambda p: p[0] > 150 and p[1] < 90 and p[2] < 100)
    assert blue > 50, "no blue signature strokes in the person's block"
    assert red > 200, "no red seal where the seal field is"
    # the seal is at real size: its red pixels span about its diameter
    xs = [x for i, px in enumerate(pixels(seal)) if px[0] > 150 and px[1] < 90 for x in (i % seal.width,)]
    diameter_px = DEFAULT_RULES.seal_diameter_mm * MM * scale
    assert max(xs) - min(xs) == pytest.approx(diameter_px, rel=0.15)

    text = subprocess.run(
        ["pdftotext", "-layout", str(decision.path), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for expected in ("Nguyễn Văn Đức", "CHỦ TỊCH", "TM. ỦY BAN NHÂN DÂN", NUMBER, "QUYẾT ĐỊNH"):
        assert expected in text, expected


def test_attachment_gets_the_text_stamp_top_right(pki: Pki, tmp_path: Path) -> None:
    seal = pki.token.signer("ubnd-tinh", pin=PIN)
    moment = datetime.now(UTC).replace(microsecond=0)
    shown = moment.astimezone(timezone(timedelta(hours=7))).isoformat()
    signed = sign_pdf(
        decision_pdf(body="Phụ lục kèm theo Quyết định"),
        signer=seal,
        kind="attachment",
        timestamper=pki.timestamper,
        number_text=NUMBER,
        signing_time=moment,
        acting_organ_id=AGENCY_ID,
    )
    path = tmp_path / "phu-luc.pdf"
    path.write_bytes(signed)
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout
    assert shown.endswith("+07:00") and shown in text  # signing time, Vietnam time, ISO 8601
    assert NUMBER in text
    # top right of page 1: both lines sit above the agency header and right of centre
    bbox = subprocess.run(["pdftotext", "-bbox", str(path), "-"], capture_output=True, text=True, check=True).stdout
    line = next(w for w in bbox.splitlines() if shown in w)
    x_min = float(line.split('xMin="')[1].split('"')[0])
    y_min = float(line.split('yMin="')[1].split('"')[0])
    assert x_min > A4[0] / 2 and y_min < 60
    result = pyhanko_validate(
        path, root=pki.root_pem, intermediate=pki.intermediate_pem, extra=("--no-revocation-check",)
    )
    assert result.returncode == 0 and ":INTACT:TRUSTED" in result.stdout, result.stdout
    assert "Signature is Valid." in pdfsig(path)
    checks = openssl_verify_signatures(signed, ca_file=pki.root_pem, workdir=tmp_path)
    assert [c.ok for c in checks] == [True]


def test_b_lt_validates_offline_from_embedded_revocation_data(pki: Pki, tmp_path: Path) -> None:
    seal = pki.token.signer("ubnd-tinh", pin=PIN)
    kwargs = dict(signer=seal, kind="attachment", timestamper=pki.timestamper, number_text=NUMBER, trust=pki.trust)
    b_lt = tmp_path / "b-lt.pdf"
    b_lt.write_bytes(sign_pdf(decision_pdf(), level="B-LT", **kwargs))
    b_t = tmp_path / "b-t.pdf"
    b_t.write_bytes(sign_pdf(decision_pdf(), level="B-T", **kwargs))
    # the PAdES LTV profile with fetching off: only what is inside the file counts
    offline = ("--ltv-profile", "pades", "--no-revocation-check")
    ok = pyhanko_validate(b_lt, root=pki.root_pem, intermediate=pki.intermediate_pem, extra=offline)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ":INTACT:TRUSTED" in ok.stdout
    without = pyhanko_validate(b_t, root=pki.root_pem, intermediate=pki.intermediate_pem, extra=offline)
    assert without.returncode != 0 and "REVINFO_FAILURE" in without.stdout
    # our verifier without any network: revocation answered from the DSS
    from services.signing.trust import TrustSettings

    offline_trust = TrustSettings(trust_roots=pki.trust.trust_roots, other_certs=pki.trust.other_certs, fetch=None)
    report = verify_pdf(b_lt.read_bytes(), trust=offline_trust)
    assert report.signatures[0].revocation.status == "good"
    assert report.signatures[0].revocation.embedded_data
    assert verify_pdf(b_t.read_bytes(), trust=offline_trust).signatures[0].revocation.status == ("unknown")


def test_batch_signs_many_documents_with_one_session(pki: Pki) -> None:
    person = pki.token.signer("chu-tich", pin=PIN)
    drafts = [prepare_draft(decision_pdf(body=f"Quyết định thứ {i}")) for i in range(5)]
    drafts.insert(2, b"not a pdf at all")
    result = sign_batch(
        drafts, signer=person, kind="person", timestamper=pki.timestamper, title_lines=TITLE, trust=pki.trust
    )
    assert result.signed == 5
    assert isinstance(result.items[2].error, NotAPdf)
    for item in result.items:
        if item.pdf is not None:
            report = verify_pdf(item.pdf, trust=pki.trust)
            assert report.all_ok and report.signatures[0].signer_name == "Nguyễn Văn Đức"
    with pytest.raises(ValueError):
        sign_batch([drafts[0]] * 101, signer=person, kind="person", timestamper=pki.timestamper)


def test_appearances_are_written_as_an_import_would_write_them(draft_pdf: bytes) -> None:
    """Appearances and fonts go into each document from bytes prepared once: the file must be
    the one pyHanko's import of the template's objects writes (but for its random /ID)."""
    person = stamps.cached_person_appearance(TITLE, "Nguyễn Văn Đức", DraftLayout().person_geometry, 2, DEFAULT_RULES)
    seal = stamps.cached_seal_appearance("Ủy ban nhân dân tỉnh Hà Giang", DEFAULT_RULES)
    font = fonts.font(DEFAULT_RULES.text_font)

    def written(take: Callable[[PreparedImport, IncrementalPdfFileWriter], generic.PdfObject]) -> bytes:
        writer = IncrementalPdfFileWriter(BytesIO(draft_pdf))
        prepared = [person._objects, seal._objects, font._objects]
        writer.root[generic.pdf_name("/Test")] = generic.ArrayObject(take(p, writer) for p in prepared)
        writer.update_root()
        out = BytesIO()
        writer.write(out)
        return re.sub(rb"/ID \[[^]]*\]", b"", out.getvalue())

    assert written(lambda p, w: p.reference_in(w)) == written(lambda p, w: w.import_object(p._ref))


# -- refusals ---------------------------------------------------------------------------------


def _encrypted_pdf() -> bytes:
    buf = BytesIO()
    c = canvas.Canvas(buf, pagesize=A4, encrypt="mat-khau")
    c.drawString(100, 700, "secret")
    c.showPage()
    c.save()
    return buf.getvalue()


def _broken_xref_pdf(draft: bytes) -> bytes:
    start = draft.rindex(b"startxref") + len(b"startxref")
    end = draft.index(b"%%EOF", start)
    return draft[:start] + b"\n999999\n" + draft[end:]


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda d: b"%PNG\r\n\x1a\n" + b"\0" * 100, NotAPdf),
        (lambda d: "Quyết định".encode(), NotAPdf),
        (lambda d: _encrypted_pdf(), EncryptedPdf),
        (_broken_xref_pdf, BrokenPdf),
        (lambda d: d[: len(d) // 2], BrokenPdf),
    ],
    ids=["png", "text", "encrypted", "broken-xref", "truncated"],
)
def test_bad_input_is_refused_with_a_clear_error(pki: Pki, draft_pdf: bytes, make, error) -> None:
    bad = make(draft_pdf)
    with pytest.raises(error) as info:
        sign_pdf(bad, signer=pki.token.signer("chu-tich", pin=PIN), kind="person", timestamper=pki.timestamper)
    assert 400 <= info.value.status < 500
    with pytest.raises(error):
        prepare_draft(bad)


def test_size_limit_is_configurable(draft_pdf: bytes) -> None:
    with pytest.raises(PdfTooLarge) as info:
        prepare_draft(draft_pdf, policy=SigningPolicy(max_pdf_bytes=len(draft_pdf) - 1))
    assert info.value.status == 413


def test_seal_of_another_agency_is_refused(pki: Pki, decision: SignedDecision) -> None:
    other = pki.token.signer("so-tu-phap", pin=PIN)
    with pytest.raises(SealNotOfYourAgency):
        sign_pdf(
            decision.numbered, signer=other, kind="organisation", timestamper=pki.timestamper, acting_organ_id=AGENCY_ID
        )


def test_signing_order_is_enforced(pki: Pki, decision: SignedDecision) -> None:
    seal = pki.token.signer("ubnd-tinh", pin=PIN)
    person = pki.token.signer("chu-tich", pin=PIN)
    with pytest.raises(WrongSigningOrder):  # seal before the person
        sign_pdf(decision.draft, signer=seal, kind="organisation", timestamper=pki.timestamper)
    with pytest.raises(WrongSigningOrder):  # seal before the number
        sign_pdf(decision.person_signed, signer=seal, kind="organisation", timestamper=pki.timestamper)
    with pytest.raises(WrongSigningOrder):  # the person signs only once, first
        sign_pdf(decision.person_signed, signer=person, kind="person", timestamper=pki.timestamper)
    with pytest.raises(NumberAlreadyFilled):
        fill_number_field(decision.numbered, number_text="16/QĐ-UBND")


def test_revoked_or_expired_certificate_cannot_sign(pki: Pki, draft_pdf: bytes) -> None:
    signer_id = pki.new_signer("bi-thu-hoi", full_name="Phạm Quốc Bảo", position="Giám đốc")
    signer = pki.token.signer(signer_id, pin=PIN)
    pki.ca.revoke(pki.token.certificate(signer_id).serial_number, reason=pades_reason("key_compromise"))
    with pytest.raises(policy.CertificateRevoked) as info:
        sign_pdf(prepare_draft(draft_pdf), signer=signer, kind="person", timestamper=pki.timestamper, trust=pki.trust)
    assert info.value.status == 403
    fresh = pki.token.signer("chu-tich", pin=PIN)
    with pytest.raises(policy.CertificateExpired):
        sign_pdf(
            prepare_draft(draft_pdf),
            signer=fresh,
            kind="person",
            timestamper=pki.timestamper,
            trust=pki.trust,
            signing_time=datetime.now(UTC) + timedelta(days=4 * 365),
        )


def pades_reason(name: str):
    from services.signing.pki.register import RevocationReason

    return getattr(RevocationReason, name)


def test_a_scanned_signature_image_can_be_used(pki: Pki, draft_pdf: bytes, tmp_path: Path) -> None:
    scan = Image.new("RGBA", (300, 120), (0, 0, 0, 0))
    for x in range(20, 280):  # a thick diagonal stroke stands in for a scan
        for dy in range(6):
            # green, so it cannot be mistaken for the generated blue signature
            scan.putpixel((x, 20 + x * 80 // 280 + dy), (20, 160, 40, 255))
    signed = sign_pdf(
        prepare_draft(draft_pdf),
        signer=pki.token.signer("chu-tich", pin=PIN),
        kind="person",
        timestamper=pki.timestamper,
        title_lines=TITLE,
        appearance_image=scan,
    )
    assert verify_pdf(signed, trust=pki.trust).all_ok
    path = tmp_path / "scan.pdf"
    path.write_bytes(signed)
    subprocess.run(["pdftoppm", "-png", "-r", "60", str(path), str(tmp_path / "p")], check=True)
    page = Image.open(next(tmp_path.glob("p*.png"))).convert("RGB")
    colours = {colour for _, colour in page.getcolors(1 << 16)}
    assert any(g > 120 and r < 80 and b < 90 for r, g, b in colours), "the scanned stroke is not on the page"


def test_text_the_stamp_cannot_show_is_refused(pki: Pki, draft_pdf: bytes) -> None:
    seal = pki.token.signer("ubnd-tinh", pin=PIN)
    with pytest.raises(policy.InvalidNumberText):
        sign_pdf(draft_pdf, signer=seal, kind="attachment", timestamper=pki.timestamper, number_text="15/文件")
    with pytest.raises(policy.InvalidAppearance):
        sign_pdf(
            prepare_draft(draft_pdf),
            signer=pki.token.signer("chu-tich", pin=PIN),
            kind="person",
            timestamper=pki.timestamper,
            title_lines=("KT. CHỦ TỊCH", "PHÓ CHỦ TỊCH", "THƯỜNG TRỰC"),
        )
    with pytest.raises(policy.InvalidNumberText):
        fill_number_field(prepare_draft(draft_pdf), number_text="x" * 51)
