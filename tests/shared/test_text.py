"""Vietnamese search folding: what a clerk types without diacritics must find the document."""

from __future__ import annotations

import unicodedata

import pytest

from shared.text import fold, matches, tokens


@pytest.mark.parametrize(
    ("written", "typed"),
    [
        ("Quyết định phê duyệt", "quyet dinh phe duyet"),
        ("Nghị quyết", "nghi quyet"),
        ("ĐƯỜNG Lê Lợi", "duong le loi"),
        ("Nguyễn Thị Ngọc Ánh", "nguyen thi ngoc anh"),
        ("Ủy ban nhân dân", "uy ban nhan dan"),
        ("Đề án", "de an"),
    ],
)
def test_folded_forms_are_equal(written: str, typed: str) -> None:
    assert fold(written) == fold(typed) == typed


def test_both_tone_mark_placements_fold_equal() -> None:
    # "Hóa" (old style, mark on o) and "Hoá" (new style, mark on a) are the same place name.
    old_style, new_style = "Thanh Hóa", "Thanh Hoá"
    assert old_style != new_style
    assert fold(old_style) == fold(new_style) == "thanh hoa"
    assert fold("Khánh Hòa") == fold("Khánh Hoà")
    assert fold("thủy lợi") == fold("thuỷ lợi")


def test_precomposed_and_decomposed_input_fold_equal() -> None:
    nfc = unicodedata.normalize("NFC", "Nguyễn Đức Thắng")
    nfd = unicodedata.normalize("NFD", "Nguyễn Đức Thắng")
    assert nfc != nfd
    assert fold(nfc) == fold(nfd) == "nguyen duc thang"


def test_d_with_stroke_is_d_not_dropped() -> None:
    assert fold("Đ") == "d"
    assert fold("đường") == "duong"


def test_whitespace_collapses() -> None:
    assert fold("  Quyết\tđịnh \n\n số  ") == "quyet dinh so"


def test_tokens_split_document_symbols() -> None:
    assert tokens("Chỉ thị số 15/CT-UBND") == ["chi", "thi", "so", "15", "ct", "ubnd"]
    assert tokens("") == []


def test_matches_needs_every_query_word() -> None:
    subject = "Quyết định phê duyệt kế hoạch chuyển đổi số tỉnh Thanh Hóa năm 2020"
    assert matches("phe duyet thanh hoa", subject)
    assert matches("THANH HOÁ  2020", subject)
    assert not matches("phe duyet nghe an", subject)
    # A word is a whole word unless prefix search is asked for.
    assert not matches("chuyen doi s", subject)
    assert matches("chuyen doi s", subject, prefix=True)
    assert not matches("chuyen doi x", subject, prefix=True)


def test_empty_query_matches_everything() -> None:
    assert matches("", "Nghị quyết")
    assert matches("   ", "")
