"""One catalogue holds every text the console shows: each is translated, none is stale, the
placeholders match, and no template carries a bare text or an address outside the site."""

from __future__ import annotations

import re

from babel.messages.pofile import read_po

from services.console.i18n import CATALOGUE, STATUS_NAMES, Formats, translator
from tests.console.catalogue import CONSOLE, messages


def test_every_text_is_translated_and_none_is_stale() -> None:
    with CATALOGUE.open("rb") as f:
        po = {str(m.id): str(m.string) for m in read_po(f) if m.id}
    used = messages()
    untranslated = sorted(text for text in used if not po.get(text))
    assert not untranslated, f"add Vietnamese for: {untranslated}"
    stale = sorted(set(po) - set(used))
    assert not stale, f"no longer used: {stale}"
    for text, vietnamese in po.items():
        assert set(re.findall(r"\{\w+\}", text)) == set(re.findall(r"\{\w+\}", vietnamese)), text


def test_the_ten_statuses_have_their_official_names() -> None:
    vi = translator("vi")
    assert [vi(STATUS_NAMES[i]) for i in range(1, 11)] == [
        "Mới đăng ký",
        "Được tiếp nhận",
        "Không được tiếp nhận",
        "Đang xử lý",
        "Yêu cầu bổ sung",
        "Yêu cầu nghĩa vụ tài chính",
        "Công dân rút hồ sơ",
        "Dừng xử lý",
        "Đã xử lý xong",
        "Đã trả kết quả",
    ]


def test_dates_are_vietnam_time_and_numbers_vietnamese() -> None:
    fmt = Formats("vi", "Asia/Ho_Chi_Minh")
    assert fmt.dt("2026-12-31T17:30:00+00:00") == "01/01/2027 00:30"
    assert fmt.day("2026-12-31T17:30:00Z") == "01/01/2027"
    assert fmt.money(1500000) == "1.500.000 ₫"
    assert fmt.money(0) == "Miễn phí"
    assert fmt.hours("12.00") == "1 ngày làm việc, 4 giờ làm việc"
    assert Formats("en", "Asia/Ho_Chi_Minh").money(1500000) == "1,500,000 ₫"


def test_templates_hold_no_bare_text_and_load_nothing_from_elsewhere() -> None:
    for path in CONSOLE.glob("templates/*.html"):
        source = path.read_text(encoding="utf-8")
        assert "http://" not in source and "https://" not in source, path.name
        # text between tags must come from the catalogue (or be data, punctuation, a symbol)
        stripped = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|<[^>]+>", " ", source, flags=re.S)
        words = [w for w in re.findall(r"[A-Za-zÀ-ỹ]{3,}", stripped) if w not in {"PDF", "English", "Tiếng", "Việt"}]
        assert not words, f"{path.name}: {words}"


def test_the_consoles_own_inclusion_check_catches_a_changed_record() -> None:
    """RFC 9162 inclusion, checked the console's way on a tree built here by the RFC's rules."""
    import hashlib

    from services.console.audit import leaf_hash, root_from_inclusion

    def node(left: bytes, right: bytes) -> bytes:
        return hashlib.sha256(b"\x01" + left + right).digest()

    def root(leaves: list[bytes]) -> bytes:
        if len(leaves) == 1:
            return leaves[0]
        k = 1
        while k * 2 < len(leaves):
            k *= 2
        return node(root(leaves[:k]), root(leaves[k:]))

    def path(index: int, leaves: list[bytes]) -> list[bytes]:
        if len(leaves) == 1:
            return []
        k = 1
        while k * 2 < len(leaves):
            k *= 2
        if index < k:
            return [*path(index, leaves[:k]), root(leaves[k:])]
        return [*path(index - k, leaves[k:]), root(leaves[:k])]

    records = [{"id": str(i), "type": "vn.lienthong.dossier.received.v1", "data": {"n": i}} for i in range(7)]
    leaves = [leaf_hash(r) for r in records]
    for index in range(7):
        assert root_from_inclusion(index, 7, leaves[index], path(index, leaves)) == root(leaves)
    changed = {**records[3], "data": {"n": 33}}
    assert root_from_inclusion(3, 7, leaf_hash(changed), path(3, leaves)) != root(leaves)
    assert root_from_inclusion(7, 7, leaves[0], path(0, leaves)) is None
