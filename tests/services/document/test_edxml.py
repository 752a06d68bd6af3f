"""edXML envelopes and status messages: what is sent is what is read, and nothing else gets in."""

from __future__ import annotations

import base64
import os
from dataclasses import fields, replace
from datetime import UTC, date, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import XMLSigner
from signxml.algorithms import SignatureConstructionMethod

from services.document import edxml
from services.document.doctypes import Urgency
from services.document.edxml import (
    NS,
    VIETNAM_TIME,
    Attachment,
    BadSignature,
    DocumentCode,
    DocumentType,
    EnvelopeTooLarge,
    Limits,
    MalformedEnvelope,
    MessageHeader,
    Organization,
    OtherInfo,
    PromulgationInfo,
    ResponseFor,
    SignerInfo,
    StaffInfo,
    StatusCode,
    StatusMessage,
    TraceHeader,
    UnknownCertificate,
    UnsignedEnvelope,
    WireFormat,
    build_envelope,
    build_status,
    make_cert_validator,
    make_document_id,
    parse_envelope,
    parse_status,
)
from services.document.numbering import edxml_parts, parse_code

DS = "http://www.w3.org/2000/09/xmldsig#"
NOW = datetime.now(UTC)


# --- throwaway PKI -----------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "UBND tỉnh Thanh Hóa"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=sign,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _cert(
    cn: str,
    *,
    issuer: tuple[rsa.RSAPrivateKey, x509.Certificate] | None = None,
    ca: bool = False,
    sign: bool = True,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer_key, issuer_name = (issuer[0], issuer[1].subject) if issuer else (key, _name(cn))
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - timedelta(days=1))
        .not_valid_after(not_after or NOW + timedelta(days=365))
        .add_extension(_usage(sign=sign, ca=ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[0].public_key()),
            critical=False,
        )
    return key, builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def sender() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    return _cert("Văn thư UBND tỉnh Thanh Hóa")


@pytest.fixture(scope="module")
def stranger() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    return _cert("Kẻ mạo danh")


@pytest.fixture(scope="module")
def root_ca() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    return _cert("CA chuyên dùng (thử nghiệm)", ca=True)


# --- a complete header -------------------------------------------------------------------------

FROM = Organization(
    organ_id="000.00.00.H56",
    organ_name="UBND tỉnh Thanh Hóa",
    organization_in_charge="Văn phòng UBND tỉnh",
    organ_add="35 Đại lộ Lê Lợi, phường Lam Sơn, TP. Thanh Hóa",
    email="vanthu@thanhhoa.gov.vn",
    telephone="0237 3852 466",
    fax="0237 3852 800",
    website="https://thanhhoa.gov.vn",
)
TO = (
    Organization(
        "000.00.00.G22",
        "Văn phòng Chính phủ",
        "Cục Kiểm soát TTHC",
        "1 Hoàng Hoa Thám",
        "vpcp@chinhphu.vn",
        "080 43100",
        "080 44130",
        "https://vpcp.chinhphu.vn",
    ),
    Organization("000.00.00.H41", "UBND tỉnh Nghệ An"),
    Organization("000.00.14.H56", "Sở Nội vụ tỉnh Thanh Hóa", email="snv@thanhhoa.gov.vn"),
)
CODE = DocumentCode(*edxml_parts(parse_code("15/CT-UBND")))
PROMULGATED = date(2020, 5, 22)


def full_header() -> MessageHeader:
    return MessageHeader(
        from_=FROM,
        to=TO,
        code=CODE,
        promulgation_info=PromulgationInfo("Thanh Hóa", PROMULGATED),
        document_type=DocumentType("2", "Chỉ thị"),
        subject="Về việc đẩy mạnh xử lý hồ sơ công việc trên môi trường mạng, sử dụng chữ ký số và văn bản điện tử",
        content="Để đẩy mạnh ứng dụng công nghệ thông tin… 100% văn bản được ký số.",
        signer_info=SignerInfo("Thay mặt", "Chủ tịch", "Nguyễn Đình Xứng"),
        due_date=date(2020, 6, 30),
        to_places=("Như trên", "Các sở, ban, ngành", "Lưu: VT, KSTTHC."),
        other_info=OtherInfo(
            priority=edxml.PRIORITY_BY_URGENCY[Urgency.THUONG_KHAN],
            sphere_of_promulgation="Toàn tỉnh",
            typer_notation="VT",
            promulgation_amount=120,
            page_amount=4,
            appendixes=("Phụ lục I: Danh mục hồ sơ", "Phụ lục II: Lộ trình"),
        ),
        response_for=(
            ResponseFor(
                "000.00.00.G22",
                "7816/VPCP-TTĐT",
                date(2020, 5, 1),
                "000.00.00.G22,2020/05/01,7816/VPCP-TTĐT",
            ),
        ),
        steering_type="1",
        document_id=make_document_id(FROM.organ_id, PROMULGATED, CODE),
    )


