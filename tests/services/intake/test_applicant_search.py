"""The desk's applicant search: any part of a name with or without diacritics, a whole ID number
exactly, only the caller's subtree, newest first in pages — on SQLite (embedded mode) and on
PostgreSQL, where it is read in steps (services.intake.applicant_search), each step exercised
here by a window small enough for a handful of dossiers. And PostgreSQL's plans keep using the
trigram and ID indexes, so a later change cannot drop them silently."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic import command
from sqlalchemy import Select, and_, or_, text
from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from services.intake import applicant_search, catalogue, views
from services.intake.app import MIGRATIONS
from services.intake.applicant_search import ApplicantQuery, candidates_page, index_parts, newest_page
from services.intake.models import Dossier
from shared.db import make_engine
from shared.migrations import alembic_config, upgrade
from shared.text import fold
from tests.servers import temporary_databases
from tests.services.intake.harness import WARD, birth_registration, intake_on, running_intake

SAM_SON = "000.00.42.H56"  # another ward of the province

NHUNG = "Nguyễn Thị Hồng Nhung"


def at_sam_son(name: str, id_number: str) -> dict[str, Any]:
    """Đăng ký khai tử at the other ward (1.000656), handed in at the desk."""
    return {
        "agency": SAM_SON,
        "procedure_code": "1.000656",
        "applicant": {"full_name": name, "id_number": id_number},
        "components": [{"no": 1}, {"no": 2}],
    }


def at_ward(name: str, id_number: str | None) -> dict[str, Any]:
    body = birth_registration(name=name)
    body["applicant"]["id_number"] = id_number
    return body


BACKENDS = [
    pytest.param("sqlite", applicant_search.WINDOW, id="sqlite"),
    pytest.param("pg", applicant_search.WINDOW, id="pg", marks=pytest.mark.pg),
    # a window of 2 dossiers: most searches go on to the shares and the trigram candidates
    pytest.param("pg", 2, id="pg-steps", marks=pytest.mark.pg),
]


@pytest.mark.parametrize(("backend", "window"), BACKENDS)
async def test_search_by_any_part_of_the_name_or_a_whole_id_number(
    backend: str, window: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(applicant_search, "WINDOW", window)
    steps: list[str] = []
    for step in ("window_page", "candidates_page"):
        monkeypatch.setattr(applicant_search, step, noted(getattr(applicant_search, step), steps))
    async with intake_on(backend, tmp_path) as intake:
        nhung = await intake.submit("desk_officer", at_ward(NHUNG, "038090001234"))
        duc = await intake.submit("desk_officer", at_ward("Đặng Văn Đức", "C1234567"))
        elsewhere = await intake.submit("desk_officer", at_sam_son("Lê Thị Nhung", "171234567"))
        ans = [await intake.submit("desk_officer", at_ward("Trần Văn An", None)) for _ in range(3)]

        async def found(applicant: str, user: str = "ward_desk", **params: Any) -> list[str]:
            r = await intake.client.get(
                "/dossiers", params={"applicant": applicant, **params}, headers=intake.as_(user)
            )
            assert r.status_code == 200, r.text
            return [d["code"] for d in r.json()["items"]]

        # the end, the middle, fragments of words; diacritics and case optional either way
        for typed in ("Nhung", "nhung", "NHƯNG", "nguyen thi hong", "Hồng Nhung", "ong nhu", "guyễn", "THI HONG"):
            assert await found(typed) == [nhung["code"]], typed
        assert await found("đặng văn đức") == await found("dang van duc") == [duc["code"]]
        # every word typed must be found
        assert await found("Nhung Đức") == []
        assert await found("Quách Tĩnh") == []
        # the province's desk sees both wards, newest first; a ward's desk only its own
        assert await found("nhung", "desk_officer") == [elsewhere["code"], nhung["code"]]
        # an ID number as printed, or typed in groups: exactly; a part of one finds nothing
        assert await found("038090001234") == await found("038 090 001 234") == [nhung["code"]]
        assert await found("c1234567") == await found("C1234567") == [duc["code"]]
        assert await found("03809000") == []
        assert await found("Nhung 038090001234") == [nhung["code"]]
        assert await found("Đức 038090001234") == []
        assert await found("171234567") == []
        assert await found("171234567", "desk_officer") == [elsewhere["code"]]
        # pages of a search: newest first, each once
        pages: list[list[str]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            r = await intake.client.get(
                "/dossiers", params={"applicant": "tran van an", **params}, headers=intake.as_("ward_desk")
            )
            pages.append([d["code"] for d in r.json()["items"]])
            cursor = r.json()["next"]
            if not cursor:
                break
        assert pages == [[ans[2]["code"], ans[1]["code"]], [ans[0]["code"]]]
        assert (
            await intake.client.get("/dossiers", params={"applicant": "x" * 201}, headers=intake.as_("ward_desk"))
        ).status_code in (400, 422)
    if backend == "sqlite":
        assert steps == []  # one plain query
    elif window == 2:
        assert {"window_page", "candidates_page"} <= set(steps)


def noted(build: Callable[..., Any], steps: list[str]) -> Callable[..., Any]:
    """``build``, noting in ``steps`` each time it is used."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        steps.append(build.__name__)
        return build(*args, **kwargs)

    return wrapper


