"""Trạng thái hồ sơ một cửa: the ten dossier statuses, their allowed transitions and the clock.

Status codes are those Thanh Hóa's system uses when syncing with the national portal; the
transitions and clock rules are data (tables below) so that a change of regulation is a change
of table, not of code.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import IntEnum, StrEnum
from types import MappingProxyType


class DossierStatus(IntEnum):
    """Trạng thái hồ sơ (codes 1–10 as exchanged with the national portal)."""

    def __new__(cls, code: int, label_vi: str, label_en: str) -> DossierStatus:
        member = int.__new__(cls, code)
        member._value_ = code
        member.label_vi = label_vi  # type: ignore[attr-defined]
        member.label_en = label_en  # type: ignore[attr-defined]
        return member

    label_vi: str
    label_en: str

    SUBMITTED = 1, "Mới đăng ký", "Submitted, not yet accepted"
    ACCEPTED = 2, "Được tiếp nhận", "Accepted"
    REFUSED = 3, "Không được tiếp nhận", "Refused"
    PROCESSING = 4, "Đang xử lý", "Being processed"
    SUPPLEMENT_REQUESTED = 5, "Yêu cầu bổ sung", "Supplement requested"
    FEES_REQUESTED = 6, "Yêu cầu nghĩa vụ tài chính", "Financial obligations requested"
    WITHDRAWN = 7, "Công dân rút hồ sơ", "Withdrawn by the applicant"
    STOPPED = 8, "Dừng xử lý", "Processing stopped"
    FINISHED = 9, "Đã xử lý xong", "Finished, result ready"
    RETURNED = 10, "Đã trả kết quả", "Result returned"


class Action(StrEnum):
    """What a user does to a dossier; each action is one row of ``TRANSITIONS``."""

    ACCEPT = "accept"
    REFUSE = "refuse"
    START_PROCESSING = "start_processing"
    REQUEST_SUPPLEMENT = "request_supplement"
    SUPPLEMENT_RECEIVED = "supplement_received"
    REQUEST_FEES = "request_fees"
    FEES_PAID = "fees_paid"
    WITHDRAW = "withdraw"
    STOP = "stop"
    FINISH = "finish"
    RETURN_RESULT = "return_result"


S = DossierStatus

class Channel(StrEnum):
    ONLINE = "online"
    DESK = "desk"


# Where a new dossier starts. Online it waits for the desk (1). At the desk the officer checks
# completeness with the applicant present, so a dossier is registered only when accepted (2); one
# refused at the desk gets form 03 without ever becoming a dossier.
ENTRY_STATUS: Mapping[Channel, DossierStatus] = MappingProxyType(
    {Channel.ONLINE: S.SUBMITTED, Channel.DESK: S.ACCEPTED}
)


def initial_status(channel: Channel | str) -> DossierStatus:
    return ENTRY_STATUS[Channel(channel)]


@dataclass(frozen=True, slots=True)
class Transition:
    """One allowed action: from any of ``sources`` to ``target``.

    ``target=None`` means "back to the status the dossier was paused from". When the source is
    the supplement pause (5), ``paused_from`` (if set) limits the rule to dossiers that were
    paused from one of those statuses.
    """

    action: Action
    sources: frozenset[DossierStatus]
    target: DossierStatus | None
    paused_from: frozenset[DossierStatus] | None = None


# Reviewed against DOMAIN.md §3 (statuses [confirmed], lifecycle [secondary]). Changes from the
# first draft of this table, and why:
# - refuse is allowed from 1 only, not from 2: status 3 means "not accepted", and a dossier in 2
#   has been accepted (its clock runs). Refusing an accepted dossier is either a negative result
#   (finish → 9, with a written answer) or stop (8), never "not accepted".
# - refuse is also allowed from 5 when the pause came from 1: an online dossier may be asked for
#   a supplement before it is accepted; if the applicant cannot complete it, the desk refuses it
#   (form 03) instead of stopping a dossier it never accepted.
# - stop from 5 only when the pause came from 2 or 4: an accepted dossier whose supplement
#   never comes cannot be "not accepted" any more, so it is stopped; one never accepted is
#   refused (above).
# - supplement_received returns to the status the dossier was paused from (1, 2 or 4): a
#   supplement asked before acceptance leads back to the desk's accept/refuse decision, one
#   asked during processing resumes processing.
# Kept as drafted: request_supplement from 1|2|4 (the supplement must list all missing items:
# form 02); fees requested only during processing; withdraw at any point before a result
# exists; stop once the dossier is being processed (4|6, and 5 as above).
TRANSITIONS: tuple[Transition, ...] = (
    Transition(Action.ACCEPT, frozenset({S.SUBMITTED}), S.ACCEPTED),
    Transition(Action.REFUSE, frozenset({S.SUBMITTED}), S.REFUSED),
    Transition(
        Action.REFUSE,
        frozenset({S.SUPPLEMENT_REQUESTED}),
        S.REFUSED,
        paused_from=frozenset({S.SUBMITTED}),
    ),
    Transition(Action.START_PROCESSING, frozenset({S.ACCEPTED}), S.PROCESSING),
    Transition(
        Action.REQUEST_SUPPLEMENT,
        frozenset({S.SUBMITTED, S.ACCEPTED, S.PROCESSING}),
        S.SUPPLEMENT_REQUESTED,
    ),
    Transition(Action.SUPPLEMENT_RECEIVED, frozenset({S.SUPPLEMENT_REQUESTED}), None),
    Transition(Action.REQUEST_FEES, frozenset({S.PROCESSING}), S.FEES_REQUESTED),
    Transition(Action.FEES_PAID, frozenset({S.FEES_REQUESTED}), S.PROCESSING),
    Transition(
        Action.WITHDRAW,
        frozenset(
            {S.SUBMITTED, S.ACCEPTED, S.PROCESSING, S.SUPPLEMENT_REQUESTED, S.FEES_REQUESTED}
        ),
        S.WITHDRAWN,
    ),
    Transition(Action.STOP, frozenset({S.PROCESSING, S.FEES_REQUESTED}), S.STOPPED),
    Transition(
        Action.STOP,
        frozenset({S.SUPPLEMENT_REQUESTED}),
        S.STOPPED,
        paused_from=frozenset({S.ACCEPTED, S.PROCESSING}),
    ),
    Transition(Action.FINISH, frozenset({S.PROCESSING}), S.FINISHED),
    Transition(Action.RETURN_RESULT, frozenset({S.FINISHED}), S.RETURNED),
)

# Statuses a supplement can be requested from, i.e. the possible ``paused_from`` values.
PAUSABLE_STATUSES: frozenset[DossierStatus] = next(
    t.sources for t in TRANSITIONS if t.action is Action.REQUEST_SUPPLEMENT
)


class TransitionNotAllowed(Exception):
    """The action is not allowed from the dossier's current status."""

    def __init__(
        self,
        current: DossierStatus,
        action: Action | str,
        paused_from: DossierStatus | None = None,
    ) -> None:
        self.current = DossierStatus(current)
        self.action = action
        self.paused_from = paused_from
        detail = f" (paused from {paused_from.name})" if paused_from is not None else ""
        super().__init__(
            f"action {action!s} is not allowed from status "
            f"{self.current.value} {self.current.name}{detail}"
        )


