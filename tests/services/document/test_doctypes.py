"""Document types, urgency and secrecy as Decree 30 and the state secrets law define them."""

from __future__ import annotations

from datetime import date

import pytest

from services.document.doctypes import (
    ANNEX_III_TYPES,
    DEFAULT_DOC_TYPES,
    DocCategory,
    DocType,
    DocTypeRegistry,
    Secrecy,
    Urgency,
    clearance_allows,
)
from shared import clock

ANNEX_III_ABBREVIATIONS = (
    "NQ QĐ CT QC QyĐ TC TB HD CTr KH PA ĐA DA BC BB TTr HĐ CĐ BGN BTT GUQ GM GGT GNP PG PC PB"
).split()


def test_annex_iii_has_every_type_with_its_abbreviation() -> None:
    admin = [t.abbreviation for t in ANNEX_III_TYPES if t.category is DocCategory.ADMINISTRATIVE]
    assert [a for a in admin if a is not None] == ANNEX_III_ABBREVIATIONS
    copies = {t.abbreviation for t in ANNEX_III_TYPES if t.category is DocCategory.COPY}
    assert copies == {"SY", "TrS", "SL"}


def test_names_are_vietnamese() -> None:
    assert DEFAULT_DOC_TYPES.get("QyĐ").name == "Quy định"
    assert DEFAULT_DOC_TYPES.get("ĐA").name == "Đề án"
    assert DEFAULT_DOC_TYPES.get("DA").name == "Dự án"
    assert DEFAULT_DOC_TYPES.get("TrS").name == "Bản trích sao"


def test_cong_van_has_no_abbreviation() -> None:
    cong_van = DEFAULT_DOC_TYPES.get("CV")
    assert cong_van.name == "Công văn"
    assert cong_van.abbreviation is None
    assert cong_van.is_cong_van
    assert not DEFAULT_DOC_TYPES.get("TB").is_cong_van


def test_legal_types_share_the_abbreviation_but_not_the_category() -> None:
    qd = DEFAULT_DOC_TYPES.by_abbreviation("QĐ")
    assert {t.category for t in qd} == {DocCategory.ADMINISTRATIVE, DocCategory.LEGAL}
    assert DEFAULT_DOC_TYPES.get("QPPL.NQ").is_legal
    assert not DEFAULT_DOC_TYPES.get("NQ").is_legal


def test_every_type_names_its_legal_source_and_date() -> None:
    for t in DEFAULT_DOC_TYPES:
        assert t.source.text
        assert t.source.effective_from <= clock.vn_today()
    assert DEFAULT_DOC_TYPES.get("QĐ").source.effective_from == date(2020, 3, 5)


def test_abbreviations_for_the_symbol_parser() -> None:
    abbrs = DEFAULT_DOC_TYPES.abbreviations()
    assert {"QĐ", "CT", "CTr", "SY"} <= abbrs
    assert None not in abbrs
    assert "UBND" not in abbrs


def test_registry_refuses_duplicates_and_unknown_keys() -> None:
    with pytest.raises(ValueError):
        DocTypeRegistry([ANNEX_III_TYPES[0], ANNEX_III_TYPES[0]])
    with pytest.raises(KeyError):
        DEFAULT_DOC_TYPES.get("XYZ")


def test_agency_can_extend_the_registry() -> None:
    extra = DocType("HDLT", "Hướng dẫn liên tịch", "HDLT", DocCategory.ADMINISTRATIVE, ANNEX_III_TYPES[0].source)
    registry = DocTypeRegistry([*DEFAULT_DOC_TYPES, extra])
    assert len(registry) == len(DEFAULT_DOC_TYPES) + 1
    assert "HDLT" in registry.abbreviations()


def test_urgency_is_ordered() -> None:
    assert Urgency.NORMAL < Urgency.KHAN < Urgency.THUONG_KHAN < Urgency.HOA_TOC
    assert max([Urgency.KHAN, Urgency.HOA_TOC, Urgency.NORMAL]) is Urgency.HOA_TOC
    assert Urgency.HOA_TOC.label == "Hỏa tốc"
    assert Urgency.from_code("thuong_khan") is Urgency.THUONG_KHAN


def test_secrecy_is_ordered_and_labelled() -> None:
    assert Secrecy.NONE < Secrecy.MAT < Secrecy.TOI_MAT < Secrecy.TUYET_MAT
    assert [s.label for s in Secrecy if s.is_secret] == ["Mật", "Tối mật", "Tuyệt mật"]
    assert not Secrecy.NONE.is_secret
    with pytest.raises(ValueError):
        Secrecy.from_code("top_secret")


def test_levels_of_different_kinds_do_not_compare() -> None:
    with pytest.raises(TypeError):
        assert Urgency.KHAN < Secrecy.MAT  # type: ignore[operator]


@pytest.mark.parametrize(
    ("clearance", "secrecy", "allowed"),
    [
        (Secrecy.NONE, Secrecy.NONE, True),
        (Secrecy.NONE, Secrecy.MAT, False),
        (Secrecy.MAT, Secrecy.MAT, True),
        (Secrecy.MAT, Secrecy.TOI_MAT, False),
        (Secrecy.TOI_MAT, Secrecy.MAT, True),
        (Secrecy.TOI_MAT, Secrecy.TUYET_MAT, False),
        (Secrecy.TUYET_MAT, Secrecy.TUYET_MAT, True),
        (Secrecy.TUYET_MAT, Secrecy.NONE, True),
    ],
)
def test_clearance(clearance: Secrecy, secrecy: Secrecy, allowed: bool) -> None:
    assert clearance_allows(clearance, secrecy) is allowed
