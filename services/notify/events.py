"""What notify emits. The models live in ``shared.eventdata.notify``, where the parts that
consume them read them too (parts never import each other); this module names them for notify's
own code."""

from __future__ import annotations

from shared.eventdata.notify import (
    WebhookTest,
)

__all__ = [
    "WebhookTest",
]
