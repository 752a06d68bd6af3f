"""What signing emits. The models live in ``shared.eventdata.signing``, where the parts that
consume them read them too (parts never import each other); this module names them for signing's
own code."""

from __future__ import annotations

from shared.eventdata.signing import (
    CertificateIssued,
    CertificateRevoked,
    SignatureCompleted,
    SignatureFailed,
)

__all__ = [
    "CertificateIssued",
    "CertificateRevoked",
    "SignatureCompleted",
    "SignatureFailed",
]
