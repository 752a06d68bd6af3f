"""The web console's pages with the demo data: each page's p50/p99 over real HTTP, as a person's
browser asks for it (session cookie, through the gateway), target p50 < 100 ms.

``python -m bench.console`` starts the embedded suite (SQLite, in-process broker, demo data) on free
ports, walks the main flow once through the API (``lienthong demo``) so the lists, the dossier,
the registers and the dashboard have something in them, logs in to the console as each role
(the form, with its CSRF token) and times ``BENCH_CONSOLE_REQUESTS`` (default 30) GETs of every
page that role has. Writes bench/results/console.json, with the load average before and after
(the machine is shared: a figure means little without it).
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import percentile, write
from lienthong.demo import AGENCY, PROCEDURE, Demo
from lienthong.embedded import EmbeddedSuite
from shared.demo import AGENCY_ROLES, username
from shared.settings import PARTS
from tests.suites import free_ports

TARGET_P50_MS = 100
PIN = os.environ.get("LIENTHONG_DEMO_PIN", "123456")


def pages(flow: dict[str, Any]) -> dict[str, list[str]]:
    """Who sees which page: the demo's people at the ward that ran the flow, and the province's
    admin and auditor (whose dashboard spans every agency)."""
    code, secret = flow["code"], flow["secret"]
    return {
        "": ["/", f"/tra-cuu?code={code}&secret={secret}", f"/han-giai-quyet?q={PROCEDURE}"],
        username("desk_officer", AGENCY): [
            "/mot-cua",
            "/mot-cua/tiep-nhan",
            f"/mot-cua/tiep-nhan?procedure={PROCEDURE}",
            f"/ho-so/{code}",
        ],
        username("specialist", AGENCY): ["/xu-ly", f"/ho-so/{code}"],
        username("leader", AGENCY): ["/ky-duyet", "/tong-hop"],
        username("clerk", AGENCY): ["/van-thu", "/van-thu/so"],
        "admin": [
            "/tong-hop",
            "/quan-tri/nguoi-dung",
            "/quan-tri/lich",
            "/quan-tri/thu-tuc",
            f"/quan-tri/thu-tuc/{PROCEDURE}",
        ],
        "auditor": ["/kiem-toan", "/tong-hop"],
    }


async def log_in(client: httpx.AsyncClient, who: str) -> None:
    form = await client.get("/dang-nhap")
    form.raise_for_status()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf, "no CSRF token on the log-in form"
    r = await client.post(
        "/dang-nhap", data={"username": who, "password": "demo", "next": "/", "csrf_token": csrf.group(1)}
    )
    assert r.status_code == 303, f"log-in as {who}: {r.status_code} {r.text[:300]}"


async def time_page(client: httpx.AsyncClient, path: str, n: int) -> dict[str, Any]:
    # the first visit warms what a second visitor finds warm
    first = await client.get(path, headers={"X-Forwarded-For": "198.51.100.250"})
    assert first.status_code == 200, f"{path}: {first.status_code} {first.text[:300]}"
    took = []
    for i in range(n):
        # the gateway rate-limits each visitor (the console names them): one bench client would
        # soon be measuring the limiter, so each request comes from its own address
        headers = {"X-Forwarded-For": f"198.51.100.{i + 1}"}
        started = time.perf_counter()
        r = await client.get(path, headers=headers)
        took.append((time.perf_counter() - started) * 1000)
        assert r.status_code == 200, f"{path}: {r.status_code}"
    return {
        "p50_ms": round(percentile(took, 50), 1),
        "p99_ms": round(percentile(took, 99), 1),
        "bytes": len(first.content),
    }


async def main() -> None:
    n = int(os.environ.get("BENCH_CONSOLE_REQUESTS", "30"))
    load_before = [round(v, 2) for v in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        ports = dict(zip(PARTS, free_ports(len(PARTS)), strict=True))
        suite = EmbeddedSuite(var_dir=Path(tmp), ports=ports, extra={"log_json": False, "log_level": "WARNING"})
        await suite.start()
        try:
            people = {"citizen": "citizen", **{role: username(role, AGENCY) for role in AGENCY_ROLES}}
            demo = Demo(gateway=suite.url(), password="demo", pin=PIN, out=Path(tmp) / "demo", people=people)
            demo.say = lambda text: None  # type: ignore[method-assign]
            flow = await demo.run()
            results: dict[str, dict[str, Any]] = {}
            for who, paths in pages(flow).items():
                async with httpx.AsyncClient(base_url=suite.url(), timeout=30) as client:
                    if who:
                        await log_in(client, who)
                    for path in paths:
                        figures = await time_page(client, path, n)
                        # the query names the page's variant, except the look-up's secret
                        shown = path.split("?")[0] + (" ?procedure" if "procedure=" in path else "")
                        name = f"{who or 'anonymous'} {shown}"
                        results[name] = figures
                        mark = "" if figures["p50_ms"] < TARGET_P50_MS else "  OVER TARGET"
                        print(f"  {name:<50} p50 {figures['p50_ms']:6.1f} ms  p99 {figures['p99_ms']:6.1f} ms{mark}")
        finally:
            await suite.stop()
    slowest = max(results.items(), key=lambda item: item[1]["p50_ms"])
    path = write(
        "console",
        {
            "requests_per_page": n,
            "load_average_before": load_before,
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
            "target_p50_ms": TARGET_P50_MS,
            "pages": results,
            "slowest": {"page": slowest[0], **slowest[1]},
            "all_under_target": all(r["p50_ms"] < TARGET_P50_MS for r in results.values()),
        },
    )
    print(f"  slowest: {slowest[0]} p50 {slowest[1]['p50_ms']} ms; written {path}")


if __name__ == "__main__":
    asyncio.run(main())
