"""What notify keeps while it runs: read with ``NotifyState.of(request)``."""

from __future__ import annotations

from dataclasses import dataclass

from services.notify.delivery import Deliverer
from services.notify.handlers import QueueBindings
from shared.app import PartState


@dataclass
class NotifyState(PartState):
    deliverer: Deliverer  # sends the deliveries owed, retries them on their schedule
    bindings: QueueBindings  # the queue bound to the families the subscriptions want
