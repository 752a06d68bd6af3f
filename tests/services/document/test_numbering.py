"""Số, ký hiệu: the forms Decree 30 prescribes, their parsing, and the series numbers come from."""

from __future__ import annotations

from datetime import date

import pytest

from services.document.doctypes import DEFAULT_DOC_TYPES, Secrecy
from services.document.numbering import (
    AdminSeries,
    Code,
    MalformedCode,
    SeriesRule,
    edxml_parts,
    format_code,
    from_edxml_parts,
    parse_code,
    series_key_for,
)


def test_typed_document_symbol() -> None:
    assert format_code(15, type_abbr="CT", issuer_abbr="UBND") == "15/CT-UBND"


@pytest.mark.parametrize(
    ("number", "text"), [(1, "01"), (5, "05"), (9, "09"), (10, "10"), (123, "123"), (7816, "7816")]
)
def test_numbers_below_ten_get_a_leading_zero(number: int, text: str) -> None:
    assert format_code(number, type_abbr="QĐ", issuer_abbr="UBND") == f"{text}/QĐ-UBND"


def test_cong_van_symbol_is_issuer_then_unit() -> None:
    assert format_code(7816, type_abbr=None, issuer_abbr="VPCP", unit_abbr="TTĐT") == ("7816/VPCP-TTĐT")


def test_cong_van_without_unit_is_refused() -> None:
    with pytest.raises(MalformedCode):
        format_code(12, type_abbr=None, issuer_abbr="UBND")


def test_normative_document_carries_its_year() -> None:
    assert format_code(30, type_abbr="NĐ", issuer_abbr="CP", year=2020) == "30/2020/NĐ-CP"


@pytest.mark.parametrize(
    "bad",
    [
        dict(number=0, type_abbr="QĐ", issuer_abbr="UBND"),
        dict(number=-3, type_abbr="QĐ", issuer_abbr="UBND"),
        dict(number=1, type_abbr="Q Đ", issuer_abbr="UBND"),
        dict(number=1, type_abbr="QĐ", issuer_abbr="UB/ND"),
        dict(number=1, type_abbr="QĐ", issuer_abbr=""),
        dict(number=1, type_abbr="QĐ", issuer_abbr="UBND", year=20),
    ],
)
def test_format_refuses_what_cannot_be_a_symbol(bad: dict) -> None:
    with pytest.raises(MalformedCode):
        format_code(bad.pop("number"), **bad)


def test_parse_typed_symbol() -> None:
    code = parse_code("15/CT-UBND")
    assert code == Code(15, "CT", "UBND")
    assert not code.is_cong_van


def test_parse_cong_van() -> None:
    code = parse_code("7816/VPCP-TTĐT")
    assert code == Code(7816, None, "VPCP", "TTĐT")
    assert code.is_cong_van


def test_parse_normative_with_year() -> None:
    assert parse_code("30/2020/NĐ-CP", type_abbrs=frozenset({"NĐ"})) == Code(30, "NĐ", "CP", year=2020)


def test_parse_uses_the_doc_type_hint_when_an_issuer_looks_like_a_type() -> None:
    # "CT" is Chỉ thị, but a Cục Thuế công văn may also start with CT.
    assert parse_code("123/CT-TTHT").type_abbr == "CT"
    cv = parse_code("123/CT-TTHT", cong_van=True)
    assert (cv.type_abbr, cv.issuer_abbr, cv.unit_abbr) == (None, "CT", "TTHT")


@pytest.mark.parametrize(
    "text",
    [
        "15/CT-UBND",
        "05/QĐ-UBND",
        "7816/VPCP-TTĐT",
        "01/QyĐ-SNV",
        "12/CTr-UBND",
        "03/TrS-VP",
        "45/UBND-KTTC-VX",
    ],
)
def test_round_trip(text: str) -> None:
    assert str(parse_code(text)) == text


@pytest.mark.parametrize(
    "mangled",
    [
        "15/ /CT-UBND",  # as printed in the seed directive
        "15 /CT-UBND",
        "15/CT - UBND",
        "15/CT-",
        "15/CT",
        "/CT-UBND",
        "15//CT-UBND",
        "15/CT--UBND",
        "Số 15/CT-UBND",
        "15/CT_UBND",
        "XV/CT-UBND",
        "15/99/CT-UBND",
        "",
        "   ",
    ],
)
def test_parse_rejects_mangled_input(mangled: str) -> None:
    with pytest.raises(MalformedCode):
        parse_code(mangled)


def test_parse_is_strict_on_padding_unless_asked() -> None:
    with pytest.raises(MalformedCode):
        parse_code("5/QĐ-UBND")
    with pytest.raises(MalformedCode):
        parse_code("007/QĐ-UBND")
    assert str(parse_code("5/QĐ-UBND", strict=False)) == "05/QĐ-UBND"


def test_surrounding_whitespace_is_tolerated() -> None:
    assert str(parse_code("  15/CT-UBND\n")) == "15/CT-UBND"


