"""Files by ``multipart/form-data``: a submission with a 15 MB scan, files added to a component
later, Idempotency-Key on a multipart body, and every kind of bad part refused with 4xx
problem+json leaving nothing stored (no dossier, no component, no blob, nothing staged)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from services.intake.models import Dossier, DossierComponent
from tests.services.intake.harness import PDF_BYTES, PNG_BYTES, Intake, birth_registration, running_intake

MB = 1024 * 1024
SCAN = b"%PDF-1.4\n" + b"0" * (15 * MB) + b"\n%%EOF\n"  # a 15 MB scan


def dossier_json(**changes: Any) -> str:
    body = {**birth_registration(), **changes}
    body["components"] = changes.get("components", [{"no": 1}, {"no": 2}])
    return json.dumps(body, ensure_ascii=False)


def multipart(parts: list[tuple[bytes, bytes]], boundary: str = "lienthong-boundary") -> tuple[bytes, dict[str, str]]:
    """A multipart body written by hand (headers, content) per part, so that a test can send
    what no well-behaved client would (a part without a name)."""
    out = b""
    for headers, content in parts:
        out += f"--{boundary}\r\n".encode() + headers + b"\r\n\r\n" + content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def field(name: str, value: str) -> tuple[bytes, bytes]:
    return f'Content-Disposition: form-data; name="{name}"'.encode(), value.encode()


def file(
    name: str, content: bytes, filename: str = "scan.pdf", content_type: str = "application/pdf"
) -> tuple[bytes, bytes]:
    headers = f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\nContent-Type: {content_type}'
    return headers.encode(), content


def stored_files(root: Path) -> set[Path]:
    blobs = root / "intake-blobs"
    return {p for p in blobs.rglob("*") if p.is_file()} if blobs.exists() else set()


async def counts(intake: Intake) -> tuple[int, int]:
    async with intake.app.state.runtime.db.sessionmaker() as session:
        dossiers = (await session.execute(select(func.count()).select_from(Dossier))).scalar_one()
        components = (await session.execute(select(func.count()).select_from(DossierComponent))).scalar_one()
        return int(dossiers), int(components)


async def test_a_15_mb_scan_goes_through_as_multipart(tmp_path: Path) -> None:
    async with running_intake(tmp_path) as intake:
        second = PDF_BYTES + b"giay chung sinh"
        r = await intake.client.post(
            "/dossiers",
            files=[
                ("dossier", (None, dossier_json(), "application/json")),
                ("component-1", ("to-khai.pdf", SCAN, "application/pdf")),
                ("component-2", ("giay-chung-sinh.pdf", second, "application/pdf")),
                ("component-2", ("trang-2.png", PNG_BYTES, "image/png")),  # a component of two files
            ],
            headers=intake.as_("citizen"),
        )
        assert r.status_code == 201, r.text
        dossier = r.json()
        assert dossier["status"] == 1 and dossier["channel"] == "online"
        got = [(c["no"], c["size"], c["content_type"], c["filename"]) for c in dossier["components"]]
        assert got == [
            (1, len(SCAN), "application/pdf", "to-khai.pdf"),
            (2, len(second), "application/pdf", "giay-chung-sinh.pdf"),
            (2, len(PNG_BYTES), "image/png", "trang-2.png"),
        ]
        sha = dossier["components"][0]["sha256"]
        assert sha == hashlib.sha256(SCAN).hexdigest()
        assert (tmp_path / "intake-blobs" / sha[:2] / sha[2:4] / sha).read_bytes() == SCAN
        back = await intake.client.get(f"/dossiers/{dossier['code']}/files/{sha}", headers=intake.as_("citizen"))
        assert back.content == SCAN
        assert not list((tmp_path / "intake-blobs" / ".incoming").iterdir())  # nothing left staged
        assert (
            dossier == (await intake.client.get(f"/dossiers/{dossier['code']}", headers=intake.as_("citizen"))).json()
        )
        # a desk officer may send the paper-only components without parts, and some with
        r = await intake.client.post(
            "/dossiers",
            files=[
                ("dossier", (None, dossier_json(), "application/json")),
                ("component-1", ("a.pdf", second, "application/pdf")),
            ],
            headers=intake.as_("desk_officer"),
        )
        assert r.status_code == 201, r.text
        assert [c["digitised"] for c in r.json()["components"]] == [True, False]


async def test_bad_parts_are_refused_and_leave_nothing_behind(tmp_path: Path) -> None:
    async with running_intake(tmp_path, max_file_bytes=64 * 1024, max_dossier_bytes=100 * 1024) as intake:
        await intake.submit("citizen")  # something stored already, which must stay as it is
        before_rows, before_files = await counts(intake), stored_files(tmp_path)
        good = [
            field("dossier", dossier_json()),
            file("component-1", PDF_BYTES + b"1"),
            file("component-2", PDF_BYTES + b"2"),
        ]
        big = PDF_BYTES + b"x" * (65 * 1024)
        half = PDF_BYTES + b"y" * (60 * 1024)
        cases: list[tuple[str, list[tuple[bytes, bytes]], int]] = [
            ("a part without a name", [*good, (b"Content-Disposition: form-data", b"x")], 422),
            ("a part without a disposition", [*good, (b"Content-Type: text/plain", b"x")], 422),
            ("a file over the limit", [good[0], file("component-1", big), good[2]], 413),
            ("files over the dossier's total", [good[0], file("component-1", half), file("component-2", half)], 413),
            ("a type that lies", [good[0], file("component-1", PNG_BYTES), good[2]], 415),
            (
                "a type not accepted",
                [good[0], file("component-1", b"plain text, not a scan", content_type="text/plain"), good[2]],
                415,
            ),
            ("an empty file", [good[0], file("component-1", b""), good[2]], 422),
            ("an unknown component", [*good, file("component-9", PDF_BYTES + b"9")], 422),
            ("an unknown part", [*good, field("note", "x")], 422),
            (
                "a file part without a filename",
                [good[0], (b'Content-Disposition: form-data; name="component-1"', PDF_BYTES), good[2]],
                422,
            ),
            ("a missing dossier part", good[1:], 422),
            ("the dossier part twice", [good[0], *good], 422),
            ("a dossier part that is not JSON", [field("dossier", "{not json"), *good[1:]], 400),
            ("a dossier part that is no submission", [field("dossier", '{"agency": "x"}'), *good[1:]], 422),
            (
                "a file in base64 and as a part",
                [field("dossier", json.dumps(birth_registration(files=True))), *good[1:]],
                422,
            ),
            ("an online submission missing a file", [good[0], good[1]], 422),
        ]
        for what, parts, expected in cases:
            body, headers = multipart(parts)
            r = await intake.client.post("/dossiers", content=body, headers={**intake.as_("citizen"), **headers})
            assert r.status_code == expected, (what, r.text)
            assert r.headers["content-type"].startswith("application/problem+json"), what
            assert (await counts(intake), stored_files(tmp_path)) == (before_rows, before_files), what
        # a body cut short, and a multipart without its boundary
        body, headers = multipart(good)
        r = await intake.client.post(
            "/dossiers", content=body[: len(body) // 2], headers={**intake.as_("citizen"), **headers}
        )
        assert r.status_code == 400, r.text
        r = await intake.client.post(
            "/dossiers", content=body, headers={**intake.as_("citizen"), "Content-Type": "multipart/form-data"}
        )
        assert r.status_code == 400, r.text
        r = await intake.client.post(
            "/dossiers", content=b"<xml/>", headers={**intake.as_("citizen"), "Content-Type": "application/xml"}
        )
        assert r.status_code == 415, r.text
        assert (await counts(intake), stored_files(tmp_path)) == (before_rows, before_files)
        # the good one goes through
        body, headers = multipart(good)
        r = await intake.client.post("/dossiers", content=body, headers={**intake.as_("citizen"), **headers})
        assert r.status_code == 201, r.text


async def test_idempotency_key_on_a_multipart_submission(tmp_path: Path) -> None:
    async with running_intake(tmp_path) as intake:
        parts = [
            field("dossier", dossier_json()),
            file("component-1", PDF_BYTES + b"1"),
            file("component-2", PDF_BYTES + b"2"),
        ]
        body, headers = multipart(parts)
        key = {**intake.as_("citizen"), **headers, "Idempotency-Key": "portal-multipart-1"}
        first = await intake.client.post("/dossiers", content=body, headers=key)
        replay = await intake.client.post("/dossiers", content=body, headers=key)
        # a replay answers exactly as the first time did (201), and says it is one
        assert (first.status_code, replay.status_code) == (201, 201)
        assert replay.json() == first.json() and replay.headers["idempotent-replayed"] == "true"
        # another file under the same key is another body
        other, _ = multipart([parts[0], file("component-1", PDF_BYTES + b"other"), parts[2]])
        r = await intake.client.post("/dossiers", content=other, headers=key)
        assert r.status_code == 409, r.text
        assert (await counts(intake))[0] == 1


async def test_files_added_to_a_component_later(tmp_path: Path) -> None:
    async with running_intake(tmp_path, max_file_bytes=64 * 1024, max_dossier_bytes=96 * 1024) as intake:
        dossier = await intake.submit("citizen")
        code = dossier["code"]

        async def upload(user: str, no: int, *files: tuple[str, bytes, str]) -> Any:
            return await intake.client.post(
                f"/dossiers/{code}/components/{no}/files",
                files=[("file", f) for f in files],
                headers=intake.as_(user),
            )

        page2 = ("trang-2.pdf", PDF_BYTES + b"page 2", "application/pdf")
        r = await upload("citizen", 2, page2)
        assert r.status_code == 201, r.text
        assert [(c["no"], c["supplement"]) for c in r.json()["components"]] == [(1, False), (2, False), (2, False)]
        again = await upload("citizen", 2, page2)  # a retry adds nothing
        assert again.status_code == 200 and again.json()["components"] == r.json()["components"]
        before_rows, before_files = await counts(intake), stored_files(tmp_path)
        for user, no, files, expected in (
            ("citizen2", 2, [page2], 404),  # not theirs
            ("specialist", 2, [page2], 403),
            ("citizen", 9, [page2], 422),  # the procedure has no component 9
            ("citizen", 1, [("big.pdf", PDF_BYTES + b"x" * (65 * 1024), "application/pdf")], 413),
            (
                "citizen",
                1,
                [
                    ("a.pdf", PDF_BYTES + b"y" * (50 * 1024), "application/pdf"),
                    ("b.pdf", PDF_BYTES + b"z" * (50 * 1024), "application/pdf"),
                ],
                413,
            ),  # each within its limit, not together
            ("citizen", 1, [("liar.pdf", PNG_BYTES, "application/pdf")], 415),
        ):
            r = await upload(user, no, *files)
            assert r.status_code == expected, (user, no, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
        wrong_part = await intake.client.post(
            f"/dossiers/{code}/components/1/files", files=[("component-1", page2)], headers=intake.as_("citizen")
        )
        assert wrong_part.status_code == 422
        as_json = await intake.client.post(
            f"/dossiers/{code}/components/1/files", json={}, headers=intake.as_("citizen")
        )
        assert as_json.status_code == 415
        assert (await counts(intake), stored_files(tmp_path)) == (before_rows, before_files)

        # accepted: no more files; asked for a supplement: files again, marked as the supplement
        await intake.act("desk_officer", code, "accept")
        assert (await upload("citizen", 1, ("b.pdf", PDF_BYTES + b"b", "application/pdf"))).status_code == 409
        await intake.act("desk_officer", code, "request_supplement", {"missing_items": [{"name": "Tờ khai"}]})
        r = await upload("desk_officer", 1, ("to-khai-moi.pdf", PDF_BYTES + b"new", "application/pdf"))
        assert r.status_code == 201, r.text
        assert r.json()["components"][-1]["supplement"] is True
        history = (await intake.client.get(f"/dossiers/{code}/history", headers=intake.as_("desk_officer"))).json()
        assert [e["action"] for e in history["events"]].count("files_added") == 2
