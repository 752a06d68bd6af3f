"""Schemathesis against the gateway's one OpenAPI, with valid tokens of several roles: no 5xx and
no response that breaks its documented schema. ``make fuzz`` runs it longer
(``LIENTHONG_FUZZ_EXAMPLES``)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests import suites

EXAMPLES = int(os.environ.get("LIENTHONG_FUZZ_EXAMPLES", "8"))
ROLES = os.environ.get("LIENTHONG_FUZZ_ROLES", "desk_officer,clerk,admin").split(",")
# The fuzzer sends thousands of requests from one client: rate limits would answer most of them.
FUZZ_SETTINGS = {
    "rate_client": {"rate": 10**5, "burst": 10**6},
    "rate_public": {"rate": 10**5, "burst": 10**6},
    "rate_routes": {},
}

pytestmark = pytest.mark.timeout(900)


async def fuzz(running: suites.Running, role: str, tmp_path: Path) -> tuple[int, str]:
    token = await running.token(role)
    st = Path(sys.executable).parent / "st"
    process = await asyncio.create_subprocess_exec(
        str(st), "run", f"{running.gateway_url}/openapi.json",
        "--url", running.gateway_url,
        "--checks", "not_a_server_error,response_schema_conformance",
        "--max-examples", str(EXAMPLES),
        "--seed", "20261128",
        "--request-timeout", "20",
        "--header", f"Authorization: Bearer {token}",
        "--report", "junit", "--report-dir", str(tmp_path / role),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""},
        cwd=tmp_path,
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode(errors="replace")


def only_unserialisable(output: str) -> bool:
    """Schemathesis cannot generate raw PDF and XML bodies (it says "Serialization not possible");
    that is its limit, not a finding. Anything else in the summary is."""
    summary = output[output.rfind("SUMMARY"):]
    errors = [line.strip() for line in summary.splitlines() if line.strip().startswith("🚫") and ":" in line]
    return "Failures:" not in summary and all("Serialization not possible" in e for e in errors)


async def test_fuzz_gateway_openapi_with_several_roles(tmp_path: Path) -> None:
    async with suites.embedded(tmp_path, **FUZZ_SETTINGS) as running:
        failures = []
        for role in ROLES:
            code, output = await fuzz(running, role, tmp_path)
            summary = "\n".join(output.splitlines()[-40:])
            print(f"--- schemathesis as {role}:\n{summary}")
            if code != 0 and not only_unserialisable(output):
                failures.append(f"{role}:\n{output[-6000:]}")
        assert not failures, "\n\n".join(failures)
