"""The real PostgreSQL and RabbitMQ the integration tests use, each test run in its own
databases and its own RabbitMQ virtual host, removed afterwards."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import pytest

PG_HOST = os.environ.get("LIENTHONG_TEST_PG_HOST", "127.0.0.1")
PG_USER = os.environ.get("LIENTHONG_TEST_PG_USER", "postgres")
AMQP_HOST = os.environ.get("LIENTHONG_TEST_AMQP_HOST", "127.0.0.1")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require(server: str, host: str, port: int) -> None:
    if _listening(host, port):
        return
    message = f"{server} is not running on {host}:{port}"
    if IN_CI:
        pytest.fail(message + " (CI=true: a missing server is a failure, not a skip)")
    print(f"\n*** SKIPPING tests that need {server}: {message} ***")
    pytest.skip(message)


def missing(message: str) -> NoReturn:
    """A tool or package a test needs is absent: a failure under CI=true (where .ci/run installs
    everything), a skip elsewhere."""
    if IN_CI:
        pytest.fail(message + " (CI=true: a missing tool is a failure, not a skip)")
    pytest.skip(message)


def psql(sql: str, database: str = "postgres") -> None:
    subprocess.run(
        ["psql", "-h", PG_HOST, "-U", PG_USER, "-d", database, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
        check=True,
        capture_output=True,
    )


@contextmanager
def temporary_databases(names: list[str]) -> Iterator[dict[str, str]]:
    """Fresh PostgreSQL databases; yields name → asyncpg URL."""
    require("PostgreSQL", PG_HOST, 5432)
    prefix = f"lt_{uuid.uuid4().hex[:8]}"
    urls = {}
    for name in names:
        db = f"{prefix}_{name}"
        psql(f'CREATE DATABASE "{db}"')
        urls[name] = f"postgresql+asyncpg://{PG_USER}@{PG_HOST}/{db}"
    try:
        yield urls
    finally:
        for name in names:
            db = f"{prefix}_{name}"
            try:
                psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            except subprocess.CalledProcessError:
                pass


def rabbitmqctl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, text=True, timeout=timeout)


@contextmanager
def temporary_vhost() -> Iterator[str]:
    """A RabbitMQ virtual host of our own; yields its AMQP URL."""
    require("RabbitMQ", AMQP_HOST, 5672)
    if shutil.which("rabbitmqctl") is None:
        pytest.fail("rabbitmqctl is not installed") if IN_CI else pytest.skip("rabbitmqctl missing")
    vhost = f"lt_test_{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield f"amqp://guest:guest@{AMQP_HOST}:5672/{vhost}"
    finally:
        try:
            rabbitmqctl("delete_vhost", vhost)
        except subprocess.SubprocessError:
            pass


def wait_rabbitmq(timeout: float = 120) -> None:
    """Until the node answers and its applications are up (a node just started is not there
    yet for a while, which await_startup alone reports as an error)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ping = subprocess.run(["rabbitmq-diagnostics", "-q", "ping"], capture_output=True, timeout=30)
        if ping.returncode == 0:
            subprocess.run(["rabbitmqctl", "await_startup", "--timeout", "60"], check=True,
                           capture_output=True, timeout=70)
            return
        time.sleep(1)
    raise TimeoutError("RabbitMQ did not come back")
