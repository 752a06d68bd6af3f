"""What document emits. The models live in ``shared.eventdata.document``, where the parts that
consume them read them too (parts never import each other); this module names them for document's
own code."""

from __future__ import annotations

from shared.eventdata.document import (
    DocumentAssigned,
    DocumentDrafted,
    DocumentEvent,
    DocumentIssued,
    DocumentNumbered,
    DocumentRecalled,
    DocumentReceived,
    DocumentRegistered,
    Organ,
    WorkFileClosed,
    WorkFileOpened,
)

__all__ = [
    "DocumentAssigned",
    "DocumentDrafted",
    "DocumentEvent",
    "DocumentIssued",
    "DocumentNumbered",
    "DocumentRecalled",
    "DocumentReceived",
    "DocumentRegistered",
    "Organ",
    "WorkFileClosed",
    "WorkFileOpened",
]
