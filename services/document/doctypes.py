"""Document types (tên loại văn bản), urgency (độ khẩn) and secrecy (độ mật) as data.

Every list here comes from a legal text and carries that text and the date it took effect, so a
later amendment is a new entry rather than an edit of code.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType
from typing import Self


@dataclass(frozen=True)
class LegalSource:
    """Where a rule comes from, and since when it applies."""

    text: str
    effective_from: date
    # "confirmed" (read in the primary text), "secondary" or "unverified": see DOMAIN.md.
    status: str = "confirmed"


DECREE_30 = LegalSource("Nghị định 30/2020/NĐ-CP về công tác văn thư", date(2020, 3, 5))
DECREE_30_ANNEX_III = LegalSource(
    "Nghị định 30/2020/NĐ-CP, Phụ lục III (viết tắt tên loại văn bản và bản sao)", date(2020, 3, 5)
)
# Local normative documents are named by the law on legal documents, not by Decree 30.
LEGAL_DOCUMENTS_LAW = LegalSource(
    "Luật Ban hành văn bản quy phạm pháp luật 80/2015/QH13", date(2016, 7, 1), status="secondary"
)
STATE_SECRETS_LAW = LegalSource(
    "Luật Bảo vệ bí mật nhà nước 29/2018/QH14, Điều 8", date(2020, 7, 1), status="secondary"
)


class DocCategory(enum.StrEnum):
    """What kind of text a type is; the numbering rules differ by kind."""

    ADMINISTRATIVE = "administrative"  # văn bản hành chính (Decree 30, art. 7)
    LEGAL = "legal"  # văn bản quy phạm pháp luật: each type has its own number series
    COPY = "copy"  # bản sao: sao y, trích sao, sao lục


@dataclass(frozen=True)
class DocType:
    """One type of document: ``key`` is stable for storage, ``abbreviation`` goes in the symbol."""

    key: str
    name: str
    abbreviation: str | None
    category: DocCategory
    source: LegalSource

    @property
    def is_cong_van(self) -> bool:
        """Công văn has no type abbreviation: its symbol is issuer-unit."""
        return self.abbreviation is None and self.category is DocCategory.ADMINISTRATIVE

    @property
    def is_legal(self) -> bool:
        return self.category is DocCategory.LEGAL


def _admin(abbr: str, name: str) -> DocType:
    return DocType(abbr, name, abbr, DocCategory.ADMINISTRATIVE, DECREE_30_ANNEX_III)


def _copy(abbr: str, name: str) -> DocType:
    return DocType(abbr, name, abbr, DocCategory.COPY, DECREE_30_ANNEX_III)


ANNEX_III_TYPES: tuple[DocType, ...] = (
    _admin("NQ", "Nghị quyết"),
    _admin("QĐ", "Quyết định"),
    _admin("CT", "Chỉ thị"),
    _admin("QC", "Quy chế"),
    _admin("QyĐ", "Quy định"),
    _admin("TC", "Thông cáo"),
    _admin("TB", "Thông báo"),
    _admin("HD", "Hướng dẫn"),
    _admin("CTr", "Chương trình"),
    _admin("KH", "Kế hoạch"),
    _admin("PA", "Phương án"),
    _admin("ĐA", "Đề án"),
    _admin("DA", "Dự án"),
    _admin("BC", "Báo cáo"),
    _admin("BB", "Biên bản"),
    _admin("TTr", "Tờ trình"),
    _admin("HĐ", "Hợp đồng"),
    _admin("CĐ", "Công điện"),
    _admin("BGN", "Bản ghi nhớ"),
    _admin("BTT", "Bản thỏa thuận"),
    _admin("GUQ", "Giấy ủy quyền"),
    _admin("GM", "Giấy mời"),
    _admin("GGT", "Giấy giới thiệu"),
    _admin("GNP", "Giấy nghỉ phép"),
    _admin("PG", "Phiếu gửi"),
    _admin("PC", "Phiếu chuyển"),
    _admin("PB", "Phiếu báo"),
    DocType("CV", "Công văn", None, DocCategory.ADMINISTRATIVE, DECREE_30_ANNEX_III),
    _copy("SY", "Bản sao y"),
    _copy("TrS", "Bản trích sao"),
    _copy("SL", "Bản sao lục"),
)

# The normative documents a province, district or commune issues. Their abbreviation is shared
# with the administrative type of the same name; only the series and the category differ.
LOCAL_LEGAL_TYPES: tuple[DocType, ...] = (
    DocType("QPPL.NQ", "Nghị quyết (quy phạm pháp luật)", "NQ", DocCategory.LEGAL, LEGAL_DOCUMENTS_LAW),
    DocType("QPPL.QĐ", "Quyết định (quy phạm pháp luật)", "QĐ", DocCategory.LEGAL, LEGAL_DOCUMENTS_LAW),
)


class DocTypeRegistry:
    """The document types an installation knows; built from data, so an agency can extend it."""

    def __init__(self, types: Iterable[DocType]) -> None:
        by_key: dict[str, DocType] = {}
        for t in types:
            if t.key in by_key:
                raise ValueError(f"duplicate document type key {t.key!r}")
            by_key[t.key] = t
        self._by_key: Mapping[str, DocType] = MappingProxyType(by_key)

    def __iter__(self) -> Iterator[DocType]:
        return iter(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def get(self, key: str) -> DocType:
        try:
            return self._by_key[key]
        except KeyError:
            raise KeyError(f"unknown document type {key!r}") from None

    def by_abbreviation(self, abbreviation: str) -> list[DocType]:
        """All types written with this abbreviation (QĐ is both administrative and legal)."""
        return [t for t in self._by_key.values() if t.abbreviation == abbreviation]

    def abbreviations(self) -> frozenset[str]:
        """Type abbreviations, as :func:`numbering.parse_code` needs them to read a symbol."""
        return frozenset(t.abbreviation for t in self._by_key.values() if t.abbreviation)


DEFAULT_DOC_TYPES = DocTypeRegistry(ANNEX_III_TYPES + LOCAL_LEGAL_TYPES)


class _Ranked(enum.Enum):
    """An enum whose members compare by ``rank``; the value stays a stable storage code."""

    def __init__(self, code: str, rank: int, label: str) -> None:
        self.code = code
        self.rank = rank
        self.label = label

    @classmethod
    def from_code(cls, code: str) -> Self:
        for member in cls:
            if member.code == code:
                return member
        raise ValueError(f"unknown {cls.__name__} code {code!r}")

    def __lt__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.rank < other.rank  # type: ignore[attr-defined]

    def __le__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.rank <= other.rank  # type: ignore[attr-defined]

    def __gt__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.rank > other.rank  # type: ignore[attr-defined]

    def __ge__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.rank >= other.rank  # type: ignore[attr-defined]


class Urgency(_Ranked):
    """Độ khẩn, from least to most urgent."""

    NORMAL = ("thuong", 0, "Thường")
    KHAN = ("khan", 1, "Khẩn")
    THUONG_KHAN = ("thuong_khan", 2, "Thượng khẩn")
    HOA_TOC = ("hoa_toc", 3, "Hỏa tốc")


URGENCY_SOURCE = DECREE_30


class Secrecy(_Ranked):
    """Độ mật, from public to most secret."""

    NONE = ("none", 0, "")
    MAT = ("mat", 1, "Mật")
    TOI_MAT = ("toi_mat", 2, "Tối mật")
    TUYET_MAT = ("tuyet_mat", 3, "Tuyệt mật")

    @property
    def is_secret(self) -> bool:
        return self is not Secrecy.NONE


SECRECY_SOURCE = STATE_SECRETS_LAW


def clearance_allows(clearance: Secrecy, secrecy: Secrecy) -> bool:
    """A person cleared to ``clearance`` may see documents whose secrecy is at most that level."""
    return secrecy <= clearance