TRACES = (
    TraceHeader("000.00.00.H56", datetime(2020, 5, 22, 15, 30, 5, tzinfo=VIETNAM_TIME)),
    TraceHeader("000.00.00.G22", datetime(2020, 5, 22, 8, 31, 0, tzinfo=UTC)),
)
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"
BLOB = os.urandom(70_001)
ATTACHMENTS = (
    Attachment(PDF, "application/pdf", "15-CT-UBND.pdf", "Chỉ thị đã ký số"),
    Attachment(
        BLOB,
        "application/octet-stream",
        "Phụ lục kèm theo.bin",
        "Phụ lục",
        content_id="phu-luc-2@thanhhoa.gov.vn",
    ),
)


@pytest.fixture(scope="module")
def signed(sender: tuple[rsa.RSAPrivateKey, x509.Certificate]) -> bytes:
    key, cert = sender
    return build_envelope(full_header(), ATTACHMENTS, signing_key=key, certificate=cert, trace_headers=TRACES)


def _tree(data: bytes) -> etree._Element:
    return etree.fromstring(data)


def _bytes(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _find(root: etree._Element, path: str) -> etree._Element:
    found = root.find(path, namespaces={"e": NS, "ds": DS})
    assert found is not None, path
    return found


# --- round trip --------------------------------------------------------------------------------


def test_round_trip_field_by_field(signed: bytes, sender) -> None:
    parsed = parse_envelope(signed, trusted_certs=[sender[1]])
    got, want = parsed.header, full_header()
    for f in fields(MessageHeader):
        assert getattr(got, f.name) == getattr(want, f.name), f.name
    # And the nested ones one by one, so a failure names the field.
    assert got.from_.organ_add == "35 Đại lộ Lê Lợi, phường Lam Sơn, TP. Thanh Hóa"
    assert [t.organ_id for t in got.to] == ["000.00.00.G22", "000.00.00.H41", "000.00.14.H56"]
    assert got.to[0].fax == "080 44130" and got.to[2].email == "snv@thanhhoa.gov.vn"
    assert (got.code.code_number, got.code.code_notation) == ("15", "CT-UBND")
    assert got.promulgation_info == PromulgationInfo("Thanh Hóa", date(2020, 5, 22))
    assert got.document_type == DocumentType("2", "Chỉ thị")
    assert got.signer_info.full_name == "Nguyễn Đình Xứng"
    assert got.due_date == date(2020, 6, 30)
    assert got.to_places == ("Như trên", "Các sở, ban, ngành", "Lưu: VT, KSTTHC.")
    assert edxml.urgency_for_priority(got.other_info.priority) is Urgency.THUONG_KHAN
    assert got.other_info.appendixes == ("Phụ lục I: Danh mục hồ sơ", "Phụ lục II: Lộ trình")
    assert got.other_info.promulgation_amount == 120 and got.other_info.page_amount == 4
    assert got.response_for[0].code == "7816/VPCP-TTĐT"
    assert got.document_id == "000.00.00.H56,2020/05/22,15/CT-UBND"
    assert got == want


def test_round_trip_traces_and_attachments(signed: bytes, sender) -> None:
    parsed = parse_envelope(signed, trusted_certs=[sender[1]])
    assert [t.organ_id for t in parsed.trace_headers] == ["000.00.00.H56", "000.00.00.G22"]
    # Same instants, whatever zone they were given in.
    assert [t.timestamp for t in parsed.trace_headers] == [t.timestamp for t in TRACES]
    assert len(parsed.attachments) == 2
    pdf, blob = parsed.attachments
    assert pdf.payload == PDF and blob.payload == BLOB
    assert (pdf.content_type, pdf.name, pdf.description) == (
        "application/pdf",
        "15-CT-UBND.pdf",
        "Chỉ thị đã ký số",
    )
    assert blob.content_id == "phu-luc-2@thanhhoa.gov.vn"
    assert blob.name == "Phụ lục kèm theo.bin"
    assert parsed.signer_certificate == sender[1]


def test_wire_layout(signed: bytes) -> None:
    root = _tree(signed)
    assert root.tag == f"{{{NS}}}edXML"
    signature = _find(root, "e:edXMLEnvelope/e:edXMLHeader/ds:Signature")
    assert _find(signature, "ds:KeyInfo/ds:X509Data/ds:X509Certificate").text
    methods = {e.get("Algorithm") for e in signature.iter(f"{{{DS}}}*") if e.get("Algorithm")}
    assert "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256" in methods
    assert "http://www.w3.org/2001/10/xml-exc-c14n#" in methods
    refs = root.findall(".//e:edXMLManifest/e:Reference", namespaces={"e": NS})
    hrefs = [r.get("{http://www.w3.org/1999/xlink}href") for r in refs]
    assert hrefs[1] == "cid:phu-luc-2@thanhhoa.gov.vn" and hrefs[0].startswith("cid:")
    date_text = _find(root, ".//e:PromulgationInfo/e:PromulgationDate").text
    assert date_text == "2020/05/22"
    assert _find(root, ".//e:TraceHeader/e:Timestamp").text == "2020/05/22 15:30:05"


def test_reserialising_without_change_still_verifies(signed: bytes, sender) -> None:
    assert parse_envelope(_bytes(_tree(signed)), trusted_certs=[sender[1]]).header == full_header()


def test_default_trace_is_the_sender_now(sender) -> None:
    key, cert = sender
    data = build_envelope(full_header(), signing_key=key, certificate=cert)
    parsed = parse_envelope(data, trusted_certs=[cert])
    (trace,) = parsed.trace_headers
    assert trace.organ_id == FROM.organ_id
    assert abs(trace.timestamp - datetime.now(UTC)) < timedelta(minutes=1)
    assert parsed.attachments == ()


def test_other_date_forms_are_read(sender) -> None:
    key, cert = sender
    wire = WireFormat(date_format="%d/%m/%Y", timestamp_format="%d/%m/%Y %H:%M:%S")
    data = build_envelope(full_header(), signing_key=key, certificate=cert, trace_headers=TRACES, wire=wire)
    assert b"22/05/2020" in data
    parsed = parse_envelope(data, trusted_certs=[cert])
    assert parsed.header.promulgation_info.promulgation_date == PROMULGATED
    assert parsed.trace_headers[0].timestamp == TRACES[0].timestamp


# --- tampering and trust -----------------------------------------------------------------------


def _set_text(path: str, value: str):
    def change(root: etree._Element) -> None:
        _find(root, path).text = value

    return change


def _flip_attachment_byte(root: etree._Element) -> None:
    element = _find(root, "e:AttachmentEncoded/e:Attachment/e:ContentTransferEncoded")
    raw = bytearray(base64.b64decode(element.text))
    raw[100] ^= 0x01
    element.text = base64.b64encode(bytes(raw)).decode()


def _add_recipient(root: etree._Element) -> None:
    header = _find(root, "e:edXMLEnvelope/e:edXMLHeader/e:MessageHeader")
    extra = etree.fromstring(f'<edXML:To xmlns:edXML="{NS}"><edXML:OrganId>000.00.00.H41</edXML:OrganId></edXML:To>')
    header.insert(1, extra)


@pytest.mark.parametrize(
    "tamper",
    [
        _set_text(".//e:MessageHeader/e:Subject", "Về việc khác"),
        _set_text(".//e:MessageHeader/e:Code/e:CodeNumber", "16"),
        _set_text(".//e:MessageHeader/e:From/e:OrganName", "UBND tỉnh Thanh Hoá"),
        _set_text(".//e:MessageHeader/e:OtherInfo/e:Priority", "3"),
        _set_text(".//e:TraceHeader/e:Timestamp", "2020/05/23 15:30:05"),
        _set_text(".//e:edXMLManifest/e:Reference/e:ContentType", "text/html"),
        _flip_attachment_byte,
        _add_recipient,
    ],
    ids=[
        "subject",
        "number",
        "from-name",
        "priority",
        "trace",
        "content-type",
        "payload",
        "extra-to",
    ],
)
def test_changing_anything_breaks_the_signature(signed: bytes, sender, tamper) -> None:
    root = _tree(signed)
    tamper(root)
    with pytest.raises(BadSignature):
        parse_envelope(_bytes(root), trusted_certs=[sender[1]])


def test_fields_are_read_from_the_signed_content_only(signed: bytes, sender) -> None:
    # Comments are outside the signature (c14n drops them); a naive reader of the raw tree would
    # see the Subject cut at the comment, so the parser must read what was signed.
    root = _tree(signed)
    subject = _find(root, ".//e:MessageHeader/e:Subject")
    first, rest = subject.text[:7], subject.text[7:]
    subject.text = first
    comment = etree.Comment(" chèn vào ")
    comment.tail = rest
    subject.append(comment)
    parsed = parse_envelope(_bytes(root), trusted_certs=[sender[1]])
    assert parsed.header.subject == full_header().subject


def test_unsigned_envelope_is_refused(signed: bytes, sender) -> None:
    root = _tree(signed)
    signature = _find(root, ".//ds:Signature")
    signature.getparent().remove(signature)
    with pytest.raises(UnsignedEnvelope):
        parse_envelope(_bytes(root), trusted_certs=[sender[1]])


def test_signer_not_trusted_is_refused(stranger, sender) -> None:
    key, cert = stranger
    data = build_envelope(full_header(), ATTACHMENTS, signing_key=key, certificate=cert)
    with pytest.raises(UnknownCertificate):
        parse_envelope(data, trusted_certs=[sender[1]])
    with pytest.raises(UnknownCertificate):
        parse_envelope(data, trusted_certs=[])
    # The same message is fine for a receiver who does trust that certificate.
    assert parse_envelope(data, trusted_certs=[cert]).header == full_header()


def test_swapping_in_a_trusted_certificate_does_not_help(stranger, sender) -> None:
    key, cert = stranger
    root = _tree(build_envelope(full_header(), signing_key=key, certificate=cert))
    element = _find(root, ".//ds:X509Certificate")
    element.text = base64.b64encode(sender[1].public_bytes(Encoding.DER)).decode()
    with pytest.raises(BadSignature):
        parse_envelope(_bytes(root), trusted_certs=[sender[1]])


def test_certificate_issued_by_a_trusted_root(root_ca, stranger) -> None:
    key, leaf = _cert("Nguyễn Văn A — Văn thư", issuer=root_ca)
    data = build_envelope(full_header(), ATTACHMENTS, signing_key=key, certificate=leaf)
    parsed = parse_envelope(data, trusted_certs=[root_ca[1]])
    assert parsed.signer_certificate == leaf
    with pytest.raises(UnknownCertificate):
        parse_envelope(data, trusted_certs=[stranger[1]])


def test_intermediate_travels_in_the_signature(root_ca) -> None:
    sub_ca = _cert("CA cấp tỉnh", issuer=root_ca, ca=True)
    key, leaf = _cert("Lãnh đạo Sở", issuer=sub_ca)
    data = build_envelope(full_header(), signing_key=key, certificate=leaf, chain=[sub_ca[1]])
    parsed = parse_envelope(data, trusted_certs=[root_ca[1]])
    assert parsed.certificates == (leaf, sub_ca[1])


def test_expired_or_not_yet_valid_certificate_is_refused(sender) -> None:
    key, cert = _cert("Hết hạn", not_before=NOW - timedelta(days=30), not_after=NOW - timedelta(days=1))
    data = build_envelope(full_header(), signing_key=key, certificate=cert)
    with pytest.raises(UnknownCertificate):
        parse_envelope(data, trusted_certs=[cert])
    # The validator's clock can be set, e.g. to check a message at the time it arrived.
    then = NOW - timedelta(days=10)
    assert parse_envelope(data, cert_validator=make_cert_validator([cert], at=then))


def test_certificate_not_meant_for_signing_is_refused() -> None:
    key, cert = _cert("Chỉ mã hóa", sign=False)
    data = build_envelope(full_header(), signing_key=key, certificate=cert)
    with pytest.raises(UnknownCertificate):
        parse_envelope(data, trusted_certs=[cert])


def test_caller_must_choose_one_trust_source(signed: bytes, sender) -> None:
    with pytest.raises(TypeError):
        parse_envelope(signed)
    with pytest.raises(TypeError):
        parse_envelope(signed, trusted_certs=[sender[1]], cert_validator=make_cert_validator([sender[1]]))


def test_custom_validator_decides(signed: bytes) -> None:
    seen: list[x509.Certificate] = []

    def refuse(leaf: x509.Certificate, others) -> None:
        seen.append(leaf)
        raise UnknownCertificate("revoked")

    with pytest.raises(UnknownCertificate, match="revoked"):
        parse_envelope(signed, cert_validator=refuse)
    assert len(seen) == 1


# --- hostile input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not xml at all",
        b"<edXML:edXML xmlns:edXML='" + NS.encode() + b"'><unclosed></edXML:edXML>",
        b"\xff\xfe<a/>",
    ],
)
def test_malformed_xml_is_refused(data: bytes, sender) -> None:
    with pytest.raises(MalformedEnvelope):
        parse_envelope(data, trusted_certs=[sender[1]])


