"""Schemathesis against the gateway's one OpenAPI, with valid tokens of several roles: no 5xx and
no response that breaks its documented schema. ``make fuzz`` runs it longer
(``LIENTHONG_FUZZ_EXAMPLES``)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

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


# Schemathesis cannot generate raw PDF and XML bodies (it says "Serialization not possible");
# that is its limit, not a finding. Any other error or failure in its report is.
ITS_OWN_LIMITS = ("Serialization not possible",)


def findings(report_dir: Path, output: str, operations: int) -> list[str]:
    """What the run found, read from its JUnit report rather than its console: a run that
    aborted (no report, no summary) or left operations untested is a finding too."""
    if "SUMMARY" not in output:
        return ["schemathesis stopped before its summary (aborted)"]
    reports = sorted(report_dir.glob("*.xml"))
    if not reports:
        return ["schemathesis wrote no JUnit report"]
    suites = ElementTree.parse(reports[-1]).getroot()
    cases = suites.findall(".//testcase")
    found = []
    if len(cases) < operations:
        found.append(f"only {len(cases)} of {operations} operations were tested")
    for case in cases:
        for kind in ("failure", "error"):
            for element in case.findall(kind):
                text = (element.text or element.get("message") or "").strip()
                if kind == "error" and text.startswith(ITS_OWN_LIMITS):
                    continue
                found.append(f"{case.get('name')}: {kind}: {text[:1500]}")
    return found


def operation_count(document: dict[str, Any]) -> int:
    methods = {"get", "put", "post", "delete", "patch", "head", "options"}
    return sum(1 for item in document["paths"].values() for method in item if method in methods)


async def test_fuzz_gateway_openapi_with_several_roles(tmp_path: Path) -> None:
    async with suites.embedded(tmp_path, **FUZZ_SETTINGS) as running:
        async with running.client() as client:
            for _ in range(600):  # the gateway reads the parts' documents once they answer
                document = (await client.get("/openapi.json")).json()
                if not document["info"].get("x-unavailable-parts"):
                    break
                await asyncio.sleep(0.05)
        assert not document["info"].get("x-unavailable-parts"), document["info"]
        failures = []
        for role in ROLES:
            _, output = await fuzz(running, role, tmp_path)
            summary = "\n".join(output.splitlines()[-40:])
            print(f"--- schemathesis as {role}:\n{summary}")
            found = findings(tmp_path / role, output, operation_count(document))
            if found:
                failures.append(f"{role}:\n" + "\n".join(found) + f"\n{output[-3000:]}")
        assert not failures, "\n\n".join(failures)


def test_an_aborted_or_failing_run_is_a_finding(tmp_path: Path) -> None:
    """The reading above can fail: an abort before the summary, a missing report, untested
    operations and a real failure are each reported; schemathesis's own limits are not."""
    assert findings(tmp_path, "Traceback … ConnectionError", 3) == ["schemathesis stopped before its summary (aborted)"]
    assert findings(tmp_path, "=== SUMMARY ===", 3) == ["schemathesis wrote no JUnit report"]
    (tmp_path / "junit.xml").write_text(
        '<testsuites><testsuite name="schemathesis">'
        '<testcase name="GET /a" />'
        '<testcase name="POST /b"><error type="error">Serialization not possible\n…pdf</error></testcase>'
        '<testcase name="GET /c"><failure type="failure">Server error: 500</failure></testcase>'
        "</testsuite></testsuites>"
    )
    assert findings(tmp_path, "SUMMARY", 3) == ["GET /c: failure: Server error: 500"]
    assert findings(tmp_path, "SUMMARY", 4) == [
        "only 3 of 4 operations were tested",
        "GET /c: failure: Server error: 500",
    ]
