"""One OpenAPI document for the whole API, and the gateway's route table read from it.

:func:`assemble` merges the gateway's own document with each part's, paths prefixed
``/api/<part>``; ``make contracts`` calls it with documents built offline from the apps, the
running gateway with documents fetched from the parts. The same document gives the gateway its
:class:`RouteTable`: the route template of each request (for access records, rate limits and
metrics), the roles a route admits (``x-roles``) and its body limit.
"""

from __future__ import annotations

import asyncio
import copy
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from gateway.config import SERVICES, GatewaySettings
from shared.aio import wait_event
from shared.errors import PROBLEM_JSON, Problem

if TYPE_CHECKING:
    from gateway.proxy import Upstreams

log = structlog.get_logger("openapi")

REF_PREFIX = "#/components/schemas/"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token from POST /api/auth/token (or the configured OIDC provider).",
    },
    "oauth2": {
        "type": "oauth2",
        "flows": {
            "password": {"tokenUrl": "/api/auth/token", "scopes": {}},
            "clientCredentials": {"tokenUrl": "/api/auth/token", "scopes": {}},
        },
    },
}
OPERATION_SECURITY = [{"bearer": []}, {"oauth2": []}]
# What the gateway itself may answer on any proxied route.
GATEWAY_RESPONSES = {
    "413": "Request body too large for this route",
    "429": "Too many requests; see Retry-After",
    "503": "The part is unavailable (circuit open or not answering)",
}
FILE_MEDIA = ("multipart/", "application/octet-stream", "application/pdf", "image/", "application/zip")


def _part_order(part: str) -> tuple[int, str]:
    if part == "gateway":
        return (0, part)
    return (1 + SERVICES.index(part), part) if part in SERVICES else (len(SERVICES) + 1, part)


def _rewrite_refs(node: Any, renames: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(REF_PREFIX):
                name = value[len(REF_PREFIX) :]
                out[key] = REF_PREFIX + renames.get(name, name)
            else:
                out[key] = _rewrite_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, renames) for v in node]
    return node


def _problem_schemas() -> dict[str, Any]:
    schema = Problem.model_json_schema(ref_template=REF_PREFIX + "{model}")
    defs = schema.pop("$defs", {})
    return {"Problem": schema, **defs}


