"""What the intake service functions need besides the session: settings, blobs, version labels,
and the working calendar, read once a request and only by the requests that need it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import catalogue
from services.intake.blobs import BlobStore
from services.intake.calendar import WorkingCalendar
from services.intake.config import IntakeSettings
from services.intake.workflow import TimelinessRule


@dataclass
class Context:
    """What service functions need besides the session."""

    settings: IntakeSettings
    blobs: BlobStore
    labels: catalogue.VersionLabels
    _calendar: WorkingCalendar | None = None

    async def calendar(self, session: AsyncSession) -> WorkingCalendar:
        """The working calendar with the overrides as stored now, read when first needed: most
        requests (reads, and the actions that move no deadline) never need it."""
        if self._calendar is None:
            self._calendar = await catalogue.working_calendar(session, self.settings)
        return self._calendar

    @property
    def timeliness_rule(self) -> TimelinessRule:
        return TimelinessRule(
            on_time_band_hours=self.settings.timeliness_on_time_band_hours,
            on_time_band_share=self.settings.timeliness_on_time_band_share,
        )
