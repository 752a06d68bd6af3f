"""The fault suite: a producer process and a consumer process on the real PostgreSQL and
RabbitMQ, a fault injected a third of the way into the load, then one checker: nothing lost,
nothing applied twice, order kept per aggregate, outbox drained, queues empty but for exactly the
poison messages in the dead-letter queue, consumers re-attached."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from shared.db import Database
from tests import harness
from tests.servers import rabbitmqctl, temporary_databases, temporary_vhost, wait_rabbitmq

pytestmark = [pytest.mark.pg, pytest.mark.amqp, pytest.mark.faults, pytest.mark.timeout(240)]

COUNT = 900
RATE = 300.0


class Node:
    def __init__(self, role: str, args: list[str], log: Path, failpoints: str = "") -> None:
        env = {**os.environ, "LIENTHONG_FAILPOINTS": failpoints}
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.ledger_node", role, *args],
            env=env,
            stdout=open(log, "ab"),  # noqa: SIM115 - closed when the process ends
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def queues(vhost: str) -> dict[str, dict[str, int]]:
    out = rabbitmqctl("list_queues", "-p", vhost, "name", "messages", "consumers", "--formatter", "json").stdout
    return {q["name"]: {"messages": q["messages"], "consumers": q["consumers"]} for q in json.loads(out)}


async def wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def kill_broker() -> None:
    subprocess.run(["pkill", "-9", "-f", "beam.smp"], check=False)
    time.sleep(1)
    subprocess.run(["pkill", "-9", "-f", "epmd"], check=False)
    subprocess.run(["rabbitmq-server", "-detached"], check=True, capture_output=True)
    wait_rabbitmq(120)


def stop_start_app() -> None:
    rabbitmqctl("stop_app")
    time.sleep(3)
    rabbitmqctl("start_app")
    wait_rabbitmq()


def close_connections() -> None:
    rabbitmqctl("close_all_connections", "fault test")


async def run_case(tmp_path: Path, *, fault=None, producer_failpoints: str = "", consumer_failpoints: str = "",  # type: ignore[no-untyped-def]
                   poison_every: int = 0) -> harness.Report:
    with temporary_databases(["producer", "consumer"]) as urls, temporary_vhost() as amqp_url:
        vhost = amqp_url.rsplit("/", 1)[1]
        producer_db, consumer_db = Database(urls["producer"]), Database(urls["consumer"])
        await harness.create_schema(producer_db)
        await harness.create_schema(consumer_db)
        nodes: list[Node] = []
        supervisor: asyncio.Task[None] | None = None
        try:
            consumer = Node("consumer", [urls["consumer"], amqp_url], tmp_path / "consumer.log", consumer_failpoints)
            nodes.append(consumer)

            async def attached() -> bool:
                return queues(vhost).get("ledger", {}).get("consumers", 0) == 1

            await wait_for(attached, 60, "the consumer to attach")
            producer_args = [urls["producer"], amqp_url, str(COUNT), str(RATE), str(poison_every)]
            consumer_args = [urls["consumer"], amqp_url]
            producer = Node("producer", producer_args, tmp_path / "producer.log", producer_failpoints)
            nodes.append(producer)
            live = {"producer": producer, "consumer": consumer}

            async def supervise() -> None:
                # restart whoever a failpoint killed, as an orchestrator would
                while True:
                    for role, args in (("producer", producer_args), ("consumer", consumer_args)):
                        if live[role].process.poll() is not None:
                            live[role] = Node(role, args, tmp_path / f"{role}.log")
                            nodes.append(live[role])
                    await asyncio.sleep(0.5)

            supervisor = asyncio.create_task(supervise())

            async def a_third_applied() -> bool:
                return await harness.wait_until_applied(consumer_db, COUNT // 3, timeout=0.1) >= COUNT // 3

            await wait_for(a_third_applied, 90, "a third of the load")
            if fault is not None:
                await asyncio.to_thread(fault)

            expected_poison = COUNT // poison_every if poison_every else 0

            async def drained() -> bool:
                report = await harness.check(producer_db, consumer_db)
                state = queues(vhost)
                return (
                    report.committed >= COUNT - expected_poison - 1
                    and not report.lost
                    and report.unsent == 0
                    and state.get("ledger", {}).get("messages", -1) == 0
                    and state.get("ledger", {}).get("consumers", 0) == 1
                    and state.get("ledger.dlq", {}).get("messages", -1) == expected_poison
                )

            # the producer may still be producing: wait for all COUNT commits first
            async def all_committed() -> bool:
                async with producer_db.sessionmaker() as s:
                    n = len((await s.execute(select(harness.outbox.table.c.id))).all())
                return n >= COUNT

            await wait_for(all_committed, 120, "all business writes to commit")
            await wait_for(drained, 120, "the system to drain")
            supervisor.cancel()
            report = await harness.check(producer_db, consumer_db)
            state = queues(vhost)
            restarts = len(nodes) - 2
            if producer_failpoints or consumer_failpoints:
                assert restarts >= 1, "the failpoint never fired"
            assert report.ok, str(report)
            assert report.committed == COUNT - expected_poison
            assert state["ledger"] == {"messages": 0, "consumers": 1}, state
            assert state["ledger.dlq"]["messages"] == expected_poison, state
            if expected_poison:
                async with producer_db.sessionmaker() as s:
                    poison_ids = set((await s.execute(select(harness.outbox.table.c.event_id)
                                                      .where(harness.outbox.table.c.aggregate.like("poison-%")))).scalars())
                assert len(poison_ids) == expected_poison
            return report
        finally:
            # the supervisor first: left running, it would restart the nodes stopped below and
            # leave them behind, reconnecting to a deleted vhost for ever
            if supervisor is not None:
                supervisor.cancel()
            for node in nodes:
                node.stop()
            await producer_db.dispose()
            await consumer_db.dispose()


async def test_rabbitmq_stop_app_and_start_app(tmp_path: Path) -> None:
    await run_case(tmp_path, fault=stop_start_app)


async def test_rabbitmq_killed_with_sigkill_and_restarted(tmp_path: Path) -> None:
    await run_case(tmp_path, fault=kill_broker)


async def test_all_connections_closed(tmp_path: Path) -> None:
    await run_case(tmp_path, fault=close_connections)


async def test_producer_killed_after_commit_before_publish(tmp_path: Path) -> None:
    await run_case(tmp_path, producer_failpoints="relay.after_read@40")


async def test_consumer_killed_after_commit_before_ack(tmp_path: Path) -> None:
    report = await run_case(tmp_path, consumer_failpoints="inbox.after_commit@10")
    assert report.applied_rows == report.committed  # redelivered, never applied twice


async def test_poison_events_end_in_the_dead_letter_queue(tmp_path: Path) -> None:
    await run_case(tmp_path, poison_every=100)
