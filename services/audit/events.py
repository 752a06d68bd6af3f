"""What audit emits. The models live in ``shared.eventdata.audit``, where the parts that
consume them read them too (parts never import each other); this module names them for audit's
own code."""

from __future__ import annotations

from shared.eventdata.audit import (
    AuditTampered,
)

__all__ = [
    "AuditTampered",
]
