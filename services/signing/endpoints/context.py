"""What every signing route takes from the request: its database session, the keystore and the
cache of checked PINs."""

from __future__ import annotations

from fastapi import Depends, Request

from shared.db import request_session

from ..keystore import Keystore
from ..service import PinCache

Session = Depends(request_session, scope="function")


def keystore_of(request: Request) -> Keystore:
    return request.app.state.runtime.extras["keystore"]


def pins_of(request: Request) -> PinCache:
    return request.app.state.runtime.extras["pins"]
