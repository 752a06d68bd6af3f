"""The deployment files say what the code reads: compose, Kubernetes, RabbitMQ policies, config reference.

Settings are read from the parts' settings classes at test time, so a setting renamed in code
(or a variable misspelt in a manifest) fails here rather than being silently ignored at start.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lienthong import configref
from shared import workers
from shared.events import DEAD_LETTER_EXCHANGE
from shared.settings import DEFAULT_PORTS, PARTS, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
VAR = re.compile(r"\bLIENTHONG_[A-Z0-9_]+\b")
# compose interpolation: ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])((?:[^{}]|\{[^{}]*\})*))?\}")


@pytest.fixture(scope="module")
def classes() -> dict[str, type[Settings]]:
    return configref.settings_classes()


@pytest.fixture(scope="module")
def accepted(classes: dict[str, type[Settings]]) -> dict[str, set[str]]:
    return configref.accepted_variables(classes)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return docs


def _of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _readable_by(var: str, part: str, accepted: dict[str, set[str]]) -> bool:
    return part in accepted.get(var, set())


def _part_of_command(command: list[str]) -> str | None:
    if command[:4] == ["python", "-m", "lienthong", "serve"]:
        return command[4]
    return None


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


# --- settings and the config reference ------------------------------------------------------------


def test_config_reference_is_current() -> None:
    assert configref.main(["--check"]) == 0, "run: .venv/bin/python -m lienthong.configref"


def test_config_reference_lists_every_setting_of_every_part(classes: dict[str, type[Settings]]) -> None:
    text = (DEPLOY / "config-reference.md").read_text(encoding="utf-8")
    for part, cls in classes.items():
        section = text.split(f"\n## {part}\n", 1)[1].split("\n## ", 1)[0]
        for name in cls.model_fields:
            if name in Settings.model_fields:
                assert f"| `{name}` |" in text
            else:
                assert f"`LIENTHONG_{part.upper()}_{name.upper()}`" in section, (part, name)


def test_port_is_only_per_part_and_matches_load_settings(monkeypatch: pytest.MonkeyPatch,
                                                         accepted: dict[str, set[str]]) -> None:
    # The reference says LIENTHONG_PORT is ignored: check that load_settings really ignores it.
    monkeypatch.setenv("LIENTHONG_PORT", "9999")
    monkeypatch.setenv("LIENTHONG_NOTIFY_PORT", "9005")
    assert load_settings(Settings, "intake").port == DEFAULT_PORTS["intake"]
    assert load_settings(Settings, "notify").port == 9005
    assert "LIENTHONG_PORT" not in accepted and "LIENTHONG_NOTIFY_PORT" in accepted


# --- compose --------------------------------------------------------------------------------------


def test_compose_runs_every_part_with_its_port_and_readiness_check(compose: dict[str, Any]) -> None:
    services = compose["services"]
    served = {}
    for name, service in services.items():
        part = _part_of_command(service.get("command") or [])
        if part is not None:
            assert part in PARTS, f"{name} serves an unknown part {part!r}"
            served[part] = name
    assert set(served) == set(PARTS)
    for part, name in served.items():
        service = services[name]
        assert name == part, "service named after its part (the gateway's upstream URLs use the names)"
        port = DEFAULT_PORTS[part]
        exposed = {str(p) for p in service.get("expose", [])}
        exposed |= {str(p).rsplit(":", 1)[-1] for p in service.get("ports", [])}
        assert str(port) in exposed, (part, exposed)
        check = " ".join(service["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}/readyz" in check, (part, check)
        assert service["volumes"] == ["var:/var/lib/lienthong"]
        assert service["environment"]["LIENTHONG_VAR_DIR"] == "/var/lib/lienthong"
        assert service["environment"]["LIENTHONG_ENVIRONMENT"] == "production"
        assert service["environment"]["LIENTHONG_HOST"] == "0.0.0.0"
        for dependency in ("postgres", "rabbitmq"):
            assert service["depends_on"][dependency]["condition"] == "service_healthy"
    assert services["gateway"]["ports"] == ["${GATEWAY_PORT:-8000}:8000"]
    assert all("ports" not in services[p] for p in PARTS if p != "gateway"), "only the gateway is published"


def test_compose_database_url_names_one_database_per_part(compose: dict[str, Any]) -> None:
    env = compose["services"]["intake"]["environment"]
    url = env["LIENTHONG_DATABASE_URL"]
    assert url.startswith("postgresql+asyncpg://lienthong:${POSTGRES_PASSWORD")
    assert url.endswith("@postgres/lienthong_{service}")
    init = (DEPLOY / "postgres" / "init.sql").read_text(encoding="utf-8")
    assert set(re.findall(r"CREATE DATABASE (lienthong_\w+)", init)) == {f"lienthong_{p}" for p in PARTS}
    mounts = compose["services"]["postgres"]["volumes"]
    assert any(m.startswith("./postgres/init.sql:/docker-entrypoint-initdb.d/") for m in mounts)
    assert compose["services"]["postgres"]["image"].startswith("postgres:15")
    assert compose["services"]["rabbitmq"]["image"].startswith("rabbitmq:3.")


def test_compose_gateway_routes_to_every_part_by_its_service_and_port(compose: dict[str, Any]) -> None:
    from gateway.config import CONSOLE, SERVICES

    upstreams = json.loads(compose["services"]["gateway"]["environment"]["LIENTHONG_GATEWAY_UPSTREAMS"])
    assert upstreams == {p: f"http://{p}:{DEFAULT_PORTS[p]}" for p in (*SERVICES, CONSOLE)}
    # the look-up limit is the gateway's alone: no part behind it second-guesses client addresses;
    # the gateway believes X-Forwarded-For from the console only (it forwards its visitors' look-ups)
    services = compose["services"]
    trusting = {name for name, s in services.items() for v in s.get("environment", {}) if "TRUSTED_PROXIES" in v}
    assert trusting <= {"gateway"}
    gateway_trusts = json.loads(services["gateway"]["environment"].get("LIENTHONG_GATEWAY_TRUSTED_PROXIES", "[]"))
    assert gateway_trusts == [services["console"]["networks"]["lienthong"]["ipv4_address"]]


def test_compose_backup_job_runs_the_backup_command_daily(compose: dict[str, Any]) -> None:
    backup = compose["services"]["backup"]
    script = " ".join(backup["command"])
    assert "python -m lienthong backup --to /backups" in script
    assert "sleep" in script and backup["environment"]["BACKUP_EVERY_SECONDS"] == "${BACKUP_EVERY_SECONDS:-86400}"
    assert importlib.util.find_spec("lienthong.backup") is not None
    assert "var:/var/lib/lienthong" in backup["volumes"] and "backups:/backups" in backup["volumes"]
    audit_env = compose["services"]["audit"]["environment"]
    assert backup["environment"]["LIENTHONG_DATABASE_URL"] == audit_env["LIENTHONG_DATABASE_URL"]


def test_compose_mounts_only_files_that_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts {source}, which is missing"
    assert (ROOT / compose["services"]["gateway"]["build"]["dockerfile"]).is_file()


def test_compose_variables_are_settings_of_the_part_that_gets_them(compose: dict[str, Any],
                                                                    accepted: dict[str, set[str]]) -> None:
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        part = _part_of_command(service.get("command") or [])
        for var in env:
            if not var.startswith("LIENTHONG_"):
                continue
            if part is not None:
                assert _readable_by(var, part, accepted), f"{name}: {var} is not a setting of {part}"
            else:  # the backup reads every part's settings
                assert var in accepted, f"{name}: {var} is not a setting of any part"


def _interpolate(value: str, variables: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name, op, rest = match.group(1), match.group(2), match.group(3)
        if name in variables and (variables[name] or not (op or "").startswith(":")):
            return variables[name]
        if op and op.endswith("-"):
            return _interpolate(rest, variables)
        raise AssertionError(f"${{{name}}} has no value in deploy/.env.example and no default")

    return INTERPOLATION.sub(one, value).replace("$$", "$")


def _example_env() -> dict[str, str]:
    values = {}
    for line in (DEPLOY / ".env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def test_every_compose_variable_is_in_the_env_example(compose: dict[str, Any]) -> None:
    documented = set(_example_env())
    used = {m.group(1) for s in _strings(compose) for m in INTERPOLATION.finditer(s)}
    assert used <= documented, f"add to deploy/.env.example: {sorted(used - documented)}"


def test_compose_environment_starts_every_part_in_production(compose: dict[str, Any],
                                                             classes: dict[str, type[Settings]],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """With the secrets filled in, each part's settings validate in production as the container gets them."""
    filled = {k: v for k, v in _example_env().items() if v}
    for key, value in _example_env().items():
        if not value:
            filled[key] = f"test-{key.lower()}"
    filled["DOCUMENT_FILE_KEY"] = base64.b64encode(os.urandom(32)).decode()
    from services.audit.checkpoint import generate_signer_key

    filled["AUDIT_SIGNING_KEY"] = generate_signer_key("audit.example.gov.vn/log")[0]
    for part in PARTS:
        for var in [v for v in os.environ if v.startswith("LIENTHONG_")]:
            monkeypatch.delenv(var)
        for var, value in compose["services"][part]["environment"].items():
            monkeypatch.setenv(var, _interpolate(str(value), filled))
        settings = load_settings(classes[part], part)
        assert settings.environment == "production"
        assert settings.port == DEFAULT_PORTS[part] and settings.host == "0.0.0.0"
        assert settings.resolved_database_url.endswith(f"@postgres/lienthong_{part}")
        assert settings.amqp_url and settings.amqp_url.startswith("amqp://lienthong:")
        # `serve PART` would start with these workers (signing refuses more than one, the
        # gateway's settings refuse several workers on the in-memory rate-limit store)
        assert f"LIENTHONG_{part.upper()}_WORKERS" in compose["services"][part]["environment"]
        assert workers.refusal(part, settings.workers) is None
        if part in ("gateway", "intake"):
            assert settings.workers == 2, f"{part}: the busiest parts get two worker processes"


