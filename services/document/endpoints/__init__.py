"""Document's HTTP API (through the gateway at ``/api/document/…``), one module per router:
documents, their files, the issue flow, processing, registers, work dossiers, exchange,
agencies, reports."""

from __future__ import annotations

from services.document.endpoints import (
    agencies,
    content,
    documents,
    exchange,
    issuing,
    processing,
    registers,
    reports,
    workfiles,
)

ROUTERS = (
    *documents.ROUTERS,
    *content.ROUTERS,
    *issuing.ROUTERS,
    *processing.ROUTERS,
    *workfiles.ROUTERS,
    *registers.ROUTERS,
    *exchange.ROUTERS,
    *reports.ROUTERS,
    *agencies.ROUTERS,
)
