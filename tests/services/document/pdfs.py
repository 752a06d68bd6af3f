"""PDFs for the document tests: a draft with Vietnamese text, signed incrementally with pyHanko."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import signers
from pyhanko_certvalidator.registry import SimpleCertificateStore
from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

FONT = Path(__file__).resolve().parents[3] / "shared" / "fonts" / "DejaVuSerif.ttf"


def draft_pdf(text: str = "QUYẾT ĐỊNH Về việc phê duyệt kế hoạch") -> bytes:
    if "DejaVuSerif" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("DejaVuSerif", str(FONT)))
    buffer = io.BytesIO()
    c = canvas.Canvas(buffer, pagesize=A4)
    c.setFont("DejaVuSerif", 13)
    c.drawString(72, 760, "ỦY BAN NHÂN DÂN TỈNH THANH HÓA")
    c.drawString(72, 730, "Số:      /QĐ-UBND")
    c.drawString(72, 700, text)
    c.showPage()
    c.save()
    return buffer.getvalue()


def _signer(name: str) -> signers.SimpleSigner:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    asn_cert = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    asn_key = asn1_keys.PrivateKeyInfo.load(
        key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return signers.SimpleSigner(
        signing_cert=asn_cert, signing_key=asn_key, cert_registry=SimpleCertificateStore.from_certs([asn_cert])
    )


def sign(pdf: bytes, *, field: str, name: str = "Phạm Văn Đức") -> bytes:
    """Append a signature (an incremental update: the earlier bytes stay as they were)."""
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    out = signers.sign_pdf(writer, signers.PdfSignatureMetadata(field_name=field), signer=_signer(name))
    return out.getvalue()
