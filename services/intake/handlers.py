"""What intake consumes: ``document.issued`` naming a dossier attaches the result to it, and
finishes it at once when its status allows, otherwise when it later does (never dropped).

The handler runs in the inbox's transaction (one row per event: redelivery is a no-op); the
same document issued again is recognised by its id. A document for a dossier intake does not
know is logged and acknowledged: it will never apply, and it is not the document's fault either.
The event is read as document's own model (``shared.eventdata``): without what its contract
names (a number in ``code``, the document's ``id``…) it is refused, dead-lettered, never guessed
at; fields intake does not know are a newer producer's and are passed over.
"""

from __future__ import annotations

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import catalogue, results
from services.intake.blobs import BlobStore
from services.intake.config import IntakeSettings
from services.intake.context import Context
from services.intake.models import inbox
from shared import eventdata
from shared.eventdata.document import DocumentIssued
from shared.events import CloudEvent
from shared.inbox import Consumer, PoisonEvent

log = structlog.get_logger("intake")

SHA256_HEX = 64
DOWNLOAD_PATH_MAX = 300  # IssuedResult.download_path


class DocumentIssuedHandler:
    """Bound to the part's settings at start (the calendar comes from the database)."""

    def __init__(self) -> None:
        self.settings: IntakeSettings | None = None
        self.blobs: BlobStore | None = None
        self.labels: catalogue.VersionLabels | None = None
        self.outcomes: list[str] = []

    def bind(self, settings: IntakeSettings, blobs: BlobStore, labels: catalogue.VersionLabels) -> None:
        self.settings, self.blobs, self.labels = settings, blobs, labels

    async def __call__(self, session: AsyncSession, event: CloudEvent) -> None:
        issued = eventdata.read(event, DocumentIssued)
        # longer than intake's columns keep is no sha256 nor a path of the gateway's
        if len(issued.content_sha256) > SHA256_HEX or len(issued.download_path) > DOWNLOAD_PATH_MAX:
            raise PoisonEvent("document.issued with a content_sha256 or download_path longer than they can be")
        if self.settings is None or self.blobs is None or self.labels is None:
            raise RuntimeError("intake's document.issued handler is not bound yet")
        ctx = Context(settings=self.settings, blobs=self.blobs, labels=self.labels)
        outcome = await results.finish_from_document(session, ctx, issued)
        self.outcomes.append(outcome)
        if len(self.outcomes) > 1000:
            del self.outcomes[:500]
        log.info("document_issued_applied", outcome=outcome, dossier_code=issued.dossier_code, event_id=event.id)


document_issued = DocumentIssuedHandler()

consumer = Consumer(name="intake", handlers={"document.issued": document_issued}, inbox=inbox)
