"""``python -m lienthong demo``: walk the main flow through a running suite's gateway, as the roles
would, printing each step.

A citizen submits a birth registration online with a 2 MB scan → the ward's desk accepts it and
prints the receipt → a specialist drafts the decision in the work dossier that document opened by
itself when the desk accepted → the ward's leader signs it with the key in the token → the
ward's clerk numbers, seals and issues it in one call → intake finishes the dossier by itself
(accepted → processing → finished) → the desk returns the result → the public look-up shows it
returned. Everyone but the citizen works at the ward (``desk_officer.41``, ``leader.41``…).

Every call here is one the README's main-flow section shows with curl, in the same order.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from shared import clock
from shared.demo import AGENCY_ROLES, DEMO_AGENCIES, username

PROCEDURE = "1.001193"  # Thủ tục đăng ký khai sinh
AGENCY = "000.00.41.H56"  # UBND phường Hạc Thành, which receives and decides it
CITIZEN = {"full_name": "Nguyễn Thị Hồng Nhung", "address": "Phường Hạc Thành, tỉnh Thanh Hóa"}
WARD = next(a for a in DEMO_AGENCIES if a.code == AGENCY)
SUBJECT = "Quyết định đăng ký khai sinh cho cháu Nguyễn Minh Khang"
RETURNED = 10  # the dossier status once the result is handed back


def ward_people() -> dict[str, str]:
    """Who plays each role: the demo citizen, and the ward's own officers."""
    return {"citizen": "citizen", **{role: username(role, AGENCY) for role in AGENCY_ROLES}}


class DemoFailed(RuntimeError):
    """A step answered something the flow cannot go on from; the message says which and why."""


