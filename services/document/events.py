"""The events document emits."""

from __future__ import annotations

from shared.events import EventData, register


@register("workfile.opened", service="document")
class WorkFileOpened(EventData):
    """A work dossier (hồ sơ công việc) was opened, e.g. for a one-stop-shop dossier."""

    id: int
    organ_id: str
    file_catalog: int
    file_notation: str
    dossier_code: str | None
