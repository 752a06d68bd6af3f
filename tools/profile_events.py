"""Where the event consumers and the access-record path spend their CPU, under the desk-day mix.

Starts the suite in distributed mode (each part its own process, fresh PostgreSQL databases, a
RabbitMQ vhost), seeds a few dossiers, measures each part's idle CPU for a few seconds, then
drives the desk-day mix (``bench.mixed``) through the gateway with ``P_CLIENTS`` clients for
``P_SECONDS`` seconds while ``py-spy record`` samples audit, notify, document and the gateway
(speedscope files in ``P_OUT``, open them at https://www.speedscope.app). Prints, from
``/proc/<pid>/stat``, each part's CPU net of its idle rate: per request for the gateway, per
event for audit (entries appended) and notify (events taken in).

    .venv/bin/pip install py-spy
    .venv/bin/python tools/profile_events.py            # P_SECONDS=30 P_CLIENTS=8 P_SPY=1

With ``P_RATE=500`` (events/s) it then publishes ``dossier.received`` events straight to the
bus at that rate for ``P_SECONDS`` and prints audit's and notify's CPU per event at that rate.

``tools/profile_events_summary.py FILE`` lists a speedscope file's busiest functions of ours.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.intake import scanned_form  # noqa: E402
from bench.load import asyncpg_url, cpu_snapshot, distributed_suite, run_load, settle  # noqa: E402
from bench.mixed import DeskDay, seed  # noqa: E402
from shared.bus import OutgoingMessage  # noqa: E402
from shared.bus.amqp import AmqpBroker  # noqa: E402
from shared.events import CloudEvent, event_type  # noqa: E402

SECONDS = float(os.environ.get("P_SECONDS", "30"))
CLIENTS = int(os.environ.get("P_CLIENTS", "8"))
OUT = Path(os.environ.get("P_OUT", "profile-events"))
RATE = float(os.environ.get("P_RATE", "0"))
SPIED = ("audit", "notify", "gateway", "document")
COUNTED = {
    "audit": "SELECT count(*) FROM audit_entry",
    "notify": "SELECT count(*) FROM inbox",
    "gateway": "SELECT count(*) FROM outbox",
}


async def counts(running: Any) -> dict[str, int]:
    out = {}
    for part, query in COUNTED.items():
        connection = await asyncpg.connect(asyncpg_url(running.env[f"LIENTHONG_{part.upper()}_DATABASE_URL"]))
        try:
            out[part] = int(await connection.fetchval(query))
        finally:
            await connection.close()
    return out


def spy(pid: int, part: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--rate",
            "200",
            "--format",
            "speedscope",
            "-o",
            str(OUT / f"{part}.speedscope.json"),
            "--duration",
            str(int(SECONDS) + 15),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="profile-events-") as tmp:
        async with distributed_suite(Path(tmp)) as running:
            tokens = {w: await running.token(w) for w in ("desk_officer", "specialist", "auditor")}
            day = DeskDay(tokens, scanned_form())
            await seed(day, running.gateway_url, 60, CLIENTS)
            await run_load(day.choose, base_url=running.gateway_url, concurrency=CLIENTS, seconds=3)
            await settle(running)
            idle_before, started = cpu_snapshot(running), time.monotonic()
            await asyncio.sleep(5)
            idle = {k: (v - idle_before[k]) / (time.monotonic() - started) for k, v in cpu_snapshot(running).items()}
            spies = []
            if os.environ.get("P_SPY", "1") == "1":
                spies = [spy(running.processes[part].pid, part) for part in SPIED]
                await asyncio.sleep(1)
            c0, before, started = await counts(running), cpu_snapshot(running), time.monotonic()
            result = await run_load(day.choose, base_url=running.gateway_url, concurrency=CLIENTS, seconds=SECONDS)
            await settle(running)
            after, c1, elapsed = cpu_snapshot(running), await counts(running), time.monotonic() - started
            for spying in spies:
                await asyncio.to_thread(spying.wait)
            if RATE:
                await fixed_rate(running)
    summary = result.summary()
    requests = summary["requests"]
    events = {k: c1[k] - c0[k] for k in c0}
    print(
        f"{requests} requests in {SECONDS:.0f} s ({summary['requests_per_s']:.0f}/s, {summary['errors']} errors); "
        f"audit +{events['audit']} entries ({events['audit'] / elapsed:.0f}/s), notify +{events['notify']} "
        f"events, gateway +{events['gateway']} access records"
    )
    per = {
        "gateway": requests,
        "audit": events["audit"],
        "notify": events["notify"],
        "document": requests,
        "intake": requests,
    }
    for part, n in per.items():
        used = (after[part] - before[part]) * 1000
        net = used - idle[part] * 1000 * elapsed
        unit = "event" if part in ("audit", "notify") else "request of the mix"
        print(
            f"  {part}: {used:.0f} ms CPU ({idle[part] * 1000:.1f} ms/s idle), "
            f"{net / max(n, 1):.2f} ms per {unit} net of idle"
        )


async def fixed_rate(running: Any) -> dict[str, float]:
    """Events published straight to the bus at ``RATE`` per second: CPU ms per event of audit
    and notify (net of idle), the events all consumed."""
    broker = AmqpBroker(running.env["LIENTHONG_AMQP_URL"])
    await broker.connect()
    try:
        c0, before, started = await counts(running), cpu_snapshot(running), time.monotonic()
        sent, tick = 0, 0.05
        while time.monotonic() - started < SECONDS:
            due = int((time.monotonic() - started) * RATE) - sent
            events = [
                CloudEvent(
                    id=str(uuid.uuid4()), source="urn:lienthong:intake", type=event_type("dossier.received"),
                    subject=f"000.00.41.H56-260101-{sent + i:06d}", data={"n": sent + i}, agency="000.00.41.H56",
                )
                for i in range(max(0, due))
            ]
            if events:
                messages = [OutgoingMessage("dossier.received", e.to_bytes(), message_id=e.id) for e in events]
                await broker.publish(messages)
                sent += len(events)
            await asyncio.sleep(tick)
        await settle(running)
        after, c1 = cpu_snapshot(running), await counts(running)
    finally:
        await broker.close()
    result = {}
    for part in ("audit", "notify"):
        used = (after[part] - before[part]) * 1000
        result[part] = round(used / max(c1[part] - c0[part] if part == "audit" else sent, 1), 3)
    print(f"{sent} events at {RATE:.0f}/s: audit +{c1['audit'] - c0['audit']} entries, "
          f"CPU ms per event (gross, idle included): audit {result['audit']}, notify {result['notify']}")
    return result


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    asyncio.run(main())