@dataclass
class Demo:
    gateway: str
    password: str
    pin: str
    out: Path
    people: dict[str, str] = field(default_factory=ward_people)
    timeout: float = 60.0
    tokens: dict[str, str] = field(default_factory=dict)

    def say(self, text: str) -> None:
        print(text, flush=True)

    async def login(self, client: httpx.AsyncClient, role: str) -> dict[str, str]:
        username = self.people[role]
        if username not in self.tokens:
            r = await client.post(
                "/api/auth/token", data={"grant_type": "password", "username": username, "password": self.password}
            )
            self.tokens[username] = expect(r, 200, f"log-in as {username}")["access_token"]
        return {"Authorization": f"Bearer {self.tokens[username]}"}

    async def eventually(self, what: str, probe: Any) -> Any:
        deadline = time.monotonic() + self.timeout
        while True:
            value = await probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise DemoFailed(f"gave up waiting {self.timeout:.0f} s for {what}")
            await asyncio.sleep(0.3)

    async def run(self) -> dict[str, Any]:
        """The whole flow: a citizen submits online, then :meth:`walk` takes the dossier to the end."""
        async with httpx.AsyncClient(base_url=self.gateway, timeout=60) as api:
            return await self.walk(api, await self.submit(api))

    async def submit(self, api: httpx.AsyncClient) -> str:
        """Step 1: the citizen submits a birth registration online; the new dossier's code."""
        citizen = await self.login(api, "citizen")
        scan = scanned_pdf(2 * 1024 * 1024)
        dossier = {"agency": AGENCY, "procedure_code": PROCEDURE, "applicant": CITIZEN}
        files = [
            ("component-1", ("to-khai.pdf", scan, "application/pdf")),
            ("component-2", ("giay-chung-sinh.pdf", scanned_pdf(512 * 1024), "application/pdf")),
        ]
        submitted = expect(
            await api.post(
                "/api/intake/dossiers",
                headers={**citizen, "Idempotency-Key": f"demo-{time.time_ns()}"},
                data={"dossier": json.dumps(dossier, ensure_ascii=False)},
                files=files,
            ),
            201,
            "submit the dossier online",
        )
        code = submitted["code"]
        self.say(
            f"1. citizen  submitted a birth registration ({PROCEDURE}) online at {AGENCY} with a "
            f"{len(scan) / 1e6:.1f} MB scan → dossier {code} (status {submitted['status']})"
        )
        return code

    async def walk(self, api: httpx.AsyncClient, code: str) -> dict[str, Any]:
        """Steps 2 to 8 for a birth registration received at the ward, however it came in: accepted,
        decided, signed, issued, finished, returned, and the look-up says so. DemoFailed where the
        suite answers otherwise."""
        self.out.mkdir(parents=True, exist_ok=True)
        desk = await self.login(api, "desk_officer")
        specialist = await self.login(api, "specialist")
        leader = await self.login(api, "leader")
        clerk = await self.login(api, "clerk")

        # 2. the desk accepts it and prints the receipt (form 01) with the look-up QR code
        accepted = expect(
            await api.post(f"/api/intake/dossiers/{code}/actions/accept", headers=desk, json={}), 200, "accept"
        )
        receipt = await api.post(f"/api/intake/dossiers/{code}/receipt", headers=desk)
        expect(receipt, 200, "print the receipt")
        secret = receipt.headers["lookup-secret"]
        receipt_path = self.out / f"receipt-{code}.pdf"
        receipt_path.write_bytes(receipt.content)
        self.say(f"2. desk     accepted it, due {vietnam_time(accepted['due_at'])}; receipt: {receipt_path}")

        # 3. the specialist drafts the decision inside the work dossier document opened for it
        async def work_file() -> dict[str, Any] | None:
            r = await api.get("/api/document/workfiles", params={"dossier_code": code}, headers=specialist)
            items = expect(r, 200, "list work dossiers")
            items = items["items"] if isinstance(items, dict) else items
            if len(items) > 1:
                raise DemoFailed(f"document opened {len(items)} work dossiers for {code}, not one")
            return items[0] if items else None

        wf = await self.eventually("document to open the work dossier", work_file)
        draft = await api.post(
            "/api/document/documents",
            headers=specialist,
            json={
                "agency": AGENCY,
                "type_key": "QĐ",
                "subject": SUBJECT,
                "work_file_id": wf["id"],
                "signer": {"position": WARD.leader_position, "full_name": WARD.leader.full_name},
            },
        )
        doc = expect(draft, 201, "draft the result")
        etag = draft.headers["etag"]
        content = decision_pdf(code)
        uploaded = await api.post(
            f"/api/document/documents/{doc['id']}/content",
            params={"stage": "draft"},
            content=content,
            headers={**specialist, "If-Match": etag, "Content-Type": "application/pdf"},
        )
        expect(uploaded, 201, "upload the draft")
        etag = uploaded.headers["etag"]
        self.say(f"3. specialist drafted document {doc['id']} in work dossier {wf['id']}")

        # 4. the leader signs it with the key in the token (PAdES)
        certificates = expect(
            await api.get("/api/signing/certificates", params={"owner": self.people["leader"]}, headers=leader),
            200,
            "find the leader's certificate",
        )
        person = next((c for c in listed(certificates) if c["kind"] == "person"), None)
        if person is None:
            raise DemoFailed(f"{self.people['leader']} has no signing certificate")
        signed = await api.post(
            "/api/signing/sign",
            params={"kind": "person", "certificate": person["serial"]},
            content=content,
            headers={**leader, "X-Signing-PIN": self.pin, "Content-Type": "application/pdf"},
        )
        expect(signed, 200, "sign as the leader")
        stored = await api.post(
            f"/api/document/documents/{doc['id']}/content",
            params={"stage": "signed_by_leader"},
            content=signed.content,
            headers={**leader, "If-Match": etag, "Content-Type": "application/pdf"},
        )
        expect(stored, 201, "store the leader's signed version")
        self.say(f"4. leader   signed it (certificate {person['serial'][:12]}…)")

        # 5. the clerk numbers, seals and issues it, in one call
        issued = expect(
            await api.post(
                f"/api/document/documents/{doc['id']}/publish",
                headers={**clerk, "X-Signing-PIN": self.pin, "Idempotency-Key": f"publish-{doc['id']}"},
                json={},
            ),
            200,
            "number, seal and issue",
        )
        self.say(f"5. clerk    numbered, sealed and issued it: Số {issued['code']}")

        # 6. intake finishes the dossier by itself from document.issued
        async def finished() -> dict[str, Any] | None:
            d = expect(await api.get(f"/api/intake/dossiers/{code}", headers=desk), 200, "read the dossier")
            return d if d["status"] == 9 else None

        dossier = await self.eventually("intake to finish the dossier", finished)
        if (dossier.get("result") or {}).get("number") != issued["code"]:
            raise DemoFailed(
                f"intake finished {code} without the issued result Số {issued['code']}: {dossier['result']}"
            )
        result = await api.get(f"/api/document/documents/{doc['id']}/content", headers=desk)
        expect(result, 200, "download the result")
        result_path = self.out / f"result-{code}.pdf"
        result_path.write_bytes(result.content)
        self.say(f"6. intake   finished the dossier by itself; signed result: {result_path}")

        # 7. the desk returns the result
        expect(
            await api.post(f"/api/intake/dossiers/{code}/actions/return_result", headers=desk, json={}),
            200,
            "return the result",
        )
        self.say("7. desk     returned the result to the citizen")

        # 8. the public look-up (what the receipt's QR code opens) shows it returned
        looked = expect(await api.get("/api/intake/lookup", params={"code": code, "secret": secret}), 200, "look it up")
        url = httpx.URL(self.gateway).join("/tra-cuu").copy_with(params={"code": code, "secret": secret})
        self.say(f"8. look-up  status {looked['status']} ({looked['status_label']}): {url}")
        if looked["status"] != RETURNED:
            raise DemoFailed(f"the look-up shows status {looked['status']}, not {RETURNED} (returned)")
        return {
            "code": code,
            "secret": secret,
            "document_id": doc["id"],
            "number": issued["code"],
            "receipt": str(receipt_path),
            "result": str(result_path),
            "lookup_url": str(url),
            "status": looked["status"],
            "status_label": looked["status_label"],
        }