def test_the_trigram_index_gets_only_the_rare_parts() -> None:
    # a third of names are Nguyễn, half have Thị or Văn: the index reads only the rare parts
    assert index_parts({"nguyen": 0.39, "thi": 0.3, "hong": 0.036, "nhung": 0.017}) == {"nhung", "hong"}
    assert index_parts({"cam": 0.011, "yen": 0.4}) == {"cam", "yen"}  # "yen" is in every "nguyen"
    assert index_parts({"quach": 0.0, "tinh": 0.0}) == {"quach"}
    # every part common, or too short for a trigram: none (the newest-first walk is cheaper)
    assert index_parts({"nguyen": 0.39, "van": 0.3}) == frozenset()
    assert index_parts({"lo": 0.0, "van": 0.3}) == frozenset()


# a few thousand dossiers with names of three parts and CCCD numbers, straight into the table
FILL = """
INSERT INTO dossier (code, agency, agency_path, procedure_code, procedure_version_id, channel, status, applicant,
                     applicant_search, applicant_id_number, received_at, processing_hours, extension_hours,
                     version, updated_at)
SELECT 'X-' || i, $1, $2, pv.code, pv.id, 'desk', 10,
       json_build_object('full_name', n, 'id_number', '038' || lpad(i::text, 9, '0')),
       n, '038' || lpad(i::text, 9, '0'), now() - i * interval '1 minute', 8, 0, 1, now()
FROM generate_series(1, $3) AS i,
     LATERAL (SELECT (ARRAY['nguyen', 'tran', 'le', 'pham', 'cam'])[1 + i % 5] || ' '
                     || (ARRAY['van', 'thi', 'hong'])[1 + i % 3] || ' '
                     || (ARRAY['an', 'nhung', 'yen', 'duc', 'hoa', 'minh', 'lan'])[1 + i % 7] AS n) AS name,
     (SELECT id, code FROM procedure_version ORDER BY id LIMIT 1) AS pv
"""


@contextlib.asynccontextmanager
async def seeded_database(tmp_path: Path) -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    """A fresh intake database, migrated and seeded with the catalogue; its URL and a connection."""
    with temporary_databases(["intake"]) as urls:
        url = urls["intake"]
        await asyncio.to_thread(upgrade, MIGRATIONS, url, service="intake")
        async with running_intake(tmp_path, database_url=url, auto_migrate=False):
            pass  # seeds the catalogue
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            yield url, connection
        finally:
            await connection.close()


def sql_of(statement: Select[Any]) -> str:
    return str(statement.compile(dialect=pg_asyncpg.dialect(), compile_kwargs={"literal_binds": True}))