def test_xxe_is_refused_and_the_file_never_read(tmp_path, sender) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("MẬT-KHẨU-BÍ-MẬT")
    data = (
        f'<?xml version="1.0"?><!DOCTYPE edXML [<!ENTITY xxe SYSTEM "file://{secret}">]>'
        f'<edXML:edXML xmlns:edXML="{NS}"><edXML:edXMLEnvelope><edXML:edXMLHeader>'
        f"<edXML:MessageHeader><edXML:Subject>&xxe;</edXML:Subject></edXML:MessageHeader>"
        f"</edXML:edXMLHeader><edXML:edXMLBody/></edXML:edXMLEnvelope></edXML:edXML>"
    ).encode()
    with pytest.raises(MalformedEnvelope) as raised:
        parse_envelope(data, trusted_certs=[sender[1]])
    assert "MẬT" not in str(raised.value)


def test_entity_expansion_bomb_is_refused(sender) -> None:
    lol = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    data = (
        f'<?xml version="1.0"?><!DOCTYPE edXML [<!ENTITY l0 "lol">{lol}]>'
        f'<edXML:edXML xmlns:edXML="{NS}">&l9;</edXML:edXML>'
    ).encode()
    with pytest.raises(MalformedEnvelope):
        parse_envelope(data, trusted_certs=[sender[1]])


