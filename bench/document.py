"""Document benchmark on PostgreSQL: numbering under 50 concurrent writers, search over 10^5
documents, and a 50 MB file up and down.

``python -m bench.document [--writers 50] [--numbers 2000] [--rows 100000] [--queries 300]`` runs the
document app (migrations, lifespan) under uvicorn on a free local port against a scratch database
from ``tests.servers.temporary_databases`` and reports:

- numbers issued/s: ``--writers`` tasks each taking the next document from a shared queue and
  numbering it with ``service.assign_number`` in its own transaction (row lock, counter row,
  commit), as ``POST /documents/{id}/number`` does; then every number must appear exactly once
  with none missing from 1 to N;
- search latency over HTTP (``GET /documents?q=…`` with a token, as a user calls it) after
  ``--rows`` documents were bulk-inserted with SQLAlchemy Core and the table analysed: p50/p99
  for one- to three-word queries without diacritics (target p99 < 100 ms);
- upload and download MB/s of a 50 MB attachment streamed over real HTTP to the app directly
  (not through the gateway), with the process's peak RSS before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import re
import resource
import socket
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import insert, select, text

from bench.common import percentile, write
from services.document import outgoing
from services.document import service as svc
from services.document.app import create_app
from services.document.config import AgencyProfile, get_settings
from services.document.models import Document
from shared.bus.memory import InProcessBroker
from shared.text import tokens

AGENCY = "000.00.00.H56"
MB = 1024 * 1024
FILE_BYTES = 50 * MB
WORDS = (
    "quyết định phê duyệt kế hoạch triển khai chuyển đổi số đất đai xây dựng giáo dục y tế nông nghiệp "
    "báo cáo tình hình kinh tế xã hội công văn hướng dẫn thực hiện thủ tục hành chính cải cách "
    "dự án đầu tư công trình giao thông thủy lợi môi trường tài nguyên khoáng sản rừng phòng chống "
    "thiên tai dịch bệnh an ninh trật tự quốc phòng văn hóa thể thao du lịch lao động việc làm "
    "bảo hiểm xã hội ngân sách thuế phí lệ phí tổ chức cán bộ thi đua khen thưởng kỷ luật thanh tra"
).split()
QUERIES = [
    "quyet dinh phe duyet",
    "chuyen doi so",
    "dat dai",
    "ke hoach trien khai",
    "bao cao tinh hinh",
    "thu tuc hanh chinh",
    "giao thong thuy loi",
    "phong chong thien tai",
    "ngan sach",
    "thanh tra",
    "khen thuong",
    "du an dau tu cong",
    "van hoa the thao du lich",
    "bao hiem xa hoi",
    "moi truong",
]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Bench:
    def __init__(self, url: str, var_dir: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        jwk.update(kid="bench", alg="ES256")

        async def keys() -> dict[str, Any]:
            return {"keys": [jwk]}

        self.settings = get_settings(
            var_dir=var_dir,
            database_url=url,
            amqp_url=None,
            database_pool_size=60,
            log_level="WARNING",
            agencies={AGENCY: AgencyProfile(abbreviation="UBND", name="Ủy ban nhân dân tỉnh Thanh Hóa")},
            max_file_bytes=FILE_BYTES + MB,
        )
        self.app = create_app(self.settings, broker=InProcessBroker(), key_source=keys)
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"

    def token(self, role: str) -> dict[str, str]:
        now = int(time.time())
        claims = {
            "sub": role,
            "name": role,
            "roles": [role],
            "agency": AGENCY,
            "clearance": 0,
            "iss": "urn:lienthong:identity",
            "aud": "lienthong",
            "iat": now,
            "exp": now + 3600,
        }
        return {"Authorization": "Bearer " + jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": "bench"})}

    @property
    def db(self) -> Any:
        return self.app.state.runtime.db


async def _serve(bench: _Bench) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    server = uvicorn.Server(
        uvicorn.Config(
            bench.app, host="127.0.0.1", port=bench.port, log_level="warning", lifespan="on", access_log=False
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    return server, task


async def _round_trip(client: httpx.AsyncClient, prefix: str, headers: dict[str, str]) -> tuple[float, float]:
    """Create a document under ``prefix``, upload one 50 MB attachment streamed, download it
    streamed, check both hashes; the seconds the upload and the download took."""
    r = await client.post(
        f"{prefix}/documents",
        headers=headers,
        json={"agency": AGENCY, "type_key": "BC", "subject": "Báo cáo kèm dữ liệu lớn"},
    )
    r.raise_for_status()
    doc_id = r.json()["id"]
    chunk = random.randbytes(MB)
    sent = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        for i in range(FILE_BYTES // MB):
            piece = chunk[:8] + i.to_bytes(4, "big") + chunk[12:]
            sent.update(piece)
            yield piece

    started = time.perf_counter()
    r = await client.post(
        f"{prefix}/documents/{doc_id}/attachments",
        params={"name": "du-lieu.bin"},
        content=body(),
        headers={**headers, "Content-Type": "application/octet-stream"},
    )
    up = time.perf_counter() - started
    r.raise_for_status()
    attachment = r.json()
    assert attachment["sha256"] == sent.hexdigest() and attachment["size"] == FILE_BYTES
    got = hashlib.sha256()
    size = 0
    started = time.perf_counter()
    url = f"{prefix}/documents/{doc_id}/attachments/{attachment['id']}"
    async with client.stream("GET", url, headers=headers) as resp:
        resp.raise_for_status()
        async for piece in resp.aiter_bytes():
            got.update(piece)
            size += len(piece)
    down = time.perf_counter() - started
    assert got.hexdigest() == sent.hexdigest() and size == FILE_BYTES
    return up, down


async def file_figures(bench: _Bench) -> dict[str, Any]:
    """Upload then download one 50 MB attachment over HTTP, streamed both ways."""
    async with httpx.AsyncClient(base_url=bench.base, timeout=300) as client:
        rss_before = _rss_mb()
        up, down = await _round_trip(client, "", bench.token("specialist"))
    return {
        "file_mb": FILE_BYTES / MB,
        "upload_mb_s": round(FILE_BYTES / MB / up, 1),
        "download_mb_s": round(FILE_BYTES / MB / down, 1),
        "peak_rss_mb_before": round(rss_before, 1),
        "peak_rss_mb_after": round(_rss_mb(), 1),
        "path": "HTTP to the document app under uvicorn (not through the gateway), client and server in one process",
    }


def _peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


async def gateway_file_figures() -> dict[str, Any]:
    """The same 50 MB up and down, through the gateway to the document part, each its own
    process (distributed mode): MB/s, and both processes' peak memory before and after."""
    from tests import suites

    with tempfile.TemporaryDirectory(prefix="bench-document-gw-") as tmp:
        async with suites.distributed(Path(tmp)) as running:
            headers = await running.auth("specialist")
            pids = {p: running.processes[p].pid for p in ("gateway", "document")}
            async with running.client(timeout=300) as client:
                before = {p: _peak_rss_mb(pid) for p, pid in pids.items()}
                up, down = await _round_trip(client, "/api/document", headers)
                after = {p: _peak_rss_mb(pid) for p, pid in pids.items()}
    return {
        "file_mb": FILE_BYTES / MB,
        "upload_mb_s": round(FILE_BYTES / MB / up, 1),
        "download_mb_s": round(FILE_BYTES / MB / down, 1),
        "peak_rss_mb_before": {p: round(v, 1) for p, v in before.items()},
        "peak_rss_mb_after": {p: round(v, 1) for p, v in after.items()},
        "path": "client → gateway → document, each its own process (distributed mode, PostgreSQL, RabbitMQ)",
    }