def _matches(
    rule: Transition, current: DossierStatus, paused_from: DossierStatus | None
) -> bool:
    if current not in rule.sources:
        return False
    if current is S.SUPPLEMENT_REQUESTED and rule.paused_from is not None:
        return paused_from in rule.paused_from
    return True


def _check_paused_from(
    current: DossierStatus, paused_from: DossierStatus | None
) -> DossierStatus | None:
    if current is not S.SUPPLEMENT_REQUESTED:
        return None
    if paused_from is None:
        raise ValueError(
            "a dossier waiting for a supplement (5) needs paused_from: the status it was "
            "paused from"
        )
    paused_from = DossierStatus(paused_from)
    if paused_from not in PAUSABLE_STATUSES:
        raise ValueError(f"a supplement cannot have been requested from status {paused_from}")
    return paused_from


def next_status(
    current: DossierStatus | int,
    action: Action | str,
    *,
    paused_from: DossierStatus | int | None = None,
    transitions: Sequence[Transition] = TRANSITIONS,
) -> DossierStatus:
    """The status after ``action``, or ``TransitionNotAllowed``.

    ``paused_from`` is required when ``current`` is 5 (supplement requested): it is the status
    the dossier was in when the supplement was asked, and decides where it goes back to.
    """
    current = DossierStatus(current)
    action = Action(action)  # ValueError for a name that is no action at all
    origin = _check_paused_from(
        current, DossierStatus(paused_from) if paused_from is not None else None
    )
    for rule in transitions:
        if rule.action is action and _matches(rule, current, origin):
            if rule.target is not None:
                return rule.target
            assert origin is not None  # only the pause status has "back to" rules
            return origin
    raise TransitionNotAllowed(current, action, origin)


