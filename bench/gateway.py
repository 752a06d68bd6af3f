"""The gateway's cost: a small JSON GET at 50 concurrent clients, directly against a part,
through the gateway, and through nginx as a plain reverse proxy, in the same run.

Two upstreams, both measured directly and through the gateway:
- **the part**: intake as shipped (``lienthong serve intake`` on PostgreSQL), its ``/healthz`` —
  a small JSON GET through the same middleware every lienthong part has (request id, metrics,
  body limit, problem errors). "Directly to the service" in the issue's words; the targets are
  judged on it.
- **a bare FastAPI app** with one route and no middleware at all, under uvloop + httptools: the
  harshest baseline, reported beside it (and proxied by nginx for comparison).

Two other proxies in front of the bare app calibrate what a proxy can keep on this machine:
nginx, and the issue's own yardstick, **a minimal FastAPI proxy using aiohttp's client** (one
catch-all route, one pooled session, no checks of any kind). What the gateway loses against the
minimal proxy is the price of its work (tokens, limits, access records, header hygiene).

Throughput at 50 clients is a closed loop, so its p50 is mostly queueing (≈ clients ÷ rate);
the latency the gateway *adds* to a request is measured with one client at a time.

Each target is its own process with one worker (the gateway: ``lienthong serve gateway`` as
shipped, access records and rate limiting on, limits raised so the bench measures the path, not
the limiter; nginx: ``worker_processes 1`` with upstream keep-alive). Rounds alternate the
targets so that the machine's drift hits each alike; medians are reported.

Access records are committed before each answer is given (group commit, ``gateway.access``): the
figures give records per commit, and ``PROFILE=gateway`` samples the gateway with py-spy in an
extra load through it and reports the access record's share of its CPU (building the record,
waiting for it, the commits), as ms per request.

Scale knobs: BENCH_GATEWAY_SECONDS (per target and round, default 8), BENCH_GATEWAY_ROUNDS (3),
BENCH_CLIENTS (50).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from fastapi import FastAPI, Request, Response

from bench import profile
from bench.common import write
from bench.load import BENCH_ENV, LoadResult, env_int, expect, named_cpu, only, process_cpu, run_load
from tests.servers import temporary_databases
from tests.suites import free_ports

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TARGET_RATIO = 0.6
TARGET_ADDED_P50_MS = 2.0

upstream_app = FastAPI(title="bench part")


@upstream_app.get("/ping", openapi_extra={"x-roles": ["public"]})
async def ping() -> dict[str, Any]:
    return {"ok": True, "service": "intake", "message": "Xin chào"}


@asynccontextmanager
async def _minimal_session(app: FastAPI) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        app.state.http = http
        yield


minimal_proxy = FastAPI(title="minimal proxy", lifespan=_minimal_session)
_MINIMAL_UPSTREAM = os.environ.get("BENCH_MINIMAL_UPSTREAM", "http://127.0.0.1:9")


@minimal_proxy.api_route("/api/{part}/{rest:path}", methods=["GET"])
async def minimal_forward(rest: str, request: Request) -> Response:
    async with request.app.state.http.get(f"{_MINIMAL_UPSTREAM}/{rest}") as upstream:
        body = await upstream.read()
        return Response(body, status_code=upstream.status, media_type=upstream.headers.get("content-type"))


def _uvicorn(app: str, port: int) -> list[str]:
    """A bench app under uvicorn as the parts run (uvloop, httptools, no access log)."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
    ]


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream part {{ server 127.0.0.1:{part}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{port};
        location /api/intake/ {{
            proxy_pass http://part/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


async def _wait_http(url: str, process: subprocess.Popen[bytes], within: float = 60) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{url}: the process exited with {process.returncode}")
            try:
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(url)


async def _gateway_ready(url: str, paths: list[str]) -> None:
    """The gateway has read the parts' OpenAPI (its route table knows ``paths``)."""
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            async with http.get(url + "/openapi.json") as response:
                known = (await response.json())["paths"]
                if all(p in known for p in paths):
                    return
            await asyncio.sleep(0.2)
    raise TimeoutError("the gateway did not learn the part's routes")


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = open(log, "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(args, env=env, stdout=handle, stderr=subprocess.STDOUT)


async def _load(target: tuple[str, str], seconds: float, clients: int) -> LoadResult:
    base, path = target

    async def get(http: aiohttp.ClientSession) -> int:
        async with http.get(path) as response:
            return await expect(response)

    return await run_load(only("GET ping", get), base_url=base, concurrency=clients, seconds=seconds)


# The bare app is registered under another part's name: the gateway routes by name and learns
# the routes from the app's OpenAPI, whatever answers there.
BARE_AS = "notify"


def _access_share(speedscope: Path) -> float:
    """Percent of the gateway's samples spent on access records: building one and waiting for
    it on the request's path (``access_record`` in the edge) and the commits themselves (the
    committer task, ``_commit_while_waiting``), each with everything it called."""
    data = json.loads(speedscope.read_text())
    frames = data["shared"]["frames"]
    marked = {
        i
        for i, f in enumerate(frames)
        # py-spy names a function by its qualified name: "AccessLog._commit_while_waiting"
        if str(f.get("name", "")).rsplit(".", 1)[-1] in ("access_record", "_commit_while_waiting")
        and profile.package_of(f.get("file", "")) == "gateway"
    }
    total = hit = 0.0
    for profile_ in data.get("profiles", []):
        for stack, weight in zip(profile_.get("samples", []), profile_.get("weights", []), strict=False):
            total += weight
            if marked.intersection(stack):
                hit += weight
    return round(100 * hit / total, 2) if total else 0.0


async def _access_commits(gateway_url: str) -> dict[str, int]:
    """The gateway's access-record counters, from its /metrics (open to 127.0.0.1)."""
    names = {
        "lienthong_access_records_written_total": "written",
        "lienthong_access_commits_total": "commits",
        "lienthong_access_records_failed_total": "failed",
    }
    found = dict.fromkeys(names.values(), 0)
    async with aiohttp.ClientSession() as http, http.get(f"{gateway_url}/metrics") as response:
        for line in (await response.text()).splitlines():
            name, _, value = line.partition(" ")
            if name in names:
                found[names[name]] = int(float(value))
    return found


async def main() -> None:
    seconds = float(env_int("BENCH_GATEWAY_SECONDS", 8))
    profiled = profile.requested(os.environ.get("PROFILE", ""), ["gateway"])
    profiles: dict[str, Any] = {}
    rounds = env_int("BENCH_GATEWAY_ROUNDS", 3)
    clients = env_int("BENCH_CLIENTS", 50)
    bare_port, part_port, gateway_port, nginx_port, minimal_port = free_ports(5)
    # the gateway keeps its rate-limit state and access-record outbox in PostgreSQL, as in
    # distributed mode (SQLite's writer thread would compete for the GIL on this hot path)
    with (
        tempfile.TemporaryDirectory(prefix="lt-bench-gateway-") as scratch,
        temporary_databases(["gateway", "intake"]) as dbs,
    ):
        tmp = Path(scratch)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIENTHONG_")}
        env.update(BENCH_ENV)
        upstreams = {"intake": f"http://127.0.0.1:{part_port}", BARE_AS: f"http://127.0.0.1:{bare_port}"}
        env.update(
            {
                "LIENTHONG_VAR_DIR": str(tmp),
                "LIENTHONG_LOG_LEVEL": "WARNING",
                "LIENTHONG_GATEWAY_PORT": str(gateway_port),
                "LIENTHONG_GATEWAY_DATABASE_URL": dbs["gateway"],
                "LIENTHONG_GATEWAY_UPSTREAMS": json.dumps(upstreams),
                "LIENTHONG_INTAKE_PORT": str(part_port),
                "LIENTHONG_INTAKE_DATABASE_URL": dbs["intake"],
            }
        )
        processes: list[subprocess.Popen[bytes]] = []

        def start(args: list[str], log: str, extra: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
            processes.append(_start(args, {**env, **(extra or {})}, tmp / log))
            return processes[-1]

        try:
            bare = start(_uvicorn("bench.gateway:upstream_app", bare_port), "bare.log")
            await _wait_http(f"http://127.0.0.1:{bare_port}/ping", bare)
            minimal = start(
                _uvicorn("bench.gateway:minimal_proxy", minimal_port),
                "minimal.log",
                {"BENCH_MINIMAL_UPSTREAM": f"http://127.0.0.1:{bare_port}"},
            )
            await _wait_http(f"http://127.0.0.1:{minimal_port}/api/bare/ping", minimal)
            part = start([sys.executable, "-m", "lienthong", "serve", "intake"], "intake.log")
            await _wait_http(f"http://127.0.0.1:{part_port}/healthz", part, within=120)
            gateway = start([sys.executable, "-m", "lienthong", "serve", "gateway"], "gateway.log")
            await _wait_http(f"http://127.0.0.1:{gateway_port}/healthz", gateway)
            await _gateway_ready(f"http://127.0.0.1:{gateway_port}", [f"/api/{BARE_AS}/ping", "/api/intake/healthz"])
            gateway_url = f"http://127.0.0.1:{gateway_port}"
            targets = {
                "part direct": (f"http://127.0.0.1:{part_port}", "/healthz"),
                "part via gateway": (gateway_url, "/api/intake/healthz"),
                "bare direct": (f"http://127.0.0.1:{bare_port}", "/ping"),
                "bare via gateway": (gateway_url, f"/api/{BARE_AS}/ping"),
                "bare via minimal proxy": (f"http://127.0.0.1:{minimal_port}", "/api/bare/ping"),
            }
            # the process that answers the load generator, for its CPU per request
            answering = {
                "part direct": part,
                "part via gateway": gateway,
                "bare direct": bare,
                "bare via gateway": gateway,
                "bare via minimal proxy": minimal,
            }
            fronts: dict[str, Callable[[], float]] = {
                name: (lambda process=process: process_cpu(process.pid)) for name, process in answering.items()
            }
            fronts["bare via nginx"] = lambda: named_cpu(("nginx",))  # its master and worker
            if shutil.which(NGINX):
                (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, part=bare_port, port=nginx_port))
                nginx = start([NGINX, "-c", str(tmp / "nginx.conf"), "-p", str(tmp)], "nginx.log")
                await _wait_http(f"http://127.0.0.1:{nginx_port}/api/intake/ping", nginx)
                targets["bare via nginx"] = (f"http://127.0.0.1:{nginx_port}", "/api/intake/ping")
            for target in targets.values():  # warm-up: pools filled, code paths hot
                await _load(target, 1.0, clients)
            measured: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
            alone: dict[str, list[dict[str, Any]]] = {name: [] for name in ("part direct", "part via gateway")}
            for _ in range(rounds):
                for name, target in targets.items():
                    front, loader = fronts[name](), process_cpu(os.getpid())
                    summary = (await _load(target, seconds, clients)).summary()
                    per = 1000 / max(1, summary["requests"])
                    summary["cpu_ms_per_request"] = {
                        "answering process": round((fronts[name]() - front) * per, 3),
                        "load generator": round((process_cpu(os.getpid()) - loader) * per, 3),
                    }
                    measured[name].append(summary)
                for name in alone:
                    alone[name].append((await _load(targets[name], seconds / 2, 1)).summary())
            access = await _access_commits(gateway_url)
            if "gateway" in profiled:
                # an extra load, not counted above: py-spy's sampling costs the machine CPU
                bare_via_gateway = targets["bare via gateway"]
                profiler = profile.Profiler({"gateway": gateway.pid}, seconds)
                profiler.start()
                await _load(bare_via_gateway, seconds, clients)
                profiles = await profiler.stop()
                profiles["access_record_share_percent"] = _access_share(profiler.path("gateway"))
        finally:
            for process in reversed(processes):
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()

    def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "requests_per_s": round(statistics.median(r["requests_per_s"] for r in runs), 1),
            "p50_ms": round(statistics.median(r["p50_ms"] for r in runs), 3),
            "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 2),
            "errors": sum(r["errors"] for r in runs),
            **(
                {
                    "cpu_ms_per_request": {
                        k: round(statistics.median(r["cpu_ms_per_request"][k] for r in runs), 3)
                        for k in runs[0]["cpu_ms_per_request"]
                    }
                }
                if "cpu_ms_per_request" in runs[0]
                else {}
            ),
            "runs": runs,
        }

    figures: dict[str, Any] = {"clients": clients, "seconds_per_round": seconds, "rounds": rounds}
    figures["targets"] = {name: medians(runs) for name, runs in measured.items()}
    figures["one_client"] = {name: medians(runs) for name, runs in alone.items()}
    t, one = figures["targets"], figures["one_client"]
    figures["gateway_over_part"] = round(
        t["part via gateway"]["requests_per_s"] / t["part direct"]["requests_per_s"], 3
    )
    figures["gateway_over_bare"] = round(
        t["bare via gateway"]["requests_per_s"] / t["bare direct"]["requests_per_s"], 3
    )
    figures["minimal_proxy_over_bare"] = round(
        t["bare via minimal proxy"]["requests_per_s"] / t["bare direct"]["requests_per_s"], 3
    )
    figures["gateway_added_p50_ms_one_client"] = round(
        one["part via gateway"]["p50_ms"] - one["part direct"]["p50_ms"], 3
    )
    figures["gateway_added_p50_ms_at_clients"] = round(t["part via gateway"]["p50_ms"] - t["part direct"]["p50_ms"], 2)
    gateway_cpu = t["bare via gateway"]["cpu_ms_per_request"]["answering process"]
    minimal_cpu = t["bare via minimal proxy"]["cpu_ms_per_request"]["answering process"]
    figures["gateway_cpu_over_minimal_proxy"] = round(gateway_cpu / minimal_cpu, 3) if minimal_cpu else None
    # group commit: each answer waits for its access record's commit, shared with the others
    figures["access_records"] = {
        **access,
        "per_commit": round(access["written"] / access["commits"], 2) if access["commits"] else None,
    }
    if profiles:
        share = profiles["access_record_share_percent"]
        figures["profile"] = profiles
        # the access record's part of the gateway's CPU per request: its share of the samples
        figures["access_record_cpu_ms_per_request"] = round(share / 100 * gateway_cpu, 3)
    figures["targets_met"] = {
        f"throughput >= {TARGET_RATIO} of direct to the part": figures["gateway_over_part"] >= TARGET_RATIO,
        f"adds <= {TARGET_ADDED_P50_MS} ms at p50": figures["gateway_added_p50_ms_one_client"] <= TARGET_ADDED_P50_MS,
    }
    for name, f in [*t.items(), *((f"{n}, 1 client", f) for n, f in one.items())]:
        cpu = f.get("cpu_ms_per_request")
        print(
            f"gateway bench {name:26s} {f['requests_per_s']:8.1f} req/s  p50 {f['p50_ms']:7.3f} ms  "
            f"p99 {f['p99_ms']:7.2f} ms  errors {f['errors']}"
            + (
                f"  CPU/request: answering {cpu['answering process']:.3f} ms, "
                f"load generator {cpu['load generator']:.3f} ms"
                if cpu
                else ""
            )
        )
    print(
        f"gateway/part throughput {figures['gateway_over_part']}, gateway/bare app {figures['gateway_over_bare']} "
        f"(minimal aiohttp proxy/bare app {figures['minimal_proxy_over_bare']}); "
        f"added p50 {figures['gateway_added_p50_ms_one_client']} ms at 1 client, "
        f"{figures['gateway_added_p50_ms_at_clients']} ms at {clients}"
    )
    print(
        f"gateway CPU per proxied request / minimal aiohttp proxy's: {figures['gateway_cpu_over_minimal_proxy']}; "
        f"access records {access['written']} in {access['commits']} commits "
        f"({figures['access_records']['per_commit']} per commit), {access['failed']} failed"
    )
    if profiles:
        print(
            f"access record path: {profiles['access_record_share_percent']}% of the gateway's samples, "
            f"{figures['access_record_cpu_ms_per_request']} ms CPU per request"
        )
    print(f"written to {write('gateway', figures)}")


if __name__ == "__main__":
    asyncio.run(main())
