"""One OpenAPI document from the parts' documents, and the route table the edge reads from it."""

from __future__ import annotations

from typing import Any

from gateway.config import get_settings
from gateway.openapi import RouteTable, assemble
from lienthong.contracts import openapi_documents

PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _doc(paths: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "x", "version": "1"},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {"HTTPBearer": {"type": "http", "scheme": "bearer"}}},
    }


def _op(op_id: str, roles: list[str], ref: str | None = None, **extra: Any) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": "ok"}}
    if ref:
        responses["200"]["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}
    return {"operationId": op_id, "x-roles": roles, "security": [{"HTTPBearer": []}], "responses": responses, **extra}


def test_paths_are_prefixed_and_clashing_schemas_renamed_with_their_references() -> None:
    gateway = _doc({"/api/auth/jwks": {"get": _op("jwks", ["public"])}}, {})
    intake = _doc(
        {
            "/dossiers/{code}": {"get": _op("get_item", ["desk_officer"], "Item")},
            "/healthz": {"get": _op("healthz", ["public"])},
        },
        {
            "Item": {"type": "object", "properties": {"owner": {"$ref": "#/components/schemas/Owner"}}},
            "Owner": {"type": "object", "properties": {"name": {"type": "string"}}},
            "Shared": {"type": "string"},
        },
    )
    document = _doc(
        {"/documents/{id}": {"get": _op("get_item", ["clerk"], "Item")}},
        {
            "Item": {"type": "object", "properties": {"owner": {"$ref": "#/components/schemas/Owner"}}},
            "Owner": {"type": "object", "properties": {"organ": {"type": "string"}}},
            "Shared": {"type": "string"},
        },
    )
    merged = assemble({"document": document, "gateway": gateway, "intake": intake})
    assert list(merged["paths"]) == [
        "/api/auth/jwks",
        "/api/intake/dossiers/{code}",
        "/api/intake/healthz",
        "/api/document/documents/{id}",
    ]
    schemas = merged["components"]["schemas"]
    # same name, same shape: shared; same name, other shape: renamed, and so is what refers to it
    assert "Shared" in schemas and "document_Shared" not in schemas
    assert schemas["document_Owner"]["properties"] == {"organ": {"type": "string"}}
    assert schemas["document_Item"]["properties"]["owner"]["$ref"] == "#/components/schemas/document_Owner"
    assert schemas["Item"]["properties"]["owner"]["$ref"] == "#/components/schemas/Owner"
    doc_op = merged["paths"]["/api/document/documents/{id}"]["get"]
    assert (
        doc_op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        == "#/components/schemas/document_Item"
    )
    assert doc_op["operationId"] == "document_get_item"
    assert merged["paths"]["/api/intake/dossiers/{code}"]["get"]["operationId"] == "intake_get_item"
    # one auth scheme, named on every protected operation and on no public one
    assert set(merged["components"]["securitySchemes"]) == {"bearer", "oauth2"}
    assert merged["components"]["securitySchemes"]["oauth2"]["flows"]["password"]["tokenUrl"] == "/api/auth/token"
    assert doc_op["security"] == [{"bearer": []}, {"oauth2": []}]
    assert "security" not in merged["paths"]["/api/intake/healthz"]["get"]
    # what the gateway itself may answer is documented on every operation
    for status in ("413", "429", "503"):
        assert doc_op["responses"][status]["content"]["application/problem+json"]["schema"] == PROBLEM
    assert "401" in doc_op["responses"] and "401" not in merged["paths"]["/api/auth/jwks"]["get"]["responses"]
    assert "Problem" in schemas and "InvalidParam" in schemas


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_the_real_parts_assemble_into_one_consistent_document() -> None:
    merged = assemble(openapi_documents())
    schemas = merged["components"]["schemas"]
    for ref in _refs(merged):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    operation_ids: list[str] = []
    missing_roles = []
    for path, item in merged["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            operation_ids.append(operation["operationId"])
            if not operation.get("x-roles"):
                missing_roles.append(f"{method.upper()} {path}")
    assert not missing_roles, f"routes that do not declare who may call them: {missing_roles}"
    assert len(operation_ids) == len(set(operation_ids))
    for part in ("auth", "intake", "document", "signing", "audit", "notify"):
        assert any(p.startswith(f"/api/{part}/") for p in merged["paths"]), part


def test_the_route_table_finds_templates_roles_and_body_limits() -> None:
    settings = get_settings(route_body_limits={"POST /api/intake/dossiers": 2048})
    document = assemble(
        {
            "intake": _doc(
                {
                    "/dossiers/lookup": {"get": _op("lookup", ["public"])},
                    "/dossiers/{code}": {
                        "get": _op("get", ["desk_officer"]),
                        "put": _op("put", ["desk_officer"], **{"x-max-body-bytes": 4096}),
                    },
                    "/dossiers": {"post": _op("post", ["citizen"], requestBody={"content": {"application/json": {}}})},
                    "/dossiers/{code}/files": {
                        "post": _op("upload", ["desk_officer"], requestBody={"content": {"multipart/form-data": {}}})
                    },
                },
                {},
            )
        }
    )
    table = RouteTable.from_openapi(document, settings)
    lookup = table.match("intake", "GET", "/api/intake/dossiers/lookup")
    assert lookup is not None and lookup.template == "/api/intake/dossiers/lookup" and lookup.public
    one = table.match("intake", "GET", "/api/intake/dossiers/000.00.00.H56-260101-0001")
    assert one is not None and one.template == "/api/intake/dossiers/{code}" and one.roles == {"desk_officer"}
    assert table.match("intake", "HEAD", "/api/intake/dossiers/x") == one
    assert table.match("intake", "PUT", "/api/intake/dossiers/x").body_limit == 4096  # type: ignore[union-attr]
    assert table.match("intake", "POST", "/api/intake/dossiers").body_limit == 2048  # type: ignore[union-attr]
    upload = table.match("intake", "POST", "/api/intake/dossiers/x/files")
    assert upload is not None and upload.body_limit == settings.max_upload_bytes
    assert table.match("intake", "GET", "/api/intake/dossiers/a/b/c") is None
    assert table.match("intake", "DELETE", "/api/intake/dossiers/x") is None
    assert table.match("document", "GET", "/api/document/x") is None


async def test_the_running_gateway_reads_only_the_api_parts_documents() -> None:
    """The console serves pages; its document (health and metrics) must not turn into
    /api/console/… routes that nothing behind the gateway answers."""
    import asyncio

    from gateway.openapi import ApiDocuments

    asked: list[str] = []
    documents = openapi_documents()

    class Parts:
        bases = {p: f"http://127.0.0.1:{9000 + i}" for i, p in enumerate([*documents, "console"])}

        async def get_json(self, part: str, path: str) -> dict[str, Any]:
            asked.append(part)
            if part == "console":
                return _doc({"/readyz": {"get": _op("readyz", ["operator"])}}, {})
            return documents[part]

    settings = get_settings().model_copy(update={"upstreams": dict(Parts.bases)})
    api = ApiDocuments(settings, None)
    job = asyncio.create_task(api.run(Parts()))  # type: ignore[arg-type]
    for _ in range(100):
        if not api.missing and api.assembled.get("paths"):
            break
        await asyncio.sleep(0.01)
    job.cancel()
    assert "console" not in asked
    assert not [p for p in api.assembled["paths"] if p.startswith("/api/console")]
    assert any(p.startswith("/api/intake/") for p in api.assembled["paths"])
