"""The integrator's AMQP account and the AsyncAPI contract agree: the account, loaded into a
fresh virtual host from ``python -m lienthong integrator-definitions``, may bind every channel the
contract lists (and each offered family's wildcard) and receives what is published there; it is
refused everything the contract does not offer. Checked against the real broker with a plain
AMQP client; and deploy/rabbitmq/definitions.json is that command's output for ``/``."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pika
import pytest
import yaml
from pika.exceptions import ChannelClosedByBroker

from lienthong import contracts
from tests.servers import AMQP_HOST, rabbitmqctl, temporary_vhost

ROOT = Path(__file__).resolve().parents[3]
DEFINITIONS = ROOT / "deploy" / "rabbitmq" / "definitions.json"
ASYNCAPI = ROOT / "contracts" / "asyncapi.yaml"


def _definitions(name: str, vhost: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "lienthong", "integrator-definitions", name, "--vhost", vhost],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def test_the_deployed_definitions_are_the_commands_for_the_root_vhost() -> None:
    assert json.loads(DEFINITIONS.read_text()) == contracts.integrator_definitions("example", "/")


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


@pytest.mark.amqp
def test_an_integrator_may_bind_exactly_what_the_contract_lists() -> None:
    contract = yaml.safe_load(ASYNCAPI.read_text(encoding="utf-8"))
    channels = sorted(c["address"] for c in contract["channels"].values())
    families = sorted({c.split(".")[0] for c in channels})
    assert channels and "access" not in families
    with temporary_vhost() as system_url:
        vhost = system_url.rsplit("/", 1)[1]
        name = f"lt{uuid.uuid4().hex[:8]}"
        user, password = f"integrator-{name}", secrets.token_urlsafe(16)
        # rabbitmqctl runs as the rabbitmq user, who cannot read pytest's tmp_path (and this
        # version does not read "-" as stdin): a readable file of its own, holding no secret
        fd, path = tempfile.mkstemp(suffix=".json", prefix="lt-definitions-")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(_definitions(name, vhost), f)
            os.chmod(path, 0o644)
            rabbitmqctl("import_definitions", path)
            # the import may read the file after the command returns: removed once it is done
            _when_imported(vhost, user, password)
        finally:
            os.unlink(path)
        try:
            system = pika.BlockingConnection(pika.URLParameters(system_url))
            integrator = _connect(vhost, user, password)
            try:
                channel = integrator.channel()
                queue = f"integrator.{name}.everything"
                channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
                for key in channels:  # every channel of the contract, one binding each
                    channel.queue_bind(queue, "lienthong.events", routing_key=key)
                wildcards = f"integrator.{name}.families"
                channel.queue_declare(wildcards, durable=True)
                for family in families:
                    channel.queue_bind(wildcards, "lienthong.events", routing_key=f"{family}.#")
                # a temporary queue: named by the rule, exclusive to this connection
                channel.queue_declare(f"integrator.{name}.tmp-{uuid.uuid4().hex[:6]}", exclusive=True)

                publisher = system.channel()
                publisher.confirm_delivery()
                for key in channels:
                    body = json.dumps({"specversion": "1.0", "id": key, "type": f"vn.lienthong.{key}.v1"})
                    publisher.basic_publish("lienthong.events", key, body.encode())
                publisher.basic_publish("lienthong.events", "access.recorded", b"{}")
                for q in (queue, wildcards):
                    got = []
                    while True:
                        method, _props, received = channel.basic_get(q, auto_ack=True)
                        if method is None:
                            break
                        got.append(json.loads(received)["id"])
                    assert sorted(got) == channels, q  # each once; access.recorded never

                # and nothing else
                _refused(integrator, lambda ch: ch.queue_declare("", exclusive=True))  # server-named
                _refused(integrator, lambda ch: ch.queue_declare(f"integrator.{name}x.q", durable=True))
                _refused(integrator, lambda ch: ch.queue_declare("notify-copy", durable=True))
                for key in ("#", "access.recorded", "access.#", "*.recorded", "*.*"):
                    _refused(integrator, lambda ch, key=key: ch.queue_bind(queue, "lienthong.events", routing_key=key))
                _refused(integrator, lambda ch: ch.queue_bind(queue, "amq.topic", routing_key="document.#"))
                # the exchange of internal events (the access records), as the parts declare it
                system.channel().exchange_declare("lienthong.internal", exchange_type="topic", durable=True)
                for key in ("#", "access.recorded"):
                    _refused(
                        integrator, lambda ch, key=key: ch.queue_bind(queue, "lienthong.internal", routing_key=key)
                    )
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
