"""The floor this stack allows for intake's two main reads: a minimal FastAPI + asyncpg app with
the parts' server settings (uvicorn, uvloop, httptools, no access log), running the same SQL as
intake's "get dossier" and "list dossiers" against intake's own database, and nothing else — no
gateway, no token, no access record, no response model. ``bench.mixed`` starts it beside the
suite and measures its CPU per request in the same run.

``python -m bench.bare`` with BARE_DATABASE_URL (asyncpg form), BARE_PORT and BARE_AGENCY_PATH
(the desk officer's subtree, ``/H56/41/00/…`` as intake stores it).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import uvicorn
from fastapi import FastAPI, Request, Response

# intake's statements (services/intake/views.py and endpoints/dossiers.py) as PostgreSQL sees
# them: the view's columns, its components and pending results by dossier; the list is the
# desk officer's subtree newest first, a page of 50 (and one more to know there is a next).
DOSSIER_COLUMNS = (
    "dossier.id, dossier.code, dossier.agency, dossier.owner, dossier.procedure_code, "
    "dossier.procedure_version_id, dossier.channel, dossier.status, dossier.paused_from, dossier.applicant, "
    "dossier.received_at, dossier.accepted_at, dossier.due_at, dossier.finished_at, dossier.finished_on_time, "
    "dossier.returned_at, dossier.result"
)
COMPONENT_COLUMNS = (
    "dossier_component.dossier_id, dossier_component.no, dossier_component.name, dossier_component.copies, "
    "dossier_component.original, dossier_component.sha256 IS NOT NULL AS digitised, dossier_component.sha256, "
    "dossier_component.size, dossier_component.content_type, dossier_component.filename, "
    "dossier_component.supplement"
)
PENDING_COLUMNS = (
    "issued_result.dossier_id, issued_result.document_id, issued_result.number, issued_result.summary, "
    "issued_result.issued_at, issued_result.download_path, issued_result.learnt_at"
)
DOSSIER_BY_CODE = f"SELECT {DOSSIER_COLUMNS} FROM dossier WHERE dossier.code = $1"
DOSSIER_PAGE = (
    f"SELECT {DOSSIER_COLUMNS} FROM dossier WHERE (dossier.agency_path LIKE $1 || '%') "
    "ORDER BY dossier.received_at DESC, dossier.id DESC LIMIT $2"
)
COMPONENTS_OF = f"SELECT {COMPONENT_COLUMNS} FROM dossier_component WHERE dossier_component.dossier_id = $1 " \
    "ORDER BY dossier_component.id"
COMPONENTS_OF_MANY = (
    f"SELECT {COMPONENT_COLUMNS} FROM dossier_component WHERE dossier_component.dossier_id = ANY($1::bigint[]) "
    "ORDER BY dossier_component.dossier_id, dossier_component.id"
)
PENDING_OF_MANY = (
    f"SELECT {PENDING_COLUMNS} FROM issued_result WHERE issued_result.dossier_id = ANY($1::bigint[]) "
    "AND issued_result.applied_at IS NULL ORDER BY issued_result.dossier_id, issued_result.id"
)


def _json(value: Any) -> Response:
    return Response(json.dumps(value, default=str, ensure_ascii=False), media_type="application/json")


def create_app(database_url: str, agency_path: str, pool_size: int = 20) -> FastAPI:
    pool: asyncpg.Pool | None = None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nonlocal pool
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=pool_size)
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/dossiers/{code}")
    async def get_dossier(code: str) -> Response:
        assert pool is not None
        async with pool.acquire() as connection, connection.transaction():
            found = await connection.fetchrow(DOSSIER_BY_CODE, code)
            if found is None:
                return Response(status_code=404)
            dossier = dict(found)
            dossier["components"] = [dict(r) for r in await connection.fetch(COMPONENTS_OF, dossier["id"])]
            dossier["pending_results"] = [dict(r) for r in await connection.fetch(PENDING_OF_MANY, [dossier["id"]])]
        return _json(dossier)

    @app.get("/dossiers")
    async def list_dossiers(request: Request) -> Response:
        assert pool is not None
        async with pool.acquire() as connection, connection.transaction():
            page = [dict(r) for r in await connection.fetch(DOSSIER_PAGE, agency_path, 51)]
            ids = [d["id"] for d in page]
            by_id: dict[int, dict[str, Any]] = {}
            for d in page:
                d["components"], d["pending_results"] = [], []
                by_id[d["id"]] = d
            for r in await connection.fetch(COMPONENTS_OF_MANY, ids):
                by_id[r["dossier_id"]]["components"].append(dict(r))
            for r in await connection.fetch(PENDING_OF_MANY, ids):
                by_id[r["dossier_id"]]["pending_results"].append(dict(r))
        return _json({"items": page[:50], "next": "more" if len(page) > 50 else None})

    return app


def main() -> None:
    app = create_app(os.environ["BARE_DATABASE_URL"], os.environ["BARE_AGENCY_PATH"])
    # the parts' settings (lienthong.distributed.serve)
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["BARE_PORT"]), log_level="warning", access_log=False,
                lifespan="on", loop="uvloop", http="httptools")


if __name__ == "__main__":
    main()
