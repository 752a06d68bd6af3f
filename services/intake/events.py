"""What intake emits. The models live in ``shared.eventdata.intake``, where the parts that
consume them read them too (parts never import each other); this module names them for intake's
own code."""

from __future__ import annotations

from shared.eventdata.intake import (
    STEP_EVENTS,
    AddedFile,
    AgencyChanged,
    DossierAccepted,
    DossierCode,
    DossierExtended,
    DossierFeesPaid,
    DossierFeesRequested,
    DossierFilesAdded,
    DossierFinished,
    DossierHandedOff,
    DossierProcessingStarted,
    DossierReceived,
    DossierRefused,
    DossierResult,
    DossierResultReturned,
    DossierStep,
    DossierStopped,
    DossierSupplementReceived,
    DossierSupplementRequested,
    DossierWithdrawn,
    IntakeEvent,
    ProcedureChanged,
)

__all__ = [
    "AddedFile",
    "AgencyChanged",
    "DossierAccepted",
    "DossierCode",
    "DossierExtended",
    "DossierFeesPaid",
    "DossierFeesRequested",
    "DossierFilesAdded",
    "DossierFinished",
    "DossierHandedOff",
    "DossierProcessingStarted",
    "DossierReceived",
    "DossierRefused",
    "DossierResult",
    "DossierResultReturned",
    "DossierStep",
    "DossierStopped",
    "DossierSupplementReceived",
    "DossierSupplementRequested",
    "DossierWithdrawn",
    "IntakeEvent",
    "ProcedureChanged",
    "STEP_EVENTS",
]
