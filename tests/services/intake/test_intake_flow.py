"""The main flow as a newcomer meets it (issue #12, intake's part): an issued result is never
dropped whatever the dossier's status, a manual finish takes no free text, a procedure is
received only at its own agencies, every event names who caused it, a receipt printed again
keeps the printed secret, days and booleans are what they say, and form 05 of a finished
dossier shows every hand-off, the due date and the result."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from services.intake import catalogue_seed as seed
from services.intake.models import Agency, CalendarOverrideRow, outbox
from services.intake.pdf_layout import vn_datetime
from shared import organ_id
from shared.events import REGISTRY, CloudEvent
from tests.services.intake.harness import PROVINCE, Intake, birth_registration, running_intake

SUPPLEMENT = {"missing_items": [{"name": "Giấy chứng sinh", "detail": "bản chính"}]}

# How to bring a fresh dossier to each status (user who submits, then the actions), as in the
# workflow tests; 9 and 10 are reached with another issued document first.
PATHS: dict[str, tuple[str, list[tuple[str, str, dict[str, Any]]]]] = {
    "1": ("citizen", []),
    "2": ("desk_officer", []),
    "3": ("citizen", [("desk_officer", "refuse", {"reasons": ["Sai thủ tục"]})]),
    "4": ("desk_officer", [("desk_officer", "start_processing", {})]),
    "5 from 1": ("citizen", [("desk_officer", "request_supplement", SUPPLEMENT)]),
    "5 from 2": ("desk_officer", [("desk_officer", "request_supplement", SUPPLEMENT)]),
    "5 from 4": (
        "desk_officer",
        [("desk_officer", "start_processing", {}), ("specialist", "request_supplement", SUPPLEMENT)],
    ),
    "6": ("desk_officer", [("desk_officer", "start_processing", {}), ("specialist", "request_fees", {})]),
    "7": ("desk_officer", [("desk_officer", "withdraw", {})]),
    "8": ("desk_officer", [("desk_officer", "start_processing", {}), ("leader", "stop", {"reasons": ["Dừng"]})]),
    "9": ("desk_officer", [("desk_officer", "start_processing", {}), ("document", "issue", {})]),
    "10": (
        "desk_officer",
        [
            ("desk_officer", "start_processing", {}),
            ("document", "issue", {}),
            ("desk_officer", "return_result", {}),
        ],
    ),
}
# What brings a dossier whose result waits to a status that takes it (None: nothing can).
LATER: dict[str, list[tuple[str, str]] | None] = {
    "1": [("desk_officer", "accept")],
    "5 from 1": [("desk_officer", "supplement_received"), ("desk_officer", "accept")],
    "5 from 2": [("desk_officer", "supplement_received")],
    "5 from 4": [("desk_officer", "supplement_received")],
    "6": [("desk_officer", "fees_paid")],
    "3": None,
    "7": None,
    "8": None,
    "9": None,
    "10": None,
}


async def _get(intake: Intake, code: str) -> dict[str, Any]:
    r = await intake.client.get(f"/dossiers/{code}", headers=intake.as_("desk_officer"))
    assert r.status_code == 200, r.text
    return r.json()


async def _history(intake: Intake, code: str) -> dict[str, Any]:
    r = await intake.client.get(f"/dossiers/{code}/history", headers=intake.as_("desk_officer"))
    assert r.status_code == 200, r.text
    return r.json()


async def _bring(intake: Intake, path: str, document_id: int) -> dict[str, Any]:
    submitter, steps = PATHS[path]
    dossier = await intake.submit(submitter)
    for user, action, body in steps:
        if user == "document":
            await intake.issue(dossier["code"], document_id + 50_000, "99/QĐ-UBND")
            continue
        r = await intake.act(user, dossier["code"], action, body)
        assert r.status_code == 200, (path, action, r.text)
    return await _get(intake, dossier["code"])


async def _pending_codes(intake: Intake) -> set[str]:
    r = await intake.client.get(
        "/dossiers", params={"has_pending_result": "true", "limit": 200}, headers=intake.as_("desk_officer")
    )
    assert r.status_code == 200, r.text
    return {d["code"] for d in r.json()["items"]}


async def test_an_issued_result_is_never_dropped_in_any_status(tmp_path: Path) -> None:
    async with running_intake(tmp_path) as intake:
        for i, path in enumerate(PATHS, start=1):
            before = await _bring(intake, path, i)
            code, status = before["code"], before["status"]
            await intake.issue(code, i, f"{i:02d}/QĐ-UBND")
            after = await _get(intake, code)
            history = await _history(intake, code)
            if status in (2, 4):
                # finished at once; from 2 through processing, both steps by the system
                assert after["status"] == 9, path
                assert after["result"]["number"] == f"{i:02d}/QĐ-UBND" and after["pending_results"] == []
                steps = [(e["action"], e["from_status"], e["to_status"]) for e in history["events"][-2:]]
                if status == 2:
                    assert steps == [("start_processing", 2, 4), ("finish", 4, 9)], path
                system_steps = [e for e in history["events"] if e["actor"] == "system"]
                assert len(system_steps) == (2 if status == 2 else 1)
                assert all(f"{i:02d}/QĐ-UBND" in e["details"]["reason"] for e in system_steps)
                assert code not in await _pending_codes(intake)
                continue
            # anything else: nothing moves, the result waits on the dossier and in the list
            assert after["status"] == status, path
            assert [p["number"] for p in after["pending_results"]] == [f"{i:02d}/QĐ-UBND"], path
            assert after["pending_results"][0]["document_id"] == i
            assert code in await _pending_codes(intake)
            assert history["events"] == (await _history(intake, code))["events"]
            # the same document issued again changes nothing
            await intake.issue(code, i, f"{i:02d}/QĐ-UBND")
            assert len((await _get(intake, code))["pending_results"]) == 1
            later = LATER[path]
            if later is None:
                continue
            for user, action in later:
                r = await intake.act(user, code, action)
                assert r.status_code == 200, (path, action, r.text)
            applied = r.json()
            assert applied["status"] == 9 and applied["pending_results"] == [], path
            assert applied["result"]["number"] == f"{i:02d}/QĐ-UBND"
            assert [e["actor"] for e in (await _history(intake, code))["events"]][-1] == "system"
            assert code not in await _pending_codes(intake)
        assert await intake.broker.dead_letters("intake") == []
        # the filter's other side, and a value that is no boolean
        waiting = await _pending_codes(intake)
        r = await intake.client.get(
            "/dossiers", params={"has_pending_result": "false", "limit": 200}, headers=intake.as_("desk_officer")
        )
        assert waiting and not waiting & {d["code"] for d in r.json()["items"]}
        bad = await intake.client.get(
            "/dossiers", params={"has_pending_result": "maybe"}, headers=intake.as_("desk_officer")
        )
        assert bad.status_code == 422


async def test_a_manual_finish_takes_only_an_issued_result(tmp_path: Path) -> None:
    async with running_intake(tmp_path) as intake:
        code = (await intake.submit("desk_officer"))["code"]
        await intake.act("desk_officer", code, "start_processing")
        before = await _get(intake, code)
        for body in (
            {"result": {"document_number": "12/GKS", "summary": "Đã cấp Giấy khai sinh"}},
            {"result": {"summary": "Đã cấp Giấy khai sinh"}},  # no number at all
        ):
            r = await intake.act("leader", code, "finish", body)
            assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
        r = await intake.act("leader", code, "finish", {"result": {"document_number": "12/GKS"}})
        assert r.json()["code"] == "result_not_issued"
        assert await _get(intake, code) == before
        # the issued document finishes it; naming it again is a conflict, not a second result
        await intake.issue(code, 12, "12/QĐ-UBND")
        assert (await _get(intake, code))["status"] == 9
        again = await intake.act("leader", code, "finish", {"result": {"document_number": "12/QĐ-UBND"}})
        assert again.status_code == 409


async def test_a_procedure_is_received_only_at_its_own_agencies(tmp_path: Path) -> None:
    # the demo agencies are one tree under the province, and every procedure's agency is in it
    codes = {a.code for a in seed.AGENCIES}
    for agency in seed.AGENCIES:
        chain, at = [agency.code], agency.code
        while (parent := organ_id.parent(at)) is not None:
            assert parent in codes, agency.code
            chain.append(parent)
            at = parent
        assert chain[-1] == PROVINCE
    assert {p.receiving_agency for p in seed.PROCEDURES} <= codes

    async with running_intake(tmp_path) as intake:
        catalogue = (await intake.client.get("/procedures")).json()
        assert {p["code"] for p in catalogue} == {p.code for p in seed.PROCEDURES}
        for procedure in catalogue:
            components = [{"no": c["no"]} for c in procedure["components"] if c["required"]]
            body = {**birth_registration(), "procedure_code": procedure["code"], "components": components}
            for agency in procedure["receiving_agencies"]:
                r = await intake.client.post(
                    "/dossiers", json={**body, "agency": agency}, headers=intake.as_("desk_officer")
                )
                assert r.status_code == 201, (procedure["code"], r.text)
            # anywhere else (the province above it, a department beside it): the same refusal
            for agency in {PROVINCE, "000.00.13.H56", "000.00.41.H56"} - set(procedure["receiving_agencies"]):
                r = await intake.client.post(
                    "/dossiers", json={**body, "agency": agency}, headers=intake.as_("desk_officer")
                )
                assert r.status_code == 422, (procedure["code"], agency, r.text)
                problem = r.json()
                assert problem["code"] == "procedure_not_received_here"
                assert problem["extra"]["receiving_agencies"] == procedure["receiving_agencies"]
        online = await intake.client.post(
            "/dossiers", json=birth_registration(files=True, agency=PROVINCE), headers=intake.as_("citizen")
        )
        assert online.status_code == 422 and online.json()["code"] == "procedure_not_received_here"
        listed = (await intake.client.get("/procedures", params={"agency": PROVINCE})).json()
        assert "1.001193" not in [p["code"] for p in listed]


def _intake_types() -> set[str]:
    return {key for key, (service_, _) in REGISTRY.items() if service_ == "intake"}


async def test_every_intake_event_names_its_actor(tmp_path: Path) -> None:
    async with running_intake(tmp_path) as intake:
        admin = intake.as_("admin")
        assert (
            await intake.client.put("/agencies/000.01.41.H56", json={"name": "Một cửa"}, headers=admin)
        ).status_code == 201
        birth = (await intake.client.get("/procedures/1.001193")).json()["current"]
        version = {
            k: birth[k] for k in ("name", "sector", "receiving_agencies", "deciding_agency", "cutoff", "online_level")
        }
        version.update(
            effective_from="2026-01-01",
            processing_hours="8",
            components=[
                {k: c[k] for k in ("name", "copies", "original_required", "required")} for c in birth["components"]
            ],
        )
        assert (
            await intake.client.post("/procedures/1.001193/versions", json=version, headers=admin)
        ).status_code == 201

        online = (await intake.submit("citizen"))["code"]
        await intake.act("desk_officer", online, "request_supplement", SUPPLEMENT)
        files = {"file": ("giay-chung-sinh.pdf", b"%PDF-1.4\nsupplement\n%%EOF\n", "application/pdf")}
        up = await intake.client.post(
            f"/dossiers/{online}/components/2/files", files=files, headers=intake.as_("citizen")
        )
        assert up.status_code == 201, up.text
        await intake.act("citizen", online, "supplement_received")
        await intake.act("desk_officer", online, "refuse", {"reasons": ["Không đủ điều kiện"]})

        desk = (await intake.submit("desk_officer"))["code"]
        await intake.act(
            "desk_officer", desk, "start_processing", {"to_whom": "Công chức hộ tịch", "allotted_hours": 4}
        )
        h = await intake.client.post(
            f"/dossiers/{desk}/handoffs", json={"to_whom": "Chủ tịch"}, headers=intake.as_("specialist")
        )
        assert h.status_code == 201
        ext = await intake.client.post(
            f"/dossiers/{desk}/extension",
            json={"new_due_at": "2099-01-05T17:30:00+07:00", "reason": "Cần xác minh"},
            headers=intake.as_("leader"),
        )
        assert ext.status_code == 200, ext.text
        await intake.act("specialist", desk, "request_fees", {"amount_vnd": 8000})
        await intake.act("desk_officer", desk, "fees_paid")
        await intake.issue(desk, 5)
        await intake.act("desk_officer", desk, "return_result")

        stopped = (await intake.submit("desk_officer"))["code"]
        await intake.act("desk_officer", stopped, "start_processing")
        await intake.act("leader", stopped, "stop", {"reasons": ["Dừng"]})
        withdrawn = (await intake.submit("desk_officer"))["code"]
        await intake.act("desk_officer", withdrawn, "withdraw")
        accepted = (await intake.submit("citizen"))["code"]
        await intake.act("desk_officer", accepted, "accept")

        async with intake.app.state.runtime.db.sessionmaker() as session:
            bodies = (await session.execute(select(outbox.table.c.body))).scalars().all()
        events = [CloudEvent.from_bytes(body) for body in bodies]
        seen = {e.type.removeprefix("vn.lienthong.").removesuffix(".v1") for e in events}
        assert seen == _intake_types()  # every kind of event intake emits was exercised
        assert all(e.data.get("actor") for e in events), [e.type for e in events if not e.data.get("actor")]
        by_type: dict[str, list[dict[str, Any]]] = {}
        for e in events:
            by_type.setdefault(e.type.split(".")[2] + "." + e.type.split(".")[3], []).append(e.data["actor"])
        assert {a["kind"] for a in by_type["agency.changed"]} == {"system", "user"}  # the demo seed, the admin
        assert [a["sub"] for a in by_type["dossier.files_added"]] == ["citizen"]
        assert by_type["dossier.finish"] == [
            {
                "kind": "system",
                "sub": None,
                "name": None,
                "roles": [],
                "agency": None,
                "reason": by_type["dossier.finish"][0]["reason"],
            }
        ]
        assert "05/QĐ-UBND" in by_type["dossier.finish"][0]["reason"]
        assert {a["sub"] for a in by_type["dossier.accept"]} == {"desk_officer"}
        assert (
            by_type["dossier.accept"][0]["roles"] == ["desk_officer"]
            and by_type["dossier.accept"][0]["agency"] == PROVINCE
        )


async def test_printing_the_receipt_again_keeps_the_printed_secret(tmp_path: Path) -> None:
    async with running_intake(tmp_path) as intake:
        code = (await intake.submit("citizen"))["code"]
        await intake.act("desk_officer", code, "accept")
        printed = await intake.client.post(f"/dossiers/{code}/receipt", headers=intake.as_("desk_officer"))
        assert printed.status_code == 200
        secret = printed.headers["lookup-secret"]

        async def looks_up(s: str) -> int:
            return (await intake.client.get("/lookup", params={"code": code, "secret": s})).status_code

        # the citizen prints it again at home: the desk's paper receipt (its QR code) still works
        reprinted = await intake.client.post(f"/dossiers/{code}/receipt", headers=intake.as_("citizen"))
        assert reprinted.status_code == 200 and reprinted.headers["lookup-secret"] == secret
        assert await looks_up(secret) == 200
        # a rotation only on purpose: by the desk, with a reason
        for user, params, expected in (
            ("citizen", {"rotate_secret": "true", "reason": "Tôi làm mất"}, 403),
            ("desk_officer", {"rotate_secret": "true"}, 422),
            ("desk_officer", {"reason": "không xoay"}, 422),
            ("desk_officer", {"rotate_secret": "maybe", "reason": "x"}, 422),
        ):
            r = await intake.client.post(f"/dossiers/{code}/receipt", params=params, headers=intake.as_(user))
            assert r.status_code == expected, (user, params, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
        assert await looks_up(secret) == 200
        assert "rotate_lookup_secret" not in [e["action"] for e in (await _history(intake, code))["events"]]
        rotated = await intake.client.post(
            f"/dossiers/{code}/receipt",
            params={"rotate_secret": "true", "reason": "Biên nhận bị người khác nhặt được"},
            headers=intake.as_("desk_officer"),
        )
        assert rotated.status_code == 200
        new = rotated.headers["lookup-secret"]
        assert new != secret and await looks_up(secret) == 404 and await looks_up(new) == 200
        entry = (await _history(intake, code))["events"][-1]
        assert entry["action"] == "rotate_lookup_secret" and entry["actor"] == "desk_officer"
        assert entry["details"]["reason"] == "Biên nhận bị người khác nhặt được"
        # and the citizen's next print shows the new one
        assert (await intake.client.post(f"/dossiers/{code}/receipt", headers=intake.as_("citizen"))).headers[
            "lookup-secret"
        ] == new


async def test_days_and_booleans_are_what_they_say(tmp_path: Path) -> None:
    async with running_intake(tmp_path) as intake:
        admin = intake.as_("admin")
        for day in ("0", "20260223", "2026-02-30", "1e3", "-1"):
            r = await intake.client.put(
                f"/calendar/overrides/{day}", json={"working": False, "reason": "x"}, headers=admin
            )
            assert r.status_code == 422, (day, r.text)
            assert (await intake.client.delete(f"/calendar/overrides/{day}", headers=admin)).status_code == 422
        for working in (0, 1, "false", "yes", None):
            r = await intake.client.put(
                "/calendar/overrides/2026-02-23", json={"working": working, "reason": "x"}, headers=admin
            )
            assert r.status_code == 422, (working, r.text)
        async with intake.app.state.runtime.db.sessionmaker() as session:
            assert (await session.execute(select(func.count()).select_from(CalendarOverrideRow))).scalar_one() == 0
        for params in ({"received_from": "0"}, {"received_to": "1700000000"}):
            r = await intake.client.get("/dossiers", params=params, headers=intake.as_("desk_officer"))
            assert r.status_code == 422, params
        ok = await intake.client.get(
            "/dossiers", params={"received_from": "2026-01-01"}, headers=intake.as_("desk_officer")
        )
        assert ok.status_code == 200

        for active in (0, 1, "false", "true", None):
            r = await intake.client.put(
                "/agencies/000.02.41.H56", json={"name": "Tổ một cửa", "active": active}, headers=admin
            )
            assert r.status_code == 422, (active, r.text)
        async with intake.app.state.runtime.db.sessionmaker() as session:
            assert await session.get(Agency, "000.02.41.H56") is None
        created = await intake.client.put(
            "/agencies/000.02.41.H56", json={"name": "Tổ một cửa", "active": True}, headers=admin
        )
        changed = await intake.client.put(
            "/agencies/000.02.41.H56", json={"name": "Tổ một cửa", "active": False}, headers=admin
        )
        assert (created.status_code, changed.status_code) == (201, 200)
        assert changed.json()["active"] is False
        documented = intake.app.openapi()["paths"]["/agencies/{code}"]["put"]["responses"]
        assert {"200", "201"} <= set(documented)


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext (poppler-utils) is not installed")
async def test_tracking_sheet_of_a_finished_dossier(tmp_path: Path) -> None:
    async with running_intake(tmp_path) as intake:
        code = (await intake.submit("desk_officer"))["code"]
        await intake.act(
            "desk_officer", code, "start_processing", {"to_whom": "Công chức tư pháp - hộ tịch", "allotted_hours": 4}
        )
        h = await intake.client.post(
            f"/dossiers/{code}/handoffs", json={"to_whom": "Chủ tịch UBND phường"}, headers=intake.as_("specialist")
        )
        assert h.status_code == 201
        await intake.issue(code, 15, "15/QĐ-UBND")
        await intake.act("desk_officer", code, "return_result")
        dossier = await _get(intake, code)
        r = await intake.client.get(f"/dossiers/{code}/forms/05", headers=intake.as_("desk_officer"))
        assert r.status_code == 200
        (tmp_path / "05.pdf").write_bytes(r.content)
        text = (
            await asyncio.to_thread(
                subprocess.run,
                ["pdftotext", "-layout", str(tmp_path / "05.pdf"), "-"],
                capture_output=True,
                text=True,
                check=True,
            )
        ).stdout
        flat = " ".join(text.split())
        handoffs = (await _history(intake, code))["handoffs"]
        assert [(s["from_whom"], s["to_whom"]) for s in handoffs] == [
            ("Lê Văn Tiếp", "Công chức tư pháp - hộ tịch"),
            ("Trần Thị Chuyên", "Chủ tịch UBND phường"),
            ("Chủ tịch UBND phường", "Bộ phận Tiếp nhận và Trả kết quả"),
        ]
        assert all(s["timeliness"] for s in handoffs)  # graded, also the step given no hours of its own
        for step in handoffs:
            for who in (step["from_whom"], step["to_whom"]):
                assert " ".join(who.split()[:2]) in flat, who
        assert flat.count("Trước hạn") >= 3  # every step took no working time: early
        from datetime import datetime

        assert vn_datetime(datetime.fromisoformat(dossier["due_at"])) in flat  # the due date
        assert "15/QĐ-UBND" in flat and "10/03/2026" in flat  # the result: number and date
        assert "Trả kết quả:" in flat


def test_contract_of_the_submission_lists_both_forms() -> None:
    from services.intake.app import create_app
    from services.intake.config import get_settings

    document = create_app(get_settings(demo=False)).openapi()
    body = document["paths"]["/dossiers"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/DossierSubmission"}
    assert "DossierSubmission" in document["components"]["schemas"]
    # the gateway enforces these at the edge: the dossier's total, not its generic upload limit
    settings = get_settings(demo=False)
    submission = document["paths"]["/dossiers"]["post"]["x-max-body-bytes"]
    upload = document["paths"]["/dossiers/{code}/components/{no}/files"]["post"]["x-max-body-bytes"]
    assert settings.max_dossier_bytes < upload <= submission < 2 * settings.max_dossier_bytes
    json.dumps(document)  # serialisable as it is served
