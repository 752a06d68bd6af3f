"""Signing benchmark: PAdES B-T signatures per second through the signing service's API.

``python -m bench.signing [--requests 200] [--batches 5] [--concurrency 4]`` starts the signing
part in this process (its lifespan: migrations on SQLite, a fresh local CA with RSA-3072 keys and
a SoftHSM2 token under a scratch directory, the demo leader's RSA-2048 key made in the token)
and drives it over ASGI with httpx, as the document part drives it over HTTP:

- one 1-page A4 PDF per ``POST /sign`` request (person signature, B-T: the visible stamp, the
  signature in SoftHSM2, an RFC 3161 time-stamp from our TSA, a ``signature.completed`` event and
  a signature row committed per request), sequentially and with ``--concurrency`` in flight;
- ``POST /sign/batch`` with 100 such PDFs per request (multipart in, JSON with base64 out);
- ``openssl speed -seconds 3 rsa2048`` on the same machine in the same run, for the ratio of
  PDF signatures to bare RSA-2048 signatures.

Each phase also reports the CPU time of this process per signature (service and client alike,
all threads): on a machine shared with other work it moves much less than the rates do.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

from bench.common import write
from services.signing.app import create_app
from services.signing.config import get_settings
from services.signing.fonts import FONT_DIR
from shared.bus.memory import InProcessBroker

PIN = "bench-2468"


def one_page_pdf() -> bytes:
    if "DejaVuSerif" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("DejaVuSerif", str(FONT_DIR / "DejaVuSerif.ttf")))
    buf = BytesIO()
    c = canvas.Canvas(buf, pagesize=A4)
    c.setFont("DejaVuSerif", 13)
    c.drawCentredString(170, 770, "ỦY BAN NHÂN DÂN TỈNH THANH HÓA")
    c.drawCentredString(420, 770, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM")
    c.drawCentredString(297, 620, "QUYẾT ĐỊNH")
    c.drawCentredString(297, 600, "Về việc phê duyệt kế hoạch cải cách hành chính năm 2026.")
    c.showPage()
    c.save()
    return buf.getvalue()


def openssl_rsa2048_signs_per_second(seconds: int = 3) -> float:
    result = subprocess.run(
        ["openssl", "speed", "-seconds", str(seconds), "rsa2048"], capture_output=True, text=True, timeout=120
    )
    # "rsa 2048 bits 0.000612s 0.000018s   1634.0  55248.6" → sign/s is the first rate
    for line in result.stdout.splitlines():
        m = re.match(r"\s*rsa\s+2048 bits\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)", line)
        if m:
            return float(m.group(1))
    raise RuntimeError(f"cannot read openssl speed output: {result.stdout[-500:]}")


async def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="bench.signing")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv or [])

    key = ec.generate_private_key(ec.SECP256R1())
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update(kid="bench", alg="ES256")

    async def keys() -> dict[str, Any]:
        return {"keys": [jwk]}

    now = int(time.time())
    claims = {
        "sub": "leader",
        "name": "Phạm Văn Đức",
        "roles": ["leader"],
        "agency": "000.00.00.H56",
        "iss": "urn:lienthong:identity",
        "aud": "lienthong",
        "iat": now,
        "exp": now + 3600,
    }
    auth = {"Authorization": "Bearer " + jwt.encode(claims, key, algorithm="ES256", headers={"kid": "bench"})}
    headers = {**auth, "X-Signing-PIN": PIN}
    pdf = one_page_pdf()

    scratch = Path(tempfile.mkdtemp(prefix="bench-signing-"))
    figures: dict[str, Any] = {}
    try:
        settings = get_settings(
            var_dir=scratch,
            amqp_url=None,
            database_url="sqlite+aiosqlite:///{var_dir}/{service}.sqlite",
            demo=True,
            demo_pin_secret=PIN,
            log_level="WARNING",
            log_json=False,
        )
        broker = InProcessBroker()
        await broker.connect()

        async def sink(deliveries: list[Any]) -> None:
            for delivery in deliveries:
                await delivery.ack()

        await broker.consume("bench-sink", ["#"], sink, batch=500, prefetch=500)
        app = create_app(settings, broker=broker, key_source=keys)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://signing", timeout=300) as client:

                async def sign_one() -> None:
                    r = await client.post("/sign", content=pdf, headers={**headers, "Content-Type": "application/pdf"})
                    r.raise_for_status()

                for _ in range(5):  # warm-up: appearance templates, PIN check, key handle
                    await sign_one()

                started, cpu = time.perf_counter(), time.process_time()
                for _ in range(args.requests):
                    await sign_one()
                sequential = args.requests / (time.perf_counter() - started)
                sequential_cpu = (time.process_time() - cpu) / args.requests

                limit = asyncio.Semaphore(args.concurrency)

                async def limited() -> None:
                    async with limit:
                        await sign_one()

                started = time.perf_counter()
                await asyncio.gather(*(limited() for _ in range(args.requests)))
                concurrent = args.requests / (time.perf_counter() - started)

                files = [("files", (f"{i:03}.pdf", pdf, "application/pdf")) for i in range(100)]
                started, cpu = time.perf_counter(), time.process_time()
                for _ in range(args.batches):
                    r = await client.post("/sign/batch", files=files, headers=headers)
                    r.raise_for_status()
                    assert r.json()["signed"] == 100
                batch = 100 * args.batches / (time.perf_counter() - started)
                batch_cpu = (time.process_time() - cpu) / (100 * args.batches)
        await broker.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    openssl = openssl_rsa2048_signs_per_second()
    figures = {
        "pdf_bytes": len(pdf),
        "level": "B-T",
        "key": "RSA-2048 in SoftHSM2",
        "per_request_sequential_per_s": round(sequential, 1),
        "per_request_cpu_ms_per_signature": round(1000 * sequential_cpu, 2),
        f"per_request_concurrency_{args.concurrency}_per_s": round(concurrent, 1),
        "batch_of_100_per_s": round(batch, 1),
        "batch_cpu_ms_per_signature": round(1000 * batch_cpu, 2),
        "openssl_rsa2048_sign_per_s": round(openssl, 1),
        "batch_to_openssl_ratio": round(batch / openssl, 4),
        "per_request_to_openssl_ratio": round(sequential / openssl, 4),
        "requests": args.requests,
        "batches": args.batches,
    }
    each = f"{1000 * sequential_cpu:.2f} ms CPU each"
    print(f"signing: one PDF per request (sequential)     {sequential:8.1f} signatures/s  ({each})")
    print(f"signing: one PDF per request ({args.concurrency} in flight)    {concurrent:8.1f} signatures/s")
    each = f"{1000 * batch_cpu:.2f} ms CPU each"
    print(f"signing: batches of 100                       {batch:8.1f} signatures/s  ({each})")
    print(f"openssl speed rsa2048 (sign)                  {openssl:8.1f} signatures/s")
    print(f"ratio batch / openssl                         {batch / openssl:8.4f}")
    path = write("signing", figures)
    print(f"written {path}")
    return figures


if __name__ == "__main__":
    import sys

    asyncio.run(main(sys.argv[1:]))
