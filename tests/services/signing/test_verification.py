"""Verification reports: tampering, changes after signing, revocation judged at the
time-stamp, foreign CAs, unsigned files — cross-checked with the independent tools."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name, pdf_string
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

from services.signing import stamps
from services.signing.drafts import fill_number_field, prepare_draft
from services.signing.pades import sign_pdf
from services.signing.pki.authority import CertificateAuthority
from services.signing.pki.config import PkiConfig
from services.signing.pki.register import RevocationReason
from services.signing.policy import CertificateRevoked
from services.signing.softkeys import development_signer_from_pkcs12, write_development_pkcs12
from services.signing.verification import verify_pdf

from .checkers import openssl_verify_signatures, pdfsig, pyhanko_validate
from .conftest import AGENCY, AGENCY_ID, PIN, Pki, decision_pdf

NUMBER = "27/QĐ-UBND"
TITLE = ("TM. ỦY BAN NHÂN DÂN", "CHỦ TỊCH")


@pytest.fixture(scope="module")
def person_signed(pki: Pki) -> bytes:
    return sign_pdf(
        prepare_draft(decision_pdf()),
        signer=pki.token.signer("chu-tich", pin=PIN),
        kind="person",
        timestamper=pki.timestamper,
        title_lines=TITLE,
    )


@pytest.fixture(scope="module")
def sealed(pki: Pki, person_signed: bytes) -> bytes:
    return sign_pdf(
        fill_number_field(person_signed, number_text=NUMBER),
        signer=pki.token.signer("ubnd-tinh", pin=PIN),
        kind="organisation",
        timestamper=pki.timestamper,
    )


def _incremental(pdf: bytes, change) -> bytes:
    writer = IncrementalPdfFileWriter(BytesIO(pdf))
    change(writer)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def test_one_byte_tamper_is_caught_by_every_checker(pki: Pki, sealed: bytes, tmp_path: Path) -> None:
    position = sealed.index(b"ReportLab Generated PDF document") + 6
    tampered = sealed[:position] + b"A" + sealed[position + 1 :]  # "ReportLab" -> "ReportLAb"
    assert len(tampered) == len(sealed) and tampered != sealed
    path = tmp_path / "tampered.pdf"
    path.write_bytes(tampered)

    cli = pyhanko_validate(path, root=pki.root_pem, intermediate=pki.intermediate_pem, extra=("--no-revocation-check",))
    assert cli.returncode != 0
    assert cli.stdout.count(":INVALID") == 2, cli.stdout
    report = pdfsig(path)
    assert "Signature is Valid" not in report
    assert report.count("Digest Mismatch") == 2, report
    checks = openssl_verify_signatures(tampered, ca_file=pki.root_pem, workdir=tmp_path)
    assert [c.ok for c in checks] == [False, False]
    ours = verify_pdf(tampered, trust=pki.trust)
    assert [s.intact for s in ours.signatures] == [False, False]
    assert not ours.all_ok


def _add_page_content(writer: IncrementalPdfFileWriter) -> None:
    stream = generic.StreamObject(stream_data=b"q 1 0 0 rg 100 400 200 40 re f Q")
    writer.add_stream_to_page(0, writer.add_object(stream))


def _add_text_field(writer: IncrementalPdfFileWriter) -> None:
    page_ref, _ = writer.find_page_for_modification(0)
    field = generic.DictionaryObject(
        {
            pdf_name("/FT"): pdf_name("/Tx"),
            pdf_name("/T"): pdf_string("ghi_chu"),
            pdf_name("/V"): pdf_string("Đã sửa nội dung"),
            pdf_name("/Type"): pdf_name("/Annot"),
            pdf_name("/Subtype"): pdf_name("/Widget"),
            pdf_name("/Rect"): generic.ArrayObject([generic.FloatObject(v) for v in (100, 300, 300, 320)]),
            pdf_name("/P"): page_ref,
        }
    )
    ref = writer.add_object(field)
    form = writer.root["/AcroForm"]
    form["/Fields"].append(ref)
    writer.update_container(form)
    page = page_ref.get_object()
    page["/Annots"].append(ref)
    writer.update_container(page)


@pytest.mark.parametrize("change", [_add_page_content, _add_text_field], ids=["page-content", "new-form-field"])
def test_change_other_than_the_number_is_not_permitted(pki: Pki, person_signed: bytes, change, tmp_path: Path) -> None:
    modified = _incremental(fill_number_field(person_signed, number_text=NUMBER), change)
    report = verify_pdf(modified, trust=pki.trust)
    (person,) = report.signatures
    assert person.intact and person.trusted  # the signed bytes themselves are fine…
    assert not person.changes.permitted  # …but what came after is not allowed
    assert not person.ok
    path = tmp_path / "modified.pdf"
    path.write_bytes(modified)
    cli = pyhanko_validate(path, root=pki.root_pem, intermediate=pki.intermediate_pem, extra=("--no-revocation-check",))
    assert "ACCEPTABLE_MODIFICATIONS" not in cli.stdout and cli.returncode != 0, cli.stdout


def test_number_filling_alone_is_permitted(pki: Pki, person_signed: bytes) -> None:
    (person,) = verify_pdf(fill_number_field(person_signed, number_text=NUMBER), trust=pki.trust).signatures
    assert person.ok
    assert person.changes.changed_fields == ("so_ky_hieu",)
    assert person.changes.level == "FORM_FILLING"


def test_renumbering_after_the_seal_breaks_the_seal_only(pki: Pki, sealed: bytes) -> None:
    def renumber(writer: IncrementalPdfFileWriter) -> None:
        for ref in writer.root["/AcroForm"]["/Fields"]:
            field = ref.get_object()
            if field.get("/T") == "so_ky_hieu":
                field[pdf_name("/V")] = pdf_string("99/QĐ-UBND")
                ap = stamps.number_field_appearance(number_text="99/QĐ-UBND", width=168, height=18)
                field[pdf_name("/AP")] = generic.DictionaryObject({pdf_name("/N"): ap.reference_in(writer)})
                writer.update_container(field)

    person, seal = verify_pdf(_incremental(sealed, renumber), trust=pki.trust).signatures
    assert person.changes.permitted  # the person left the number open
    assert not seal.changes.permitted and not seal.ok  # the seal locked every field


def test_revocation_after_a_timestamped_signature_leaves_it_valid(pki: Pki, tmp_path: Path) -> None:
    signer_id = pki.new_signer("pho-giam-doc", full_name="Đỗ Thị Hạnh", position="Phó Giám đốc")
    signer = pki.token.signer(signer_id, pin=PIN)
    serial = pki.token.certificate(signer_id).serial_number
    t0 = datetime.now(UTC).replace(microsecond=0)
    real_clock = pki.ca.clock
    try:
        pki.ca.clock = lambda: t0 + timedelta(minutes=1)  # the TSA's and the CA's "now"
        before = sign_pdf(
            prepare_draft(decision_pdf()),
            signer=signer,
            kind="person",
            timestamper=pki.timestamper,
            trust=pki.trust,
            signing_time=t0 + timedelta(minutes=1),
        )
        pki.ca.revoke(serial, reason=RevocationReason.key_compromise, revoked_at=t0 + timedelta(minutes=2))
        pki.ca.clock = lambda: t0 + timedelta(minutes=3)
        with pytest.raises(CertificateRevoked):
            sign_pdf(
                prepare_draft(decision_pdf()),
                signer=signer,
                kind="person",
                timestamper=pki.timestamper,
                trust=pki.trust,
                signing_time=t0 + timedelta(minutes=3),
            )
        # a signature made anyway (e.g. by software that skipped the check)
        after = sign_pdf(
            prepare_draft(decision_pdf()),
            signer=signer,
            kind="person",
            timestamper=pki.timestamper,
            signing_time=t0 + timedelta(minutes=3),
        )
        at = t0 + timedelta(minutes=4)
        (early,) = verify_pdf(before, trust=pki.trust, at=at).signatures
        (late,) = verify_pdf(after, trust=pki.trust, at=at).signatures
    finally:
        pki.ca.clock = real_clock

    assert early.timestamp is not None and early.timestamp.time == t0 + timedelta(minutes=1)
    assert early.revocation.status == "good"
    assert early.revocation.checked_at == t0 + timedelta(minutes=1)
    assert early.ok
    assert late.revocation.status == "revoked"
    assert late.revocation.revoked_at == t0 + timedelta(minutes=2)
    assert late.revocation.reason == "key_compromise"
    assert not late.trusted and not late.ok


def test_signature_from_a_foreign_ca_is_not_trusted(pki: Pki, tmp_path: Path) -> None:
    foreign = CertificateAuthority.create(tmp_path / "ca", passphrase=b"x", config=PkiConfig(ca_key_size=2048))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = foreign.issue_organisation_certificate(key.public_key(), organisation_name=AGENCY, organ_id=AGENCY_ID)
    p12 = tmp_path / "dev.p12"
    write_development_pkcs12(p12, key=key, certificate=cert, chain=foreign.chain(), passphrase=b"dev")
    signer = development_signer_from_pkcs12(p12, passphrase=b"dev")
    signed = sign_pdf(decision_pdf(), signer=signer, kind="attachment", number_text=NUMBER, timestamper=pki.timestamper)
    (sig,) = verify_pdf(signed, trust=pki.trust).signatures
    assert sig.intact and sig.valid
    assert not sig.trusted and sig.trust_problem is not None and not sig.ok
    assert sig.certificate.issuer.endswith("Country: VN")


def test_unsigned_pdf_has_no_signatures(pki: Pki) -> None:
    report = verify_pdf(decision_pdf(), trust=pki.trust)
    assert report.signatures == [] and not report.all_ok and report.number_text is None


def test_garbage_signature_contents_are_reported_not_raised(pki: Pki, sealed: bytes) -> None:
    first = sealed.index(b"/ByteRange")
    a, b = (int(x) for x in sealed[first:].split(b"[", 1)[1].split()[:2])
    broken = sealed[: a + b + 1] + b"3082ffff" + sealed[a + b + 9 :]  # a CMS length past the end
    report = verify_pdf(broken, trust=pki.trust)
    assert len(report.signatures) == 2
    bad = next(s for s in report.signatures if s.error is not None)
    assert not bad.ok and not bad.intact
    assert not report.all_ok
