"""Intake through HTTP: catalogue and agencies, submission (files, idempotency, bad input leaves
nothing behind), the calendar endpoint, finding, the public look-up, indicators, and the
automatic finish from ``document.issued``."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from services.intake.models import Agency, Dossier, DossierComponent, ProcedureVersion
from tests.services.intake.harness import (
    PDF_BYTES,
    PNG_BYTES,
    PUBLIC_BASE,
    WARD,
    Intake,
    birth_registration,
    document_issued,
    pdf_file,
    running_intake,
)


async def _published(intake: Intake, type_suffix: str, want: int = 1, patience: float = 10) -> list[Any]:
    """Events the relay has published so far of one type (waiting until ``want`` arrive)."""
    deadline = asyncio.get_running_loop().time() + patience
    while True:
        found = [e for e in intake.published if e.type.endswith(type_suffix)]
        if len(found) >= want or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.05)


async def _count(intake: Intake, model: Any) -> int:
    async with intake.app.state.runtime.db.sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def test_catalogue_seed_versions_and_agencies(tmp_path: Path) -> None:
    async with running_intake(tmp_path) as intake:
        catalogue = (await intake.client.get("/procedures")).json()
        assert len(catalogue) >= 15 and len({p["sector"] for p in catalogue}) >= 5
        birth = (await intake.client.get("/procedures/1.001193")).json()["current"]
        assert birth["name"] == "Thủ tục đăng ký khai sinh" and birth["cutoff"] == "15:00"
        assert birth["codes_at_agencies"] == [f"1.001193.{WARD}"] and len(birth["components"]) == 2
        found = (await intake.client.get("/procedures", params={"q": "khai sinh", "agency": WARD})).json()
        assert "1.001193" in [p["code"] for p in found]
        agencies_before = await _count(intake, Agency)
        procedures_before = await _count(intake, ProcedureVersion)

        first = await intake.submit("desk_officer")
        assert first["procedure_version"] == 1 and first["due_at"]
        version2 = {
            **{
                k: birth[k]
                for k in (
                    "name",
                    "sector",
                    "receiving_agencies",
                    "deciding_agency",
                    "cutoff",
                    "fee_vnd",
                    "online_level",
                )
            },
            "effective_from": "2026-01-01",
            "processing_hours": "4",
            "components": [
                {k: c[k] for k in ("name", "copies", "original_required", "required")} for c in birth["components"]
            ],
        }
        assert (
            await intake.client.post("/procedures/1.001193/versions", json=version2, headers=intake.as_("desk_officer"))
        ).status_code == 403
        r = await intake.client.post("/procedures/1.001193/versions", json=version2, headers=intake.as_("admin"))
        assert r.status_code == 201, r.text
        assert r.json()["version"] == 2
        # a version may not take effect before the one it follows
        again = await intake.client.post("/procedures/1.001193/versions", json=version2, headers=intake.as_("admin"))
        assert again.status_code == 409
        second = await intake.submit("desk_officer")
        assert second["procedure_version"] == 2
        got = (await intake.client.get(f"/dossiers/{first['code']}", headers=intake.as_("desk_officer"))).json()
        assert got["procedure_version"] == 1  # kept the version it was received under

        # agencies: one source of truth, validated codes, parent from the code, agency.changed
        put = await intake.client.put(
            "/agencies/000.01.41.H56", json={"name": "Bộ phận một cửa phường Hạc Thành"}, headers=intake.as_("admin")
        )
        assert put.status_code == 201 and put.json()["parent_code"] == WARD
        orphan = await intake.client.put(
            "/agencies/000.03.77.H56", json={"name": "Mồ côi"}, headers=intake.as_("admin")
        )
        assert orphan.status_code == 422
        assert (
            await intake.client.put("/agencies/000.17.00.H56", json={"name": "x"}, headers=intake.as_("admin"))
        ).status_code == 422
        assert (
            await intake.client.put("/agencies/000.02.41.H56", json={"name": "x"}, headers=intake.as_("leader"))
        ).status_code == 403
        subtree = (await intake.client.get("/agencies", params={"under": WARD})).json()
        assert [a["code"] for a in subtree] == [WARD, "000.01.41.H56"]
        changed = await _published(intake, "agency.changed.v1", want=await _count(intake, Agency))
        assert "000.01.41.H56" in [e.data["code"] for e in changed]

    # the demo seed runs at every start and adds nothing the second time
    async with running_intake(tmp_path) as intake:
        assert await _count(intake, Agency) == agencies_before + 1
        assert await _count(intake, ProcedureVersion) == procedures_before + 1


async def test_submission_checks_and_nothing_stored_on_bad_input(tmp_path: Path) -> None:
    async with running_intake(tmp_path, max_file_bytes=4096) as intake:
        online = await intake.submit("citizen")
        assert online["status"] == 1 and online["channel"] == "online" and online["due_at"] is None
        assert all(c["digitised"] and c["content_type"] == "application/pdf" for c in online["components"])
        sha = online["components"][0]["sha256"]
        assert (tmp_path / "intake-blobs" / sha[:2] / sha[2:4] / sha).read_bytes() == PDF_BYTES + b"1"
        file = await intake.client.get(f"/dossiers/{online['code']}/files/{sha}", headers=intake.as_("citizen"))
        assert file.status_code == 200 and file.content == PDF_BYTES + b"1"
        desk = await intake.submit("desk_officer")
        assert desk["code"].startswith(f"{WARD}-") and desk["code"].endswith("-0002")
        dossiers, components = await _count(intake, Dossier), await _count(intake, DossierComponent)

        def body(**changes: Any) -> dict[str, Any]:
            return {**birth_registration(files=True), **changes}

        png_as_pdf = {
            "filename": "a.pdf",
            "content_type": "application/pdf",
            "content_base64": base64.b64encode(PNG_BYTES).decode(),
        }
        cases = [
            ("citizen", body(procedure_code="9.999999"), 422),  # unknown procedure
            ("citizen", body(components=[{"no": 1, "file": pdf_file()}]), 422),  # missing required component
            ("citizen", body(components=[{"no": 1}, {"no": 2}]), 422),  # online without files
            ("citizen", body(components=[{"no": 1, "file": pdf_file()}, {"no": 3, "file": pdf_file()}]), 422),
            ("citizen", body(agency="000.00.11.H56"), 422),  # Sở Tư pháp does not receive khai sinh
            ("citizen", body(agency="000.00.99.H56"), 422),  # no such agency
            ("other_desk", birth_registration(), 403),  # another province's desk
            (
                "citizen",
                body(components=[{"no": 1, "file": pdf_file(PDF_BYTES + b"x" * 5000)}, {"no": 2, "file": pdf_file()}]),
                413,
            ),
            ("citizen", body(components=[{"no": 1, "file": png_as_pdf}, {"no": 2, "file": pdf_file()}]), 415),
            (
                "citizen",
                body(components=[{"no": 1, "file": pdf_file(b"plain text, not a PDF")}, {"no": 2, "file": pdf_file()}]),
                415,
            ),
            (
                "citizen",
                body(
                    components=[
                        {"no": 1, "file": {**pdf_file(), "content_base64": "@@@"}},
                        {"no": 2, "file": pdf_file()},
                    ]
                ),
                422,
            ),
            ("citizen", body(procedure_code="1.001193.000.00.42.H56"), 422),  # code at another agency
            ("specialist", birth_registration(), 403),
        ]
        for user, payload, expected in cases:
            r = await intake.client.post("/dossiers", json=payload, headers=intake.as_(user))
            assert r.status_code == expected, (payload.get("agency"), r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
        assert (await _count(intake, Dossier), await _count(intake, DossierComponent)) == (dossiers, components)
        third = await intake.submit("desk_officer")
        assert third["code"].endswith("-0003")  # refused attempts took no number
        at_agency = await intake.submit("desk_officer", {**birth_registration(), "procedure_code": f"1.001193.{WARD}"})
        assert at_agency["procedure_code"] == "1.001193"


async def test_idempotent_submission(tmp_path: Path) -> None:
    async with running_intake(tmp_path) as intake:
        body = birth_registration(files=True)
        headers = intake.as_("citizen", **{"Idempotency-Key": "portal-7f3a"})
        first = await intake.client.post("/dossiers", json=body, headers=headers)
        replay = await intake.client.post("/dossiers", json=body, headers=headers)
        # a replay answers what the first request was answered: a client retrying after a lost
        # answer cannot tell them apart but by the header
        assert first.status_code == 201 and replay.status_code == 201
        assert replay.json() == first.json() and replay.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        other = await intake.client.post(
            "/dossiers", json={**body, "applicant": {"full_name": "Người khác"}}, headers=headers
        )
        assert other.status_code == 409 and other.headers["content-type"].startswith("application/problem+json")
        # the files are the body too: another file, or the same two files swapped, is another body
        files = [c["file"] for c in body["components"]]
        for changed in ([pdf_file(PDF_BYTES + b"other"), files[1]], files[::-1]):
            components = [{**c, "file": f} for c, f in zip(body["components"], changed, strict=True)]
            r = await intake.client.post("/dossiers", json={**body, "components": components}, headers=headers)
            assert r.status_code == 409, r.text
        # the key is the caller's: another account may use the same string
        theirs = await intake.client.post(
            "/dossiers", json=body, headers=intake.as_("citizen2", **{"Idempotency-Key": "portal-7f3a"})
        )
        assert theirs.status_code == 201 and theirs.json()["code"] != first.json()["code"]
        assert await _count(intake, Dossier) == 2
        # concurrent retries of one request make one dossier
        key = intake.as_("citizen", **{"Idempotency-Key": "burst"})
        burst = await asyncio.gather(*[intake.client.post("/dossiers", json=body, headers=key) for _ in range(5)])
        assert [r.status_code for r in burst] == [201] * 5
        assert sorted(r.headers.get("idempotent-replayed", "") for r in burst) == ["", "true", "true", "true", "true"]
        assert len({r.json()["code"] for r in burst}) == 1


async def test_calendar_endpoint_and_overrides(tmp_path: Path) -> None:
    async with running_intake(tmp_path) as intake:

        async def due(**params: str) -> Any:
            r = await intake.client.get("/calendar/due", params=params)
            assert r.status_code == 200, r.text
            return r.json()["due_at"]

        # Friday before Tết 2026 (16–20/2 off): 5.5 h that Friday, 2.5 h on Monday 23/2
        assert await due(accepted_at="2026-02-13T10:00:00+07:00", hours="8") == "2026-02-23T10:00:00+07:00"
        # khai sinh: after the 15:00 cut-off the clock starts the next working day
        assert await due(accepted_at="2026-03-10T15:30:00+07:00", procedure="1.001193") == "2026-03-11T17:30:00+07:00"
        # Hùng Kings' day observed Monday 27/4/2026, then 30/4 and 1/5
        assert await due(accepted_at="2026-04-24T07:30:00+07:00", hours="24") == "2026-04-29T17:30:00+07:00"
        # a closed pause moves it, an open one leaves it unknown
        assert (
            await due(
                accepted_at="2026-03-10T07:30:00+07:00",
                hours="8",
                pauses="2026-03-10T09:30:00+07:00/2026-03-11T09:30:00+07:00",
            )
            == "2026-03-11T17:30:00+07:00"
        )
        assert (
            await due(accepted_at="2026-03-10T07:30:00+07:00", hours="8", pauses="2026-03-10T09:30:00+07:00/") is None
        )
        for bad in (
            {"accepted_at": "2026-03-10T07:30:00", "hours": "8"},
            {"accepted_at": "x", "hours": "8"},
            {"accepted_at": "2026-03-10T07:30:00+07:00"},
            {"accepted_at": "2026-03-10T07:30:00+07:00", "hours": "8", "procedure": "1.001193"},
            {"accepted_at": "2026-03-10T07:30:00+07:00", "hours": "8", "pauses": "nonsense"},
            {"accepted_at": "2026-03-10T07:30:00+07:00", "hours": "-1"},
            {"accepted_at": "2026-03-10T07:30:00+07:00", "hourz": "8"},
        ):
            r = await intake.client.get("/calendar/due", params=bad)
            assert r.status_code in (400, 422), (bad, r.text)
        assert (
            await intake.client.get(
                "/calendar/due", params={"accepted_at": "2026-03-10T07:30:00+07:00", "procedure": "9.999999"}
            )
        ).status_code == 404

        # an administrator's extra day off on Monday 23/2 moves the Tết example by a day
        r = await intake.client.put(
            "/calendar/overrides/2026-02-23",
            json={"working": False, "reason": "Nghỉ bù theo thông báo của UBND tỉnh"},
            headers=intake.as_("admin"),
        )
        assert r.status_code == 200
        assert (
            await intake.client.put(
                "/calendar/overrides/2026-02-24",
                json={"working": False, "reason": "x"},
                headers=intake.as_("desk_officer"),
            )
        ).status_code == 403
        assert await due(accepted_at="2026-02-13T10:00:00+07:00", hours="8") == "2026-02-24T10:00:00+07:00"
        year = (await intake.client.get("/calendar/2026")).json()
        assert "2026-02-23" in [d["day"] for d in year["days_off"]] and "2026-04-27" in [
            d["day"] for d in year["days_off"]
        ]
        assert (
            await intake.client.delete("/calendar/overrides/2026-02-23", headers=intake.as_("admin"))
        ).status_code == 204
        assert await due(accepted_at="2026-02-13T10:00:00+07:00", hours="8") == "2026-02-23T10:00:00+07:00"


async def test_finding_dossiers(tmp_path: Path) -> None:
    async with running_intake(tmp_path) as intake:
        mine = [
            await intake.submit("citizen", birth_registration(files=True, name=n))
            for n in ("Nguyễn Thị Hồng Nhung", "Đặng Văn Đức")
        ]
        theirs = await intake.submit("citizen2", birth_registration(files=True, name="Lê Văn Hai"))
        desk = [await intake.submit("desk_officer", birth_registration(name=f"Trần Văn Số {i}")) for i in range(3)]

        async def codes(user: str, **params: Any) -> list[str]:
            r = await intake.client.get("/dossiers", params=params, headers=intake.as_(user))
            assert r.status_code == 200, r.text
            return [d["code"] for d in r.json()["items"]]

        assert await codes("citizen") == [d["code"] for d in reversed(mine)]
        assert await codes("citizen2") == [theirs["code"]]
        everything = await codes("specialist")
        assert len(everything) == 6
        assert await codes("other_specialist") == []
        assert set(await codes("specialist", status=[1])) == {d["code"] for d in [*mine, theirs]}
        assert await codes("desk_officer", applicant="dang van duc") == [mine[1]["code"]]
        assert await codes("desk_officer", applicant="NGUYỄN hồng") == [mine[0]["code"]]
        assert await codes("desk_officer", procedure="1.000894") == []
        assert len(await codes("desk_officer", agency=WARD, received_from="2000-01-01")) == 6
        assert await codes("desk_officer", received_to="2000-01-01") == []
        # cursor pagination: every dossier once, newest first
        pages, cursor = [], None
        while True:
            params: dict[str, Any] = {"limit": 4, **({"cursor": cursor} if cursor else {})}
            page = (await intake.client.get("/dossiers", params=params, headers=intake.as_("specialist"))).json()
            pages.append([d["code"] for d in page["items"]])
            cursor = page["next"]
            if not cursor:
                break
        assert [len(p) for p in pages] == [4, 2] and sum(pages, []) == everything
        # a page shows each dossier as its own page does, components included
        listed = (await intake.client.get("/dossiers", headers=intake.as_("specialist"))).json()["items"]
        alone = [
            (await intake.client.get(f"/dossiers/{d['code']}", headers=intake.as_("specialist"))).json() for d in listed
        ]
        assert listed == alone
        assert [len(d["components"]) for d in listed] == [2] * 6
        assert sum(c["digitised"] for d in listed for c in d["components"]) == 6
        for params in ({"cursor": "garbage"}, {"stauts": 1}, {"status": 11}, {"limit": 0}):
            r = await intake.client.get("/dossiers", params=params, headers=intake.as_("specialist"))
            assert r.status_code in (400, 422), params
        assert (
            await intake.client.get("/dossiers", params={"agency": "000.00.00.H41"}, headers=intake.as_("specialist"))
        ).status_code == 403
        assert (
            await intake.client.get(f"/dossiers/{desk[0]['code']}", headers=intake.as_("citizen"))
        ).status_code == 404
        assert (
            await intake.client.get(f"/dossiers/{mine[0]['code']}", headers=intake.as_("citizen2"))
        ).status_code == 404
        assert (await intake.client.get("/dossiers")).status_code == 401


async def test_public_lookup_reveals_little_and_cannot_enumerate(tmp_path: Path) -> None:
    async with running_intake(tmp_path) as intake:
        code = (await intake.submit("desk_officer"))["code"]
        receipt = await intake.client.post(f"/dossiers/{code}/receipt", headers=intake.as_("desk_officer"))
        assert receipt.status_code == 200 and receipt.content.startswith(b"%PDF")
        secret = receipt.headers["lookup-secret"]
        assert len(secret) == 10
        found = await intake.client.get("/lookup", params={"code": code, "secret": secret})
        assert found.status_code == 200
        assert set(found.json()) == {
            "code",
            "status",
            "status_label",
            "received_at",
            "accepted_at",
            "due_at",
            "finished_at",
            "returned_at",
        }
        assert found.json()["status"] == 2

        def comparable(r: Any) -> dict[str, Any]:
            body = r.json()
            body.pop("request_id", None)
            return {"status": r.status_code, **body}

        wrong_secret = await intake.client.get("/lookup", params={"code": code, "secret": "AAAAAAAAAA"})
        wrong_code = await intake.client.get("/lookup", params={"code": code[:-1] + "9", "secret": secret})
        no_receipt = await intake.client.get(
            "/lookup", params={"code": (await intake.submit("desk_officer"))["code"], "secret": secret}
        )
        assert comparable(wrong_secret) == comparable(wrong_code) == comparable(no_receipt)
        assert wrong_secret.status_code == 404
        # printing the receipt again shows the same secret; only a rotation on purpose replaces it
        again = await intake.client.post(f"/dossiers/{code}/receipt", headers=intake.as_("desk_officer"))
        assert again.headers["lookup-secret"] == secret
        rotated = await intake.client.post(
            f"/dossiers/{code}/receipt",
            params={"rotate_secret": "true", "reason": "Biên nhận bị mất"},
            headers=intake.as_("desk_officer"),
        )
        assert rotated.status_code == 200 and rotated.headers["lookup-secret"] != secret
        assert (await intake.client.get("/lookup", params={"code": code, "secret": secret})).status_code == 404
        assert (
            await intake.client.get(
                "/lookup", params={"code": code, "secret": rotated.headers["lookup-secret"].lower()}
            )
        ).status_code == 200
        assert (await intake.client.post(f"/dossiers/{code}/receipt", headers=intake.as_("citizen"))).status_code == 404
        online = (await intake.submit("citizen"))["code"]
        assert (
            await intake.client.post(f"/dossiers/{online}/receipt", headers=intake.as_("citizen"))
        ).status_code == 409  # not accepted yet


async def test_receipt_qr_points_to_public_lookup(tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("pdftotext") is None:
        return
    async with running_intake(tmp_path) as intake:
        code = (await intake.submit("desk_officer"))["code"]
        receipt = await intake.client.post(f"/dossiers/{code}/receipt", headers=intake.as_("desk_officer"))
        pdf = tmp_path / "receipt.pdf"
        pdf.write_bytes(receipt.content)
        text = (
            await asyncio.to_thread(
                subprocess.run, ["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True
            )
        ).stdout
        assert code in text and receipt.headers["lookup-secret"] in text
        assert "Thủ tục đăng ký khai sinh" in text and "Lê Văn Tiếp" in text
        assert f"{PUBLIC_BASE}/tra-cuu?code=" in text.replace("\n", "")


async def test_result_from_document_issued(tmp_path: Path) -> None:
    async with running_intake(tmp_path) as intake:
        code = (await intake.submit("desk_officer"))["code"]
        waiting = (await intake.submit("desk_officer"))["code"]
        await intake.act(
            "desk_officer", code, "start_processing", {"to_whom": "Công chức hộ tịch", "allotted_hours": 6}
        )
        data = {**document_issued(code, 41, "05/QĐ-UBND"), "agency": WARD, "unknown_extra": True}
        event = await intake.publish("document.issued", data)
        got = (await intake.client.get(f"/dossiers/{code}", headers=intake.as_("desk_officer"))).json()
        assert got["status"] == 9 and got["finished_on_time"] is True
        assert got["result"]["number"] == "05/QĐ-UBND" and got["result"]["document_id"] == 41
        assert got["result"]["download_path"] == "/api/document/documents/41/content"
        # redelivery of the same event, and a second event for the same document: no change
        await intake.publish("document.issued", data, event_id=event.id)
        await intake.publish("document.issued", data)
        history = (await intake.client.get(f"/dossiers/{code}/history", headers=intake.as_("desk_officer"))).json()
        assert [e["action"] for e in history["events"]].count("finish") == 1
        assert history["handoffs"][0]["completed_at"] is not None
        # accepted, not yet in processing: through processing to finished by itself; an unknown
        # dossier and none at all: logged, acknowledged, ignored
        await intake.publish("document.issued", {**data, "id": 42, "dossier_code": waiting})
        await intake.publish("document.issued", {**data, "id": 43, "dossier_code": "000.00.41.H56-990101-0001"})
        await intake.publish("document.issued", {**data, "id": 44, "dossier_code": None})
        assert (await intake.client.get(f"/dossiers/{waiting}", headers=intake.as_("desk_officer"))).json()[
            "status"
        ] == 9
        assert await intake.broker.dead_letters("intake") == []
        finished = await _published(intake, "dossier.finish.v1", want=2)
        assert [e.subject for e in finished] == [code, waiting]
        assert finished[0].data["result"]["number"] == "05/QĐ-UBND"
        assert "full_name" not in str(finished[0].data)


async def test_indicators(tmp_path: Path) -> None:
    async with running_intake(tmp_path) as intake:
        online = await intake.submit("citizen")
        desk = await intake.submit("desk_officer")
        late = await intake.submit("desk_officer", birth_registration(files=True))
        await intake.act("desk_officer", desk["code"], "start_processing")
        await intake.issue(desk["code"], 7)
        async with intake.app.state.runtime.db.sessionmaker() as session:
            from datetime import UTC, datetime, timedelta

            row = (await session.execute(select(Dossier).where(Dossier.code == late["code"]))).scalar_one()
            row.due_at = datetime.now(UTC) - timedelta(minutes=5)
            await session.commit()
        r = await intake.client.get("/indicators", headers=intake.as_("leader"))
        assert r.status_code == 200, r.text
        got = r.json()
        assert (
            got["received"],
            got["received_online"],
            got["finished_on_time"],
            got["finished_late"],
            got["overdue_now"],
        ) == (3, 1, 1, 0, 1)
        assert got["online_share"] == round(1 / 3, 4)
        assert got["components_total"] == 6 and got["components_digitised"] == 4
        assert got["weights"]["digitisation"] == 22
        assert online["code"]
        csv_text = (
            await intake.client.get("/indicators", params={"format": "csv"}, headers=intake.as_("auditor"))
        ).text
        rows = dict(csv.reader(io.StringIO(csv_text)))
        assert rows["received"] == "3" and rows["weight_progress"] == "20"
        assert (await intake.client.get("/indicators", headers=intake.as_("desk_officer"))).status_code == 403
        assert (
            await intake.client.get("/indicators", params={"agency": "000.00.00.H41"}, headers=intake.as_("leader"))
        ).status_code == 403

        # the province and each of its units in one answer, each as asked one by one
        by_agency = await intake.client.get("/indicators/by-agency", headers=intake.as_("leader"))
        assert by_agency.status_code == 200, by_agency.text
        items = by_agency.json()["items"]
        assert items[0] == got
        units = [i["agency"] for i in items[1:]]
        assert WARD in units and units == sorted(units) and len(units) > 1
        one_by_one = await intake.client.get("/indicators", params={"agency": WARD}, headers=intake.as_("leader"))
        assert items[1 + units.index(WARD)] == one_by_one.json() and one_by_one.json()["received"] == 3
        assert all(i["received"] == 0 for i in items[1:] if i["agency"] != WARD)
        for params, status in (
            ({"agency": "000.00.00.H41"}, 403),
            ({"agency": "khong-phai"}, 422),
            ({"from": "2026-02-01", "to": "2026-01-01"}, 400),
            ({"group": "x"}, 400),
        ):
            refused = await intake.client.get("/indicators/by-agency", params=params, headers=intake.as_("leader"))
            assert refused.status_code == status, (params, refused.text)
        refused = await intake.client.get("/indicators/by-agency", headers=intake.as_("desk_officer"))
        assert refused.status_code == 403
