"""Embedded mode: every part in one process, each app on its own port, one in-process broker.

SQLite files under ``var/``, demo data seeded. Ctrl-C stops every server cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Any

import uvicorn

from lienthong import parts
from shared.bus.memory import InProcessBroker
from shared.settings import DEFAULT_PORTS, PARTS


class EmbeddedSuite:
    """The whole suite in this event loop; used by ``make run`` and by the embedded tests."""

    def __init__(
        self,
        *,
        var_dir: Path,
        ports: dict[str, int] | None = None,
        demo: bool = True,
        host: str = "127.0.0.1",
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.var_dir = var_dir
        self.ports = ports or dict(DEFAULT_PORTS)
        self.host = host
        self.broker = InProcessBroker(delivery_limit=int(os.environ.get("LIENTHONG_DELIVERY_LIMIT", "5")))
        self.servers: dict[str, uvicorn.Server] = {}
        self.apps: dict[str, Any] = {}
        gateway_url = f"http://{host}:{self.ports['gateway']}"
        upstreams = {p: f"http://{host}:{self.ports[p]}" for p in PARTS if p != "gateway"}
        for part in PARTS:
            mod = parts.module(part)
            overrides: dict[str, Any] = {
                "var_dir": var_dir,
                "port": self.ports[part],
                "host": host,
                "demo": demo,
                "amqp_url": None,
                "workers": 1,  # one process, one loop: LIENTHONG_WORKERS is for `serve PART`
                "jwks_url": f"{gateway_url}/api/auth/jwks",
                "public_base_url": gateway_url,
                **(extra or {}),
            }
            overrides.pop("database_url", None)
            if part == "gateway":
                overrides["upstreams"] = upstreams
                # the console, a process of this machine, names its visitors' addresses; the
                # gateway believes that from loopback only
                overrides.setdefault("trusted_proxies", ["127.0.0.1/32"])
            settings = mod.get_settings(**overrides)
            app = mod.create_app(settings, broker=self.broker)
            self.apps[part] = app
            config = uvicorn.Config(
                app, host=host, port=self.ports[part], log_level="warning", lifespan="on", access_log=False
            )
            self.servers[part] = uvicorn.Server(config)

    async def start(self) -> None:
        await self.broker.connect()
        self._tasks = {
            part: asyncio.create_task(server.serve(), name=f"serve:{part}") for part, server in self.servers.items()
        }
        for part, server in self.servers.items():
            while not server.started:
                if self._tasks[part].done():
                    self._tasks[part].result()
                    raise RuntimeError(f"{part} did not start")
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        for server in self.servers.values():
            server.should_exit = True
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        await self.broker.close()

    def url(self, part: str = "gateway") -> str:
        return f"http://{self.host}:{self.ports[part]}"


def _banner(suite: EmbeddedSuite, password: str) -> str:
    lines = [
        "",
        "lienthong is running (embedded mode: one process, SQLite under var/, in-process broker)",
        f"  console        {suite.url()}/            the web pages (look-up: {suite.url()}/tra-cuu)",
        f"  gateway        {suite.url()}            API docs: {suite.url()}/docs",
    ]
    for part in PARTS[1:]:
        if part != "console":
            lines.append(f"  {part:<14} {suite.url(part)}   docs: {suite.url(part)}/docs")
    lines += [
        "",
        f"Demo logins (password '{password}'): "
        + ", ".join(sorted(__import__("gateway.app", fromlist=["x"]).DEMO_USERS)),
        "  and at every demo agency, <role>.<agency>: leader.41, clerk.41, desk_officer.41, specialist.41 "
        "work at 000.00.41.H56 (all: shared/demo.py)",
        f"  curl -s -X POST {suite.url()}/api/auth/token "
        f"-d grant_type=password -d username=desk_officer -d password={password}",
        *_signing_lines(suite),
        "Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def _signing_lines(suite: EmbeddedSuite) -> list[str]:
    """The demo signing PIN, and a loud word when keys are not in a token."""
    from services.signing.state import SigningState  # only when the banner is shown: parts load lazily

    app = suite.apps.get("signing")
    runtime = getattr(getattr(app, "state", None), "runtime", None)
    if runtime is None:
        return []
    lines = [
        f"Signing PIN of every demo certificate (header X-Signing-PIN): {runtime.settings.demo_pin_secret}",
    ]
    state = runtime.state
    keystore = state.keystore if isinstance(state, SigningState) else None
    if keystore is not None and keystore.token.description != "pkcs11":
        lines.append(
            f"WARNING: signing keys are in the software keystore, {keystore.token.description}: no "
            "SoftHSM2/PKCS#11 module found; fine for a demo, never for production"
        )
    return lines


async def run() -> None:
    var_dir = Path(os.environ.get("LIENTHONG_VAR_DIR", "var"))
    var_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before anything serves
    os.environ.setdefault("LIENTHONG_DEMO", "true")
    # a person at a terminal: readable lines, and only what needs their attention
    os.environ.setdefault("LIENTHONG_LOG_JSON", "false")
    os.environ.setdefault("LIENTHONG_LOG_LEVEL", "WARNING")
    suite = EmbeddedSuite(var_dir=var_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    # uvicorn installs its own handlers per server; ours decide when all of them stop
    for server in suite.servers.values():
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    await suite.start()
    print(_banner(suite, os.environ.get("LIENTHONG_DEMO_PASSWORD", "demo")), flush=True)
    await stop.wait()
    print("stopping…", flush=True)
    await suite.stop()
