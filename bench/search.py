"""The desk's applicant search at 10^6 dossiers (hồ sơ) on PostgreSQL: p50/p99 of the list call
with name fragments and ID numbers, through the gateway and directly against intake, with the
search's SQL alone beside it (the statements the endpoint runs, their plans, their p50/p99).

Names are drawn from family, middle and given names with roughly their Vietnamese shares (a third
of the province is Nguyễn), ID numbers are CCCD (12 digits), old CMND (9) or passports. Rows are
inserted oldest first by one ``INSERT … SELECT generate_series`` (as dossiers arrive), so the
newest pages are the table's last blocks.

Scale knobs (environment): BENCH_DOSSIERS (1000000), BENCH_SEARCH_REQUESTS (200 per query and path).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from bench.common import percentile, write
from bench.load import asyncpg_url, distributed_suite, env_int, expect, only, run_load
from services.intake import applicant_search, catalogue, views
from services.intake.applicant_search import ApplicantQuery, name_key
from services.intake.models import Dossier
from shared.db import make_engine

TARGET_P99_MS = 50
PROVINCE_DESK = ("desk_officer", "000.00.00.H56")  # the province's subtree: every row
WARD_DESK = ("desk_officer.41", "000.00.41.H56")  # UBND phường Hạc Thành
WARD_SHARE = 0.05  # of the province's dossiers, received by that ward

# (name, weight): the weights are rough national shares in per cent
FAMILY = [
    ("Nguyễn", 38),
    ("Trần", 11),
    ("Lê", 9),
    ("Phạm", 7),
    ("Hoàng", 4),
    ("Phan", 4),
    ("Huỳnh", 2),
    ("Vũ", 2),
    ("Võ", 2),
    ("Đặng", 2),
    ("Bùi", 2),
    ("Đỗ", 1),
    ("Hồ", 1),
    ("Ngô", 1),
    ("Dương", 1),
    ("Lý", 1),
    ("Trịnh", 1),
    ("Mai", 1),
    ("Đinh", 1),
    ("Lò", 1),
    ("Cầm", 1),
    ("Hà", 1),
    ("Lương", 1),
    ("Đào", 1),
    ("Cao", 1),
]
MIDDLE = [
    ("Văn", 20),
    ("Thị", 25),
    ("Đức", 4),
    ("Minh", 5),
    ("Hữu", 3),
    ("Quang", 3),
    ("Ngọc", 4),
    ("Thanh", 4),
    ("Xuân", 3),
    ("Hồng", 3),
    ("Thu", 3),
    ("Quốc", 2),
    ("Đình", 3),
    ("Công", 2),
    ("Kim", 2),
    ("Bảo", 2),
    ("Gia", 2),
    ("Anh", 2),
    ("Tuấn", 1),
    ("Phương", 1),
    ("Mỹ", 1),
    ("Diệu", 1),
]
GIVEN = [
    (n, 1)
    for n in (
        "An",
        "Anh",
        "Bình",
        "Cường",
        "Chi",
        "Dũng",
        "Dung",
        "Duy",
        "Đạt",
        "Giang",
        "Hà",
        "Hải",
        "Hạnh",
        "Hằng",
        "Hiếu",
        "Hiền",
        "Hoa",
        "Hòa",
        "Hùng",
        "Hưng",
        "Hương",
        "Huy",
        "Khánh",
        "Lan",
        "Linh",
        "Loan",
        "Long",
        "Mai",
        "Minh",
        "My",
        "Nam",
        "Nga",
        "Ngân",
        "Ngọc",
        "Nhung",
        "Oanh",
        "Phong",
        "Phúc",
        "Phương",
        "Quân",
        "Quang",
        "Sơn",
        "Tâm",
        "Thảo",
        "Thắng",
        "Thủy",
        "Trang",
        "Trung",
        "Tuấn",
        "Tùng",
        "Vân",
        "Việt",
        "Vinh",
        "Vy",
        "Yến",
        "Hoàng",
        "Thành",
        "Thu",
        "Hậu",
        "Lộc",
    )
]
SECOND_MIDDLE_SHARE = 0.2  # "Nguyễn Thị Hồng Nhung": two middle names
DAYS_BACK = 3 * 365


def weighted(names: list[tuple[str, int]]) -> tuple[list[str], list[str]]:
    """Each name repeated by its weight, as displayed and as folded (picked by one index in SQL)."""
    shown = [name for name, weight in names for _ in range(weight)]
    return shown, [name_key(n) for n in shown]


# One row per generate_series value, oldest first. $1..$6: family, middle, given names shown and
# folded; $7..$10: agency codes, their paths, a procedure version id and its code, per agency
# slot (weighted by repetition); $11: how many rows. ID numbers are unique by construction
# (multiplying by a power of 3 permutes the residues mod 10^k); the type cycles per 100 rows.
FILL = """
WITH l AS (
  SELECT $1::text[] AS family, $2::text[] AS family_key, $3::text[] AS middle, $4::text[] AS middle_key,
         $5::text[] AS given, $6::text[] AS given_key, $7::text[] AS agency, $8::text[] AS path,
         $9::int[] AS version_id, $10::text[] AS procedure, $11::int AS n
), picked AS (
  SELECT i,
         1 + floor(random() * cardinality(l.family))::int AS f,
         1 + floor(random() * cardinality(l.middle))::int AS m,
         CASE WHEN random() < {second} THEN 1 + floor(random() * cardinality(l.middle))::int END AS m2,
         1 + floor(random() * cardinality(l.given))::int AS g,
         1 + floor(random() * cardinality(l.agency))::int AS a,
         now() - make_interval(secs => (l.n - i)::float8 * {span_s} / l.n + random() * 60) AS received,
         CASE WHEN i % 100 < 85 THEN '038' || lpad(((i::bigint * 387420489) % 1000000000)::text, 9, '0')
              WHEN i % 100 < 97 THEN '17' || lpad(((i::bigint * 1594323) % 10000000)::text, 7, '0')
              WHEN i % 100 < 99 THEN 'C' || lpad(((i::bigint * 4782969) % 10000000)::text, 7, '0')
         END AS id_number,
         random() AS r
  FROM l, generate_series(1, l.n) AS i
), named AS (
  SELECT p.*,
         concat_ws(' ', l.family[f], l.middle[m], l.middle[m2], l.given[g]) AS full_name,
         concat_ws(' ', l.family_key[f], l.middle_key[m], l.middle_key[m2], l.given_key[g]) AS folded
  FROM picked p, l
)
INSERT INTO dossier (code, agency, agency_path, procedure_code, procedure_version_id, channel, status,
                     applicant, applicant_search, applicant_id_number, owner, received_by, received_at,
                     accepted_at, processing_hours, extension_hours, due_at, version, updated_at, paused_from)