def vietnam_time(instant: str) -> str:
    return datetime.fromisoformat(instant).astimezone(clock.VN_TZ).strftime("%d/%m/%Y %H:%M")


def listed(body: Any) -> list[dict[str, Any]]:
    """A list answer, whether a bare array or a page (``{"items": [...], "next": ...}``)."""
    return body["items"] if isinstance(body, dict) else body


def expect(response: httpx.Response, status: int, what: str) -> Any:
    if response.status_code != status:
        try:
            problem = response.json()
            detail = problem.get("detail") or problem.get("title")
        except ValueError:
            detail = response.text[:300]
        raise DemoFailed(
            f"could not {what}: {response.request.method} {response.request.url.path} answered "
            f"{response.status_code}: {detail}"
        )
    if response.headers.get("content-type", "").startswith("application/json"):
        return response.json()
    return response


def _font() -> str:
    return str(Path(__file__).resolve().parents[1] / "shared" / "fonts" / "DejaVuSans.ttf")


def decision_pdf(code: str) -> bytes:
    """The draft decision: one A4 page in Vietnamese, with the font embedded."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.pdfgen import canvas

    if "DejaVuSans" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("DejaVuSans", _font()))
    out = io.BytesIO()
    page = canvas.Canvas(out, pagesize=A4)
    page.setFont("DejaVuSans", 12)
    lines = [
        "ỦY BAN NHÂN DÂN PHƯỜNG HẠC THÀNH",
        "QUYẾT ĐỊNH",
        "Về việc đăng ký khai sinh cho cháu Nguyễn Minh Khang",
        f"Căn cứ hồ sơ số {code};",
    ]
    for i, line in enumerate(lines):
        page.drawString(72, 770 - 20 * i, line)
    page.showPage()
    page.save()
    return out.getvalue()


def scanned_pdf(size: int) -> bytes:
    """A scan of about ``size`` bytes: one page holding a photographed (incompressible) image."""
    from PIL import Image
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    rng = random.Random(20201)
    side = int((size / 3 / 1.25) ** 0.5)  # three bytes a pixel; reportlab's ASCII85 adds a quarter
    image = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    out = io.BytesIO()
    page = canvas.Canvas(out, pagesize=A4)
    page.drawImage(ImageReader(image), 36, 100, width=520, height=520)
    page.showPage()
    page.save()
    return out.getvalue()


def write_samples(directory: Path) -> list[Path]:
    """The files the README's curl walk-through sends: two scans and the draft decision."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "to-khai.pdf": scanned_pdf(2 * 1024 * 1024),
        "giay-chung-sinh.pdf": scanned_pdf(512 * 1024),
        "quyet-dinh.pdf": decision_pdf("(số hồ sơ)"),
    }
    for name, content in files.items():
        (directory / name).write_bytes(content)
    return [directory / name for name in files]


def main(args: Any) -> int:
    if args.write_samples:
        for path in write_samples(Path(args.write_samples)):
            print(path)
        return 0
    demo = Demo(gateway=args.gateway, password=args.password, pin=args.pin, out=Path(args.out))
    try:
        asyncio.run(demo.run())
    except DemoFailed as exc:
        print(f"demo stopped: {exc}", flush=True)
        return 1
    except httpx.ConnectError:
        print(f"demo stopped: nothing answers at {args.gateway}; start the suite first (make run)", flush=True)
        return 1
    return 0