def test_oversized_envelope_is_refused_before_parsing(signed: bytes, sender) -> None:
    with pytest.raises(EnvelopeTooLarge):
        parse_envelope(signed, trusted_certs=[sender[1]], limits=Limits(max_bytes=len(signed) - 1))
    assert parse_envelope(signed, trusted_certs=[sender[1]], limits=Limits(max_bytes=len(signed)))


def test_wrong_root_or_structure_is_refused(signed: bytes, sender) -> None:
    with pytest.raises(MalformedEnvelope):
        parse_envelope(b'<edXML xmlns="urn:other"/>', trusted_certs=[sender[1]])
    root = _tree(signed)
    envelope = _find(root, "e:edXMLEnvelope")
    envelope.append(etree.fromstring(f'<edXML:edXMLHeader xmlns:edXML="{NS}"/>'))
    with pytest.raises(MalformedEnvelope):
        parse_envelope(_bytes(root), trusted_certs=[sender[1]])


def test_a_signature_outside_the_header_is_refused(signed: bytes, sender) -> None:
    root = _tree(signed)
    signature = _find(root, ".//ds:Signature")
    signature.getparent().remove(signature)
    _find(root, "e:edXMLEnvelope/e:edXMLBody").append(signature)
    with pytest.raises(MalformedEnvelope):
        parse_envelope(_bytes(root), trusted_certs=[sender[1]])


