"""What the gateway emits. The models live in ``shared.eventdata.gateway``, where the parts that
consume them read them too (parts never import each other); this module names them for the gateway's
own code."""

from __future__ import annotations

from shared.eventdata.gateway import (
    AccessRecorded,
)

__all__ = [
    "AccessRecorded",
]
