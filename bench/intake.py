"""Intake on PostgreSQL in distributed mode: online submissions/s with one 100 KB PDF each, through
the gateway and directly against intake in the same run, and the desk's list queries with 10^6
dossiers (hồ sơ) in the table.

Scale knobs (environment): BENCH_SUBMISSIONS (per round and path, default 1000), BENCH_ROUNDS (3),
BENCH_CLIENTS (50), BENCH_DOSSIERS (1000000), BENCH_LIST_REQUESTS (200 per query).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas
from sqlalchemy import and_, or_, select
from sqlalchemy.dialects import postgresql

from bench.common import percentile, write
from bench.load import (
    ActivitySampler,
    LoadResult,
    Operation,
    asyncpg_url,
    cpu_snapshot,
    cpu_used,
    describe,
    distributed_suite,
    env_int,
    expect,
    only,
    run_load,
    settle,
)
from services.intake import catalogue, views
from services.intake.applicant_search import ApplicantQuery, id_number_key, name_key
from services.intake.models import Dossier
from services.intake.workflow import DossierStatus

FONT = Path(__file__).resolve().parent.parent / "shared" / "fonts" / "DejaVuSans.ttf"
FILE_BYTES = 100 * 1024
DESK_AGENCY = "000.00.00.H56"  # the demo desk officer's: the province, whose subtree is everything
# Cấp bản sao trích lục hộ tịch: fully online, one required component, so one file a dossier
ONLINE_PROCEDURE = "2.000635"
ONLINE_AGENCY = "000.00.42.H56"

TARGET_SUBMISSIONS_PER_S = 200
TARGET_LIST_P99_MS = 50


def scanned_form(size: int = FILE_BYTES) -> bytes:
    """A real one-page PDF (a declaration form, Vietnamese text, embedded DejaVu) padded with
    uncompressed text to ``size`` bytes, like a scanned-and-OCRed tờ khai."""
    pdfmetrics.registerFont(TTFont("DejaVuSans", str(FONT)))
    lines = 1
    while True:
        buffer = io.BytesIO()
        c = canvas.Canvas(buffer, pagesize=A4, pageCompression=0)
        c.setFont("DejaVuSans", 7)
        c.drawString(60, 800, "TỜ KHAI CẤP BẢN SAO TRÍCH LỤC HỘ TỊCH")
        for i in range(lines):
            line = f"Dòng {i}: họ, chữ đệm, tên người yêu cầu; nơi cư trú; giấy tờ tùy thân"
            c.drawString(40, 780 - (i % 100) * 7.5, line)
        c.showPage()
        c.save()
        pdf = buffer.getvalue()
        if len(pdf) >= size:
            return pdf
        lines = max(lines + 1, int(lines * size / len(pdf)) + 1)


def submission_body_parts(pdf: bytes) -> tuple[bytes, bytes]:
    """The JSON body of an online submission split around the file's base64 (spliced per request)."""
    body = {
        "agency": ONLINE_AGENCY,
        "procedure_code": ONLINE_PROCEDURE,
        "applicant": {"full_name": "Nguyễn Thị Hồng Nhung", "id_number": "038190001234", "phone": "0912345678"},
        "components": [
            {
                "no": 1,
                "file": {"filename": "to-khai.pdf", "content_type": "application/pdf", "content_base64": "@FILE@"},
            }
        ],
    }
    before, after = json.dumps(body, ensure_ascii=False).encode().split(b"@FILE@")
    return before, after


def submit_operation(path: str, token: str, pdf: bytes) -> Operation:
    before, after = submission_body_parts(pdf)

    async def submit(http: aiohttp.ClientSession) -> int:
        # a different file each time (the blob store keeps one copy per SHA-256)
        content = pdf + f"\n%{uuid.uuid4().hex}\n".encode()
        body = before + base64.b64encode(content) + after
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Idempotency-Key": str(uuid.uuid4()),
        }
        async with http.post(path, data=body, headers=headers) as response:
            return await expect(response)

    return submit


