"""What intake keeps while it runs: read with ``IntakeState.of(request)``."""

from __future__ import annotations

from dataclasses import dataclass

from services.intake.blobs import BlobStore
from services.intake.catalogue import VersionLabels
from shared.app import PartState


@dataclass
class IntakeState(PartState):
    blobs: BlobStore  # the dossiers' files, by content hash
    labels: VersionLabels  # each procedure version's label, cached
