"""Intake's HTTP API (through the gateway at ``/api/intake/…``), one module per router:
agencies, procedure catalogue, calendar, dossiers (submission, workflow, forms), public
look-up, indicators."""

from __future__ import annotations

from services.intake.endpoints import agencies, calendar, dossiers, forms, indicators, lookup, procedures, submission

# the dossier routes are spread over three modules under one prefix and tag
routers = [
    agencies.router,
    procedures.router,
    calendar.router,
    submission.router,
    dossiers.router,
    forms.router,
    lookup.router,
    indicators.router,
]