@pytest.mark.pg
async def test_postgresql_plans_use_the_trigram_and_id_number_indexes(tmp_path: Path) -> None:
    async with seeded_database(tmp_path) as (_, connection):
        await connection.execute(FILL, WARD, catalogue.agency_path(WARD), 3000)
        await connection.execute("ANALYZE dossier")
        # a few thousand rows are one scan away: the planner is told scans are dear, as a
        # table of millions would tell it, and must still find its index
        await connection.execute("SET enable_seqscan = off")

        async def plan(statement: Select[Any]) -> str:
            return "\n".join(r[0] for r in await connection.fetch("EXPLAIN " + sql_of(statement)))

        scoped = views.dossier_query().where(Dossier.agency_path.startswith(catalogue.agency_path(WARD)))
        search = ApplicantQuery.parse("Cầm Thị Yến")
        by_name = await plan(candidates_page(scoped, search, indexed=frozenset({"cam", "yen"}), limit=50))
        assert "ix_dossier_applicant_trgm" in by_name, by_name
        by_id = await plan(newest_page(scoped.where(*ApplicantQuery.parse("038000000042").conditions()), 50))
        assert "ix_dossier_applicant_id_number" in by_id, by_id
        # and the rows are right: every match (the parts checked outside the index too), newest first
        rows = await connection.fetch(sql_of(candidates_page(scoped, search, indexed=frozenset({"cam"}), limit=50)))
        expected = [i for i in range(1, 3001) if i % 5 == 4 and i % 3 == 1 and i % 7 == 2]
        assert [r["code"] for r in rows] == [f"X-{i}" for i in expected]


@pytest.mark.pg
async def test_a_name_search_is_planned_for_its_own_values_in_its_transaction_only(tmp_path: Path) -> None:
    """After five runs PostgreSQL may keep a generic plan for a prepared statement, blind to the
    LIKE patterns and the subtree (5x slower at 10^6 rows, bench/search.py): a name search asks
    for plans made for its values, for its own transaction, and a pooled connection goes back
    to the planner's default."""
    from sqlalchemy.ext.asyncio import AsyncSession

    from shared.db import make_engine

    with temporary_databases(["intake"]) as urls:
        async with running_intake(tmp_path, database_url=urls["intake"]) as intake:
            await intake.submit("ward_desk", at_ward(NHUNG, "038090001234"))
        engine = make_engine(urls["intake"], pool_size=1)
        mode = text("SELECT current_setting('plan_cache_mode')")
        scoped = views.dossier_query().where(Dossier.agency_path.startswith(catalogue.agency_path(WARD)))
        try:
            for typed, planned in (("nhung", "force_custom_plan"), ("038090001234", "auto")):
                async with AsyncSession(engine) as session:
                    rows = await applicant_search.read_page(
                        session, scoped, ApplicantQuery.parse(typed), after=None, limit=50
                    )
                    assert [r["applicant"]["full_name"] for r in rows] == [NHUNG]
                    assert (await session.execute(mode)).scalar_one() == planned, typed
                    await session.commit()
                    assert (await session.execute(mode)).scalar_one() == "auto"
        finally:
            await engine.dispose()


OLD_HEAD = "0082dff8332d"  # the revision before the ID number had its own key


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
async def test_the_migration_gives_existing_dossiers_their_keys(backend: str, tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        if backend == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path}/intake.sqlite"
        else:
            url = stack.enter_context(temporary_databases(["intake"]))["intake"]
        await asyncio.to_thread(upgrade, MIGRATIONS, url, service="intake", revision=OLD_HEAD)
        engine = create_async_engine(url)
        now = datetime.now(UTC)
        try:
            async with engine.begin() as connection:
                await connection.execute(
                    text(
                        "INSERT INTO procedure_version (code, version, effective_from, name, name_search, sector, "
                        "receiving_agencies, deciding_agency, processing_hours, fee_vnd, components, online_level, "
                        "created_at, created_by) VALUES ('1.001193', 1, :day, 'x', 'x', 'x', '[]', :ward, 8, 0, "
                        "'[]', 'full', :now, 'test')"
                    ),
                    {"day": now.date(), "ward": WARD, "now": now},
                )
                for code, applicant in (
                    ("A", {"full_name": NHUNG, "id_number": "038 090-001234"}),
                    ("B", {"full_name": "Đặng Văn Đức"}),
                ):
                    # as the service wrote them before: name and ID number in one folded key
                    key = fold(" ".join(filter(None, [applicant["full_name"], applicant.get("id_number")])))
                    await connection.execute(
                        text(
                            "INSERT INTO dossier (code, agency, agency_path, procedure_code, procedure_version_id, "
                            "channel, status, applicant, applicant_search, received_at, processing_hours, "
                            "extension_hours, version, updated_at) VALUES (:code, :ward, '/H56/41/', '1.001193', "
                            "(SELECT min(id) FROM procedure_version), 'desk', 1, :applicant, :key, :now, 8, 0, 1, :now)"
                        ),
                        {"code": code, "ward": WARD, "applicant": json.dumps(applicant), "key": key, "now": now},
                    )
            await asyncio.to_thread(upgrade, MIGRATIONS, url, service="intake")

            async def keys() -> list[tuple[str, str, str | None]]:
                async with engine.connect() as connection:
                    result = await connection.execute(
                        text("SELECT code, applicant_search, applicant_id_number FROM dossier ORDER BY code")
                    )
                    return [tuple(r) for r in result]

            assert await keys() == [("A", "nguyen thi hong nhung", "038090001234"), ("B", "dang van duc", None)]
            config = alembic_config(MIGRATIONS, url, service="intake")
            await asyncio.to_thread(command.downgrade, config, OLD_HEAD)
            async with engine.connect() as connection:
                result = await connection.execute(text("SELECT applicant_search FROM dossier ORDER BY code"))
                assert [r[0] for r in result] == ["nguyen thi hong nhung 038 090-001234", "dang van duc"]
        finally:
            await engine.dispose()


