"""Số, ký hiệu văn bản: format and parse number and symbol per Decree 30; name number series.

``15/CT-UBND`` is number, ``/``, type abbreviation, ``-``, issuer abbreviation; a công văn has
no type abbreviation, so its symbol is issuer-unit (``7816/VPCP-TTĐT``). A normative document
also carries its year (``30/2020/NĐ-CP``). The counter itself lives in the database; this module
only decides what a number looks like and which series it is drawn from.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from services.document.doctypes import (
    DECREE_30,
    DEFAULT_DOC_TYPES,
    DocCategory,
    DocType,
    LegalSource,
    Secrecy,
)

# Annex VI of Decree 30 (and the edXML header) give these field lengths.
CODE_NUMBER_MAX = 11
CODE_NOTATION_MAX = 30

# An abbreviation is letters and digits only (QyĐ, TTĐT, UBND, BGDĐT); "_" is excluded on purpose.
_SEGMENT = re.compile(r"^[^\W_]+$")
_NUMBER = re.compile(r"^[0-9]+$")
_YEAR = re.compile(r"^[0-9]{4}$")


class MalformedCode(ValueError):
    """The text is not a number and symbol as Decree 30 writes it."""


@dataclass(frozen=True)
class Code:
    """A document's number and symbol (số và ký hiệu)."""

    number: int
    type_abbr: str | None
    issuer_abbr: str
    unit_abbr: str | None = None
    # Only normative documents carry the year inside the number: 30/2020/NĐ-CP.
    year: int | None = None

    def __post_init__(self) -> None:
        if self.number < 1:
            raise MalformedCode(f"a document number starts at 1, got {self.number}")
        if self.year is not None and not 1000 <= self.year <= 9999:
            raise MalformedCode(f"year must have four digits, got {self.year}")
        for name in ("type_abbr", "issuer_abbr", "unit_abbr"):
            value = getattr(self, name)
            if value is None:
                continue
            # A unit may itself be compound (a joint drafting unit written A-B).
            parts = value.split("-") if name == "unit_abbr" else [value]
            if not all(_SEGMENT.match(p) for p in parts):
                raise MalformedCode(f"{name} must be letters and digits only, got {value!r}")
        if self.type_abbr is None and not self.unit_abbr:
            raise MalformedCode("a công văn symbol needs the drafting unit: issuer-unit")

    @property
    def is_cong_van(self) -> bool:
        return self.type_abbr is None

    @property
    def number_text(self) -> str:
        """The number as printed, two digits at least, then any year: ``05``, ``30/2020``."""
        text = f"{self.number:02d}"
        return f"{text}/{self.year}" if self.year is not None else text

    @property
    def notation(self) -> str:
        """The symbol without the number: ``CT-UBND``, ``VPCP-TTĐT``."""
        parts = [self.type_abbr] if self.type_abbr else []
        parts.append(self.issuer_abbr)
        if self.unit_abbr:
            parts.append(self.unit_abbr)
        return "-".join(parts)

    def __str__(self) -> str:
        return f"{self.number_text}/{self.notation}"


def format_code(
    number: int,
    *,
    type_abbr: str | None,
    issuer_abbr: str,
    unit_abbr: str | None = None,
    year: int | None = None,
) -> str:
    """``format_code(5, type_abbr="QĐ", issuer_abbr="UBND")`` → ``05/QĐ-UBND``.

    ``type_abbr=None`` makes a công văn symbol, which requires ``unit_abbr``.
    """
    return str(Code(number, type_abbr, issuer_abbr, unit_abbr, year))


def parse_code(
    text: str,
    *,
    type_abbrs: frozenset[str] | None = None,
    cong_van: bool | None = None,
    strict: bool = True,
) -> Code:
    """Read ``15/CT-UBND``, ``7816/VPCP-TTĐT`` or ``30/2020/NĐ-CP`` back into a :class:`Code`.

    Whether the first segment after ``/`` is a type or an issuer is decided by ``type_abbrs``
    (the registry's abbreviations by default); pass ``cong_van`` when the document's type is
    already known, since an issuer may be abbreviated like a type. ``strict`` rejects numbers
    not written as :func:`format_code` writes them (``5`` instead of ``05``, ``007``).
    """
    if type_abbrs is None:
        type_abbrs = DEFAULT_DOC_TYPES.abbreviations()
    stripped = text.strip()
    if not stripped or any(ch.isspace() for ch in stripped):
        raise MalformedCode(f"a number and symbol has no spaces: {text!r}")
    pieces = stripped.split("/")
    if len(pieces) == 2:
        number_text, notation = pieces
        year = None
    elif len(pieces) == 3 and _YEAR.match(pieces[1]):
        number_text, year_text, notation = pieces
        year = int(year_text)
    else:
        raise MalformedCode(f"expected number/symbol or number/year/symbol: {text!r}")
    if not _NUMBER.match(number_text):
        raise MalformedCode(f"the number must be digits: {text!r}")
    number = int(number_text)
    if strict and number >= 1 and number_text != f"{number:02d}":
        raise MalformedCode(f"numbers are written {number:02d}, not {number_text!r}: {text!r}")
    segments = notation.split("-")
    if len(segments) < 2 or not all(_SEGMENT.match(s) for s in segments):
        raise MalformedCode(f"the symbol must be ABBR-ABBR, letters and digits only: {text!r}")
    first, second, rest = segments[0], segments[1], segments[2:]
    unit = "-".join(rest) or None
    if cong_van is None:
        cong_van = first not in type_abbrs
    if cong_van:
        # Issuer-unit, and the unit may be compound.
        return Code(number, None, first, "-".join([second, *rest]), year)
    return Code(number, first, second, unit, year)


