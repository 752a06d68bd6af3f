"""What every router module of document's HTTP API shares: the request's session, the staff
roles, the document's ETag."""

from __future__ import annotations

from fastapi import Depends, Response

from services.document import service as svc
from services.document.models import Document
from shared.db import request_session
from shared.http import etag_for

Session = Depends(request_session, scope="function")
STAFF = svc.STAFF


def etag(response: Response, doc: Document) -> None:
    response.headers["ETag"] = etag_for(doc.version)
