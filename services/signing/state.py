"""What signing keeps while it runs: read with ``SigningState.of(request)``."""

from __future__ import annotations

from dataclasses import dataclass

from services.signing.documents import DocumentsClient
from services.signing.keystore import Keystore
from services.signing.service import PinCache
from shared.app import PartState


@dataclass
class SigningState(PartState):
    keystore: Keystore  # the CA and the signers' keys (PKCS#11 token, or software in development)
    pins: PinCache  # PINs checked a moment ago, so a batch asks the token once
    documents: DocumentsClient  # fetches the PDFs to sign from the document part