# Dossiers of a district's subtree (the district, a ward under it, a hamlet under that), of a
# ward, and of two other agencies, interleaved in time; two by two they have the same applicant
# and received_at, mostly at different agencies, so that a merged walk's order falls back on the id.
PATHS = ["/H56/14/", "/H56/14/01/", "/H56/14/01/001/", "/H56/41/", "/H56/11/", "/H56/12/"]
FAMILY = ["Nguyễn", "Trần", "Lò", "Cầm", "Lê"]
MIDDLE = ["Văn", "Thị", "Hồng"]
GIVEN = ["An", "Nhung", "Yến", "Đức", "Hoa", "Minh", "Lan"]


INSERT = """
INSERT INTO dossier (code, agency, agency_path, procedure_code, procedure_version_id, channel, status, applicant,
                     applicant_search, received_at, processing_hours, extension_hours, version, updated_at)
VALUES ($1, 'X', $2, $3, $4, 'desk', 10, $5::json, $6, $7, 8, 0, 1, $7)
"""


async def fill(connection: asyncpg.Connection, n: int) -> None:
    """``n`` such dossiers, vacuumed (the path index's entries then read without the table)."""
    version = await connection.fetchrow("SELECT id, code FROM procedure_version ORDER BY id LIMIT 1")
    start = datetime(2026, 11, 1, tzinfo=UTC)
    rows = []
    for i in range(n):
        path = PATHS[(i * 7) % 11 % len(PATHS)]  # the paths' shares uneven, their order mixed
        pair = i // 2
        name = f"{FAMILY[pair % 5]} {MIDDLE[pair % 3]} {GIVEN[pair % 7]}"
        received = start + timedelta(minutes=pair)
        rows.append(
            (f"X-{i}", path, version["code"], version["id"], json.dumps({"full_name": name}), fold(name), received)
        )
    await connection.executemany(INSERT, rows)
    await connection.execute("VACUUM ANALYZE dossier")


WALKS_ALWAYS = {"SUBTREE_WALKED": 1.01, "WALKED": 10**9}


