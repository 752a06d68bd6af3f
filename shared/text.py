"""Vietnamese-aware text folding for search: "Quyết định" and "quyet dinh" compare equal.

Folding lowercases, strips every diacritic (so the two tone-mark placements "Hóa"/"Hoá" agree),
maps đ to d and collapses whitespace. It is meant for search keys, never for display.
"""

from __future__ import annotations

import re
import unicodedata

# Đ/đ are letters of their own, not d + a combining mark, so NFD leaves them alone.
_STROKE_LETTERS = str.maketrans({"đ": "d", "Đ": "d"})
_WHITESPACE = re.compile(r"\s+")
_WORD = re.compile(r"[^\W_]+")


def fold(text: str) -> str:
    """Search key of ``text``: lowercase, no diacritics, đ → d, single spaces, trimmed."""
    decomposed = unicodedata.normalize("NFD", text.translate(_STROKE_LETTERS))
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    # NFC afterwards so that any non-Vietnamese leftovers are in one canonical form.
    folded = unicodedata.normalize("NFC", stripped).casefold()
    return _WHITESPACE.sub(" ", folded).strip()


def tokens(text: str) -> list[str]:
    """Folded words and numbers of ``text``, in order: ``15/CT-UBND`` → ``["15", "ct", "ubnd"]``."""
    return _WORD.findall(fold(text))


def matches(query: str, text: str, *, prefix: bool = False) -> bool:
    """True when every folded word of ``query`` is a word of ``text``.

    With ``prefix``, a query word may be the start of a text word (search as you type).
    An empty query matches everything.
    """
    wanted = tokens(query)
    have = tokens(text)
    if not prefix:
        words = set(have)
        return all(w in words for w in wanted)
    return all(any(h.startswith(w) for h in have) for w in wanted)