# ------------------------------------------------------------------ 10^6 dossiers

FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đỗ", "Bùi", "Đặng", "Trịnh", "Lê Đình", "Mai", "Hà",
          "Lò", "Cầm"]
MIDDLE = ["Văn", "Thị", "Đức", "Minh", "Hồng", "Thu", "Quang", "Ngọc", "Xuân", "Hữu", "Thanh", ""]
GIVEN = ["An", "Bình", "Cường", "Dung", "Hà", "Hải", "Hạnh", "Hoa", "Hùng", "Lan", "Linh", "Long", "Mai", "Nam",
         "Nga", "Nhung", "Phong", "Phương", "Quân", "Sơn", "Tâm", "Thảo", "Trang", "Tuấn", "Vinh", "Yến"]
# share of a province's three years of dossiers by status: most are long returned
STATUS_MIX = {10: 0.74, 9: 0.04, 4: 0.08, 2: 0.03, 1: 0.02, 5: 0.02, 6: 0.01, 3: 0.03, 7: 0.02, 8: 0.01}
OVERDUE_SHARE = 0.15  # of dossiers being handled (2, 4), past their due date now
DAYS_BACK = 3 * 365

COLUMNS = [
    "code", "agency", "agency_path", "procedure_code", "procedure_version_id", "channel", "status", "paused_from",
    "applicant", "applicant_search", "applicant_id_number", "owner", "received_by", "received_at", "accepted_at",
    "processing_hours",
    "extension_hours", "cutoff", "due_at", "finished_at", "finished_on_time", "hours_used", "returned_at", "result",
    "lookup_hash", "version", "updated_at",
]


def dossier_rows(
    n: int, *, versions: list[asyncpg.Record], paths: dict[str, str], seed: int = 7
) -> tuple[list[tuple[Any, ...]], dict[str, str]]:
    """``n`` dossiers received before today, codes unique per agency and day; also a sample
    applicant (name and ID number) to search for."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    sequence: dict[tuple[str, str], int] = {}
    statuses, weights = list(STATUS_MIX), list(STATUS_MIX.values())
    choices = [(v, agency) for v in versions for agency in v["receiving_agencies"] if agency in paths]
    rows: list[tuple[Any, ...]] = []
    sample: dict[str, str] = {}
    for i in range(n):
        version, agency = rng.choice(choices)
        status = rng.choices(statuses, weights)[0]
        running = status in (2, 4, 5, 6)
        # work in hand is recent; history is spread over three years
        days = rng.randint(1, 40) if running else rng.randint(1, DAYS_BACK)
        received = now - timedelta(days=days, seconds=rng.randint(0, 86_399))
        day = (received + timedelta(hours=7)).strftime("%y%m%d")
        number = sequence[(agency, day)] = sequence.get((agency, day), 0) + 1
        name = " ".join(filter(None, [rng.choice(FAMILY), rng.choice(MIDDLE), rng.choice(GIVEN)]))
        id_number = f"038{rng.randint(0, 999_999_999):09d}"
        if i == n // 2:
            sample = {"name": name, "id_number": id_number}
        online = rng.random() < 0.45
        hours = Decimal(version["processing_hours"])
        accepted = None if status in (1, 3) else received + timedelta(minutes=rng.randint(5, 600))
        if status in (2, 4, 6):
            overdue = rng.random() < OVERDUE_SHARE
            due = now - timedelta(days=rng.randint(1, 10)) if overdue else now + timedelta(days=rng.randint(1, 20))
        elif accepted is not None and status != 5:
            due = accepted + timedelta(days=rng.randint(2, 20))
        else:
            due = None
        finished = returned = None
        on_time = None
        used = None
        if status in (9, 10) and due is not None and accepted is not None:
            finished = accepted + timedelta(hours=rng.randint(4, 24 * 25))
            finished = min(finished, now - timedelta(hours=1))
            on_time = finished <= due
            used = Decimal(rng.randint(4, 200))
            if status == 10:
                returned = finished + timedelta(hours=rng.randint(1, 72))
                returned = min(returned, now)
        applicant = {"full_name": name, "id_number": id_number, "address": "Thanh Hóa"}
        rows.append((
            f"{agency}-{day}-{number:04d}", agency, paths[agency], version["code"], version["id"],
            "online" if online else "desk", status, 4 if status == 5 else None,
            json.dumps(applicant, ensure_ascii=False), name_key(name), id_number_key(id_number),
            f"citizen-{rng.randint(1, 200_000)}" if online else None, None if online else "Lê Văn Tiếp",
            received, accepted, hours, Decimal(0), version["cutoff"], due, finished, on_time, used, returned,
            json.dumps({"summary": "Bản sao trích lục"}) if status in (9, 10) else None,
            None, 1, returned or finished or accepted or received,
        ))
    return rows, sample


async def fill_dossiers(database_url: str, n: int) -> dict[str, Any]:
    """COPY ``n`` dossiers straight into intake's table, then ANALYZE it."""
    connection = await asyncpg.connect(asyncpg_url(database_url))
    try:
        versions = await connection.fetch(
            "SELECT id, code, processing_hours, cutoff, receiving_agencies::text AS receiving FROM procedure_version"
        )
        versions = [{**dict(v), "receiving_agencies": json.loads(v["receiving"])} for v in versions]
        paths = {r["code"]: r["path"] for r in await connection.fetch("SELECT code, path FROM agency")}
        started = time.perf_counter()
        rows, sample = dossier_rows(n, versions=versions, paths=paths)
        generated = time.perf_counter() - started
        for start in range(0, len(rows), 50_000):
            await connection.copy_records_to_table("dossier", records=rows[start:start + 50_000], columns=COLUMNS)
        await connection.execute("ANALYZE dossier")
        total = await connection.fetchval("SELECT count(*) FROM dossier")
        loaded = time.perf_counter() - started - generated
        return {"rows": total, "generate_s": round(generated, 1), "load_s": round(loaded, 1), "sample": sample}
    finally:
        await connection.close()


