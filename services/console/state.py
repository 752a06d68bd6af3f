"""What the console keeps while it runs: read with ``ConsoleState.of(request)``."""

from __future__ import annotations

from dataclasses import dataclass

from services.console.api import Api
from shared.app import PartState


@dataclass
class ConsoleState(PartState):
    api: Api  # the gateway's public API, called with each user's own token
