"""What the README tells a newcomer to type works as written: its main-flow curl block, taken
from the README itself, runs against a fresh embedded suite, and so does ``python -m lienthong
demo``, which makes the same calls."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import suites
from tests.servers import IN_CI

ROOT = Path(__file__).resolve().parents[2]


def main_flow_block() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- main-flow -->\s*```sh\n(.*?)\n```", readme, re.S)
    assert found, "the README lost its main-flow block (<!-- main-flow --> then a ```sh block)"
    return found.group(1)


def require_curl() -> None:
    if shutil.which("curl") is None:
        if IN_CI:
            pytest.fail("curl is missing (CI=true: a missing tool is a failure)")
        pytest.skip("curl is not installed")


async def run(argv: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


async def test_the_readme_main_flow_runs_as_written(tmp_path: Path) -> None:
    require_curl()
    block = main_flow_block()
    async with suites.embedded(tmp_path / "suite") as running:
        env = {**os.environ, "GW": running.gateway_url, "D": str(tmp_path / "walk"), "PY": sys.executable}
        done = await run(["bash", "-euo", "pipefail", "-c", block], env)
        assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        lines = done.stdout.strip().splitlines()
        # the clerk's one call printed the number, the look-up the returned status, then its URL
        assert re.fullmatch(r"\d{2,}/QĐ-UBND", lines[-3]), lines
        assert lines[-2] == "Đã trả kết quả", lines
        code = re.search(r"code=([^&]+)&secret=", lines[-1])
        assert code and code.group(1).startswith("000.00.41.H56-"), lines
        walk = tmp_path / "walk"
        assert (walk / "receipt.pdf").read_bytes().startswith(b"%PDF")
        result = (walk / "result.pdf").read_bytes()
        assert result.startswith((walk / "signed.pdf").read_bytes())  # the leader's signature kept intact
        assert result.count(b"/ByteRange") >= 2  # the leader's and the organisation's


async def test_lienthong_demo_walks_the_flow(tmp_path: Path) -> None:
    async with suites.embedded(tmp_path / "suite") as running:
        env = {**os.environ, "LIENTHONG_VAR_DIR": str(tmp_path)}
        done = await run(
            [sys.executable, "-m", "lienthong", "demo", "--gateway", running.gateway_url, "--out", str(tmp_path / "d")],
            env,
        )
        assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        steps = [line.split(".", 1)[0] for line in done.stdout.splitlines() if re.match(r"\d\. ", line)]
        assert steps == [str(n) for n in range(1, 9)], done.stdout
        assert "status 10 (Đã trả kết quả)" in done.stdout
        assert "Số 01/QĐ-UBND" in done.stdout  # the ward's first decision of the year
        assert len(list((tmp_path / "d").glob("result-*.pdf"))) == 1


async def test_lienthong_demo_says_what_is_missing(tmp_path: Path) -> None:
    port = suites.free_ports(1)[0]
    done = await run(
        [sys.executable, "-m", "lienthong", "demo", "--gateway", f"http://127.0.0.1:{port}", "--out", str(tmp_path)],
        dict(os.environ),
        timeout=60,
    )
    assert done.returncode == 1
    assert "start the suite first (make run)" in done.stdout and "Traceback" not in done.stderr