def list_sql(params: dict[str, Any]) -> str:
    """The SQL the list endpoint runs for ``params`` (its page query; the per-item component
    look-ups come after), literal values inlined, for EXPLAIN."""
    query = select(Dossier).where(Dossier.agency_path.startswith(catalogue.agency_path(DESK_AGENCY)))
    if "status" in params:
        query = query.where(Dossier.status.in_([params["status"]]))
    if params.get("overdue") == "true":
        running = (int(DossierStatus.ACCEPTED), int(DossierStatus.PROCESSING))
        query = query.where(Dossier.status.in_(running), Dossier.due_at < datetime.now(UTC))
    query = query.where(*ApplicantQuery.parse(params.get("applicant", "")).conditions())
    if "cursor_at" in params:
        at, id_ = params["cursor_at"], params["cursor_id"]
        query = query.where(or_(Dossier.received_at < at, and_(Dossier.received_at == at, Dossier.id < id_)))
    query = query.order_by(Dossier.received_at.desc(), Dossier.id.desc()).limit(51)
    return str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))


async def explain(database_url: str, sql: str) -> tuple[float, str]:
    connection = await asyncpg.connect(asyncpg_url(database_url))
    try:
        # the compiler doubles % for pyformat drivers; asyncpg sends the text as it is
        plan = await connection.fetch("EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) " + sql.replace("%%", "%"))
    finally:
        await connection.close()
    lines = [r[0] for r in plan]
    execution = next((float(line.split(":")[1].split()[0]) for line in lines if line.startswith("Execution Time")), 0.0)
    return execution, "\n".join(lines)


def list_operation(path: str, token: str, params: dict[str, str]) -> Operation:
    headers = {"Authorization": f"Bearer {token}"}

    async def list_page(http: aiohttp.ClientSession) -> int:
        async with http.get(path, params=params, headers=headers) as response:
            return await expect(response)

    return list_page