def test_k8s_scales_parts_by_replicas_one_process_each(manifests: list[dict[str, Any]]) -> None:
    config = _of_kind(manifests, "ConfigMap")["lienthong-config"]["data"]
    assert config["LIENTHONG_WORKERS"] == "1"
    deployments = _of_kind(manifests, "Deployment")
    replicas = {part: deployments[part]["spec"]["replicas"] for part in PARTS}
    assert replicas["signing"] == 1, "signing's token is opened by one process"
    assert all(replicas[p] >= 2 for p in ("gateway", "intake", "document", "audit")), replicas
    # several gateway pods: only the shared store counts a client's requests once
    assert config["LIENTHONG_GATEWAY_RATE_LIMIT_STORE"] == "database"


# --- Kubernetes -----------------------------------------------------------------------------------


def test_kustomization_lists_every_manifest_but_the_secret_template() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = set(kustomization["resources"])
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == files - {"secret.example.yaml"}
    assert all((K8S / r).is_file() for r in listed)


def test_every_part_has_a_deployment_with_probes_on_its_port_and_a_service(manifests: list[dict[str, Any]]) -> None:
    deployments = _of_kind(manifests, "Deployment")
    services = _of_kind(manifests, "Service")
    assert set(deployments) == set(PARTS) and set(services) == set(PARTS)
    for part in PARTS:
        spec = deployments[part]["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in spec["selector"]["matchLabels"].items())
        (container,) = spec["template"]["spec"]["containers"]
        assert _part_of_command(container["command"]) == part
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}

        def port_of(probe: dict[str, Any], _ports: dict[str, int] = ports) -> int:
            port = probe["httpGet"]["port"]
            return _ports[port] if isinstance(port, str) else port

        ready = container["readinessProbe"]
        if part == "gateway":
            # the gateway's /readyz is tokenless only from loopback: asked inside the container
            assert f"http://127.0.0.1:{DEFAULT_PORTS[part]}/readyz" in " ".join(ready["exec"]["command"])
        else:
            assert ready["httpGet"]["path"] == "/readyz" and port_of(ready) == DEFAULT_PORTS[part]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        for probe in ("livenessProbe", "startupProbe"):
            assert port_of(container[probe]) == DEFAULT_PORTS[part], (part, probe)
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
        service = services[part]["spec"]
        assert service["selector"] == spec["selector"]["matchLabels"]
        (sport,) = service["ports"]
        assert sport["port"] == DEFAULT_PORTS[part]
        assert ports[sport["targetPort"]] == DEFAULT_PORTS[part]


