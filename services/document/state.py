"""What document keeps while it runs: read with ``DocumentState.of(request)``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.document.exchange.identity import ExchangeKit
from shared.app import PartState

if TYPE_CHECKING:  # ``service.toolkit`` reads this state: a plain import would be a loop
    from services.document.service import Toolkit


@dataclass
class DocumentState(PartState):
    toolkit: Toolkit  # settings, file store, cipher, working calendar
    exchange: ExchangeKit  # our exchange identity and partners (edXML)
