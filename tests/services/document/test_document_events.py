"""Every event document emits names who caused it: the person behind the token for what a user
did, the system with the event it applied for what the part did by itself."""

from __future__ import annotations

from shared.events import Actor
from tests.services.document.conftest import DEPARTMENT, PROVINCE, DocumentApi, dossier_received, signed_draft
from tests.waiting import eventually

PDF = {"Content-Type": "application/pdf"}


async def test_no_document_event_has_a_null_actor(api: DocumentApi, pdfs: dict[str, bytes]) -> None:
    clerk = api.token("clerk", clearance=3, sub="thu-ky")
    await api.publish("dossier.received", dossier_received("000.00.00.H56-261203-0001", status=2))
    r = await api.client.post(
        "/workfiles", headers=api.token("specialist"), json={"organ_id": PROVINCE, "file_notation": "KH-01",
                                                            "title": "Kế hoạch năm"}
    )
    assert r.status_code == 201
    assert (await api.client.post(f"/workfiles/{r.json()['id']}/close", headers=clerk)).status_code == 200

    doc = await signed_draft(api, pdfs, recipients=[{"organ_id": DEPARTMENT, "organ_name": "Sở Tư pháp"}])
    assert (await api.client.post(f"/documents/{doc['id']}/number", headers=clerk)).status_code == 200
    etag = (await api.client.get(f"/documents/{doc['id']}", headers=clerk)).headers["ETag"]
    r = await api.client.post(f"/documents/{doc['id']}/content", params={"stage": "sealed"}, content=pdfs["sealed"],
                              headers={**clerk, **PDF, "If-Match": etag})
    assert r.status_code == 201, r.text
    assert (await api.client.post(f"/documents/{doc['id']}/issue", headers=clerk)).status_code == 200
    await eventually(lambda: _has(api, "document.registered"))
    r = await api.client.post(
        "/documents/incoming",
        headers=clerk,
        json={"agency": PROVINCE, "type_key": "CV", "subject": "Đề nghị", "code": "12/STP-VP",
              "issuing_organ": {"organ_id": DEPARTMENT}},
    )
    incoming = r.json()
    r = await api.client.post(f"/documents/{incoming['id']}/assignments", headers=api.token("leader"),
                              json={"assignee": "chuyenvien"})
    assert r.status_code == 201
    assert (await api.client.post(f"/documents/{doc['id']}/recall", headers=clerk, json={})).status_code == 200

    events = await api.events()
    kinds = {e.routing_key for e in events}
    assert {"workfile.opened", "workfile.closed", "document.drafted", "document.numbered", "document.issued",
            "document.received", "document.registered", "document.assigned", "document.recalled"} <= kinds
    for event in events:
        assert event.data.get("actor") is not None, event.routing_key
        Actor.model_validate(event.data["actor"])
    by_type = {e.routing_key: e.data["actor"] for e in events}
    assert by_type["document.numbered"]["sub"] == "thu-ky" and by_type["document.numbered"]["roles"] == ["clerk"]
    assert by_type["document.drafted"]["sub"] == "specialist" and by_type["document.drafted"]["kind"] == "user"
    assert by_type["document.received"]["kind"] == "system"
    assert by_type["document.received"]["reason"] == f"document.issued document:{doc['id']} to {DEPARTMENT}"
    opened = [e.data["actor"] for e in events if e.routing_key == "workfile.opened"]
    assert [a["kind"] for a in opened] == ["system", "user"]


async def _has(api: DocumentApi, routing_key: str) -> bool:
    return bool(await api.events(routing_key))
