"""What the gateway keeps while it runs: read with ``GatewayState.of(request)``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.access import AccessLog
from gateway.openapi import ApiDocuments
from gateway.proxy import Upstreams
from gateway.ratelimit import Limiter
from shared.app import PartState

if TYPE_CHECKING:  # the identity routes read this state: a plain import would be a loop
    from gateway.identity import KeyRing, Passwords


@dataclass
class GatewayState(PartState):
    passwords: Passwords
    # the built-in identity provider's signing keys; None when an external provider issues tokens
    keyring: KeyRing | None
    upstreams: Upstreams
    api: ApiDocuments
    limiter: Limiter
    access: AccessLog
