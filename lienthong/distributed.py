"""Distributed mode: each part its own process, PostgreSQL and RabbitMQ from the environment.

``up`` starts every part as a child process and stops them all on Ctrl-C (or when one dies);
in production each part runs under its orchestrator with ``serve PART`` instead.
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


def up() -> int:
    children = {
        part: subprocess.Popen([sys.executable, "-m", "lienthong", "serve", part], env=os.environ.copy())
        for part in PARTS
    }
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print("lienthong distributed mode: " + ", ".join(f"{p} (pid {c.pid})" for p, c in children.items()), flush=True)
    code = 0
    while not stopping:
        for part, child in children.items():
            if child.poll() is not None:
                print(f"{part} exited with {child.returncode}; stopping the others", file=sys.stderr)
                stopping, code = True, 1
        time.sleep(0.5)
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children.values():
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
    return code