def _sign_raw(root: etree._Element, key, cert, **kwargs) -> bytes:
    signer = XMLSigner(
        method=SignatureConstructionMethod.enveloped,
        c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#",
    )
    return etree.tostring(signer.sign(root, key=key, cert=[cert], **kwargs))


def test_signed_but_inconsistent_manifest_is_refused(signed: bytes, sender) -> None:
    key, cert = sender
    root = _tree(signed)
    signature = _find(root, ".//ds:Signature")
    header = signature.getparent()
    header.remove(signature)
    header.append(etree.Element(f"{{{DS}}}Signature", Id="placeholder"))
    ref = _find(root, ".//e:edXMLManifest/e:Reference")
    ref.set("{http://www.w3.org/1999/xlink}href", "cid:not-carried")
    with pytest.raises(MalformedEnvelope, match="not carried"):
        parse_envelope(_sign_raw(root, key, cert), trusted_certs=[cert])


def test_signature_over_part_of_the_message_is_refused(signed: bytes, sender) -> None:
    key, cert = sender
    root = _tree(signed)
    signature = _find(root, ".//ds:Signature")
    header = signature.getparent()
    header.remove(signature)
    header.append(etree.Element(f"{{{DS}}}Signature", Id="placeholder"))
    _find(root, ".//e:MessageHeader").set("Id", "mh")
    with pytest.raises(BadSignature, match="whole message"):
        parse_envelope(_sign_raw(root, key, cert, reference_uri="#mh"), trusted_certs=[cert])


