"""What people read: one gettext catalogue (Vietnamese first, English as the message ids),
dates in Vietnam's time as ``dd/MM/yyyy HH:mm``, numbers and statuses in words.

The catalogue is the ``.po`` file itself, read with Babel when the part starts, so a fresh clone
needs no compile step and there is no ``.mo`` to drift from it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.messages.pofile import read_po
from babel.numbers import format_decimal, format_percent

LOCALES = ("vi", "en")


def N_(text: str) -> str:  # noqa: N802 - gettext's name for "mark for the catalogue, translate later"
    return text


CATALOGUE = Path(__file__).parent / "locale" / "vi" / "LC_MESSAGES" / "console.po"

# The 10 statuses of a dossier (Thanh Hóa's codes); the Vietnamese names are the catalogue's.
STATUS_NAMES = {
    1: N_("Submitted online, not yet accepted"),
    2: N_("Accepted"),
    3: N_("Not accepted"),
    4: N_("Being processed"),
    5: N_("Supplement requested"),
    6: N_("Fees requested"),
    7: N_("Withdrawn by the applicant"),
    8: N_("Processing stopped"),
    9: N_("Finished, result ready"),
    10: N_("Result returned"),
}
DOCUMENT_STATUS_NAMES = {
    "draft": N_("Draft"),
    "signed_by_leader": N_("Signed by the leader"),
    "numbered": N_("Numbered"),
    "sealed": N_("Sealed"),
    "issued": N_("Issued"),
    "registered": N_("Registered"),
    "recalled": N_("Recalled"),
}
ACTION_NAMES = {
    "accept": N_("Accept"),
    "refuse": N_("Refuse"),
    "start_processing": N_("Send for processing"),
    "request_supplement": N_("Request a supplement"),
    "supplement_received": N_("Supplement received"),
    "request_fees": N_("Request fees"),
    "fees_paid": N_("Fees paid"),
    "withdraw": N_("Withdraw"),
    "stop": N_("Stop processing"),
    "finish": N_("Finish"),
    "return_result": N_("Return the result"),
    "received": N_("Received"),
    "receive": N_("Received"),
    "extend": N_("Due date extended"),
}
TIMELINESS_NAMES = {"early": N_("Early"), "on_time": N_("On time"), "late": N_("Late")}


@functools.cache
def catalogue() -> dict[str, str]:
    with CATALOGUE.open("rb") as f:
        po = read_po(f, locale="vi")
    return {str(m.id): str(m.string) for m in po if m.id and m.string and not m.fuzzy}


def translator(locale: str) -> Callable[[str], str]:
    if locale == "en":
        return lambda text: text
    messages = catalogue()
    return lambda text: messages.get(text, text)


class Formats:
    """Formatting for one request's language."""

    def __init__(self, locale: str, tz: str) -> None:
        self.locale = locale if locale in LOCALES else LOCALES[0]
        self.tz = ZoneInfo(tz)
        self._ = translator(self.locale)

    def dt(self, value: Any) -> str:
        """``dd/MM/yyyy HH:mm`` in Vietnam's time, whatever the language."""
        moment = _parse(value)
        if moment is None:
            return ""
        if isinstance(moment, datetime):
            return moment.astimezone(self.tz).strftime("%d/%m/%Y %H:%M")
        return moment.strftime("%d/%m/%Y")

    def day(self, value: Any) -> str:
        moment = _parse(value)
        if moment is None:
            return ""
        if isinstance(moment, datetime):
            moment = moment.astimezone(self.tz).date()
        return moment.strftime("%d/%m/%Y")

    def number(self, value: Any) -> str:
        if value is None or value == "":
            return ""
        return format_decimal(value, locale=self.locale)

    def percent(self, value: Any) -> str:
        if value is None or value == "":
            return "—"
        return format_percent(value, locale=self.locale, format="#,##0.#%")

    def money(self, value: Any) -> str:
        if not value:
            return self._("Free of charge")
        return f"{self.number(value)} ₫"

    def status(self, code: Any) -> str:
        try:
            return self._(STATUS_NAMES[int(code)])
        except (KeyError, ValueError, TypeError):
            return str(code)

    def document_status(self, status: str) -> str:
        return self._(DOCUMENT_STATUS_NAMES.get(status, status))

    def action(self, action: str) -> str:
        return self._(ACTION_NAMES.get(action, action))

    def timeliness(self, value: str | None) -> str:
        return self._(TIMELINESS_NAMES[value]) if value in TIMELINESS_NAMES else ""

    def hours(self, value: Any) -> str:
        """Working hours as days and hours (8 hours to a working day)."""
        try:
            total = float(value)
        except (TypeError, ValueError):
            return str(value or "")
        days, rest = divmod(total, 8)
        parts = []
        if days:
            parts.append(f"{self.number(int(days))} {self._('working days')}")
        if rest:
            parts.append(f"{self.number(round(rest, 2))} {self._('working hours')}")
        return ", ".join(parts) or "0"


def _parse(value: Any) -> datetime | date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime | date):
        return value
    text = str(value)
    try:
        if "T" in text or " " in text:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        return date.fromisoformat(text)
    except ValueError:
        return None
