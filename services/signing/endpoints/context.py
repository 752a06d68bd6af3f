"""What every signing route takes from the request: its database session, the keystore, the
cache of checked PINs and the document part's client."""

from __future__ import annotations

from fastapi import Depends, Request

from shared.db import request_session

from ..documents import DocumentsClient
from ..keystore import Keystore
from ..service import PinCache
from ..state import SigningState

Session = Depends(request_session, scope="function")


def keystore_of(request: Request) -> Keystore:
    return SigningState.of(request).keystore


def pins_of(request: Request) -> PinCache:
    return SigningState.of(request).pins


def documents_of(request: Request) -> DocumentsClient:
    return SigningState.of(request).documents