SELECT l.agency[a] || '-' || to_char(received, 'YYMMDD') || '-' || lpad(i::text, 7, '0'),
       l.agency[a], l.path[a], l.procedure[a], l.version_id[a],
       CASE WHEN r < 0.45 THEN 'online' ELSE 'desk' END,
       CASE WHEN received > now() - interval '40 days' THEN (ARRAY[1, 2, 4, 4, 5, 6, 9])[1 + (i % 7)] ELSE 10 END,
       json_build_object('full_name', full_name, 'id_number', id_number, 'address', 'Thanh Hóa'),
       folded, lower(id_number),
       CASE WHEN r < 0.45 THEN 'citizen-' || (i % 200000) END,
       CASE WHEN r >= 0.45 THEN 'Lê Văn Tiếp' END,
       received, received + interval '2 hours', 40, 0, received + interval '10 days', 1, received,
       -- a dossier waiting for a supplement (5) was paused while being processed (4)
       CASE WHEN received > now() - interval '40 days' AND (ARRAY[1, 2, 4, 4, 5, 6, 9])[1 + (i % 7)] = 5 THEN 4 END
FROM named, l
"""


async def fill(database_url: str, n: int) -> dict[str, Any]:
    """``n`` dossiers in intake's table (which the running intake has migrated and seeded),
    then VACUUM ANALYZE, as a table that has lived would be."""
    connection = await asyncpg.connect(asyncpg_url(database_url))
    try:
        versions = await connection.fetch(
            "SELECT id, code, receiving_agencies::text AS receiving FROM procedure_version"
        )
        agencies = {r["code"]: r["path"] for r in await connection.fetch("SELECT code, path FROM agency")}
        by_agency: dict[str, tuple[int, str]] = {}
        for v in versions:
            for code in json.loads(v["receiving"]):
                by_agency.setdefault(code, (v["id"], v["code"]))
        ward = WARD_DESK[1]
        others = sorted(code for code in by_agency if code in agencies and code != ward)
        # 100 slots: the ward's share, the rest spread over the other receiving agencies
        ward_slots = round(WARD_SHARE * 100)
        slots = [ward] * ward_slots + [others[k % len(others)] for k in range(100 - ward_slots)]
        names = [*weighted(FAMILY), *weighted(MIDDLE), *weighted(GIVEN)]
        started = time.perf_counter()
        await connection.execute("SELECT setseed(0.42)")
        sql = FILL.format(second=SECOND_MIDDLE_SHARE, span_s=DAYS_BACK * 86_400)
        await connection.execute(
            sql,
            *names,
            slots,
            [agencies[c] for c in slots],
            [by_agency[c][0] for c in slots],
            [by_agency[c][1] for c in slots],
            n,
        )
        inserted = time.perf_counter() - started
        await connection.execute("VACUUM ANALYZE dossier")
        total = await connection.fetchval("SELECT count(*) FROM dossier")
        size = await connection.fetchval("SELECT pg_size_pretty(pg_total_relation_size('dossier'))")
        return {
            "rows": total,
            "insert_s": round(inserted, 1),
            "vacuum_analyze_s": round(time.perf_counter() - started - inserted, 1),
            "table_with_indexes": size,
        }
    finally:
        await connection.close()


async def sample_id_numbers(database_url: str, agency_path: str, rows: int, k: int = 5) -> list[str]:
    """ID numbers (as an officer would type them) of dossiers spread over the table, in the subtree."""
    connection = await asyncpg.connect(asyncpg_url(database_url))
    try:
        found = await connection.fetch(
            "SELECT applicant->>'id_number' AS id FROM dossier WHERE id % $3 = 7 AND agency_path LIKE $1 "
            "AND applicant_id_number IS NOT NULL ORDER BY id LIMIT $2",
            agency_path + "%",
            k,
            max(8, rows // 1000),
        )
        return [r["id"] for r in found]
    finally:
        await connection.close()


async def bare_search(database_url: str, agency: str, applicant: str, requests: int) -> dict[str, Any]:
    """The list's search code alone (``applicant_search.read_page``: the statements the endpoint
    runs, without HTTP and views) on one connection: p50/p99, the steps it took, their plans."""
    engine = make_engine(database_url, pool_size=1)
    statements: list[tuple[str, Any]] = []

    def note(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if not statement.startswith("SET "):  # the steps' reads, not the planner setting before them
            statements.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", note)
    latencies = []
    rows: list[dict[str, Any]] = []
    try:
        for _ in range(requests):
            statements.clear()
            async with AsyncSession(engine) as session:
                subtree = catalogue.agency_path(agency)
                query = views.dossier_query().where(Dossier.agency_path.startswith(subtree))
                started = time.perf_counter()
                rows = await applicant_search.read_page(
                    session, query, ApplicantQuery.parse(applicant), after=None, limit=50, subtree=subtree
                )
                latencies.append(time.perf_counter() - started)
    finally:
        await engine.dispose()
    connection = await asyncpg.connect(asyncpg_url(database_url))
    try:
        plans = [
            "\n".join(r[0] for r in await connection.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *params))
            for sql, params in statements
        ]
    finally:
        await connection.close()
    return {
        "rows": len(rows),
        "steps": len(statements),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "plans": plans,
        "indexes": sorted({w for plan in plans for w in plan.replace("(", " ").split() if w.startswith("ix_")}),
    }


def list_operation(path: str, token: str, applicant: str) -> Any:
    headers = {"Authorization": f"Bearer {token}"}

    async def search(http: aiohttp.ClientSession) -> int:
        async with http.get(path, params={"applicant": applicant}, headers=headers) as response:
            return await expect(response)

    return search


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


async def main() -> dict[str, Any]:
    dossiers = env_int("BENCH_DOSSIERS", 1_000_000)
    requests = env_int("BENCH_SEARCH_REQUESTS", 200)
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        async with distributed_suite(Path(tmp)) as running:
            intake_db = running.env["LIENTHONG_INTAKE_DATABASE_URL"]
            filled = await fill(intake_db, dossiers)
            print(
                f"search: {filled['rows']} dossiers ({filled['table_with_indexes']} with indexes; INSERT "
                f"{filled['insert_s']} s, VACUUM ANALYZE {filled['vacuum_analyze_s']} s)",
                flush=True,
            )
            ids = await sample_id_numbers(intake_db, catalogue.agency_path(WARD_DESK[1]), filled["rows"])
            # what a desk officer types: part of a name (one word or several, with or without
            # accents, the middle or the end of a name, a family name a third of the province
            # bears, a name nobody bears) or an ID number as printed on the card
            names = [
                "Nhung",
                "Nguyễn Thị Hồng Nhung",
                "nguyen thi hong",
                "Hồng Nhung",
                "Lò Văn",
                "Nguyễn",
                "anh",
                "Cầm Thị Yến",
                "Quách Tĩnh",
            ]
            queries = [(n, "name") for n in names] + [(i, "id_number") for i in ids[:2]]
            queries.append((ids[0][:6], "id_fragment"))  # not an ID: matched exactly, finds nothing
            direct = f"http://127.0.0.1:{running.ports['intake']}"
            results: list[dict[str, Any]] = []
            for user, agency in (PROVINCE_DESK, WARD_DESK):
                token = await running.token(user)
                for applicant, kind in queries:
                    figures: dict[str, Any] = {"desk": user, "agency": agency, "applicant": applicant, "kind": kind}
                    for label, base, path in (
                        ("direct", direct, "/dossiers"),
                        ("gateway", running.gateway_url, "/api/intake/dossiers"),
                    ):
                        operation = only("search", list_operation(path, token, applicant))
                        await run_load(operation, base_url=base, concurrency=1, requests=5)
                        result = await run_load(operation, base_url=base, concurrency=1, requests=requests)
                        s = result.summary()
                        statuses = result.breakdown()["search"]["statuses"]
                        figures[label] = {
                            "p50_ms": s["p50_ms"],
                            "p99_ms": s["p99_ms"],
                            "errors": s["errors"],
                            "statuses": statuses,
                        }
                    figures["sql"] = await bare_search(intake_db, agency, applicant, requests)
                    figures["load_average"] = load_average()
                    results.append(figures)
                    print(
                        f"search {user} {applicant!r}: {figures['sql']['rows']} rows in {figures['sql']['steps']} "
                        f"steps; direct p50 "
                        f"{figures['direct']['p50_ms']:.1f} p99 {figures['direct']['p99_ms']:.1f} ms, gateway "
                        f"p50 {figures['gateway']['p50_ms']:.1f} p99 {figures['gateway']['p99_ms']:.1f} ms, SQL "
                        f"p50 {figures['sql']['p50_ms']:.2f} p99 {figures['sql']['p99_ms']:.2f} ms "
                        f"({', '.join(figures['sql']['indexes']) or 'no index'}); load {figures['load_average'][0]}",
                        flush=True,
                    )
    worst = {label: max(results, key=lambda r, lb=label: r[lb]["p99_ms"]) for label in ("direct", "gateway", "sql")}
    figures = {
        "dossiers_in_table": filled["rows"],
        "fill": filled,
        "requests_per_query": requests,
        "queries": results,
        "p99_worst_ms": {
            label: {"applicant": r["applicant"], "desk": r["desk"], "p99_ms": r[label]["p99_ms"]}
            for label, r in worst.items()
        },
        "target_p99_ms": TARGET_P99_MS,
        # a failed answer is fast: its time says nothing of the search, so a run with any is no measurement
        "errors": sum(r[label]["errors"] for r in results for label in ("direct", "gateway")),
        "load_average": {"before": load_before, "after": load_average()},
        "notes": "distributed mode (every part its own process, PostgreSQL, RabbitMQ); one client, default page "
        "of 50 (51 rows read); 'direct' is intake's own port, 'gateway' the whole path with token check and "
        "access record; 'sql' the search code alone (applicant_search.read_page: the statements the endpoint runs) "
        "on one connection, its steps' plans beside it; load_average is the machine's (1, 5, 15 min) when each "
        "query's figures were taken; bulk rows have no components",
    }
    for label, r in worst.items():
        print(
            f"search: p99 worst {label} {r[label]['p99_ms']:.1f} ms ({r['desk']} {r['applicant']!r}); "
            f"target < {TARGET_P99_MS} ms",
            flush=True,
        )
    if figures["errors"]:
        print(f"search: {figures['errors']} requests failed (statuses per query in the results): not a measurement")
    write("search", figures)
    return figures


if __name__ == "__main__":
    asyncio.run(main())
