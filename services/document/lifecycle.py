"""The document lifecycle: every status a document, an assignment and a work dossier can be in,
and one table of the steps that move them; a step the table does not allow is one 409 from here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shared.errors import Conflict


class Status(StrEnum):
    """Where a document stands (``Document.status``)."""

    # outgoing: drafted, signed by the leader, numbered, sealed by the clerk, issued
    DRAFT = "draft"
    SIGNED_BY_LEADER = "signed_by_leader"
    NUMBERED = "numbered"
    SEALED = "sealed"
    ISSUED = "issued"
    # incoming: arrived, given its arrival number, assigned, its processing done, or sent back
    RECEIVED = "received"
    REGISTERED = "registered"
    ASSIGNED = "assigned"
    COMPLETED = "completed"
    REFUSED = "refused"
    # both: an issued document taken back by its issuer, and the receivers' copies of it
    RECALLED = "recalled"


class AssignmentStatus(StrEnum):
    OPEN = "open"
    COMPLETED = "completed"


class WorkFileStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class NotSignedByLeader(Conflict):
    code, title = "not_signed_by_leader", "The leader has not signed this document yet"


class AlreadyNumbered(Conflict):
    code, title = "already_numbered", "The document already has its number"


class AlreadyIssued(Conflict):
    code, title = "already_issued", "The document is already issued"


class Step(StrEnum):
    """What is done to a document (or an assignment, a work dossier) that depends on its status."""

    EDIT = "edit"  # a draft's metadata
    ATTACH = "attach"  # add an attachment
    UPLOAD = "upload"  # a new version of the main file, status unchanged
    UPLOAD_DRAFT = "upload_draft"
    UPLOAD_SIGNED_BY_LEADER = "upload_signed_by_leader"
    UPLOAD_NUMBERED = "upload_numbered"
    UPLOAD_SEALED = "upload_sealed"
    NUMBER = "number"
    ISSUE = "issue"
    PUBLISH = "publish"  # the clerk's one call; it numbers, uploads and issues through the steps above
    RECALL = "recall"
    REGISTER = "register"
    ASSIGN = "assign"
    COMPLETE = "complete"  # the last main assignment is done
    REFUSE = "refuse"  # sent back to its edXML sender
    WITHDRAW = "withdraw"  # a received copy whose issuer recalled it
    COMPLETE_ASSIGNMENT = "complete_assignment"
    FILE_IN_WORK_FILE = "file_in_work_file"  # a draft started inside a work dossier
    CLOSE_WORK_FILE = "close_work_file"


# The stage an upload names, and the step that puts the document in it.
UPLOADS: Mapping[str, Step] = {
    Status.DRAFT: Step.UPLOAD_DRAFT,
    Status.SIGNED_BY_LEADER: Step.UPLOAD_SIGNED_BY_LEADER,
    Status.NUMBERED: Step.UPLOAD_NUMBERED,
    Status.SEALED: Step.UPLOAD_SEALED,
}


@dataclass(frozen=True)
class Rule:
    """``moves``: from which status the step may be taken, and the status it leaves behind.
    ``refused`` is the 409's detail (``{status}``, ``{direction}``, ``{code}`` are filled in);
    ``problems`` names a more precise problem for some statuses the step is refused from."""

    moves: Mapping[str, str]
    refused: str
    direction: str | None = None
    problem: type[Conflict] = Conflict
    problems: Mapping[str, tuple[type[Conflict], str]] = field(default_factory=dict)


def _stay(*statuses: str) -> dict[str, str]:
    return {s: s for s in statuses}


_INCOMING_LIVE = (Status.RECEIVED, Status.REGISTERED, Status.ASSIGNED, Status.COMPLETED, Status.REFUSED)
_ALREADY_NUMBERED = (AlreadyNumbered, "this document already has its number {code}")

TRANSITIONS: Mapping[Step, Rule] = {
    Step.EDIT: Rule(_stay(Status.DRAFT), "only a draft's metadata can change; this one is {status}"),
    Step.ATTACH: Rule(
        _stay(*(s for s in Status if s not in (Status.ISSUED, Status.RECALLED))),
        "an issued document's files cannot change",
    ),
    Step.UPLOAD: Rule(
        _stay(Status.DRAFT, Status.SIGNED_BY_LEADER, Status.NUMBERED, Status.SEALED),
        "no content can be uploaded to a {status} document",
    ),
    Step.UPLOAD_DRAFT: Rule({Status.DRAFT: Status.DRAFT}, "a {status} document cannot move to draft by an upload"),
    # After the leader signed, a corrected signed version may replace it until numbering.
    Step.UPLOAD_SIGNED_BY_LEADER: Rule(
        {Status.DRAFT: Status.SIGNED_BY_LEADER, Status.SIGNED_BY_LEADER: Status.SIGNED_BY_LEADER},
        "a {status} document cannot move to signed_by_leader by an upload",
    ),
    Step.UPLOAD_NUMBERED: Rule(
        {Status.NUMBERED: Status.NUMBERED}, "a {status} document cannot move to numbered by an upload"
    ),
    Step.UPLOAD_SEALED: Rule(
        {Status.NUMBERED: Status.SEALED, Status.SEALED: Status.SEALED},
        "a {status} document cannot move to sealed by an upload",
    ),
    Step.NUMBER: Rule(
        {Status.SIGNED_BY_LEADER: Status.NUMBERED},
        "a number is given after the leader's signature (status signed_by_leader)",
        problem=NotSignedByLeader,
        problems=dict.fromkeys((Status.NUMBERED, Status.SEALED, Status.ISSUED, Status.RECALLED), _ALREADY_NUMBERED),
    ),
    Step.ISSUE: Rule(
        {Status.NUMBERED: Status.ISSUED, Status.SEALED: Status.ISSUED},
        "only a numbered document can be issued",
        problems={Status.ISSUED: (AlreadyIssued, "already issued")},
    ),
    # A call that stopped half-way (numbered, or sealed) continues from where it stopped.
    Step.PUBLISH: Rule(
        _stay(Status.SIGNED_BY_LEADER, Status.NUMBERED, Status.SEALED),
        "a {status} {direction} document cannot be published",
        direction="outgoing",
        problems={
            Status.DRAFT: (
                NotSignedByLeader,
                "the leader has not signed this draft yet (upload the signed_by_leader version)",
            ),
            Status.ISSUED: (AlreadyIssued, "already issued as {code}"),
        },
    ),
    Step.RECALL: Rule(
        {Status.ISSUED: Status.RECALLED}, "only an issued outgoing document can be recalled", direction="outgoing"
    ),
    Step.REGISTER: Rule({Status.RECEIVED: Status.REGISTERED}, "a {status} document is already registered"),
    # Assigning more people to a document already in processing leaves its status as it is.
    Step.ASSIGN: Rule(
        {
            Status.RECEIVED: Status.ASSIGNED,
            Status.REGISTERED: Status.ASSIGNED,
            **_stay(Status.ASSIGNED, Status.COMPLETED, Status.REFUSED),
        },
        "only a registered incoming document is assigned",
        direction="incoming",
    ),
    # Completing its last main assignment completes the document whatever came meanwhile.
    Step.COMPLETE: Rule(
        dict.fromkeys((*_INCOMING_LIVE, Status.RECALLED), Status.COMPLETED),
        "a {status} document cannot be completed",
    ),
    Step.REFUSE: Rule(
        dict.fromkeys((Status.RECEIVED, Status.REGISTERED, Status.ASSIGNED), Status.REFUSED),
        "a {status} document cannot be refused",
    ),
    Step.WITHDRAW: Rule(dict.fromkeys(_INCOMING_LIVE, Status.RECALLED), "a {status} document cannot be withdrawn"),
    Step.COMPLETE_ASSIGNMENT: Rule({AssignmentStatus.OPEN: AssignmentStatus.COMPLETED}, "already completed"),
    Step.FILE_IN_WORK_FILE: Rule(_stay(WorkFileStatus.OPEN), "the work file is closed"),
    Step.CLOSE_WORK_FILE: Rule({WorkFileStatus.OPEN: WorkFileStatus.CLOSED}, "already closed"),
}


def allows(step: Step, status: str, direction: str | None = None) -> bool:
    rule = TRANSITIONS[step]
    return status in rule.moves and (rule.direction is None or direction is None or direction == rule.direction)


def target(step: Step, status: str, *, direction: str | None = None, code: str | None = None) -> str:
    """The status ``step`` leaves behind, or the 409 that refuses it."""
    rule = TRANSITIONS[step]
    if allows(step, status, direction):
        return str(rule.moves[status])
    problem, detail = rule.problems.get(status, (rule.problem, rule.refused))
    raise problem(detail.format(status=status, direction=direction, code=code))


def check(step: Step, row: Any) -> None:
    """Refuse ``step`` (409) unless the row's status allows it."""
    target(step, row.status, direction=getattr(row, "direction", None), code=getattr(row, "code_text", None))


def move(step: Step, row: Any) -> None:
    """Take ``step`` on a document, an assignment or a work dossier: its new status, or a 409."""
    row.status = target(
        step, row.status, direction=getattr(row, "direction", None), code=getattr(row, "code_text", None)
    )