def edxml_parts(code: Code) -> tuple[str, str]:
    """Split for edXML and annex VI: (``CodeNumber`` ≤ 11, ``CodeNotation`` ≤ 30)."""
    number, notation = code.number_text, code.notation
    if len(number) > CODE_NUMBER_MAX:
        raise MalformedCode(f"CodeNumber {number!r} is longer than {CODE_NUMBER_MAX}")
    if len(notation) > CODE_NOTATION_MAX:
        raise MalformedCode(f"CodeNotation {notation!r} is longer than {CODE_NOTATION_MAX}")
    return number, notation


def from_edxml_parts(
    code_number: str,
    code_notation: str,
    *,
    type_abbrs: frozenset[str] | None = None,
    cong_van: bool | None = None,
) -> Code:
    """Join ``CodeNumber`` and ``CodeNotation`` received from another agency.

    Other systems do not all pad numbers, so this reads ``5`` as well as ``05``.
    """
    if len(code_number) > CODE_NUMBER_MAX or len(code_notation) > CODE_NOTATION_MAX:
        raise MalformedCode("CodeNumber or CodeNotation is too long")
    return parse_code(f"{code_number}/{code_notation}", type_abbrs=type_abbrs, cong_van=cong_van, strict=False)


class AdminSeries(enum.StrEnum):
    """How an agency's head groups administrative documents into series."""

    SHARED = "shared"  # one series for every administrative type (công văn included)
    PER_TYPE = "per_type"  # one series per type, like legal documents


@dataclass(frozen=True)
class SeriesRule:
    """An agency's number series configuration, in force from ``effective_from``.

    Decree 30, art. 15: numbers run from 01 on 1 January to 31 December; each type of legal
    document has its own series; the head of the agency decides the series of administrative
    documents; secret documents are numbered apart. Copies are numbered in their own register.
    """

    effective_from: date = date(2020, 3, 5)
    administrative: AdminSeries = AdminSeries.SHARED
    # Explicit groupings override ``administrative``: type key → series name (e.g. QĐ → "QĐ").
    administrative_groups: dict[str, str] = field(default_factory=dict)
    secret_apart: bool = True
    # A secret series mirrors the public grouping when True, else one series for all secrets.
    secret_per_group: bool = False
    copies_apart: bool = True
    source: LegalSource = DECREE_30


DEFAULT_SERIES_RULES: tuple[SeriesRule, ...] = (SeriesRule(),)


def rule_in_force(rules: SeriesRule | Sequence[SeriesRule], on: date) -> SeriesRule:
    """The rule with the latest ``effective_from`` not after ``on``."""
    candidates = [rules] if isinstance(rules, SeriesRule) else list(rules)
    in_force = [r for r in candidates if r.effective_from <= on]
    if not in_force:
        raise LookupError(f"no number series rule in force on {on.isoformat()}")
    return max(in_force, key=lambda r: r.effective_from)


def series_key_for(
    doc_type: DocType,
    secrecy: Secrecy,
    rules: SeriesRule | Sequence[SeriesRule] = DEFAULT_SERIES_RULES,
    *,
    on: date,
) -> str:
    """The name of the series a new document's number is drawn from, e.g. ``2025/hc``.

    The year leads the key because every series restarts at 01 on 1 January; the lead's counter
    table is keyed by (agency, this key).
    """
    rule = rule_in_force(rules, on)
    if doc_type.category is DocCategory.LEGAL:
        group = f"qppl:{doc_type.abbreviation}"
    elif doc_type.category is DocCategory.COPY and rule.copies_apart:
        group = "sao"
    elif doc_type.key in rule.administrative_groups:
        group = f"hc:{rule.administrative_groups[doc_type.key]}"
    elif rule.administrative is AdminSeries.PER_TYPE:
        group = f"hc:{doc_type.key}"
    else:
        group = "hc"
    if secrecy.is_secret and rule.secret_apart:
        group = f"mat:{group}" if rule.secret_per_group else "mat"
    return f"{on.year}/{group}"