# ------------------------------------------------------------------ the run


def cpu_ms(cores: dict[str, float], result: LoadResult) -> float:
    """Intake's CPU time per submission in one round, from its cores busy and the round's rate."""
    return cores["intake"] * 1000 / result.per_second if result.per_second else 0.0


async def main() -> dict[str, Any]:
    submissions = env_int("BENCH_SUBMISSIONS", 1000)
    rounds = env_int("BENCH_ROUNDS", 3)
    clients = env_int("BENCH_CLIENTS", 50)
    dossiers = env_int("BENCH_DOSSIERS", 1_000_000)
    list_requests = env_int("BENCH_LIST_REQUESTS", 200)
    pdf = scanned_form()
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp:
        async with distributed_suite(Path(tmp)) as running:
            citizen = await running.token("citizen")
            desk = await running.token("desk_officer")
            direct_url = f"http://127.0.0.1:{running.ports['intake']}"
            paths = {"gateway": (running.gateway_url, "/api/intake/dossiers"), "direct": (direct_url, "/dossiers")}
            # warm both paths (JWKS fetched, pools filled, code paths imported)
            for base, path in paths.values():
                await run_load(only("submit", submit_operation(path, citizen, pdf)), base_url=base,
                               concurrency=clients, requests=clients)
            await settle(running)
            measured: dict[str, list[Any]] = {"gateway": [], "direct": []}
            cores: dict[str, list[dict[str, float]]] = {"gateway": [], "direct": []}
            connections: dict[str, list[dict[str, Any]]] = {"gateway": [], "direct": []}
            for r in range(rounds):
                for label, (base, path) in paths.items():
                    sampler = ActivitySampler(running.env["LIENTHONG_INTAKE_DATABASE_URL"])
                    sampler.start()
                    before = cpu_snapshot(running)
                    result = await run_load(only("submit", submit_operation(path, citizen, pdf)), base_url=base,
                                            concurrency=clients, requests=submissions, seed=r)
                    cores[label].append(cpu_used(before, cpu_snapshot(running), result.elapsed))
                    connections[label].append(await sampler.stop())
                    print(f"intake submit {label} round {r + 1} intake database connections (average): "
                          + ", ".join(f"{k} {v}" for k, v in connections[label][-1]["average_connections"].items()),
                          flush=True)
                    print(describe(f"intake submit {label} round {r + 1}", result), flush=True)
                    print(f"intake submit {label} round {r + 1} cores busy: "
                          + ", ".join(f"{k} {v:.2f}" for k, v in cores[label][-1].items())
                          + f"; intake CPU {cpu_ms(cores[label][-1], result):.1f} ms a submission", flush=True)
                    measured[label].append(result)
                    await settle(running)
            submit_figures: dict[str, Any] = {}
            for label, results in measured.items():
                latencies = [v for res in results for v in res.latencies]
                submit_figures[label] = {
                    "per_s_median": round(statistics.median(res.per_second for res in results), 1),
                    "per_s_rounds": [round(res.per_second, 1) for res in results],
                    "p50_ms": round(percentile(latencies, 50) * 1000, 2),
                    "p99_ms": round(percentile(latencies, 99) * 1000, 2),
                    "errors": sum(res.errors for res in results),
                    "requests": sum(res.requests for res in results),
                    "cores_busy_rounds": cores[label],
                    # on a shared machine CPU time an operation is steadier than operations a second
                    "intake_cpu_ms_per_submission_rounds": [
                        round(cpu_ms(c, res), 2) for c, res in zip(cores[label], results, strict=True)
                    ],
                    "intake_database_connections_rounds": connections[label],
                    "statuses": {k: v for res in results for k, v in res.breakdown()["submit"]["statuses"].items()},
                }
            ratio = submit_figures["gateway"]["per_s_median"] / submit_figures["direct"]["per_s_median"]

            intake_db = running.env["LIENTHONG_INTAKE_DATABASE_URL"]
            filled = await fill_dossiers(intake_db, dossiers)
            print(f"intake: {filled['rows']} dossiers in the table (generated {filled['generate_s']} s, "
                  f"COPY + ANALYZE {filled['load_s']} s)", flush=True)
            sample = filled["sample"]
            # the desk's usual questions: today's page, the next one, what is being processed,
            # what is late, and "where is Mrs X's dossier" by name or by CCCD number
            queries: dict[str, dict[str, str]] = {
                "first_page": {},
                "status_processing": {"status": "4"},
                "overdue": {"overdue": "true"},
                "applicant_name": {"applicant": sample["name"]},
                "applicant_id_number": {"applicant": sample["id_number"]},
            }
            async with aiohttp.ClientSession() as http:
                async with http.get(running.gateway_url + "/api/intake/dossiers",
                                    headers={"Authorization": f"Bearer {desk}"}) as response:
                    first = await response.json()
            if first.get("next"):
                queries["next_page"] = {"cursor": first["next"]}
            list_figures: dict[str, Any] = {}
            for name, params in queries.items():
                operation = list_operation("/api/intake/dossiers", desk, params)
                await run_load(only(name, operation), base_url=running.gateway_url, concurrency=1, requests=5)
                result = await run_load(only(name, operation), base_url=running.gateway_url, concurrency=1,
                                        requests=list_requests)
                sql_params: dict[str, Any] = dict(params)
                if name == "next_page":
                    at, id_ = views.parse_cursor(params["cursor"])
                    sql_params = {"cursor_at": at, "cursor_id": id_}
                db_ms, plan = await explain(intake_db, list_sql(sql_params))
                s = result.summary()
                list_figures[name] = {"params": params, "p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"],
                                      "errors": s["errors"], "requests": s["requests"],
                                      "sql_execution_ms": db_ms, "plan": plan}
                print(f"intake list {name}: p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms "
                      f"(SQL {db_ms:.1f} ms), {s['errors']} errors of {s['requests']}", flush=True)
    worst = max(list_figures.items(), key=lambda kv: kv[1]["p99_ms"])
    figures = {
        "clients": clients,
        "file_bytes": len(pdf),
        "submissions_per_round": submissions,
        "rounds": rounds,
        "submit": submit_figures,
        "ratio_gateway_to_direct": round(ratio, 3),
        "target_submissions_per_s": TARGET_SUBMISSIONS_PER_S,
        "dossiers_in_table": filled["rows"],
        "list": list_figures,
        "list_p99_worst": {"query": worst[0], "p99_ms": worst[1]["p99_ms"]},
        "target_list_p99_ms": TARGET_LIST_P99_MS,
        "notes": "distributed mode (every part its own process, PostgreSQL, RabbitMQ), gateway rate limits "
        "raised for the run (bench.load.BENCH_ENV); submissions: citizen online, procedure 2.000635, one "
        "~100 KB PDF (base64 in JSON) and an Idempotency-Key each; events caused by a phase are drained "
        "before the next; list: demo desk officer (province subtree = all rows), one client, default page "
        "of 50; bulk rows have no components",
    }
    print(f"intake: submissions through the gateway {submit_figures['gateway']['per_s_median']:.0f}/s "
          f"(p50 {submit_figures['gateway']['p50_ms']:.0f} ms, p99 {submit_figures['gateway']['p99_ms']:.0f} ms), "
          f"direct {submit_figures['direct']['per_s_median']:.0f}/s; ratio {ratio:.2f}; "
          f"target ≥ {TARGET_SUBMISSIONS_PER_S}/s", flush=True)
    print(f"intake: list p99 worst {worst[0]} {worst[1]['p99_ms']:.1f} ms with {filled['rows']} dossiers; "
          f"target < {TARGET_LIST_P99_MS} ms", flush=True)
    write("intake", figures)
    return figures


if __name__ == "__main__":
    asyncio.run(main())
