"""Distributed mode: each part its own process, PostgreSQL and RabbitMQ from the environment.

``up`` starts every part as a child process, starts a part that dies again (with backoff, and
says so), and stops them all on Ctrl-C or SIGTERM; in production each part runs under its
orchestrator with ``serve PART`` instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import uvicorn

from lienthong import parts
from shared.migrations import upgrade
from shared.settings import PARTS


def serve(part: str) -> int:
    if part not in PARTS:
        print(f"unknown part {part!r}; one of {', '.join(PARTS)}", file=sys.stderr)
        return 2
    mod = parts.module(part)
    settings = mod.get_settings()
    app = mod.create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        loop="uvloop",
        http="httptools",
    )
    return 0


def migrate(part: str | None) -> int:
    for name in [part] if part else PARTS:
        mod = parts.module(name)
        settings = mod.get_settings()
        upgrade(mod.MIGRATIONS, settings.resolved_database_url, service=name)
        print(f"{name}: migrated")
    return 0


def up(*, first_delay: float = 1.0, max_delay: float = 30.0, steady_after: float = 60.0) -> int:
    """Every part as a child process; a part that dies is started again after a pause that
    doubles while it keeps dying (``first_delay`` up to ``max_delay``; back to the start once it
    has run ``steady_after`` seconds). Only Ctrl-C or SIGTERM stops them all."""
    started: dict[str, float] = {}
    delays: dict[str, float] = {}
    restart_at: dict[str, float] = {}

    def start(part: str) -> subprocess.Popen[bytes]:
        started[part] = time.monotonic()
        return subprocess.Popen([sys.executable, "-m", "lienthong", "serve", part], env=os.environ.copy())

    children = {part: start(part) for part in PARTS}
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print("lienthong distributed mode: " + ", ".join(f"{p} (pid {c.pid})" for p, c in children.items()), flush=True)
    while not stopping:
        now = time.monotonic()
        for part, child in children.items():
            if part in restart_at:
                if now >= restart_at[part]:
                    del restart_at[part]
                    children[part] = start(part)
                    print(f"{part} restarted (pid {children[part].pid})", file=sys.stderr, flush=True)
                continue
            if child.poll() is None:
                continue
            ran = now - started[part]
            delay = first_delay if ran >= steady_after else min(delays.get(part, first_delay / 2) * 2, max_delay)
            delays[part] = delay
            restart_at[part] = now + delay
            print(
                f"{part} (pid {child.pid}) exited with {child.returncode} after {ran:.0f} s; "
                f"restarting it in {delay:g} s",
                file=sys.stderr,
                flush=True,
            )
        time.sleep(0.2)
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children.values():
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
    return 0