def test_configmap_routes_the_gateway_to_the_services(manifests: list[dict[str, Any]]) -> None:
    from gateway.config import CONSOLE, SERVICES

    data = _of_kind(manifests, "ConfigMap")["lienthong-config"]["data"]
    assert json.loads(data["LIENTHONG_GATEWAY_UPSTREAMS"]) == {
        p: f"http://{p}:{DEFAULT_PORTS[p]}" for p in (*SERVICES, CONSOLE)
    }
    assert data["LIENTHONG_ENVIRONMENT"] == "production"


def test_k8s_secret_references_exist_in_the_template(manifests: list[dict[str, Any]]) -> None:
    template = {d["metadata"]["name"]: d for d in yaml.safe_load_all((K8S / "secret.example.yaml").read_text())}
    refs = [r for d in manifests for r in _secret_key_refs(d)]
    assert refs
    for name, key in refs:
        assert name in template, f"no Secret {name} in secret.example.yaml"
        assert not key or key in template[name]["stringData"], (name, key)


def _secret_key_refs(node: Any) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        if "secretKeyRef" in node:
            yield node["secretKeyRef"]["name"], node["secretKeyRef"]["key"]
        if "secret" in node and isinstance(node["secret"], dict) and "secretName" in node["secret"]:
            yield node["secret"]["secretName"], ""
        for value in node.values():
            yield from _secret_key_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _secret_key_refs(item)