def allowed_actions(
    status: DossierStatus | int,
    *,
    paused_from: DossierStatus | int | None = None,
    transitions: Sequence[Transition] = TRANSITIONS,
) -> list[Action]:
    """Actions allowed from ``status``, in the order of ``Action`` (for buttons and docs)."""
    current = DossierStatus(status)
    origin = DossierStatus(paused_from) if paused_from is not None else None
    return list(_allowed_actions(current, origin, tuple(transitions)))


@functools.lru_cache(maxsize=256)
def _allowed_actions(
    current: DossierStatus, paused_from: DossierStatus | None, transitions: tuple[Transition, ...]
) -> tuple[Action, ...]:
    # every dossier of a list asks this: a few statuses, so remembered rather than worked out
    # again (walking the rules and the enum cost more than the rest of a list item's view)
    origin = _check_paused_from(current, paused_from)
    allowed = {rule.action for rule in transitions if _matches(rule, current, origin)}
    return tuple(action for action in Action if action in allowed)


TERMINAL_STATUSES: frozenset[DossierStatus] = frozenset(
    status for status in DossierStatus if not allowed_actions(status, paused_from=S.PROCESSING)
)

# Statuses that end a dossier without a result: the open hand-off step closes with them.
ENDED_WITHOUT_RESULT: frozenset[DossierStatus] = frozenset({S.REFUSED, S.WITHDRAWN, S.STOPPED})

# Statuses a dossier is being handled in, from acceptance to the result: officers hand it on.
HANDLED_STATUSES: frozenset[DossierStatus] = frozenset(
    {S.ACCEPTED, S.PROCESSING, S.SUPPLEMENT_REQUESTED, S.FEES_REQUESTED}
)

# Statuses a dossier takes more files in, and whether what comes is a supplement: submitted
# online and not yet accepted (the citizen completes it), and waiting for a supplement (what
# the desk asked for).
FILES_TAKEN: Mapping[DossierStatus, bool] = MappingProxyType({S.SUBMITTED: False, S.SUPPLEMENT_REQUESTED: True})

# Statuses the system finishes a dossier from when its result is issued: processing (4 → 9),
# or accepted but not yet transferred (2 → 4 → 9, both steps in the history). In any other
# status an issued result waits, pending, until the dossier reaches one of these.
FINISHABLE: frozenset[DossierStatus] = frozenset({S.ACCEPTED, S.PROCESSING})


# ------------------------------------------------------------------------- clock


class ClockState(StrEnum):
    NOT_STARTED = "not_started"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


# 5: a supplement request pauses the clock until the supplement arrives [confirmed].
# 6: time the applicant takes to pay financial obligations (land-use levy, registration tax…)
#    is not counted in the processing time of land procedures [secondary: configure per
#    deployment]. 9: the deadline is met or missed when the result is ready, not when the
#    applicant comes to collect it.
CLOCK_BY_STATUS: Mapping[DossierStatus, ClockState] = MappingProxyType(
    {
        S.SUBMITTED: ClockState.NOT_STARTED,
        S.ACCEPTED: ClockState.RUNNING,
        S.REFUSED: ClockState.STOPPED,
        S.PROCESSING: ClockState.RUNNING,
        S.SUPPLEMENT_REQUESTED: ClockState.PAUSED,
        S.FEES_REQUESTED: ClockState.PAUSED,
        S.WITHDRAWN: ClockState.STOPPED,
        S.STOPPED: ClockState.STOPPED,
        S.FINISHED: ClockState.STOPPED,
        S.RETURNED: ClockState.STOPPED,
    }
)


# Statuses whose clock runs: a dossier in one of them past its due date is overdue.
RUNNING_STATUSES: frozenset[DossierStatus] = frozenset(
    status for status, state in CLOCK_BY_STATUS.items() if state is ClockState.RUNNING
)