# --- what the sender may not build -------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        dict(from_=replace(FROM, organ_id="H56")),
        dict(to=()),
        dict(to=(Organization("000.00.00.h41"),)),
        dict(subject="x" * 501),
        dict(subject="  "),
        dict(code=DocumentCode("123456789012", "CT-UBND")),
        dict(code=DocumentCode("15", "C" * 31)),
        dict(document_id=""),
    ],
)
def test_build_refuses_invalid_headers(change: dict, sender) -> None:
    with pytest.raises(ValueError):
        build_envelope(replace(full_header(), **change), signing_key=sender[0], certificate=sender[1])


def test_build_refuses_bad_attachments_and_naive_times(sender) -> None:
    key, cert = sender
    twice = [Attachment(b"a", content_id="x"), Attachment(b"b", content_id="x")]
    for bad in (twice, [Attachment(b"a", content_id="<bad id>")], [Attachment(b"a" * 11)]):
        with pytest.raises(ValueError):
            build_envelope(
                full_header(),
                bad,
                signing_key=key,
                certificate=cert,
                limits=Limits(max_attachment_bytes=10),
            )
    with pytest.raises(ValueError):
        build_envelope(
            full_header(),
            signing_key=key,
            certificate=cert,
            trace_headers=[TraceHeader(FROM.organ_id, datetime(2020, 5, 22, 8))]  # noqa: DTZ001 - refused,
        )


# --- status messages ---------------------------------------------------------------------------


def _status() -> StatusMessage:
    return StatusMessage(
        from_=Organization("000.00.00.G22", "Văn phòng Chính phủ"),
        response_for=ResponseFor("000.00.00.H56", "15/CT-UBND", PROMULGATED, "000.00.00.H56,2020/05/22,15/CT-UBND"),
        status_code=StatusCode.REGISTERED,
        description="Đã vào sổ văn bản đến số 1234",
        timestamp=datetime(2020, 5, 22, 16, 0, 0, tzinfo=VIETNAM_TIME),
        staff_info=StaffInfo("Phòng Hành chính", "Trần Thị Bích", "bich@chinhphu.vn", "0912 345 678"),
    )


def test_status_round_trip(sender) -> None:
    key, cert = sender
    parsed = parse_status(build_status(_status(), signing_key=key, certificate=cert), trusted_certs=[cert])
    got, want = parsed.status, _status()
    for f in fields(StatusMessage):
        assert getattr(got, f.name) == getattr(want, f.name), f.name
    assert got.status_code is StatusCode.REGISTERED
    assert not edxml.STATUS_CODES[got.status_code].verified


def test_status_tampered_unsigned_or_untrusted_is_refused(sender, stranger) -> None:
    key, cert = sender
    root = _tree(build_status(_status(), signing_key=key, certificate=cert))
    _find(root, ".//e:Status/e:StatusCode").text = "06"
    with pytest.raises(BadSignature):
        parse_status(_bytes(root), trusted_certs=[cert])
    signature = _find(root, ".//ds:Signature")
    signature.getparent().remove(signature)
    with pytest.raises(UnsignedEnvelope):
        parse_status(_bytes(root), trusted_certs=[cert])
    foreign = build_status(_status(), signing_key=stranger[0], certificate=stranger[1])
    with pytest.raises(UnknownCertificate):
        parse_status(foreign, trusted_certs=[cert])


def test_status_refuses_unknown_codes(sender) -> None:
    with pytest.raises(ValueError):
        build_status(
            replace(_status(), status_code="99"),
            signing_key=sender[0],  # type: ignore[arg-type]
            certificate=sender[1],
        )


def test_a_document_is_not_a_status(signed: bytes, sender) -> None:
    with pytest.raises(MalformedEnvelope):
        parse_status(signed, trusted_certs=[sender[1]])
