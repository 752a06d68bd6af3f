"""One local CA and one SoftHSM token for the signing tests, built in a temporary directory the
way the signing service builds its own on first start (services/signing/keystore.py)."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import pytest
from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

from services.signing.config import SigningSettings, get_settings
from services.signing.fonts import FONT_DIR
from services.signing.keystore import Keystore, close_keystore, open_keystore
from services.signing.pki.authority import CertificateAuthority, certificates_pem
from services.signing.pki.timestamping import LocalTimeStamper
from services.signing.token import SigningToken
from services.signing.trust import TrustSettings
from tests.servers import missing

AGENCY = "Ủy ban nhân dân tỉnh Hà Giang"
AGENCY_ID = "000.00.00.H23"
OTHER_AGENCY = "Sở Tư pháp tỉnh Hà Giang"
OTHER_AGENCY_ID = "000.00.05.H23"
PIN = "246810"

# pyHanko warns that fetching is off while embedding revocation data: by design, our trust
# settings collect that data before signing.
logging.getLogger("pyhanko.sign.signers.pdf_signer").setLevel(logging.ERROR)


@dataclass
class Pki:
    directory: Path
    ca: CertificateAuthority
    token: SigningToken
    trust: TrustSettings
    timestamper: LocalTimeStamper
    root_pem: Path
    intermediate_pem: Path
    settings: SigningSettings
    keystore: Keystore

    def new_signer(
        self,
        signer_id: str,
        *,
        person: bool = True,
        organ_id: str = AGENCY_ID,
        agency: str = AGENCY,
        full_name: str = "Nguyễn Văn Đức",
        position: str = "Chủ tịch",
    ) -> str:
        public_key = self.token.generate_key(signer_id, pin=PIN)
        if person:
            cert = self.ca.issue_person_certificate(
                public_key,
                full_name=full_name,
                position=position,
                organisation_name=agency,
                organ_id=organ_id,
            )
        else:
            cert = self.ca.issue_organisation_certificate(public_key, organisation_name=agency, organ_id=organ_id)
        self.token.attach_certificate(signer_id, cert, chain=self.ca.chain())
        return signer_id


def signing_settings_for(base: Path, **overrides: object) -> SigningSettings:
    """Settings of a signing service whose CA and token live in ``base`` (ca/, token/), with
    cheap keys and cheap Argon2 so tests run fast; production keeps the defaults."""
    values: dict[str, object] = {
        "var_dir": base,
        "signing_dir": base,
        "ca_key_size": 2048,
        "ca_passphrase_secret": "dev-only-passphrase",
        "token_label": "lienthong-test",
        "token_pin_secret": "user-pin-123456",
        "token_so_pin_secret": "so-pin-987654",
        "pin_argon2_time_cost": 1,
        "pin_argon2_memory_kib": 1024,
        "pki_base_url": "http://signing.test/pki",
        "log_json": False,
        **overrides,
    }
    return get_settings(**values)


@pytest.fixture(scope="package")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    # package scope: SoftHSM is loaded once per process, so the token is given back before
    # other packages start suites with tokens of their own
    if not all(shutil.which(t) for t in ("softhsm2-util", "pdfsig", "pdftoppm", "openssl")):
        missing("softhsm2, poppler-utils and openssl are required for the signing tests")
    base = tmp_path_factory.mktemp("signing")
    settings = signing_settings_for(base)
    keystore = open_keystore(settings)
    ca, token, trust = keystore.ca, keystore.token, keystore.trust
    root_pem = base / "root.pem"
    root_pem.write_bytes(certificates_pem([ca.root_certificate]))
    intermediate_pem = base / "interm.pem"
    intermediate_pem.write_bytes(certificates_pem([ca.intermediate_certificate]))
    env = Pki(base, ca, token, trust, keystore.timestamper, root_pem, intermediate_pem, settings, keystore)
    env.new_signer("chu-tich")
    env.new_signer("ubnd-tinh", person=False)
    env.new_signer("so-tu-phap", person=False, organ_id=OTHER_AGENCY_ID, agency=OTHER_AGENCY)
    yield env
    close_keystore(keystore)


def decision_pdf(pages: int = 1, body: str = "Về việc phê duyệt kế hoạch cải cách hành chính.") -> bytes:
    """A Decree 30-style draft: agency and number on the left, national motto on the right,
    the title and the body; the signature block is left to the prepared fields."""
    for name in ("DejaVuSerif", "DejaVuSerif-Bold"):
        if name not in pdfmetrics.getRegisteredFontNames():
            pdfmetrics.registerFont(TTFont(name, str(FONT_DIR / f"{name}.ttf")))
    buf = BytesIO()
    c = canvas.Canvas(buf, pagesize=A4)
    for page in range(pages):
        c.setFont("DejaVuSerif-Bold", 12)
        c.drawCentredString(170, 770, "ỦY BAN NHÂN DÂN")
        c.drawCentredString(170, 755, "TỈNH HÀ GIANG")
        c.drawCentredString(420, 770, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM")
        c.drawCentredString(420, 755, "Độc lập - Tự do - Hạnh phúc")
        c.setFont("DejaVuSerif", 13)
        c.drawString(85, 692, "Số:")
        c.setFont("DejaVuSerif-Bold", 14)
        c.drawCentredString(297, 620, "QUYẾT ĐỊNH")
        c.setFont("DejaVuSerif", 13)
        c.drawCentredString(297, 600, body)
        c.drawString(85, 560, f"Trang {page + 1}.")
        c.showPage()
    c.save()
    return buf.getvalue()


@pytest.fixture(scope="session")
def draft_pdf() -> bytes:
    return decision_pdf()