def clock_state(
    status: DossierStatus | int,
    *,
    rules: Mapping[DossierStatus, ClockState] = CLOCK_BY_STATUS,
) -> ClockState:
    return rules[DossierStatus(status)]


def clock_runs(
    status: DossierStatus | int,
    *,
    rules: Mapping[DossierStatus, ClockState] = CLOCK_BY_STATUS,
) -> bool:
    return clock_state(status, rules=rules) is ClockState.RUNNING


def clock_paused(
    status: DossierStatus | int,
    *,
    rules: Mapping[DossierStatus, ClockState] = CLOCK_BY_STATUS,
) -> bool:
    return clock_state(status, rules=rules) is ClockState.PAUSED


def pauses_from_history(
    history: Iterable[tuple[datetime, DossierStatus | int]],
    *,
    rules: Mapping[DossierStatus, ClockState] = CLOCK_BY_STATUS,
) -> list[tuple[datetime, datetime | None]]:
    """Pause intervals from a dossier's status history ``[(changed_at, new_status), ...]``.

    The result feeds ``WorkingCalendar.due_date(pauses=...)``; the last interval has no end
    while the dossier is still paused.
    """
    pauses: list[tuple[datetime, datetime | None]] = []
    opened: datetime | None = None
    for changed_at, status in sorted(history, key=lambda item: item[0]):
        paused = clock_state(status, rules=rules) is ClockState.PAUSED
        if paused and opened is None:
            opened = changed_at
        elif not paused and opened is not None:
            pauses.append((opened, changed_at))
            opened = None
    if opened is not None:
        pauses.append((opened, None))
    return pauses


# ------------------------------------------------------------------ timeliness


class Timeliness(StrEnum):
    """Kết quả của một bước trên phiếu kiểm soát (form 05)."""

    def __new__(cls, value: str, label_vi: str) -> Timeliness:
        member = str.__new__(cls, value)
        member._value_ = value
        member.label_vi = label_vi  # type: ignore[attr-defined]
        return member

    label_vi: str

    EARLY = "early", "Trước hạn"
    ON_TIME = "on_time", "Đúng hạn"
    LATE = "late", "Quá hạn"


@dataclass(frozen=True, slots=True)
class TimelinessRule:
    """How a step's working hours are graded on the tracking sheet.

    Late: the step used more than its allotted working hours (plus ``grace_hours``) — the
    allotment is the legal share of the deadline, so there is nothing to interpret. Early vs
    on time needs a band, because used hours are measured to the second and "exactly at the
    allotment" almost never happens: a step that finishes inside the last stretch of its
    allotment (the on-time band) is on time, one that finishes before the band is early. The
    band is the last working day (8 h) by default, mirroring how desks read "đúng hạn" (done
    on the due day), but never more than half the allotment, so that a short step can still be
    early. [unverified: no legal text fixes these numbers; they are configuration.]
    """

    on_time_band_hours: Decimal = Decimal(8)
    on_time_band_share: Decimal = Decimal("0.5")
    grace_hours: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        if self.on_time_band_hours < 0 or self.grace_hours < 0:
            raise ValueError("band and grace are >= 0 hours")
        if not 0 <= self.on_time_band_share <= 1:
            raise ValueError("on_time_band_share is a share between 0 and 1")


DEFAULT_TIMELINESS_RULE = TimelinessRule()


def _decimal(value: Decimal | float | int, name: str) -> Decimal:
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    if not number.is_finite() or number < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


def step_timeliness(
    *,
    used_hours: Decimal | float | int,
    allotted_hours: Decimal | float | int,
    rule: TimelinessRule = DEFAULT_TIMELINESS_RULE,
) -> Timeliness:
    """Grade one hand-off step: early, on time or late (see ``TimelinessRule``)."""
    used = _decimal(used_hours, "used_hours")
    allotted = _decimal(allotted_hours, "allotted_hours")
    if used > allotted + rule.grace_hours:
        return Timeliness.LATE
    band = min(rule.on_time_band_hours, allotted * rule.on_time_band_share)
    if used < allotted - band:
        return Timeliness.EARLY
    return Timeliness.ON_TIME
