"""The RabbitMQ definitions in deploy/rabbitmq: an integrator binds its own queue to
``lienthong.events`` and reads from it, and can do nothing else (no publishing, no other
queues, no exchanges of ours, no internal routing keys). Checked against the real broker."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from tests.servers import AMQP_HOST, rabbitmqctl, temporary_vhost

DEFINITIONS = Path(__file__).resolve().parents[3] / "deploy" / "rabbitmq" / "definitions.json"

pytestmark = pytest.mark.amqp


def _definitions_for(vhost: str, user: str) -> dict[str, Any]:
    text = DEFINITIONS.read_text().replace('"integrator-example"', json.dumps(user))
    data = json.loads(text)
    for section in ("permissions", "topic_permissions", "exchanges", "policies"):
        for item in data.get(section, []):
            item["vhost"] = vhost
    data["vhosts"] = [{"name": vhost}]
    return data


def _when_imported(vhost: str, user: str, password: str) -> None:
    """The import runs in the background; wait (bounded) for the user and its topic rules."""
    deadline = time.monotonic() + 30
    while True:
        try:
            rabbitmqctl("change_password", user, password)
            if user in rabbitmqctl("list_topic_permissions", "-p", vhost, "--silent").stdout:
                return
        except subprocess.CalledProcessError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the definitions were not imported")
        time.sleep(0.3)


def _connect(vhost: str, user: str, password: str) -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.URLParameters(f"amqp://{quote(user)}:{quote(password)}@{AMQP_HOST}:5672/{quote(vhost, safe='')}")
    )


def _refused(connection: pika.BlockingConnection, action: Any) -> None:
    channel = connection.channel()
    with pytest.raises(ChannelClosedByBroker) as caught:
        action(channel)
    assert caught.value.reply_code == 403, caught.value


def test_an_integrator_binds_its_own_queue_and_nothing_else() -> None:
    with temporary_vhost() as system_url:
        vhost = system_url.rsplit("/", 1)[1]
        user = f"lt-integrator-{uuid.uuid4().hex[:8]}"
        password = secrets.token_urlsafe(16)
        # rabbitmqctl runs as the rabbitmq user, who cannot read pytest's tmp_path (and this
        # version does not read "-" as stdin): a readable file of its own, holding no secret
        fd, name = tempfile.mkstemp(suffix=".json", prefix="lt-definitions-")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(_definitions_for(vhost, user), f)
            os.chmod(name, 0o644)
            rabbitmqctl("import_definitions", name)
        finally:
            os.unlink(name)
        try:
            _when_imported(vhost, user, password)
            system = pika.BlockingConnection(pika.URLParameters(system_url))
            integrator = _connect(vhost, user, password)
            try:
                channel = integrator.channel()
                queue = "integrator.example.van-ban"
                channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
                channel.queue_bind(queue, "lienthong.events", routing_key="document.#")
                channel.queue_bind(queue, "lienthong.events", routing_key="dossier.received")

                # what lienthong publishes reaches the integrator's queue
                publisher = system.channel()
                publisher.confirm_delivery()
                body = json.dumps({"specversion": "1.0", "id": "e-1", "type": "vn.lienthong.document.issued.v1"})
                publisher.basic_publish("lienthong.events", "document.issued", body.encode())
                publisher.basic_publish("lienthong.events", "access.recorded", b"{}")
                method, _props, received = channel.basic_get(queue, auto_ack=True)
                assert method is not None and json.loads(received)["id"] == "e-1"
                assert channel.basic_get(queue, auto_ack=True)[0] is None  # access.recorded did not come

                # and nothing else is allowed
                _refused(integrator, lambda ch: ch.queue_declare("notify-copy", durable=True))
                _refused(integrator, lambda ch: ch.queue_bind(queue, "lienthong.events", routing_key="#"))
                _refused(integrator, lambda ch: ch.queue_bind(queue, "lienthong.events", routing_key="access.*"))
                _refused(integrator, lambda ch: ch.queue_bind(queue, "amq.topic", routing_key="document.#"))
                _refused(
                    integrator, lambda ch: ch.exchange_declare("lienthong.events", exchange_type="topic", durable=True)
                )
                _refused(integrator, lambda ch: ch.exchange_delete("lienthong.events"))
                system.channel().queue_declare("audit", durable=True)
                _refused(integrator, lambda ch: ch.basic_get("audit"))
                _refused(integrator, lambda ch: ch.queue_delete("audit"))

                def publish(ch: Any) -> None:
                    ch.confirm_delivery()
                    ch.basic_publish("lienthong.events", "document.issued", b"forged")

                _refused(integrator, publish)

                def publish_default(ch: Any) -> None:
                    ch.confirm_delivery()
                    ch.basic_publish("", queue, b"forged")

                _refused(integrator, publish_default)
            finally:
                for connection in (integrator, system):
                    if connection.is_open:
                        connection.close()
        finally:
            rabbitmqctl("delete_user", user)
