"""Where a callback may point: no private, loopback, link-local or otherwise internal address
(SSRF), unless configuration allows it. Checked when a subscription is saved and again at every
connection, by the resolver the delivery client uses, so a DNS answer that changes later (DNS
rebinding) cannot turn a public name into an internal target.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from shared.errors import ProblemError


class TargetRefused(ProblemError):
    status, code, title = 422, "callback_refused", "This callback URL is not allowed"


def address_allowed(address: str, *, allow_private: bool) -> bool:
    if allow_private:
        return True
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str, *, schemes: list[str], allow_private: bool) -> tuple[str, int]:
    """Parse a callback URL and refuse what can never be a target; return its host and port."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused("not a valid URL") from exc
    if parts.scheme not in schemes:
        raise TargetRefused(f"the scheme must be one of: {', '.join(schemes)}")
    if not parts.hostname:
        raise TargetRefused("the URL names no host")
    if parts.username or parts.password:
        raise TargetRefused("credentials in the URL are not allowed; verify our signature instead")
    if parts.fragment:
        raise TargetRefused("a fragment means nothing to a server")
    host = parts.hostname
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        literal = True
    except ValueError:
        literal = False
    if literal and not address_allowed(host, allow_private=allow_private):
        raise TargetRefused("private, loopback and link-local addresses are not allowed")
    if (
        not literal
        and not allow_private
        and (host == "localhost" or host.endswith((".localhost", ".local", ".internal")))
    ):
        raise TargetRefused("internal host names are not allowed")
    return host, port or (443 if parts.scheme == "https" else 80)


async def check_resolves(host: str, port: int, *, allow_private: bool) -> None:
    """Every address the name resolves to must be allowed (checked again at each connection)."""
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise TargetRefused(f"the host {host} does not resolve") from exc
    for info in infos:
        if not address_allowed(str(info[4][0]), allow_private=False):
            raise TargetRefused(f"{host} resolves to an address that is not allowed")


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that drops every address the rules refuse (the connection then fails)."""

    def __init__(self, *, allow_private: bool) -> None:
        self._inner = ThreadedResolver()
        self.allow_private = allow_private

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if address_allowed(r["host"], allow_private=self.allow_private)]
        if not allowed:
            raise OSError(f"{host} resolves only to addresses callbacks may not reach")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def describe(exc: Any) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
