"""What audit keeps while it runs: read with ``AuditState.of(request)``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.audit.checkpoint import NoteSigner
from shared.app import PartState

if TYPE_CHECKING:  # the jobs read this state: a plain import would be a loop
    from services.audit.jobs import SelfCheck


@dataclass
class AuditState(PartState):
    signer: NoteSigner  # signs checkpoints; its verifier key is public
    selfcheck: SelfCheck