def test_k8s_variables_are_settings_of_the_part_that_gets_them(manifests: list[dict[str, Any]],
                                                               accepted: dict[str, set[str]]) -> None:
    for var in _of_kind(manifests, "ConfigMap")["lienthong-config"]["data"]:
        assert var in accepted, f"ConfigMap: {var} is not a setting of any part"
    for name, deployment in _of_kind(manifests, "Deployment").items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for entry in container.get("env", []):
                if entry["name"].startswith("LIENTHONG_"):
                    assert _readable_by(entry["name"], name, accepted), f"{name}: {entry['name']}"
    # anything else in deploy/ (templates, the backup's own units) names real settings too
    for path in [*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.cron"), *DEPLOY.rglob("*.service"), DEPLOY / ".env.example"]:
        for var in VAR.findall(path.read_text(encoding="utf-8")):
            assert var in accepted or var == "LIENTHONG_IMAGE", f"{path.relative_to(ROOT)}: {var} is not a setting"


def test_k8s_gateway_gets_its_token_key_file_from_the_mounted_secret(manifests: list[dict[str, Any]]) -> None:
    data = _of_kind(manifests, "ConfigMap")["lienthong-config"]["data"]
    key_file = Path(data["LIENTHONG_GATEWAY_TOKEN_KEY_FILE"])
    (container,) = _of_kind(manifests, "Deployment")["gateway"]["spec"]["template"]["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert str(key_file.parent) == mounts["token-key"]
    template = {d["metadata"]["name"]: d for d in yaml.safe_load_all((K8S / "secret.example.yaml").read_text())}
    assert key_file.name in template["lienthong-token-key"]["stringData"]


def _cron_field_ok(field: str, low: int, high: int) -> bool:
    for item in field.split(","):
        base, _, step = item.partition("/")
        if step and not (step.isdigit() and int(step) > 0):
            return False
        if base == "*":
            continue
        bounds = base.split("-")
        if not all(b.isdigit() and low <= int(b) <= high for b in bounds) or len(bounds) > 2:
            return False
    return True


def test_backup_cronjob_runs_daily_with_the_parts_settings(manifests: list[dict[str, Any]]) -> None:
    cronjob = _of_kind(manifests, "CronJob")["lienthong-backup"]["spec"]
    fields = cronjob["schedule"].split()
    assert len(fields) == 5
    assert all(_cron_field_ok(f, lo, hi) for f, (lo, hi) in zip(fields, [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)],
                                                                    strict=True))
    assert fields[2:] == ["*", "*", "*"] and fields[0].isdigit() and fields[1].isdigit(), "once a day"
    assert cronjob["concurrencyPolicy"] == "Forbid"
    (container,) = cronjob["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["command"][:5] == ["python", "-m", "lienthong", "backup", "--to"]
    assert {"configMapRef": {"name": "lienthong-config"}} in container["envFrom"]
    assert any(e["name"] == "LIENTHONG_DATABASE_URL" for e in container["env"])


# --- RabbitMQ policies ----------------------------------------------------------------------------


def _policy_for(queue: str, policies: list[dict[str, Any]]) -> dict[str, Any] | None:
    matching = [p for p in policies if re.search(p["pattern"], queue)]
    return max(matching, key=lambda p: p["priority"]) if matching else None


def test_policies_dead_letter_the_parts_queues_and_spare_the_dead_letter_queues() -> None:
    policies = json.loads((DEPLOY / "rabbitmq" / "policies.json").read_text(encoding="utf-8"))["policies"]
    limit = Settings.model_fields["delivery_limit"].default
    for part in PARTS:
        for queue in (part, f"{part}.webhooks"):
            policy = _policy_for(queue, policies)
            assert policy is not None and policy["apply-to"] == "queues", queue
            assert policy["definition"]["dead-letter-exchange"] == DEAD_LETTER_EXCHANGE
            assert policy["definition"]["delivery-limit"] == limit
            assert policy["definition"]["dead-letter-strategy"] == "at-least-once"
            assert policy["definition"]["overflow"] == "reject-publish"  # at-least-once needs it
        dead = _policy_for(f"{part}.dlq", policies)
        assert dead is not None and "delivery-limit" not in dead["definition"]
        assert "dead-letter-exchange" not in dead["definition"]
    assert _policy_for("amq.gen-xyz", policies) is None
    assert _policy_for("someone-else", policies) is None


def test_k8s_policies_configmap_equals_the_policies_file(manifests: list[dict[str, Any]]) -> None:
    configmap = _of_kind(manifests, "ConfigMap")["lienthong-rabbitmq-policies"]
    on_disk = json.loads((DEPLOY / "rabbitmq" / "policies.json").read_text(encoding="utf-8"))
    assert json.loads(configmap["data"]["policies.json"]) == on_disk
    job = _of_kind(manifests, "Job")["lienthong-rabbitmq-policies"]
    script = " ".join(job["spec"]["template"]["spec"]["containers"][0]["command"])
    assert "import /definitions/policies.json" in script


def test_dockerfile_installs_the_project_and_runs_a_part_as_a_user() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert "softhsm2" in text and "postgresql-client" in text
    assert re.search(r"^USER (?!root)\w+", text, re.M)
    assert 'CMD ["python", "-m", "lienthong", "serve", "gateway"]' in text
