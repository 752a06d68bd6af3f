"""Dossier codes on PostgreSQL: 50 concurrent submissions to one agency on one day get
``-0001`` … ``-0050``, no gap and no duplicate, also when some transactions roll back after
taking their number; and the code reaches every row written under a stand-in before it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.intake.app import MIGRATIONS
from shared.events import format_sequence
from shared.migrations import upgrade
from tests.servers import psql, temporary_databases
from tests.services.intake.harness import WARD, birth_registration, running_intake

pytestmark = pytest.mark.pg

UNDONE = "Hoàn Tác"  # applicant of the submissions whose transaction fails at commit

# Fails the commit of a dossier of UNDONE's: a deferred trigger runs at COMMIT, after the
# statement that took the number, so that number must be given back to the next taker.
FAIL_AT_COMMIT = f"""
CREATE FUNCTION fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.applicant->>'full_name' = '{UNDONE}' THEN
    RAISE EXCEPTION 'commit refused for %', NEW.code;
  END IF;
  RETURN NEW;
END $$;
CREATE CONSTRAINT TRIGGER fail_at_commit AFTER INSERT ON dossier
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_at_commit();
"""


async def test_fifty_concurrent_submissions_number_without_gaps(tmp_path: Path) -> None:
    with temporary_databases(["intake"]) as urls:
        await asyncio.to_thread(upgrade, MIGRATIONS, urls["intake"], service="intake")
        await asyncio.to_thread(psql, FAIL_AT_COMMIT, urls["intake"].rsplit("/", 1)[1])
        async with running_intake(
            tmp_path, database_url=urls["intake"], auto_migrate=False, database_pool_size=10
        ) as intake:
            good = birth_registration()
            refused = {**birth_registration(), "components": [{"no": 1}]}  # a required component missing
            undone = birth_registration(name=UNDONE)

            async def one(i: int) -> tuple[int, str | None]:
                body = refused if i % 12 == 10 else undone if i % 12 == 11 else good
                headers = intake.as_("desk_officer", **{"Idempotency-Key": f"desk-{i}"})
                try:
                    r = await intake.client.post("/dossiers", json=body, headers=headers)
                except Exception:  # the commit's failure, raised through the in-process transport
                    return 500, None
                return r.status_code, r.json().get("code")

            results = await asyncio.gather(*[one(i) for i in range(60)])
            statuses = sorted(status for status, _ in results)
            assert (statuses.count(422), statuses.count(500)) == (5, 5), statuses
            codes = sorted(code for status, code in results if status == 201 and code)
            assert len(codes) == 50 == len(set(codes))
            assert [int(c.rsplit("-", 1)[1]) for c in codes] == list(range(1, 51))
            assert len({c.rsplit("-", 1)[0] for c in codes}) == 1

            # the event, the event sequence and the idempotency record name the code too
            deadline = asyncio.get_running_loop().time() + 20
            while len([e for e in intake.published if e.type.endswith("dossier.received.v1")]) < 50:
                assert asyncio.get_running_loop().time() < deadline, "dossier.received not all published"
                await asyncio.sleep(0.05)
            received = [e for e in intake.published if e.type.endswith("dossier.received.v1")]
            assert sorted(e.subject for e in received) == codes
            assert all(e.data["code"] == e.subject and e.sequence == format_sequence(1) for e in received)
            first = next(i for i, (status, _) in enumerate(results) if status == 201)
            replay = await intake.client.post(
                "/dossiers", json=good, headers=intake.as_("desk_officer", **{"Idempotency-Key": f"desk-{first}"})
            )
            assert (replay.status_code, replay.json()["code"]) == (201, results[first][1])
            assert replay.headers["idempotent-replayed"] == "true"
            # the dossier's next events (start_processing and its hand-off) go on from its sequence
            started = await intake.act("desk_officer", codes[0], "start_processing", {"to_whom": "Phòng Tư pháp"})
            assert started.status_code == 200, started.text
            deadline = asyncio.get_running_loop().time() + 20
            while len(later := [e for e in intake.published if e.subject == codes[0]]) < 3:
                assert asyncio.get_running_loop().time() < deadline, "dossier.start_processing not published"
                await asyncio.sleep(0.05)
            assert sorted(e.sequence for e in later) == [format_sequence(n) for n in (1, 2, 3)]
            # nothing committed still carries a stand-in
            engine = create_async_engine(urls["intake"])
            async with engine.connect() as connection:
                left = await connection.execute(
                    text(
                        "SELECT (SELECT count(*) FROM dossier WHERE code LIKE '~%'),"
                        " (SELECT count(*) FROM outbox WHERE aggregate LIKE '~%'"
                        "  OR position('\"~' in convert_from(body, 'UTF8')) > 0),"
                        " (SELECT count(*) FROM counter WHERE key LIKE 'event-seq:~%'),"
                        " (SELECT count(*) FROM idempotency_key WHERE response->>'code' = dossier_code)"
                    )
                )
                assert left.one() == (0, 0, 0, 50)
            await engine.dispose()


async def test_a_code_past_9999_keeps_every_digit(tmp_path: Path) -> None:
    with temporary_databases(["intake"]) as urls:
        await asyncio.to_thread(upgrade, MIGRATIONS, urls["intake"], service="intake")
        async with running_intake(tmp_path, database_url=urls["intake"], auto_migrate=False) as intake:
            first = await intake.submit("desk_officer", birth_registration())
            prefix, number = first["code"].rsplit("-", 1)
            assert number == "0001"
            day = prefix.rsplit("-", 1)[1]
            engine = create_async_engine(urls["intake"])
            async with engine.begin() as connection:
                await connection.execute(
                    text("UPDATE counter SET value = 9998 WHERE key = :key"), {"key": f"dossier:{WARD}:{day}"}
                )
            await engine.dispose()
            codes = [(await intake.submit("desk_officer", birth_registration()))["code"] for _ in range(2)]
            assert codes == [f"{prefix}-9999", f"{prefix}-10000"]


async def test_issued_results_racing_the_desk_finish_each_dossier_once(tmp_path: Path) -> None:
    """``document.issued`` arriving while the desk moves the dossier (supplement received,
    processing started): whichever commits first, the result is applied exactly once and
    nothing is left pending."""
    with temporary_databases(["intake"]) as urls:
        await asyncio.to_thread(upgrade, MIGRATIONS, urls["intake"], service="intake")
        async with running_intake(
            tmp_path, database_url=urls["intake"], auto_migrate=False, database_pool_size=10
        ) as intake:
            supplement = {"missing_items": [{"name": "Giấy chứng sinh"}]}
            paused, accepted = [], []
            for i in range(20):
                code = (await intake.submit("desk_officer"))["code"]
                if i % 2:
                    await intake.act("desk_officer", code, "start_processing")
                    await intake.act("specialist", code, "request_supplement", supplement)
                    paused.append(code)
                else:
                    accepted.append(code)

            async def desk(code: str) -> None:
                action = "supplement_received" if code in paused else "start_processing"
                r = await intake.act("desk_officer", code, action)
                # the system may have taken an accepted dossier to 9 first: then 409, nothing changes
                assert r.status_code in (200, 409), r.text

            work = [desk(code) for code in paused + accepted]
            work += [intake.issue(code, 1000 + i) for i, code in enumerate(paused + accepted)]
            await asyncio.gather(*work)
            for code in paused + accepted:
                got = (await intake.client.get(f"/dossiers/{code}", headers=intake.as_("desk_officer"))).json()
                assert got["status"] == 9 and got["pending_results"] == [], (code, got["status"])
                history = (
                    await intake.client.get(f"/dossiers/{code}/history", headers=intake.as_("desk_officer"))
                ).json()
                assert [e["action"] for e in history["events"]].count("finish") == 1
            listed = await intake.client.get(
                "/dossiers", params={"has_pending_result": "true"}, headers=intake.as_("desk_officer")
            )
            assert listed.json()["items"] == []


async def test_dossiers_finished_before_keep_their_result_as_issued() -> None:
    """The revision that keeps issued results turns a finished dossier's result into an applied
    one: the same document issued again is then recognised, not left pending."""
    with temporary_databases(["intake"]) as urls:
        await asyncio.to_thread(upgrade, MIGRATIONS, urls["intake"], service="intake", revision="15092952390a")
        database = urls["intake"].rsplit("/", 1)[1]
        await asyncio.to_thread(
            psql,
            """
            INSERT INTO procedure_version (id, code, version, effective_from, name, name_search, sector,
              receiving_agencies, deciding_agency, processing_hours, fee_vnd, components, online_level,
              created_at, created_by)
            VALUES (1, '1.001193', 1, '2025-07-01', 'x', 'x', 'x', '[]', '000.00.41.H56', 8, 0, '[]', 'full',
              now(), 'test');
            INSERT INTO dossier (id, code, agency, agency_path, procedure_code, procedure_version_id, channel,
              status, applicant, applicant_search, received_at, processing_hours, extension_hours, version,
              updated_at, finished_at, result)
            VALUES
              (1, 'A-1', '000.00.41.H56', '/H56/41/', '1.001193', 1, 'desk', 9, '{}', '', now(), 8, 0, 1, now(),
               now(), '{"document_id": 41, "number": "05/QĐ-UBND"}'),
              (2, 'A-2', '000.00.41.H56', '/H56/41/', '1.001193', 1, 'desk', 9, '{}', '', now(), 8, 0, 1, now(),
               now(), '{"summary": "by hand, no document"}'),
              (3, 'A-3', '000.00.41.H56', '/H56/41/', '1.001193', 1, 'desk', 4, '{}', '', now(), 8, 0, 1, now(),
               NULL, 'null');
            """,
            database,
        )
        await asyncio.to_thread(upgrade, MIGRATIONS, urls["intake"], service="intake")
        engine = create_async_engine(urls["intake"])
        async with engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT dossier_id, document_id, number, applied_at IS NOT NULL FROM issued_result")
            )
            assert [tuple(r) for r in rows] == [(1, 41, "05/QĐ-UBND", True)]
        await engine.dispose()


async def test_a_new_dossier_goes_in_with_its_first_history_entry_and_due_date(tmp_path: Path) -> None:
    """On PostgreSQL the three are one statement: every column of each still lands where it did."""
    with temporary_databases(["intake"]) as urls:
        await asyncio.to_thread(upgrade, MIGRATIONS, urls["intake"], service="intake")
        async with running_intake(tmp_path, database_url=urls["intake"], auto_migrate=False) as intake:
            desk = await intake.submit("desk_officer", birth_registration())
            online = await intake.submit("citizen", birth_registration(files=True))
            histories = [
                (await intake.client.get(f"/dossiers/{d['code']}/history", headers=intake.as_("desk_officer"))).json()
                for d in (desk, online)
            ]
            for dossier, history, channel in ((desk, histories[0], "desk"), (online, histories[1], "online")):
                [entry] = history["events"]
                assert (entry["action"], entry["from_status"], entry["to_status"]) == (
                    "receive",
                    None,
                    dossier["status"],
                )
                assert entry["details"] == {"channel": channel}
                assert entry["at"] == dossier["received_at"]
            [change] = histories[0]["due_date_changes"]
            assert (change["cause"], change["old_due_at"], change["reason"]) == ("accepted", None, None)
            assert change["new_due_at"] == desk["due_at"] and change["at"] == desk["received_at"]
            assert change["actor_name"] == histories[0]["events"][0]["actor_name"]
            assert histories[1]["due_date_changes"] == []  # online: the clock starts when the desk accepts it
