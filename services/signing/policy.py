"""What signing and verification agree on about a PDF: the policy (size limits, field names), the
refusals that become 4xx problems, and ``open_pdf``, which applies the policy to uploaded bytes."""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO

from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError

__all__ = [
    "DEFAULT_POLICY",
    "BrokenPdf",
    "CertificateExpired",
    "CertificateNotTrusted",
    "CertificateRevoked",
    "EncryptedPdf",
    "InvalidAppearance",
    "InvalidNumberText",
    "NotAPdf",
    "NumberAlreadyFilled",
    "NumberFieldMissing",
    "PdfTooLarge",
    "SealNotOfYourAgency",
    "SigningPolicy",
    "SigningRefused",
    "TokenLocked",
    "UnknownSigner",
    "WrongPin",
    "WrongSigningOrder",
    "open_pdf",
]


class SigningRefused(Exception):
    """Base of every refusal the service maps to a 4xx problem; ``status`` is the HTTP code."""

    status: int = 400
    code: str = "signing-refused"


class NotAPdf(SigningRefused):
    status, code = 415, "not-a-pdf"


class EncryptedPdf(SigningRefused):
    status, code = 422, "encrypted-pdf"


class BrokenPdf(SigningRefused):
    status, code = 422, "broken-pdf"


class PdfTooLarge(SigningRefused):
    status, code = 413, "pdf-too-large"


class CertificateRevoked(SigningRefused):
    status, code = 403, "certificate-revoked"


class CertificateExpired(SigningRefused):
    status, code = 403, "certificate-expired"


class CertificateNotTrusted(SigningRefused):
    status, code = 403, "certificate-not-trusted"


class WrongPin(SigningRefused):
    status, code = 403, "wrong-pin"

    def __init__(self, message: str, *, attempts_left: int) -> None:
        super().__init__(message)
        self.attempts_left = attempts_left


class TokenLocked(SigningRefused):
    status, code = 423, "signer-locked"


class UnknownSigner(SigningRefused):
    status, code = 404, "unknown-signer"


class SealNotOfYourAgency(SigningRefused):
    status, code = 403, "seal-not-of-your-agency"


class WrongSigningOrder(SigningRefused):
    status, code = 409, "wrong-signing-order"


class NumberFieldMissing(SigningRefused):
    status, code = 409, "number-field-missing"


class NumberAlreadyFilled(SigningRefused):
    status, code = 409, "number-already-filled"


class InvalidNumberText(SigningRefused):
    status, code = 422, "invalid-number-text"


class InvalidAppearance(SigningRefused):
    status, code = 422, "invalid-appearance"


@dataclass(frozen=True)
class SigningPolicy:
    """Limits and field names; the service builds one from its settings."""

    max_pdf_bytes: int = 20 * 1024 * 1024
    max_number_text: int = 50  # CodeNumber (11) + "/" + CodeNotation (30), with room to spare
    number_field: str = "so_ky_hieu"
    person_field: str = "chu_ky_nguoi_ky"
    organisation_field: str = "chu_ky_co_quan"
    attachment_field: str = "chu_ky_tep_dinh_kem"
    # Hex characters kept for the CMS object: the signer's chain and the signature time-stamp
    # with the TSA's chain take about 7 kB of DER with RSA-2048 CAs; a fixed reservation spares
    # pyHanko's trial signature that would otherwise size it.
    bytes_reserved: int = 2 * 14 * 1024


DEFAULT_POLICY = SigningPolicy()


def open_pdf(pdf: bytes, policy: SigningPolicy = DEFAULT_POLICY) -> IncrementalPdfFileWriter:
    """Parse an uploaded PDF for an incremental update, refusing what cannot be signed."""
    if not isinstance(pdf, bytes | bytearray | memoryview):
        raise NotAPdf("expected the PDF's bytes")
    if len(pdf) > policy.max_pdf_bytes:
        raise PdfTooLarge(f"PDF is {len(pdf)} bytes; the limit is {policy.max_pdf_bytes}")
    if b"%PDF-" not in bytes(pdf[:1024]):
        raise NotAPdf("no %PDF- header")
    try:
        writer = IncrementalPdfFileWriter(BytesIO(bytes(pdf)), strict=True)
        reader = writer.prev
        if reader.encrypted:
            raise EncryptedPdf("encrypted PDFs cannot be signed; send the decrypted file")
        pages = reader.root["/Pages"]
        if int(pages["/Count"]) < 1:
            raise BrokenPdf("the PDF has no pages")
        reader.find_page_for_modification(0)
    except SigningRefused:
        raise
    except (PdfError, KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise BrokenPdf(f"cannot read the PDF: {exc}") from exc
    return writer
