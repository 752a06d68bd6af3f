"""Through the gateway, as a citizen's browser or a portal meets it: a 15 MB scan submitted as
multipart passes the gateway's and intake's body limits (the JSON form stays for small files),
and a file added later too."""

from __future__ import annotations

import json
from pathlib import Path

from tests import suites

MB = 1024 * 1024
SCAN = b"%PDF-1.4\n" + b"1" * (15 * MB) + b"\n%%EOF\n"
WARD = "000.00.41.H56"  # receives 1.001193 (khai sinh)


async def test_a_15_mb_scan_through_the_gateway(tmp_path: Path) -> None:
    async with suites.embedded(tmp_path) as running:
        citizen = await running.auth("citizen")
        dossier = {
            "agency": WARD,
            "procedure_code": "1.001193",
            "applicant": {"full_name": "Nguyễn Thị Hồng Nhung"},
            "components": [{"no": 1}, {"no": 2}],
        }
        async with running.client(timeout=120) as api:
            r = await api.post(
                "/api/intake/dossiers",
                files=[
                    ("dossier", (None, json.dumps(dossier, ensure_ascii=False), "application/json")),
                    ("component-1", ("to-khai.pdf", SCAN, "application/pdf")),
                    ("component-2", ("giay-chung-sinh.pdf", b"%PDF-1.4\nsmall\n%%EOF\n", "application/pdf")),
                ],
                headers={**citizen, "Idempotency-Key": "gateway-scan-1"},
            )
            assert r.status_code == 201, r.text[:500]
            got = r.json()
            assert got["components"][0]["size"] == len(SCAN)
            code = got["code"]
            later = await api.post(
                f"/api/intake/dossiers/{code}/components/2/files",
                files=[("file", ("trang-2.pdf", SCAN[:-20] + b"2\n%%EOF\n", "application/pdf"))],
                headers=citizen,
            )
            assert later.status_code == 201, later.text[:500]
            assert len(later.json()["components"]) == 3
            # the JSON form still takes small files
            small = await api.post(
                "/api/intake/dossiers",
                json={
                    **dossier,
                    "components": [
                        {
                            "no": n,
                            "file": {
                                "filename": f"{n}.pdf",
                                "content_type": "application/pdf",
                                "content_base64": "JVBERi0xLjQKJSVFT0YK",
                            },
                        }
                        for n in (1, 2)
                    ],
                },
                headers=citizen,
            )
            assert small.status_code == 201, small.text[:500]