@pytest.mark.pg
@pytest.mark.parametrize(
    "tuning", [{}, WALKS_ALWAYS, {**WALKS_ALWAYS, "PATHS_WALKED": 2}], ids=["as-is", "walks", "2-paths"]
)
async def test_a_subtree_walked_path_by_path_gives_the_rows_a_plain_query_gives(
    tuning: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of a search in a subtree (one agency path, three, the whole province), read in
    steps with a window of 40 dossiers of 600 — walking the subtree's paths merged, the trigram
    candidates or the table's walk — are the rows a plain query finds, newest first, each once."""
    monkeypatch.setattr(applicant_search, "WINDOW", 40)
    for name, value in tuning.items():
        monkeypatch.setattr(applicant_search, name, value)
    steps: list[str] = []
    monkeypatch.setattr(applicant_search, "walk_page", noted(applicant_search.walk_page, steps))
    async with seeded_database(tmp_path) as (url, connection):
        await fill(connection, 600)
        engine = make_engine(url, pool_size=1)
        try:
            for subtree in ("/H56/41/", "/H56/14/", "/H56/"):
                scoped = views.dossier_query().where(Dossier.agency_path.startswith(subtree))
                for typed in ("van", "Lò Văn", "nguyen thi", "Cầm Yến", "le hong an", "thi", "Quách"):
                    search = ApplicantQuery.parse(typed)
                    async with AsyncSession(engine) as session:
                        plain = newest_page(scoped.where(*search.conditions()), 1000)
                        expected = [r.id for r in (await session.execute(plain)).all()]
                    found: list[int] = []
                    after = None
                    while True:
                        async with AsyncSession(engine) as session:
                            page = await applicant_search.read_page(
                                session, scoped, search, after=after, limit=7, subtree=subtree
                            )
                        found += [r["id"] for r in page[:7]]
                        if len(page) <= 7:
                            break
                        at, last = page[6]["received_at"], page[6]["id"]
                        after = or_(Dossier.received_at < at, and_(Dossier.received_at == at, Dossier.id < last))
                    assert found == expected, (subtree, typed)
        finally:
            await engine.dispose()
    if tuning:
        assert steps, "the subtree's paths were never walked"


@pytest.mark.pg
async def test_the_walk_of_a_subtree_reads_the_path_index_alone(tmp_path: Path) -> None:
    """A subtree's walk is the path index's entries newest first, merged across its paths,
    with the name parts checked on the index's copy of the folded name (no table read for
    them): the index keeps that copy (INCLUDE), and the plan reads it so."""
    async with seeded_database(tmp_path) as (_, connection):
        await fill(connection, 3000)
        # as in a table of millions: scans and sorts of the whole subtree are dear
        await connection.execute("SET enable_seqscan = off")
        await connection.execute("SET enable_sort = off")
        scoped = views.dossier_query().where(Dossier.agency_path.startswith("/H56/14/"))
        walk = applicant_search.walk_page(
            scoped, ApplicantQuery.parse("Lò Văn"), paths=("/H56/14/", "/H56/14/01/", "/H56/14/01/001/"), limit=50
        )
        plan = "\n".join(r[0] for r in await connection.fetch("EXPLAIN " + sql_of(walk)))
        assert "Merge Append" in plan, plan
        assert plan.count("Index Only Scan Backward using ix_dossier_path_received_applicant") == 3, plan


@pytest.mark.pg
async def test_a_ward_desk_and_the_province_desk_narrowed_to_the_ward_find_the_wards_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the list: the desk's subtree (the ward's desk, or the province's desk with
    ``agency``) is the one walked, and its pages are the ward's dossiers only, newest first."""
    monkeypatch.setattr(applicant_search, "WINDOW", 2)
    for name, value in WALKS_ALWAYS.items():
        monkeypatch.setattr(applicant_search, name, value)
    steps: list[str] = []
    monkeypatch.setattr(applicant_search, "walk_page", noted(applicant_search.walk_page, steps))
    async with intake_on("pg", tmp_path) as intake:
        ward = [await intake.submit("desk_officer", at_ward(f"Lò Văn {n}", None)) for n in ("An", "Bình", "Cường")]
        await intake.submit("desk_officer", at_sam_son("Lò Văn Đức", "171234567"))
        await intake.submit("desk_officer", at_ward("Cầm Thị Yến", None))

        async def pages(user: str, **params: Any) -> list[list[str]]:
            found: list[list[str]] = []
            cursor = None
            while True:
                query = {"applicant": "lo van", "limit": 2, **params, **({"cursor": cursor} if cursor else {})}
                r = await intake.client.get("/dossiers", params=query, headers=intake.as_(user))
                assert r.status_code == 200, r.text
                found.append([d["code"] for d in r.json()["items"]])
                if not (cursor := r.json()["next"]):
                    return found

        newest_first = [d["code"] for d in reversed(ward)]
        expected = [newest_first[:2], newest_first[2:]]
        assert await pages("ward_desk") == expected
        assert await pages("desk_officer", agency=WARD) == expected
    assert steps
