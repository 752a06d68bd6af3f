"""A one-stop-shop dossier's work dossier opens when the desk accepts the dossier and closes when
its matter ends; redeliveries change nothing and an end that arrives first still closes it. On
SQLite and on PostgreSQL (the opening is one statement of SQL written for both)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.servers import temporary_databases
from tests.services.document.conftest import DESK, PROVINCE, DocumentApi, document_api, dossier_received

CODE = "000.00.00.H56-261203-0042"
SUBMITTED_AT = "2026-12-03T02:00:00+00:00"
ACCEPTED_AT = "2026-12-03T03:00:00+00:00"
ENDED_AT = "2026-12-04T08:00:00+00:00"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DocumentApi]:
    with contextlib.ExitStack() as stack:
        overrides = {}
        if request.param == "postgresql":
            overrides["database_url"] = stack.enter_context(temporary_databases(["document"]))["document"]
        async with document_api(tmp_path, **overrides) as running:
            yield running


def received(status: int) -> dict[str, Any]:
    return dossier_received(CODE, status, received_at=datetime.fromisoformat(SUBMITTED_AT))


def step(action: str, from_status: int, status: int, **extra: Any) -> dict[str, Any]:
    return {
        "actor": DESK.model_dump(mode="json"),
        "code": CODE,
        "agency": PROVINCE,
        "procedure_code": "1.001193",
        "procedure_version": 1,
        "channel": "online",
        "owner": None,
        "action": action,
        "from_status": from_status,
        "status": status,
        "at": ENDED_AT if action != "accept" else ACCEPTED_AT,
        "due_at": None,
        **extra,
    }


async def work_files(api: DocumentApi) -> list[dict[str, Any]]:
    r = await api.client.get("/workfiles", params={"dossier_code": CODE}, headers=api.token("specialist"))
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def publish(api: DocumentApi, routing_key: str, data: dict[str, Any], event_id: str) -> None:
    """The in-process broker answers once every consumer has handled the event."""
    await api.publish(routing_key, data, event_id=event_id)


async def test_an_online_dossier_gets_its_work_dossier_when_the_desk_accepts_it(api: DocumentApi) -> None:
    await publish(api, "dossier.received", received(status=1), "e-1")
    assert await work_files(api) == []  # submitted, not accepted: no matter yet
    await publish(api, "dossier.accept", step("accept", 1, 2, accepted_at=ACCEPTED_AT), "e-2")
    await publish(api, "dossier.accept", step("accept", 1, 2, accepted_at=ACCEPTED_AT), "e-2")  # redelivered
    [wf] = await work_files(api)
    assert wf["status"] == "open" and wf["file_notation"] == "TTHC-261203-0042"
    assert datetime.fromisoformat(wf["opened_at"]) == datetime(2026, 12, 3, 3, tzinfo=UTC)
    [opened] = await api.events("workfile.opened")
    assert opened.data["actor"] == {
        "kind": "system",
        "sub": None,
        "name": None,
        "roles": [],
        "agency": None,
        "reason": f"dossier.accept {CODE}",
    }


async def test_a_desk_submission_opens_at_once(api: DocumentApi) -> None:
    await publish(api, "dossier.received", received(status=2), "e-1")
    [wf] = await work_files(api)
    assert wf["status"] == "open" and wf["file_catalog"] == 2026


async def test_a_refused_dossier_never_gets_one(api: DocumentApi) -> None:
    await publish(api, "dossier.received", received(status=1), "e-1")
    await publish(api, "dossier.refuse", step("refuse", 1, 3, reasons=["Thiếu giấy chứng sinh"]), "e-2")
    assert await work_files(api) == []
    assert await api.events("workfile.opened") == [] and await api.events("workfile.closed") == []


@pytest.mark.parametrize(
    ("routing_key", "data"),
    [
        ("dossier.withdraw", step("withdraw", 2, 7, reason="Không có nhu cầu")),
        ("dossier.stop", step("stop", 4, 8, reasons=["Có tranh chấp"])),
        ("dossier.return_result", step("return_result", 9, 10)),
    ],
)
async def test_the_work_dossier_closes_when_the_matter_ends(
    api: DocumentApi, routing_key: str, data: dict[str, Any]
) -> None:
    await publish(api, "dossier.received", received(status=2), "e-1")
    await publish(api, routing_key, data, "e-2")
    await publish(api, routing_key, data, "e-3")  # the same fact again under another id: no second close
    [wf] = await work_files(api)
    assert wf["status"] == "closed"
    assert datetime.fromisoformat(wf["closed_at"]) == datetime(2026, 12, 4, 8, tzinfo=UTC)
    [closed] = await api.events("workfile.closed")
    assert closed.data["actor"]["kind"] == "system" and closed.data["actor"]["reason"] == f"{routing_key} {CODE}"
    open_ = await api.client.get("/workfiles", params={"status": "open"}, headers=api.token("specialist"))
    assert open_.json()["items"] == []


async def test_an_end_that_arrives_before_the_opening_closes_it_at_once(api: DocumentApi) -> None:
    await publish(api, "dossier.withdraw", step("withdraw", 2, 7, reason=None), "e-2")
    assert await work_files(api) == []
    await publish(api, "dossier.accept", step("accept", 1, 2, accepted_at=ACCEPTED_AT), "e-1")
    [wf] = await work_files(api)
    assert wf["status"] == "closed"
    assert datetime.fromisoformat(wf["closed_at"]) == datetime(2026, 12, 4, 8, tzinfo=UTC)  # the end's time
    assert [e.data["id"] for e in await api.events("workfile.opened")] == [wf["id"]]
    assert [e.data["id"] for e in await api.events("workfile.closed")] == [wf["id"]]
    await publish(api, "dossier.received", received(status=2), "e-0")  # a late duplicate opening
    assert [w["status"] for w in await work_files(api)] == ["closed"]


async def test_a_newer_intakes_extra_field_is_passed_over_and_a_missing_one_refused(api: DocumentApi) -> None:
    """Document reads intake's model: a field it does not know yet (a newer intake's) changes
    nothing; a field the contract requires and the event lacks is refused at once, for good."""
    await publish(api, "dossier.received", {**received(status=2), "priority": "cao"}, "e-1")
    [wf] = await work_files(api)
    assert wf["status"] == "open"
    without_at = {k: v for k, v in step("withdraw", 2, 7, reason=None).items() if k != "at"}
    await publish(api, "dossier.withdraw", without_at, "e-2")
    [dead] = await api.broker.dead_letters("document")
    assert (dead.message_id, dead.deliveries) == ("e-2", 1)  # dead-lettered at its first delivery
    assert [w["status"] for w in await work_files(api)] == ["open"]  # and nothing closed
    assert await api.events("workfile.closed") == []
