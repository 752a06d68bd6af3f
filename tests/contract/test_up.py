"""``python -m lienthong up`` (``make up``) keeps the suite running: a part that dies is started
again (and the log says so), the others are left alone, and only SIGTERM/Ctrl-C stops them all."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.settings import PARTS
from tests.servers import temporary_databases, temporary_vhost
from tests.suites import distributed_env, free_ports, wait_ready

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.pg, pytest.mark.amqp]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers signal 0; it is dead all the same
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def _start_up(env: dict[str, str], out: Path, err: Path) -> subprocess.Popen[bytes]:
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        command = [sys.executable, "-m", "lienthong", "up"]
        return subprocess.Popen(command, env=env, cwd=ROOT, stdout=stdout, stderr=stderr)


async def test_a_killed_part_is_started_again_and_sigterm_stops_all(tmp_path: Path) -> None:
    ports = dict(zip(PARTS, free_ports(len(PARTS)), strict=True))
    with temporary_databases(list(PARTS)) as db_urls, temporary_vhost() as amqp_url:
        env = distributed_env(db_urls, amqp_url, ports, tmp_path)
        out, err = tmp_path / "up.out", tmp_path / "up.err"
        up = _start_up(env, out, err)
        try:
            for part in PARTS:
                await wait_ready(f"http://127.0.0.1:{ports[part]}", up)
            pids = {p: int(n) for p, n in re.findall(r"(\w+) \(pid (\d+)\)", out.read_text().splitlines()[0])}
            assert set(pids) == set(PARTS)

            os.kill(pids["intake"], signal.SIGKILL)
            deadline = time.monotonic() + 60
            while "intake restarted (pid" not in err.read_text():
                assert up.poll() is None, "up stopped when one part died"
                assert time.monotonic() < deadline, err.read_text()[-2000:]
                await asyncio.sleep(0.2)
            log = err.read_text()
            assert re.search(rf"intake \(pid {pids['intake']}\) exited with -9 after \d+ s; restarting it in", log)
            new_pid = int(re.findall(r"intake restarted \(pid (\d+)\)", log)[-1])
            await wait_ready(f"http://127.0.0.1:{ports['intake']}", up)
            assert all(_alive(pid) for part, pid in pids.items() if part != "intake")
            assert _alive(new_pid)

            up.send_signal(signal.SIGTERM)
            assert up.wait(timeout=60) == 0
            assert not any(_alive(pid) for pid in [*pids.values(), new_pid])
        finally:
            if up.poll() is None:
                up.kill()
                up.wait()