async def numbering_figures(bench: _Bench, *, writers: int, numbers: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    rows = [_row(i, now, status="signed_by_leader", type_key="QĐ", type_name="Quyết định") for i in range(numbers)]
    async with bench.db.sessionmaker() as session:
        ids = list((await session.execute(insert(Document).returning(Document.id), rows)).scalars())
        await session.commit()
    work: asyncio.Queue[int] = asyncio.Queue()
    for i in ids:
        work.put_nowait(i)
    today = svc.vietnam_today()

    async def writer() -> None:
        while True:
            try:
                doc_id = work.get_nowait()
            except asyncio.QueueEmpty:
                return
            async with bench.db.sessionmaker() as session:
                doc = (
                    await session.execute(select(Document).where(Document.id == doc_id).with_for_update())
                ).scalar_one()
                await outgoing.assign_number(session, doc, settings=bench.settings, today=today)
                await session.commit()

    started = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    elapsed = time.perf_counter() - started
    async with bench.db.sessionmaker() as session:
        got = (
            (
                await session.execute(
                    select(Document.code_number).where(Document.id.in_(ids)).order_by(Document.code_number)
                )
            )
            .scalars()
            .all()
        )
    duplicates = len(got) - len(set(got))
    gaps = len(set(range(1, numbers + 1)) - set(got))
    return {
        "writers": writers,
        "numbers": numbers,
        "numbers_per_s": round(numbers / elapsed, 1),
        "duplicates": duplicates,
        "gaps": gaps,
        "how": "service.assign_number per document in its own transaction (row lock + counter row), "
        "50 tasks on one asyncpg pool; numbers checked to be exactly 1..N",
    }


def _row(
    i: int,
    now: datetime,
    *,
    status: str = "issued",
    type_key: str = "CV",
    type_name: str = "Công văn",
    subject: str | None = None,
) -> dict[str, Any]:
    subject = subject or f"Quyết định số {i}"
    return {
        "direction": "outgoing",
        "agency": AGENCY,
        "status": status,
        "version": 1,
        "type_key": type_key,
        "type_name": type_name,
        "subject": subject,
        "search_text": " ".join(tokens(f"{subject} {type_name}")),
        "secrecy": "none",
        "secrecy_rank": 0,
        "urgency": "thuong",
        "language": "vi",
        "recipients": [],
        "to_places": [],
        "duplicate_of": [],
        "content_version": 0,
        "created_by": "bench",
        "created_at": now,
        "updated_at": now,
    }


async def search_figures(bench: _Bench, *, rows: int, queries: int) -> dict[str, Any]:
    rng = random.Random(15)
    now = datetime.now(UTC)
    started = time.perf_counter()
    async with bench.db.sessionmaker() as session:
        for start in range(0, rows, 5000):
            batch = [
                _row(i, now, subject=" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20))).capitalize())
                for i in range(start, min(start + 5000, rows))
            ]
            await session.execute(insert(Document), batch)
        await session.commit()
    async with bench.db.engine.connect() as conn:
        await conn.execute(text("ANALYZE document"))
        await conn.commit()
    loaded = time.perf_counter() - started
    headers = bench.token("leader")
    timings: list[float] = []
    hits: list[int] = []
    async with httpx.AsyncClient(base_url=bench.base, timeout=30) as client:
        for q in QUERIES:  # warm the cache and the connection pool once
            (await client.get("/documents", params={"q": q}, headers=headers)).raise_for_status()
        for n in range(queries):
            q = QUERIES[n % len(QUERIES)]
            t = time.perf_counter()
            r = await client.get("/documents", params={"q": q}, headers=headers)
            timings.append((time.perf_counter() - t) * 1000)
            r.raise_for_status()
            hits.append(len(r.json()["items"]))
    return {
        "documents": rows,
        "bulk_insert_s": round(loaded, 1),
        "queries": queries,
        "p50_ms": round(statistics.median(timings), 1),
        "p99_ms": round(percentile(timings, 99), 1),
        "target_p99_ms": 100,
        "mean_hits": round(statistics.mean(hits), 1),
        "how": "GET /documents?q=<words without diacritics> over HTTP, limit 50, newest first; "
        "folded search_text with a pg_trgm GIN index",
    }


async def main(argv: list[str] | None = None) -> None:
    from tests.servers import temporary_databases

    parser = argparse.ArgumentParser(prog="bench.document")
    parser.add_argument("--writers", type=int, default=50)
    parser.add_argument("--numbers", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args(argv if argv is not None else [])
    with temporary_databases(["document"]) as urls, tempfile.TemporaryDirectory() as tmp:
        bench = _Bench(urls["document"], Path(tmp))
        server, task = await _serve(bench)
        try:
            files = await file_figures(bench)
            print("file:", files, flush=True)
            numbering = await numbering_figures(bench, writers=args.writers, numbers=args.numbers)
            print("numbering:", numbering, flush=True)
            search = await search_figures(bench, rows=args.rows, queries=args.queries)
            print("search:", search, flush=True)
        finally:
            server.should_exit = True
            await task
    through_gateway = await gateway_file_figures()
    print("file through the gateway:", through_gateway, flush=True)
    path = write("document", {"numbering": numbering, "search": search, "file": files,
                              "file_through_gateway": through_gateway})
    print(f"wrote {path}")


if __name__ == "__main__":
    import sys

    asyncio.run(main(sys.argv[1:]))