def assemble(documents: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Merge the parts' OpenAPI documents into the gateway's one.

    ``documents`` maps a part to its document: ``"gateway"`` (its own routes, already under
    ``/api/auth``) and each service (``intake``, …), whose paths get the ``/api/<part>`` prefix.
    Schemas of the same name and shape are shared; a clash renames the later one
    ``<part>_<Name>``. Operation ids get the part as a prefix. Every operation names the bearer
    scheme unless its ``x-roles`` say ``public``.
    """
    parts = sorted(documents, key=_part_order)
    own = documents.get("gateway", {})
    merged: dict[str, Any] = {
        "openapi": own.get("openapi", "3.1.0"),
        "info": {
            "title": "lienthong",
            "version": own.get("info", {}).get("version", "1.0.0"),
            "description": "One API for the one-stop shop (intake), official documents, signatures, "
            "audit and webhooks (notify). Each part is under /api/<part>/; tokens come from "
            "POST /api/auth/token. Every error is application/problem+json.",
        },
        "paths": {},
        "components": {"schemas": {}, "securitySchemes": copy.deepcopy(SECURITY_SCHEMES)},
        "tags": [],
    }
    schemas: dict[str, Any] = merged["components"]["schemas"]
    tags_seen: set[str] = set()
    for part in parts:
        document = documents[part]
        prefix = "" if part == "gateway" else f"/api/{part}"
        theirs = document.get("components", {}).get("schemas", {})
        renames = _renames(part, theirs, schemas)
        for name, schema in theirs.items():
            schemas.setdefault(renames.get(name, name), _rewrite_refs(schema, renames))
        for path, item in document.get("paths", {}).items():
            merged["paths"][prefix + path] = _operation_item(part, _rewrite_refs(item, renames))
        for tag in document.get("tags", []):
            if tag.get("name") not in tags_seen:
                tags_seen.add(tag.get("name"))
                merged["tags"].append(tag)
    for name, schema in _problem_schemas().items():
        schemas.setdefault(name, schema)
    if not merged["tags"]:
        del merged["tags"]
    return merged


def _renames(part: str, theirs: Mapping[str, Any], ours: Mapping[str, Any]) -> dict[str, str]:
    """Names of ``part``'s schemas that must change to avoid a different schema of the same name.

    Renaming one schema changes the text of those referring to it, so repeat until stable.
    """
    renames: dict[str, str] = {}
    while True:
        changed = False
        for name, schema in theirs.items():
            if name in renames:
                continue
            existing = ours.get(name)
            if existing is not None and existing != _rewrite_refs(schema, renames):
                renames[name] = f"{part}_{name}"
                changed = True
        if not changed:
            return renames


def _operation_item(part: str, item: dict[str, Any]) -> dict[str, Any]:
    for method in METHODS:
        operation = item.get(method)
        if not isinstance(operation, dict):
            continue
        if part != "gateway" and "operationId" in operation:
            operation["operationId"] = f"{part}_{operation['operationId']}"
        # a part's own port may answer anyone (probes, scrapers) where the gateway must not
        gateway_roles = operation.pop("x-gateway-roles", None)
        if gateway_roles:
            operation["x-roles"] = sorted(gateway_roles)
        roles = operation.get("x-roles") or []
        if "public" in roles:
            operation.pop("security", None)
        else:
            operation["security"] = copy.deepcopy(OPERATION_SECURITY)
        responses = operation.setdefault("responses", {})
        # FastAPI documents its default 422 as HTTPValidationError JSON; every part answers
        # problem+json instead, and 400 (malformed body, unknown query parameter) anywhere
        validation = responses.get("422")
        if validation is None or "HTTPValidationError" in str(validation):
            responses["422"] = _problem_response("The request is not valid")
        responses.setdefault("400", _problem_response("Malformed body or unknown query parameter"))
        extra = dict(GATEWAY_RESPONSES)
        if "public" not in roles:
            extra["401"] = "Missing, malformed, expired or forged token"
        for status, description in extra.items():
            responses.setdefault(status, _problem_response(description))
    return item


def _problem_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": {"$ref": REF_PREFIX + "Problem"}}}}


# --- the route table ----------------------------------------------------------------------


@dataclass(frozen=True)
class RouteInfo:
    """What the gateway knows of one operation before forwarding it."""

    template: str
    method: str
    roles: frozenset[str]
    body_limit: int

    @property
    def public(self) -> bool:
        return "public" in self.roles


@dataclass(frozen=True)
class _Template:
    template: str
    regex: re.Pattern[str] | None
    operations: dict[str, RouteInfo]


_PARAM = re.compile(r"\{[^}/]+\}")


def _compile(template: str) -> re.Pattern[str] | None:
    if "{" not in template:
        return None
    pattern, last = "", 0
    for m in _PARAM.finditer(template):
        pattern += re.escape(template[last : m.start()]) + "[^/]+"
        last = m.end()
    pattern += re.escape(template[last:])
    return re.compile(pattern)


def _body_limit(template: str, method: str, operation: Mapping[str, Any], settings: GatewaySettings) -> int:
    override = settings.route_body_limits.get(f"{method} {template}")
    if override is not None:
        return override
    declared = operation.get("x-max-body-bytes")
    if isinstance(declared, int) and declared > 0:
        return declared
    media = (operation.get("requestBody") or {}).get("content", {})
    if any(m.startswith(FILE_MEDIA) for m in media):
        return settings.max_upload_bytes
    return settings.max_json_body_bytes


class RouteTable:
    """Templates per part in the order the part declares them (the order its router matches)."""

    def __init__(self, by_part: dict[str, list[_Template]]) -> None:
        self._by_part = by_part

    @classmethod
    def from_openapi(cls, document: Mapping[str, Any], settings: GatewaySettings) -> RouteTable:
        by_part: dict[str, list[_Template]] = {}
        for template, item in document.get("paths", {}).items():
            segments = template.split("/")
            if len(segments) < 3 or segments[1] != "api":
                continue
            operations = {}
            for method in METHODS:
                operation = item.get(method)
                if isinstance(operation, dict):
                    verb = method.upper()
                    operations[verb] = RouteInfo(
                        template=template,
                        method=verb,
                        roles=frozenset(operation.get("x-roles") or ()),
                        body_limit=_body_limit(template, verb, operation, settings),
                    )
            by_part.setdefault(segments[2], []).append(_Template(template, _compile(template), operations))
        return cls(by_part)

    def parts(self) -> Iterable[str]:
        return self._by_part.keys()

    def match(self, part: str, method: str, path: str) -> RouteInfo | None:
        """The operation ``method path`` reaches, or None (unknown path, or wrong method)."""
        for entry in self._by_part.get(part, ()):
            if entry.regex is None:
                if entry.template != path:
                    continue
            elif entry.regex.fullmatch(path) is None:
                continue
            info = entry.operations.get(method) or (entry.operations.get("GET") if method == "HEAD" else None)
            if info is not None:
                return info
        return None


# --- the running gateway's copy ------------------------------------------------------------


class ApiDocuments:
    """The parts' documents as last fetched, the assembled document and its route table.

    A part that does not answer (yet) is left out and asked again soon; the rest is re-read every
    ``openapi_refresh_seconds``, or at once (at most every 10 s) when a request names a path the
    table does not know.
    """

    def __init__(self, settings: GatewaySettings, own: Callable[[], dict[str, Any]] | None) -> None:
        self.settings = settings
        self._own = own
        self.documents: dict[str, dict[str, Any]] = {}
        self.assembled: dict[str, Any] = {}
        self.routes = RouteTable({})
        self._stale: set[str] = set()
        self._asked: dict[str, float] = {}
        self._wakeup = asyncio.Event()
        self.rebuild()

    def rebuild(self) -> None:
        documents = dict(self.documents)
        if self._own is not None:
            documents["gateway"] = self._own()
        assembled = assemble(documents)
        missing = [p for p in self.settings.upstreams if p in SERVICES and p not in self.documents]
        if missing:
            assembled["info"]["x-unavailable-parts"] = missing
        self.assembled = assembled
        self.routes = RouteTable.from_openapi(assembled, self.settings)

    def stale(self, part: str) -> None:
        now = time.monotonic()
        if part in SERVICES and now - self._asked.get(part, 0.0) > 10.0:
            self._asked[part] = now
            self._stale.add(part)
            self._wakeup.set()

    async def fetch(self, upstreams: Upstreams, parts: Iterable[str]) -> None:
        async def one(part: str) -> tuple[str, dict[str, Any] | None]:
            try:
                return part, await upstreams.get_json(part, "/openapi.json")
            except Exception as exc:
                log.info("openapi_unavailable", part=part, error=repr(exc)[:200])
                return part, None

        changed = False
        for part, document in await asyncio.gather(*(one(p) for p in parts)):
            if document is not None and document != self.documents.get(part):
                self.documents[part] = document
                changed = True
        if changed or not self.assembled:
            self.rebuild()

    @property
    def missing(self) -> list[str]:
        return [p for p in self.settings.upstreams if p in SERVICES and p not in self.documents]

    async def run(self, upstreams: Upstreams) -> None:
        """Background job: keep the documents fresh."""
        delay = 0.2
        last_full = time.monotonic()
        # the console serves pages, not API: its document (health and metrics only) stays out,
        # or the assembled document would list /api/console/… routes nothing answers
        api_parts = [p for p in upstreams.bases if p in SERVICES]
        await self.fetch(upstreams, api_parts)
        while True:
            missing = self.missing
            wait = delay if missing else self.settings.openapi_refresh_seconds
            self._wakeup.clear()
            await wait_event(self._wakeup, wait)
            if missing:
                delay = min(delay * 2, 5.0)
            if time.monotonic() - last_full >= self.settings.openapi_refresh_seconds:
                parts, last_full = list(api_parts), time.monotonic()
            else:
                parts = sorted(set(self.missing) | self._stale)
            self._stale.clear()
            if parts:
                await self.fetch(upstreams, parts)
            if not self.missing:
                delay = 0.2
