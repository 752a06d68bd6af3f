"""File encryption with key rotation, working days, and number series restarting each year."""

from __future__ import annotations

import base64
import os
from datetime import date

import pytest
from cryptography.exceptions import InvalidTag

from services.document.blobs import FileCipher, UnknownFileKey
from services.document.config import get_settings
from services.document.models import Document
from services.document.outgoing import assign_number
from services.document.service import new_document
from services.document.state import DocumentState
from services.document.workdays import WorkingCalendar
from tests.services.document.conftest import PROVINCE, DocumentApi


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_old_files_still_decrypt_after_a_new_key_is_added() -> None:
    old_key, new_key = _key(), _key()
    before = FileCipher({"k1": old_key}, active="k1")
    old_blob = before.encrypt(b"%PDF-1.7 mat", associated=b"sha")
    after = FileCipher({"k1": old_key, "k2": new_key}, active="k2")
    new_blob = after.encrypt(b"%PDF-1.7 moi", associated=b"sha")
    assert after.key_id_of(old_blob) == "k1" and after.key_id_of(new_blob) == "k2"
    assert after.decrypt(old_blob, associated=b"sha") == b"%PDF-1.7 mat"
    assert after.decrypt(new_blob, associated=b"sha") == b"%PDF-1.7 moi"
    with pytest.raises(UnknownFileKey):
        FileCipher({"k2": new_key}, active="k2").decrypt(old_blob, associated=b"sha")
    tampered = old_blob[:-1] + bytes([old_blob[-1] ^ 1])
    with pytest.raises(InvalidTag):
        after.decrypt(tampered, associated=b"sha")
    with pytest.raises(InvalidTag):  # a blob moved under another document's name does not decrypt
        after.decrypt(old_blob, associated=b"other")


def test_settings_refuse_a_bad_or_development_key() -> None:
    with pytest.raises(ValueError):
        get_settings(file_keys={"k": base64.b64encode(b"short").decode()}, file_key_active="k")
    with pytest.raises(ValueError):
        get_settings(file_key_active="missing")
    with pytest.raises(ValueError):
        get_settings(environment="production")


def test_working_days_skip_weekends_and_tet() -> None:
    calendar = WorkingCalendar(country="VN")
    assert calendar.add_working_days(date(2026, 5, 29), 1) == date(2026, 6, 1)  # Friday → Monday
    # Tết 2026: 16–20 February are days off
    assert calendar.add_working_days(date(2026, 2, 13), 1) == date(2026, 2, 23)
    assert calendar.add_working_days(date(2026, 5, 30), 0) == date(2026, 6, 1)  # Saturday, "at once"
    extra = WorkingCalendar(country="VN", extra_days_off=[date(2026, 6, 1)])
    assert extra.add_working_days(date(2026, 5, 29), 1) == date(2026, 6, 2)


async def test_numbers_restart_at_01_on_the_first_of_january(api: DocumentApi) -> None:
    settings = DocumentState.of(api.runtime).toolkit.settings
    codes = []
    async with api.runtime.db.sessionmaker() as session:
        for day, type_key, secrecy in [
            (date(2025, 12, 30), "QĐ", "none"),
            (date(2025, 12, 31), "CT", "none"),
            (date(2025, 12, 31), "QĐ", "mat"),  # secret documents have their own series
            (date(2026, 1, 1), "QĐ", "none"),
            (date(2026, 1, 1), "QPPL.QĐ", "none"),  # each legal type its own series, year in the number
        ]:
            doc: Document = new_document(direction="outgoing", agency=PROVINCE, status="signed_by_leader",
                                         type_key=type_key, type_name=type_key, subject="s", secrecy=secrecy,
                                         created_by="t")
            session.add(doc)
            await session.flush()
            codes.append(await assign_number(session, doc, settings=settings, today=day))
        await session.commit()
    assert codes == ["01/QĐ-UBND", "02/CT-UBND", "01/QĐ-UBND", "01/QĐ-UBND", "01/2026/QĐ-UBND"]
