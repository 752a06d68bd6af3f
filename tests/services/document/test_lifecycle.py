"""The lifecycle table: which step moves a document where, and which 409 refuses the others."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from services.document import lifecycle
from services.document.lifecycle import Status, Step
from shared.errors import Conflict


@dataclass
class Row:
    status: str
    direction: str | None = None
    code_text: str | None = None


def refusal(step: Step, row: Row) -> Conflict:
    before = row.status
    with pytest.raises(Conflict) as refused:
        lifecycle.move(step, row)
    assert row.status == before  # a refused step changes nothing
    return refused.value


def test_an_outgoing_document_goes_from_draft_to_issued_and_recalled() -> None:
    doc = Row(Status.DRAFT, "outgoing")
    for step, then in (
        (Step.UPLOAD_DRAFT, "draft"),
        (Step.UPLOAD_SIGNED_BY_LEADER, "signed_by_leader"),
        (Step.NUMBER, "numbered"),
        (Step.UPLOAD_NUMBERED, "numbered"),
        (Step.UPLOAD_SEALED, "sealed"),
        (Step.ISSUE, "issued"),
        (Step.RECALL, "recalled"),
    ):
        lifecycle.move(step, doc)
        assert doc.status == then and type(doc.status) is str


def test_an_incoming_document_is_registered_assigned_completed_or_withdrawn() -> None:
    doc = Row(Status.RECEIVED, "incoming")
    for step, then in ((Step.REGISTER, "registered"), (Step.ASSIGN, "assigned"), (Step.COMPLETE, "completed")):
        lifecycle.move(step, doc)
        assert doc.status == then
    lifecycle.move(Step.ASSIGN, doc)  # another assignment leaves a completed document completed
    assert doc.status == "completed"
    lifecycle.move(Step.WITHDRAW, doc)
    assert doc.status == "recalled"
    assert not lifecycle.allows(Step.WITHDRAW, doc.status, doc.direction)


@pytest.mark.parametrize(
    ("step", "status", "direction", "code"),
    [
        (Step.NUMBER, "draft", "outgoing", "not_signed_by_leader"),
        (Step.NUMBER, "sealed", "outgoing", "already_numbered"),
        (Step.NUMBER, "issued", "outgoing", "already_numbered"),
        (Step.PUBLISH, "draft", "outgoing", "not_signed_by_leader"),
        (Step.PUBLISH, "issued", "outgoing", "already_issued"),
        (Step.PUBLISH, "recalled", "outgoing", "conflict"),
        (Step.PUBLISH, "received", "incoming", "conflict"),
        (Step.ISSUE, "issued", "outgoing", "already_issued"),
        (Step.ISSUE, "signed_by_leader", "outgoing", "conflict"),
        (Step.RECALL, "draft", "outgoing", "conflict"),
        (Step.ASSIGN, "recalled", "incoming", "conflict"),
        (Step.ASSIGN, "draft", "outgoing", "conflict"),
        (Step.EDIT, "signed_by_leader", "outgoing", "conflict"),
        (Step.ATTACH, "issued", "outgoing", "conflict"),
        (Step.UPLOAD, "issued", "outgoing", "conflict"),
        (Step.UPLOAD_SEALED, "signed_by_leader", "outgoing", "conflict"),
        (Step.REFUSE, "completed", "incoming", "conflict"),
        (Step.CLOSE_WORK_FILE, "closed", None, "conflict"),
        (Step.COMPLETE_ASSIGNMENT, "completed", None, "conflict"),
    ],
)
def test_a_step_the_table_does_not_allow_is_a_409_with_the_api_s_problem_code(
    step: Step, status: str, direction: str | None, code: str
) -> None:
    problem = refusal(step, Row(status, direction, code_text="01/QĐ-UBND"))
    assert problem.status == 409 and problem.code == code
    assert problem.detail and "{" not in problem.detail  # the detail is filled in


def test_every_document_status_is_reached_or_left_by_some_step() -> None:
    touched = {s for rule in lifecycle.TRANSITIONS.values() for pair in rule.moves.items() for s in pair}
    assert set(Status) <= touched
    assert set(lifecycle.UPLOADS) == {"draft", "signed_by_leader", "numbered", "sealed"}
