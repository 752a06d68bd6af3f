"""Every workflow action from every status through the HTTP API: the allowed ones move the
dossier and emit ``dossier.<action>``, the others are 409 problem+json and change nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from services.intake.models import outbox
from services.intake.workflow import Action, DossierStatus, TransitionNotAllowed, next_status
from tests.services.intake.harness import Intake, running_intake

# Who takes each action in these tests, and the body it needs.
ACTOR = {
    "accept": "desk_officer",
    "refuse": "desk_officer",
    "start_processing": "desk_officer",
    "request_supplement": "specialist",
    "supplement_received": "desk_officer",
    "request_fees": "specialist",
    "fees_paid": "desk_officer",
    "withdraw": "desk_officer",
    "stop": "leader",
    "finish": "leader",
    "return_result": "desk_officer",
}
BODY: dict[str, dict[str, Any]] = {
    "refuse": {"reasons": ["Giấy chứng sinh không hợp lệ"]},
    "request_supplement": {"missing_items": [{"name": "Giấy chứng sinh", "detail": "bản chính"}]},
    "stop": {"reasons": ["Người yêu cầu không bổ sung hồ sơ"]},
    # a manual finish names an issued document; this one was never issued (see _bring)
    "finish": {"result": {"summary": "Đã cấp Giấy khai sinh", "document_number": "12/GKS"}},
    "request_fees": {"amount_vnd": 8000},
}

# How to bring a fresh dossier to each status (and, for 5, from which status it was paused).
PATHS: dict[str, tuple[str, list[str]]] = {
    "1": ("citizen", []),
    "2": ("desk_officer", []),
    "3": ("citizen", ["refuse"]),
    "4": ("desk_officer", ["start_processing"]),
    "5 from 1": ("citizen", ["request_supplement"]),
    "5 from 2": ("desk_officer", ["request_supplement"]),
    "5 from 4": ("desk_officer", ["start_processing", "request_supplement"]),
    "6": ("desk_officer", ["start_processing", "request_fees"]),
    "7": ("desk_officer", ["withdraw"]),
    "8": ("desk_officer", ["start_processing", "stop"]),
    "9": ("desk_officer", ["start_processing", "finish"]),
    "10": ("desk_officer", ["start_processing", "finish", "return_result"]),
}


async def _bring(intake: Intake, path: str) -> dict[str, Any]:
    submitter, actions = PATHS[path]
    dossier = await intake.submit(submitter)
    await _answered_as_read(intake, dossier)
    for action in actions:
        if action == "finish":
            dossier = await _finish(intake, dossier["code"])
            continue
        r = await intake.act(ACTOR[action], dossier["code"], action, BODY.get(action))
        assert r.status_code == 200, (path, action, r.text)
        dossier = r.json()
        await _answered_as_read(intake, dossier)
    return dossier


async def _finish(intake: Intake, code: str) -> dict[str, Any]:
    """A result is a document issued for the dossier: it finishes the dossier by itself."""
    await intake.issue(code, abs(hash(code)) % 100_000)
    return (await intake.client.get(f"/dossiers/{code}", headers=intake.as_("desk_officer"))).json()


async def _answered_as_read(intake: Intake, answer: dict[str, Any]) -> None:
    """A submission or an action answers with the dossier exactly as reading it back shows it,
    alone and in a list (the answer is made from what was written, the reads from the rows)."""
    code = answer["code"]
    alone = await intake.client.get(f"/dossiers/{code}", headers=intake.as_("desk_officer"))
    listed = await intake.client.get("/dossiers", params={"limit": 1}, headers=intake.as_("desk_officer"))
    assert alone.json() == answer
    assert listed.json()["items"] == [answer]


async def _routing_keys(intake: Intake, code: str) -> list[str]:
    async with intake.app.state.runtime.db.sessionmaker() as session:
        rows = await session.execute(
            select(outbox.table.c.routing_key).where(outbox.table.c.aggregate == code).order_by(outbox.table.c.id)
        )
        return list(rows.scalars())


async def test_every_action_from_every_status(tmp_path: Path) -> None:
    allowed_seen = 0
    async with running_intake(tmp_path) as intake:
        for path in PATHS:
            probe = await _bring(intake, path)
            code = probe["code"]
            status = DossierStatus(probe["status"])
            paused_from = probe["paused_from"]
            for action in Action:
                try:
                    expected = next_status(status, action, paused_from=paused_from)
                except TransitionNotAllowed:
                    expected = None
                if expected is None:
                    before = (await intake.client.get(f"/dossiers/{code}", headers=intake.as_("desk_officer"))).json()
                    events_before = await _routing_keys(intake, code)
                    r = await intake.act(ACTOR[action], code, action, BODY.get(action))
                    assert r.status_code == 409, (path, action, r.text)
                    assert r.headers["content-type"].startswith("application/problem+json")
                    assert r.json()["extra"]["allowed_actions"] == probe["allowed_actions"]
                    after = (await intake.client.get(f"/dossiers/{code}", headers=intake.as_("desk_officer"))).json()
                    assert after == before, (path, action)
                    assert await _routing_keys(intake, code) == events_before
                    continue
                allowed_seen += 1
                fresh = await _bring(intake, path)
                assert str(action) in fresh["allowed_actions"]
                if action is Action.FINISH:
                    # free text is no result: 422, nothing changes; the issued document finishes it
                    keys_before = await _routing_keys(intake, fresh["code"])
                    r = await intake.act(ACTOR[action], fresh["code"], action, BODY.get(action))
                    assert r.status_code == 422 and r.json()["code"] == "result_not_issued", r.text
                    assert await _routing_keys(intake, fresh["code"]) == keys_before
                    assert (await _finish(intake, fresh["code"]))["status"] == expected
                    assert (await _routing_keys(intake, fresh["code"]))[-1] == f"dossier.{action}"
                    continue
                r = await intake.act(ACTOR[action], fresh["code"], action, BODY.get(action))
                assert r.status_code == 200, (path, action, r.text)
                assert r.json()["status"] == expected, (path, action)
                assert (await _routing_keys(intake, fresh["code"]))[-1] == f"dossier.{action}"
    # the 13 rows of workflow.TRANSITIONS, counted per starting point above
    assert allowed_seen == 25


async def test_clock_pauses_resumes_and_extension(tmp_path: Path) -> None:
    async with running_intake(tmp_path) as intake:
        dossier = await intake.submit("desk_officer")
        code = dossier["code"]
        first_due = dossier["due_at"]
        assert first_due is not None
        r = await intake.act(
            "desk_officer", code, "start_processing", {"to_whom": "Công chức tư pháp - hộ tịch", "allotted_hours": 6}
        )
        assert r.status_code == 200
        paused = (await intake.act("specialist", code, "request_supplement", BODY["request_supplement"])).json()
        assert paused["status"] == 5 and paused["due_at"] is None and paused["paused_from"] == 4
        supplement = {
            "components": [
                {
                    "no": 2,
                    "file": {
                        "filename": "giay-chung-sinh.pdf",
                        "content_type": "application/pdf",
                        "content_base64": "JVBERi0xLjQKJSVFT0YK",
                    },
                }
            ]
        }
        resumed = (await intake.act("desk_officer", code, "supplement_received", supplement)).json()
        assert resumed["status"] == 4 and resumed["due_at"] >= first_due
        assert [c["supplement"] for c in resumed["components"]] == [False, False, True]

        bad = await intake.client.post(
            f"/dossiers/{code}/extension",
            json={"new_due_at": "2020-01-01T08:00:00+07:00", "reason": "x"},
            headers=intake.as_("leader"),
        )
        assert bad.status_code == 422
        naive = await intake.client.post(
            f"/dossiers/{code}/extension",
            json={"new_due_at": "2099-01-01T08:00:00", "reason": "x"},
            headers=intake.as_("leader"),
        )
        assert naive.status_code == 422
        citizen = await intake.client.post(
            f"/dossiers/{code}/extension",
            json={"new_due_at": "2099-01-05T08:00:00+07:00", "reason": "x"},
            headers=intake.as_("citizen"),
        )
        assert citizen.status_code == 403
        ext = await intake.client.post(
            f"/dossiers/{code}/extension",
            json={"new_due_at": "2099-01-05T17:30:00+07:00", "reason": "Cần xác minh thông tin tại nơi sinh"},
            headers=intake.as_("leader"),
        )
        assert ext.status_code == 200, ext.text
        assert ext.json()["cause"] == "extended" and ext.json()["new_due_at"].startswith("2099-01-05T10:30")
        apology = await intake.client.get(f"/dossiers/{code}/forms/04", headers=intake.as_("desk_officer"))
        assert apology.status_code == 200 and apology.content.startswith(b"%PDF")

        history = (await intake.client.get(f"/dossiers/{code}/history", headers=intake.as_("specialist"))).json()
        assert [c["cause"] for c in history["due_date_changes"]] == ["accepted", "paused", "resumed", "extended"]
        assert history["due_date_changes"][-1]["reason"] == "Cần xác minh thông tin tại nơi sinh"

        # once the due date has passed, no extension: the apology must come before it
        async with intake.app.state.runtime.db.sessionmaker() as session:
            from datetime import UTC, datetime, timedelta

            from services.intake.models import Dossier

            row = (await session.execute(select(Dossier).where(Dossier.code == code))).scalar_one()
            row.due_at = datetime.now(UTC) - timedelta(hours=1)
            await session.commit()
        late = await intake.client.post(
            f"/dossiers/{code}/extension",
            json={"new_due_at": "2099-02-05T17:30:00+07:00", "reason": "muộn"},
            headers=intake.as_("leader"),
        )
        assert late.status_code == 409
        overdue = await intake.client.get("/dossiers", params={"overdue": "true"}, headers=intake.as_("specialist"))
        assert [d["code"] for d in overdue.json()["items"]] == [code]


async def test_tracking_sheet_and_forms(tmp_path: Path) -> None:
    async with running_intake(tmp_path) as intake:
        code = (await intake.submit("desk_officer"))["code"]
        assert (
            await intake.client.get(f"/dossiers/{code}/forms/02", headers=intake.as_("desk_officer"))
        ).status_code == 404
        await intake.act(
            "desk_officer", code, "start_processing", {"to_whom": "Công chức tư pháp - hộ tịch", "allotted_hours": 4}
        )
        h = await intake.client.post(
            f"/dossiers/{code}/handoffs",
            json={"to_whom": "Chủ tịch UBND phường", "allotted_hours": 2},
            headers=intake.as_("specialist"),
        )
        assert h.status_code == 201
        await intake.act("specialist", code, "request_supplement", BODY["request_supplement"])
        await intake.act("desk_officer", code, "supplement_received")
        await _finish(intake, code)
        history = (await intake.client.get(f"/dossiers/{code}/history", headers=intake.as_("leader"))).json()
        steps = history["handoffs"]
        assert [(s["from_whom"], s["to_whom"]) for s in steps] == [
            ("Lê Văn Tiếp", "Công chức tư pháp - hộ tịch"),
            ("Trần Thị Chuyên", "Chủ tịch UBND phường"),
            ("Chủ tịch UBND phường", "Bộ phận Tiếp nhận và Trả kết quả"),
        ]
        # every step took (almost) no working time against hours allotted: early; the last one,
        # the result handed to the desk, is graded as the whole dossier
        assert [s["timeliness"] for s in steps] == ["early", "early", "early"]
        assert all(s["completed_at"] for s in steps)
        for form in ("02", "05"):
            r = await intake.client.get(f"/dossiers/{code}/forms/{form}", headers=intake.as_("desk_officer"))
            assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
        refused = (await intake.submit("citizen"))["code"]
        await intake.act("desk_officer", refused, "refuse", BODY["refuse"])
        r = await intake.client.get(f"/dossiers/{refused}/forms/03", headers=intake.as_("citizen"))
        assert r.status_code == 200 and r.content.startswith(b"%PDF")
        assert (
            await intake.client.get(f"/dossiers/{refused}/forms/07", headers=intake.as_("citizen"))
        ).status_code == 422


@pytest.mark.parametrize(
    ("user", "action", "expected"),
    [
        ("citizen", "accept", 404),  # a desk dossier is not the citizen's to see
        ("clerk", "finish", 403),  # clerks register documents, not dossiers
        ("other_desk", "start_processing", 404),  # another province's desk does not see it
        ("other_specialist", "request_supplement", 404),
        ("citizen2", "withdraw", 404),  # not their dossier
        ("specialist", "return_result", 403),
        ("desk_officer", "fly_away", 404),
    ],
)
async def test_who_may_act(tmp_path: Path, user: str, action: str, expected: int) -> None:
    async with running_intake(tmp_path) as intake:
        code = (await intake.submit("desk_officer"))["code"]
        r = await intake.act(user, code, action, BODY.get(action))
        assert r.status_code == expected, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        after = (await intake.client.get(f"/dossiers/{code}", headers=intake.as_("desk_officer"))).json()
        assert after["status"] == 2


async def test_action_bodies_are_checked(tmp_path: Path) -> None:
    async with running_intake(tmp_path) as intake:
        code = (await intake.submit("citizen"))["code"]
        assert (await intake.act("citizen", code, "accept")).status_code == 403  # own, but not a desk officer
        assert (await intake.act("desk_officer", code, "refuse", {})).status_code == 422  # reasons
        assert (await intake.act("desk_officer", code, "accept", {"reasons": ["x"]})).status_code == 422
        assert (await intake.act("desk_officer", code, "accept", {"surprise": 1})).status_code == 422
        own = await intake.act("citizen", code, "withdraw", {"note": "Tôi nộp nhầm thủ tục"})
        assert own.status_code == 200 and own.json()["status"] == 7
