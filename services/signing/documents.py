"""What signing asks the document part, over its published API with the caller's own token: the
number and symbol the system assigned to a document (the clerk fills that, and nothing else,
into the signed PDF)."""

from __future__ import annotations

from typing import Any

import httpx

from shared.errors import Conflict, Forbidden, NotFound, ServiceUnavailable


class DocumentNotNumbered(Conflict):
    code = "document_not_numbered"
    title = "The document has no number yet"


class NumberNotAssigned(Conflict):
    code = "number_not_assigned"
    title = "Not the number assigned to the document"


class DocumentsClient:
    """``GET {base_url}/documents/{id}`` as the caller: what the caller may not see, signing
    does not learn either."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def close(self) -> None:
        await self._client.aclose()

    async def document(self, document_id: int, *, authorization: str) -> dict[str, Any]:
        try:
            response = await self._client.get(
                f"{self.base_url}/documents/{document_id}", headers={"Authorization": authorization}
            )
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"the document part did not answer ({type(exc).__name__})") from exc
        if response.status_code == 404:
            raise NotFound(f"no document {document_id} you may see")
        if response.status_code in (401, 403):
            raise Forbidden(f"the document part refused to show document {document_id} to you")
        if response.status_code != 200:
            raise ServiceUnavailable(f"the document part answered {response.status_code}")
        return response.json()

    async def assigned_code(self, document_id: int, *, authorization: str, claimed: str | None = None) -> str:
        """The number and symbol assigned to the document (``15/QĐ-UBND``); ``claimed``, if given,
        must be exactly that."""
        document = await self.document(document_id, authorization=authorization)
        code = document.get("code")
        if not code:
            raise DocumentNotNumbered(
                f"document {document_id} has no number yet: number it first "
                f"(POST /api/document/documents/{document_id}/number)"
            )
        if claimed is not None and claimed != code:
            raise NumberNotAssigned(
                f"document {document_id} was assigned {code}, not {claimed}", assigned=code, claimed=claimed
            )
        return str(code)
