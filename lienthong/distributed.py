"""Distributed mode: each part its own process (or several), PostgreSQL and RabbitMQ from the environment.

``up`` starts every part as a child process, starts a part that dies again (with backoff, and
says so), and stops them all on Ctrl-C or SIGTERM; in production each part runs under its
orchestrator with ``serve PART`` instead.

``serve PART`` with ``workers`` > 1 (``LIENTHONG_<PART>_WORKERS``) is a small supervisor: it binds
the part's port once and runs that many worker processes accepting on that one socket (the
kernel hands each connection to one of them). Not uvicorn's own ``workers=N`` supervisor, because
that starts every worker at once: the first start of a part does work that must happen once —
migrations, demo data, a development key written under ``var_dir``, the gateway's first signing
key — and N processes doing it together race (a unique violation, or a key file and certificate
from two different processes). Here the first worker starts alone; the others start once it
serves. A worker that dies is started again (with backoff, and said); SIGTERM or Ctrl-C stops
them all gracefully (each finishes its requests and its lifespan shutdown). What the workers
share and what is refused is in :mod:`shared.workers`.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.synchronize import Event as EventType
from typing import Any, Generic, TypeVar

import uvicorn
from pydantic import ValidationError

from lienthong import parts
from shared import heap, workers
from shared.migrations import upgrade
from shared.settings import PARTS, Settings

SERVER_OPTIONS: dict[str, Any] = {
    "log_level": "warning",
    "access_log": False,
    "lifespan": "on",
    "loop": "uvloop",
    "http": "httptools",
}
FIRST_WORKER_TIMEOUT = 180.0  # migrations of a large upgrade run in the first worker's start
STOP_TIMEOUT = 25.0


def serve(part: str) -> int:
    if part not in PARTS:
        print(f"unknown part {part!r}; one of {', '.join(PARTS)}", file=sys.stderr)
        return 2
    mod = parts.module(part)
    try:
        settings = mod.get_settings()
    except ValidationError as exc:
        print(f"{part}: the settings are refused:\n{exc}", file=sys.stderr)
        return 2
    why = workers.refusal(part, settings.workers)
    if why:
        print(f"{part}: {settings.workers} workers refused: {why}", file=sys.stderr)
        return 2
    if settings.workers == 1:
        uvicorn.run(heap.settled(mod.create_app(settings)), host=settings.host, port=settings.port, **SERVER_OPTIONS)
        return 0
    return supervise(part, settings)


class Backoff:
    """The pause before starting a dead process again: doubles while it keeps dying
    (``first`` up to ``most``), back to ``first`` once it had run ``steady_after`` seconds."""

    def __init__(self, first: float = 1.0, most: float = 30.0, steady_after: float = 60.0) -> None:
        self.first, self.most, self.steady_after = first, most, steady_after
        self._delays: dict[object, float] = {}

    def after(self, key: object, ran: float) -> float:
        delay = self.first if ran >= self.steady_after else min(self._delays.get(key, self.first / 2) * 2, self.most)
        self._delays[key] = delay
        return delay


K = TypeVar("K")  # what a child is kept for: a part's name, a worker's index


class Keeper(Generic[K]):
    """Keeps child processes running: one that exits is started again after its :class:`Backoff`
    pause, and the log says so. ``start(key)`` starts the child of ``key`` (a part, a worker
    index) and returns it; ``exit_code(child)`` is None while it runs."""

    def __init__(
        self,
        start: Callable[[K], Any],
        exit_code: Callable[[Any], int | None],
        name: Callable[[K], str],
        backoff: Backoff,
        on_exit: Callable[[Any], None] = lambda child: None,
    ) -> None:
        self._start, self._exit_code, self._name, self._on_exit = start, exit_code, name, on_exit
        self.backoff = backoff
        self.children: dict[K, Any] = {}
        self._started: dict[K, float] = {}
        self._restart_at: dict[K, float] = {}

    def start(self, key: K) -> Any:
        self._started[key] = time.monotonic()
        self.children[key] = self._start(key)
        return self.children[key]

    def check(self) -> None:
        """One look at every child: start those whose pause is over, schedule those that exited."""
        now = time.monotonic()
        for key, child in list(self.children.items()):
            if key in self._restart_at:
                if now >= self._restart_at[key]:
                    del self._restart_at[key]
                    new = self.start(key)
                    print(f"{self._name(key)} restarted (pid {new.pid})", file=sys.stderr, flush=True)
                continue
            code = self._exit_code(child)
            if code is None:
                continue
            self._on_exit(child)
            ran = now - self._started[key]
            delay = self.backoff.after(key, ran)
            self._restart_at[key] = now + delay
            print(
                f"{self._name(key)} (pid {child.pid}) exited with {code} after {ran:.0f} s; "
                f"restarting it in {delay:g} s",
                file=sys.stderr,
                flush=True,
            )


class _ReadyServer(uvicorn.Server):
    """Says when it serves: the lifespan (migrations, on_start) is done and the socket accepts."""

    def __init__(self, config: uvicorn.Config, ready: EventType) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self._ready.set()
        threading.Thread(target=self._stop_with_the_supervisor, daemon=True).start()

    def _stop_with_the_supervisor(self) -> None:
        """A supervisor killed outright (SIGKILL, OOM) cannot stop its workers; they would keep
        the port, and the supervisor started again could not bind it. So a worker whose
        supervisor is gone stops by itself, gracefully (uvicorn polls ``should_exit``)."""
        parent = multiprocessing.parent_process()
        if parent is not None:
            multiprocessing.connection.wait([parent.sentinel])
            self.should_exit = True


def _worker(part: str, label: str, sock: socket.socket, ready: EventType) -> None:
    os.environ[workers.WORKER_ENV] = label
    mod = parts.module(part)
    settings = mod.get_settings()
    config = uvicorn.Config(
        heap.settled(mod.create_app(settings)), host=settings.host, port=settings.port, **SERVER_OPTIONS
    )
    _ReadyServer(config, ready).run(sockets=[sock])


def _metrics_dir(part: str) -> tuple[str, bool]:
    """The directory every worker writes its metrics to; emptied, since files of an earlier run
    would be summed in. Returns it and whether it is ours to remove at the end."""
    given = os.environ.get(workers.METRICS_DIR_ENV)
    if given:
        os.makedirs(given, exist_ok=True)
        for name in os.listdir(given):
            if name.endswith(".db"):
                os.remove(os.path.join(given, name))
        return given, False
    made = tempfile.mkdtemp(prefix=f"lienthong-{part}-metrics-")
    os.environ[workers.METRICS_DIR_ENV] = made
    return made, True


def supervise(part: str, settings: Settings, *, backoff: Backoff | None = None) -> int:
    """Run ``settings.workers`` processes of ``part`` on one socket until SIGTERM or Ctrl-C."""
    count = settings.workers
    metrics_dir, ours = _metrics_dir(part)
    sock = uvicorn.Config(app="unused", host=settings.host, port=settings.port, log_level="warning").bind_socket()
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no loop or pool inherited
    # kept while the worker runs: a spawned child unpickles its event after start() returned
    ready_events: dict[int, EventType] = {}
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    def start(index: int) -> Any:
        ready_events[index] = context.Event()
        process = context.Process(
            target=_worker,
            args=(part, f"{index + 1}/{count}", sock, ready_events[index]),
            name=f"{part}-worker-{index + 1}",
        )
        process.start()
        return process

    def ended(process: Any) -> None:
        process.join()
        workers.worker_exited(process.pid)

    keeper: Keeper[int] = Keeper(
        start, lambda p: p.exitcode, lambda index: f"{part} worker {index + 1}", backoff or Backoff(), ended
    )
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        first = keeper.start(0)
        deadline = time.monotonic() + FIRST_WORKER_TIMEOUT
        while not ready_events[0].wait(0.2):
            if stopping:
                return 0
            if not first.is_alive() or time.monotonic() > deadline:
                print(f"{part}: the first worker did not start (exit code {first.exitcode})", file=sys.stderr)
                return 1
        for index in range(1, count):
            keeper.start(index)
        print(
            f"{part}: {count} workers on {settings.host}:{settings.port} (pids "
            + ", ".join(str(p.pid) for p in keeper.children.values())
            + ")",
            file=sys.stderr,
            flush=True,
        )
        while not stopping:
            keeper.check()
            time.sleep(0.2)
        return 0
    finally:
        _stop_all(list(keeper.children.values()))
        sock.close()
        if ours:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _stop_all(processes: list[Any]) -> None:
    """SIGTERM to each (uvicorn finishes open requests and runs the lifespan's shutdown), then
    wait; whoever has not stopped after ``STOP_TIMEOUT`` is killed."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()


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
    keeper: Keeper[str] = Keeper(
        lambda part: subprocess.Popen([sys.executable, "-m", "lienthong", "serve", part], env=os.environ.copy()),
        lambda child: child.poll(),
        str,
        Backoff(first_delay, max_delay, steady_after),
    )
    for part in PARTS:
        keeper.start(part)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(
        "lienthong distributed mode: " + ", ".join(f"{p} (pid {c.pid})" for p, c in keeper.children.items()),
        flush=True,
    )
    while not stopping:
        keeper.check()
        time.sleep(0.2)
    children = keeper.children
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children.values():
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
    return 0