def test_edxml_split() -> None:
    assert edxml_parts(parse_code("15/CT-UBND")) == ("15", "CT-UBND")
    assert edxml_parts(parse_code("7816/VPCP-TTĐT")) == ("7816", "VPCP-TTĐT")
    assert edxml_parts(Code(30, "NĐ", "CP", year=2020)) == ("30/2020", "NĐ-CP")


def test_edxml_split_enforces_annex_vi_lengths() -> None:
    with pytest.raises(MalformedCode):
        edxml_parts(Code(123456789012, "QĐ", "UBND"))
    with pytest.raises(MalformedCode):
        edxml_parts(Code(1, "QĐ", "UBND", "A" * 30))


def test_edxml_join_accepts_unpadded_numbers_from_other_systems() -> None:
    assert from_edxml_parts("5", "QĐ-UBND") == Code(5, "QĐ", "UBND")
    assert from_edxml_parts("7816", "VPCP-TTĐT") == Code(7816, None, "VPCP", "TTĐT")
    with pytest.raises(MalformedCode):
        from_edxml_parts("15", " /CT-UBND")


# --- number series -------------------------------------------------------------------------

ON = date(2025, 6, 30)
QD = DEFAULT_DOC_TYPES.get("QĐ")
TB = DEFAULT_DOC_TYPES.get("TB")
CV = DEFAULT_DOC_TYPES.get("CV")
LEGAL_QD = DEFAULT_DOC_TYPES.get("QPPL.QĐ")
LEGAL_NQ = DEFAULT_DOC_TYPES.get("QPPL.NQ")
SY = DEFAULT_DOC_TYPES.get("SY")


def test_yearly_key_includes_the_year() -> None:
    dec31 = series_key_for(TB, Secrecy.NONE, on=date(2025, 12, 31))
    jan1 = series_key_for(TB, Secrecy.NONE, on=date(2026, 1, 1))
    assert dec31 != jan1
    assert dec31.startswith("2025") and jan1.startswith("2026")


def test_each_legal_type_has_its_own_series() -> None:
    assert series_key_for(LEGAL_QD, Secrecy.NONE, on=ON) != series_key_for(LEGAL_NQ, Secrecy.NONE, on=ON)
    # A normative QĐ is not numbered with the administrative QĐ.
    assert series_key_for(LEGAL_QD, Secrecy.NONE, on=ON) != series_key_for(QD, Secrecy.NONE, on=ON)


def test_administrative_documents_share_one_series_by_default() -> None:
    keys = {series_key_for(t, Secrecy.NONE, on=ON) for t in (QD, TB, CV)}
    assert len(keys) == 1


def test_agency_may_number_administrative_types_apart() -> None:
    rule = SeriesRule(administrative=AdminSeries.PER_TYPE)
    keys = {series_key_for(t, Secrecy.NONE, rule, on=ON) for t in (QD, TB, CV)}
    assert len(keys) == 3


def test_agency_may_group_some_types() -> None:
    rule = SeriesRule(administrative_groups={"QĐ": "QĐ"})
    assert series_key_for(QD, Secrecy.NONE, rule, on=ON) != series_key_for(TB, Secrecy.NONE, rule, on=ON)
    assert series_key_for(TB, Secrecy.NONE, rule, on=ON) == series_key_for(CV, Secrecy.NONE, rule, on=ON)


def test_secret_documents_are_numbered_apart() -> None:
    public = series_key_for(TB, Secrecy.NONE, on=ON)
    for level in (Secrecy.MAT, Secrecy.TOI_MAT, Secrecy.TUYET_MAT):
        secret = series_key_for(TB, level, on=ON)
        assert secret != public
        assert secret.startswith("2025")
    assert series_key_for(LEGAL_QD, Secrecy.MAT, on=ON) != series_key_for(LEGAL_QD, Secrecy.NONE, on=ON)


def test_secret_series_may_mirror_the_public_grouping() -> None:
    rule = SeriesRule(administrative=AdminSeries.PER_TYPE, secret_per_group=True)
    assert series_key_for(QD, Secrecy.MAT, rule, on=ON) != series_key_for(TB, Secrecy.MAT, rule, on=ON)
    assert series_key_for(QD, Secrecy.MAT, rule, on=ON) != series_key_for(QD, Secrecy.NONE, rule, on=ON)


def test_copies_have_their_own_series() -> None:
    assert series_key_for(SY, Secrecy.NONE, on=ON) != series_key_for(TB, Secrecy.NONE, on=ON)


def test_the_rule_in_force_on_the_day_applies() -> None:
    old = SeriesRule(effective_from=date(2020, 3, 5))
    new = SeriesRule(effective_from=date(2025, 7, 1), administrative=AdminSeries.PER_TYPE)
    rules = [new, old]
    before = {series_key_for(t, Secrecy.NONE, rules, on=date(2025, 6, 30)) for t in (QD, TB)}
    after = {series_key_for(t, Secrecy.NONE, rules, on=date(2025, 7, 1)) for t in (QD, TB)}
    assert len(before) == 1
    assert len(after) == 2
    with pytest.raises(LookupError):
        series_key_for(TB, Secrecy.NONE, rules, on=date(2019, 1, 1))
