"""A one-stop-shop desk day's mix of reads and writes through the gateway in distributed mode, at
50 concurrent clients for a fixed time: requests/s, p50/p99 and errors, against the gateway's own
/healthz (no upstream, no database) measured in the same run as the machine's ceiling.

Scale knobs (environment): BENCH_SECONDS (default 20), BENCH_CLIENTS (50), BENCH_SEED_DOSSIERS (300).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import tempfile
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import write
from bench.intake import scanned_form
from bench.load import (
    ActivitySampler,
    Operation,
    cpu_snapshot,
    cpu_used,
    describe,
    distributed_suite,
    env_float,
    env_int,
    expect,
    only,
    run_load,
    settle,
)

DESK_AGENCY = "000.00.41.H56"  # the ward that receives PROCEDURE, inside the demo desk officer's subtree
PROCEDURE = "1.001193"  # đăng ký khai sinh: two components, received at the ward
TARGET_PER_S = 900
TARGET_P99_MS = 100

# A desk day (weights in percent): 60 reads, 25 writes, 15 other.
MIX: dict[str, float] = {
    # reads
    "list dossiers": 15,
    "list dossiers by status": 5,
    "get dossier": 15,
    "public look-up": 10,
    "calendar due": 10,
    "dossier history": 5,
    # writes: a new dossier at the desk (one scanned PDF, one paper component), then its workflow.
    # A dossier is finished only by the result the document part issues (the leader's signature,
    # then the clerk's number and seal): that is the document office's day, not the desk's, and a
    # manual finish without an issued document is refused. So the desk's writes are receiving
    # (15) and handing over for processing (10); "finish" and "return result" left the mix.
    "submit at desk": 15,
    "start processing": 10,
    # other parts
    "audit entries": 8,
    "work files": 4,
    "documents": 3,
}


class DeskDay:
    """The dossiers the clients know about and where each stands, so that every workflow action
    is one the dossier's status allows (a 409 here is a real error, not the mix's doing)."""

    def __init__(self, tokens: dict[str, str], pdf: bytes) -> None:
        self.tokens = tokens
        self.pdf = pdf
        self.codes: list[str] = []
        self.secrets: list[tuple[str, str]] = []
        self.accepted: deque[str] = deque()
        self.processing: deque[str] = deque()
        names, weights = list(MIX), list(MIX.values())
        self.names, self.weights = names, weights
        before, after = json.dumps(
            {
                "agency": DESK_AGENCY,
                "procedure_code": PROCEDURE,
                "applicant": {"full_name": "Lê Thị Mai", "id_number": "038195004321", "address": "Phường Hạc Thành"},
                "components": [
                    {"no": 1, "file": {"filename": "to-khai.pdf", "content_type": "application/pdf",
                                       "content_base64": "@FILE@"}},
                    {"no": 2},
                ],
            },
            ensure_ascii=False,
        ).encode().split(b"@FILE@")
        self.body_before, self.body_after = before, after

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    # ---------------------------------------------------------------- writes

    async def submit(self, http: aiohttp.ClientSession) -> int:
        content = self.pdf + f"\n%{uuid.uuid4().hex}\n".encode()
        headers = {**self.auth("desk_officer"), "Content-Type": "application/json",
                   "Idempotency-Key": str(uuid.uuid4())}
        body = self.body_before + base64.b64encode(content) + self.body_after
        async with http.post("/api/intake/dossiers", data=body, headers=headers) as response:
            if response.status == 201:
                code = (await response.json())["code"]
                self.codes.append(code)
                self.accepted.append(code)
            return await expect(response)

    def action(self, who: str, action: str, source: deque[str], target: deque[str] | None,
               body: dict[str, Any]) -> Operation:
        async def act(http: aiohttp.ClientSession) -> int:
            code = source.popleft()
            async with http.post(f"/api/intake/dossiers/{code}/actions/{action}", json=body,
                                 headers=self.auth(who)) as response:
                if response.status == 200 and target is not None:
                    target.append(code)
                return await expect(response)

        return act

    # ---------------------------------------------------------------- reads

    def get(self, who: str | None, path: str, params: Any = None) -> Operation:
        async def read(http: aiohttp.ClientSession) -> int:
            async with http.get(path, params=params, headers=self.auth(who) if who else None) as response:
                return await expect(response)

        return read

    def choose(self, rng: random.Random) -> tuple[str, Operation]:
        name = rng.choices(self.names, self.weights)[0]
        # a workflow step with nothing waiting for it becomes a new dossier instead
        if name == "start processing" and not self.accepted:
            name = "submit at desk"
        return name, self.operation(name, rng)

    def operation(self, name: str, rng: random.Random) -> Operation:
        code = rng.choice(self.codes)
        if name == "list dossiers":
            return self.get("desk_officer", "/api/intake/dossiers")
        if name == "list dossiers by status":
            return self.get("desk_officer", "/api/intake/dossiers", {"status": rng.choice(["2", "4", "9"])})
        if name == "get dossier":
            return self.get("desk_officer", f"/api/intake/dossiers/{code}")
        if name == "dossier history":
            return self.get("desk_officer", f"/api/intake/dossiers/{code}/history")
        if name == "public look-up":
            looked, secret = rng.choice(self.secrets)
            return self.get(None, "/api/intake/lookup", {"code": looked, "secret": secret})
        if name == "calendar due":
            at = (datetime.now(UTC) + timedelta(hours=rng.randint(-200, 200))).isoformat(timespec="seconds")
            return self.get(None, "/api/intake/calendar/due", {"accepted_at": at, "procedure": PROCEDURE})
        if name == "submit at desk":
            return self.submit
        if name == "start processing":
            return self.action("desk_officer", "start_processing", self.accepted, self.processing, {})
        if name == "audit entries":
            return self.get("auditor", "/api/audit/entries", {"subject": code})
        if name == "work files":
            return self.get("specialist", "/api/document/workfiles", {"dossier_code": code})
        return self.get("specialist", "/api/document/documents")


async def seed(day: DeskDay, base_url: str, n: int, clients: int) -> None:
    """``n`` dossiers received at the desk, a receipt (and so a look-up secret) for some, and
    half of them being processed."""
    await run_load(only("seed", day.submit), base_url=base_url, concurrency=clients, requests=n)
    async with aiohttp.ClientSession(base_url=base_url) as http:
        for code in day.codes[: max(1, n // 5)]:
            async with http.post(f"/api/intake/dossiers/{code}/receipt", headers=day.auth("desk_officer")) as r:
                await r.read()
                if r.status == 200:
                    day.secrets.append((code, r.headers["Lookup-Secret"]))
    await run_load(
        only("seed start", day.action("desk_officer", "start_processing", day.accepted, day.processing, {})),
        base_url=base_url, concurrency=10, requests=n // 2,
    )
    if not day.secrets:
        raise RuntimeError("no receipt could be issued: the look-up cannot be part of the mix")


async def cpu_per_request(day: DeskDay, running: Any, requests: int) -> dict[str, dict[str, float]]:
    """Each operation alone, one client: milliseconds of CPU per request in each part it
    touches (over 0.05 ms), and its latency without any queueing."""
    costs: dict[str, dict[str, float]] = {}
    queues = {"start processing": day.accepted}
    for name in MIX:
        n = min(requests, len(queues[name])) if name in queues else requests
        if n == 0:
            continue
        before = cpu_snapshot(running)
        result = await run_load(lambda rng, name=name: (name, day.operation(name, rng)),
                                base_url=running.gateway_url, concurrency=1, requests=n)
        after = cpu_snapshot(running)
        used = {k: round((after[k] - before[k]) * 1000 / n, 2) for k in before if k != "machine"}
        costs[name] = {k: v for k, v in used.items() if v > 0.05}
        costs[name]["latency_p50_ms"] = result.summary()["p50_ms"]
    return costs


async def main() -> dict[str, Any]:
    seconds = env_float("BENCH_SECONDS", 20.0)
    clients = env_int("BENCH_CLIENTS", 50)
    seeded = env_int("BENCH_SEED_DOSSIERS", 300)
    with tempfile.TemporaryDirectory(prefix="bench-mixed-") as tmp:
        async with distributed_suite(Path(tmp)) as running:
            tokens = {who: await running.token(who) for who in ("desk_officer", "specialist", "auditor")}
            day = DeskDay(tokens, scanned_form())
            await seed(day, running.gateway_url, seeded, clients)
            await settle(running)

            baseline = await run_load(
                only("gateway /healthz", day.get(None, "/healthz")), base_url=running.gateway_url,
                concurrency=clients, seconds=min(5.0, seconds),
            )
            print(describe("mixed baseline: gateway /healthz", baseline), flush=True)
            # warm-up with the mix itself (pools, caches, JWKS), not measured
            await run_load(day.choose, base_url=running.gateway_url, concurrency=clients, seconds=min(3.0, seconds))
            await settle(running)

            sampler = ActivitySampler(running.env["LIENTHONG_INTAKE_DATABASE_URL"])
            sampler.start()
            before = cpu_snapshot(running)
            result = await run_load(day.choose, base_url=running.gateway_url, concurrency=clients, seconds=seconds)
            cores = cpu_used(before, cpu_snapshot(running), result.elapsed)
            intake_db = await sampler.stop()
            drained_s = await settle(running, within=300)
            costs = await cpu_per_request(day, running, env_int("BENCH_COST_REQUESTS", 40))
    s = result.summary()
    # what one request of the mix costs the machine, all processes together, each operation
    # measured alone: the throughput two cores could give at best, whatever the concurrency
    weighted_ms = sum(
        MIX[name] / sum(MIX.values()) * sum(v for k, v in cost.items() if k != "latency_p50_ms")
        for name, cost in costs.items()
    )
    ceiling = (os.cpu_count() or 1) * 1000 / weighted_ms if weighted_ms else None
    figures = {
        "clients": clients,
        "seconds": seconds,
        "mix_percent": MIX,
        **s,
        "operations": result.breakdown(),
        "baseline_gateway_healthz": baseline.summary(),
        "ratio_to_baseline": round(result.per_second / baseline.per_second, 3) if baseline.per_second else None,
        "cores_busy": cores,
        "cpu_ms_per_request_alone": costs,
        "cpu_ms_per_mix_request": round(weighted_ms, 2),
        "requests_per_s_cpu_ceiling": round(ceiling, 1) if ceiling else None,
        "intake_database_connections": intake_db,
        "events_drained_after_s": round(drained_s, 1),
        "target_requests_per_s": TARGET_PER_S,
        "target_p99_ms": TARGET_P99_MS,
        "notes": "distributed mode through the gateway, gateway and look-up rate limits raised for the run "
        "(bench.load.BENCH_ENV); the load generator runs on the same machine; a new desk dossier carries "
        "one ~100 KB PDF (base64 JSON); workflow actions only on dossiers whose status allows them; "
        "events_drained_after_s: time after the load until every outbox and queue was empty",
    }
    print(describe("mixed desk day through the gateway", result), flush=True)
    for name, f in figures["operations"].items():
        print(f"mixed {name}: {f['requests']} requests, p50 {f['p50_ms']:.1f} ms, p99 {f['p99_ms']:.1f} ms, "
              f"{f['errors']} errors {f['statuses']}", flush=True)
    print(f"mixed intake database connections (average; most {intake_db['most_connections']}): "
          + ", ".join(f"{k} {v}" for k, v in intake_db["average_connections"].items()), flush=True)
    for name, cost in costs.items():
        print(f"mixed cost of {name} alone (CPU ms per request): "
              + ", ".join(f"{k} {v}" for k, v in cost.items()), flush=True)
    print(f"mixed: one request of the mix costs {weighted_ms:.1f} ms of CPU over all processes; "
          f"{os.cpu_count()} cores give at most {ceiling or 0:.0f} requests/s", flush=True)
    print("mixed cores busy: " + ", ".join(f"{k} {v:.2f}" for k, v in cores.items()), flush=True)
    print(f"mixed: {s['requests_per_s']:.0f} requests/s (target ≥ {TARGET_PER_S}), p99 {s['p99_ms']:.1f} ms "
          f"(target < {TARGET_P99_MS}), ratio to /healthz {figures['ratio_to_baseline']}; events drained "
          f"{drained_s:.1f} s after the load", flush=True)
    write("mixed", figures)
    return figures


if __name__ == "__main__":
    asyncio.run(main())
