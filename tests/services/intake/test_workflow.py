"""Dossier statuses: the full status × action matrix, the clock per status, timeliness."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from services.intake.calendar import VN_TZ, WorkingCalendar
from services.intake.workflow import (
    CLOCK_BY_STATUS,
    ENDED_WITHOUT_RESULT,
    FILES_TAKEN,
    FINISHABLE,
    HANDLED_STATUSES,
    RUNNING_STATUSES,
    TERMINAL_STATUSES,
    Action,
    Channel,
    ClockState,
    DossierStatus,
    Timeliness,
    TimelinessRule,
    TransitionNotAllowed,
    allowed_actions,
    clock_paused,
    clock_runs,
    clock_state,
    initial_status,
    next_status,
    pauses_from_history,
    step_timeliness,
)

A = Action

# Written out by hand from DOMAIN.md §3 (status codes 1–10), independently of TRANSITIONS.
# For status 5 the key also carries the status the dossier was paused from.
EXPECTED: dict[tuple[int, int | None], dict[Action, int]] = {
    (1, None): {A.ACCEPT: 2, A.REFUSE: 3, A.REQUEST_SUPPLEMENT: 5, A.WITHDRAW: 7},
    (2, None): {A.START_PROCESSING: 4, A.REQUEST_SUPPLEMENT: 5, A.WITHDRAW: 7},
    (3, None): {},
    (4, None): {
        A.REQUEST_SUPPLEMENT: 5,
        A.REQUEST_FEES: 6,
        A.WITHDRAW: 7,
        A.STOP: 8,
        A.FINISH: 9,
    },
    (5, 1): {A.SUPPLEMENT_RECEIVED: 1, A.REFUSE: 3, A.WITHDRAW: 7},
    (5, 2): {A.SUPPLEMENT_RECEIVED: 2, A.WITHDRAW: 7, A.STOP: 8},
    (5, 4): {A.SUPPLEMENT_RECEIVED: 4, A.WITHDRAW: 7, A.STOP: 8},
    (6, None): {A.FEES_PAID: 4, A.WITHDRAW: 7, A.STOP: 8},
    (7, None): {},
    (8, None): {},
    (9, None): {A.RETURN_RESULT: 10},
    (10, None): {},
}

CASES = [
    (status, paused_from, action)
    for (status, paused_from) in EXPECTED
    for action in Action
]


@pytest.mark.parametrize(("status", "paused_from", "action"), CASES)
def test_full_transition_matrix(status: int, paused_from: int | None, action: Action) -> None:
    expected = EXPECTED[(status, paused_from)].get(action)
    if expected is None:
        with pytest.raises(TransitionNotAllowed) as refused:
            next_status(status, action, paused_from=paused_from)
        assert refused.value.current == status
        assert refused.value.action == action
    else:
        assert next_status(status, action, paused_from=paused_from) == expected


@pytest.mark.parametrize(("status", "paused_from"), list(EXPECTED))
def test_allowed_actions_match_the_matrix(status: int, paused_from: int | None) -> None:
    expected = set(EXPECTED[(status, paused_from)])
    assert set(allowed_actions(status, paused_from=paused_from)) == expected


def test_every_status_is_covered_by_the_matrix() -> None:
    assert {status for status, _ in EXPECTED} == {s.value for s in DossierStatus}


def test_an_accepted_dossier_cannot_become_not_accepted() -> None:
    with pytest.raises(TransitionNotAllowed):
        next_status(DossierStatus.ACCEPTED, Action.REFUSE)
    with pytest.raises(TransitionNotAllowed):
        next_status(DossierStatus.SUPPLEMENT_REQUESTED, Action.REFUSE, paused_from=4)


def test_leaving_the_supplement_pause_needs_to_know_where_it_came_from() -> None:
    with pytest.raises(ValueError):
        next_status(DossierStatus.SUPPLEMENT_REQUESTED, Action.SUPPLEMENT_RECEIVED)
    with pytest.raises(ValueError):  # a supplement is never asked from a finished dossier
        next_status(5, Action.SUPPLEMENT_RECEIVED, paused_from=9)
    with pytest.raises(ValueError):
        allowed_actions(5)


def test_actions_given_as_strings_and_unknown_actions() -> None:
    assert next_status(1, "accept") is DossierStatus.ACCEPTED
    with pytest.raises(ValueError):
        next_status(1, "approve")


def test_entry_status_by_channel() -> None:
    assert initial_status("online") is DossierStatus.SUBMITTED
    assert initial_status(Channel.DESK) is DossierStatus.ACCEPTED


def test_a_whole_life_with_a_supplement_and_fees() -> None:
    status = initial_status(Channel.ONLINE)
    path = [
        (A.ACCEPT, None),
        (A.START_PROCESSING, None),
        (A.REQUEST_SUPPLEMENT, None),
        (A.SUPPLEMENT_RECEIVED, DossierStatus.PROCESSING),
        (A.REQUEST_FEES, None),
        (A.FEES_PAID, None),
        (A.FINISH, None),
        (A.RETURN_RESULT, None),
    ]
    for action, paused_from in path:
        status = next_status(status, action, paused_from=paused_from)
    assert status is DossierStatus.RETURNED
    assert status in TERMINAL_STATUSES


def test_labels_and_codes() -> None:
    assert [s.value for s in DossierStatus] == list(range(1, 11))
    assert DossierStatus(2).label_vi == "Được tiếp nhận"
    assert DossierStatus(5).label_vi == "Yêu cầu bổ sung"
    assert DossierStatus(10).label_vi == "Đã trả kết quả"
    assert DossierStatus(7).label_en == "Withdrawn by the applicant"
    assert all(s.label_vi and s.label_en for s in DossierStatus)
    assert TERMINAL_STATUSES == {
        DossierStatus.REFUSED,
        DossierStatus.WITHDRAWN,
        DossierStatus.STOPPED,
        DossierStatus.RETURNED,
    }


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (1, ClockState.NOT_STARTED),
        (2, ClockState.RUNNING),
        (3, ClockState.STOPPED),
        (4, ClockState.RUNNING),
        (5, ClockState.PAUSED),
        (6, ClockState.PAUSED),
        (7, ClockState.STOPPED),
        (8, ClockState.STOPPED),
        (9, ClockState.STOPPED),
        (10, ClockState.STOPPED),
    ],
)
def test_clock_per_status(status: int, state: ClockState) -> None:
    assert clock_state(status) is state
    assert clock_runs(status) is (state is ClockState.RUNNING)
    assert clock_paused(status) is (state is ClockState.PAUSED)


def test_clock_rules_are_configurable() -> None:
    fees_count = {**CLOCK_BY_STATUS, DossierStatus.FEES_REQUESTED: ClockState.RUNNING}
    assert clock_runs(6, rules=fees_count)
    assert not clock_runs(6)


def vn(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 4, day, hour, minute, tzinfo=VN_TZ)


def test_status_history_gives_the_pauses_for_the_deadline() -> None:
    history = [
        (vn(13, 7, 30), 2),
        (vn(13, 9), 4),
        (vn(14, 7, 30), 5),
        (vn(16, 7, 30), 4),
        (vn(17, 9), 6),
        (vn(17, 15), 4),
    ]
    pauses = pauses_from_history(history)
    assert pauses == [(vn(14, 7, 30), vn(16, 7, 30)), (vn(17, 9), vn(17, 15))]
    # 40 h from Monday 07:30, paused Tue+Wed (16 h) and Fri 09:00–15:00 (4 h):
    # Mon 8, Thu 8, Fri 1.5 + 2.5 (before 09:00 and after 15:00) = 20, Mon 20/4 8 = 28,
    # Tue 8 = 36, Wed 22/4 4 h → 11:30.
    due = WorkingCalendar().due_date(vn(13, 7, 30), 40, pauses=pauses)
    assert due == vn(22, 11, 30)
    still_waiting = pauses_from_history([*history, (vn(20, 8), 5)])
    assert still_waiting[-1] == (vn(20, 8), None)


@pytest.mark.parametrize(
    ("used", "allotted", "expected"),
    [
        (Decimal(20), Decimal(40), Timeliness.EARLY),  # more than a working day to spare
        (Decimal(31), Decimal(40), Timeliness.EARLY),
        (Decimal(32), Decimal(40), Timeliness.ON_TIME),  # inside its last working day
        (Decimal(40), Decimal(40), Timeliness.ON_TIME),  # exactly at the allotment
        (Decimal("40.01"), Decimal(40), Timeliness.LATE),
        (Decimal(3), Decimal(8), Timeliness.EARLY),  # short step: band is half of it
        (Decimal(4), Decimal(8), Timeliness.ON_TIME),
        (Decimal(9), Decimal(8), Timeliness.LATE),
        (Decimal("0.5"), Decimal(2), Timeliness.EARLY),
        (0, 0, Timeliness.ON_TIME),
        (1, 0, Timeliness.LATE),
        (2.5, 16, Timeliness.EARLY),
    ],
)
def test_step_timeliness(used: Decimal, allotted: Decimal, expected: Timeliness) -> None:
    assert step_timeliness(used_hours=used, allotted_hours=allotted) is expected


def test_timeliness_thresholds_are_configurable() -> None:
    strict = TimelinessRule(on_time_band_hours=Decimal(0), on_time_band_share=Decimal(0))
    assert step_timeliness(used_hours=39, allotted_hours=40, rule=strict) is Timeliness.EARLY
    lenient = TimelinessRule(grace_hours=Decimal(1))
    assert step_timeliness(used_hours=41, allotted_hours=40, rule=lenient) is Timeliness.ON_TIME
    assert Timeliness.EARLY == "early" and Timeliness.LATE.label_vi == "Quá hạn"
    with pytest.raises(ValueError):
        step_timeliness(used_hours=-1, allotted_hours=8)
    with pytest.raises(ValueError):
        TimelinessRule(on_time_band_share=Decimal(2))


def test_status_sets_agree_with_the_transitions_and_the_clock() -> None:
    """The sets the service asks instead of comparing statuses: each follows from the tables."""
    S = DossierStatus
    assert RUNNING_STATUSES == {S.ACCEPTED, S.PROCESSING}
    # handled: from acceptance to the result, whether the clock runs or waits for the applicant
    assert HANDLED_STATUSES == {s for s in S if clock_state(s) in (ClockState.RUNNING, ClockState.PAUSED)}
    # ended without a result: the terminal statuses but the one after a result was returned
    assert ENDED_WITHOUT_RESULT == TERMINAL_STATUSES - {S.RETURNED}
    # files come before acceptance (not a supplement) or while a supplement is asked (one)
    assert dict(FILES_TAKEN) == {S.SUBMITTED: False, S.SUPPLEMENT_REQUESTED: True}


@pytest.mark.parametrize("status", sorted(FINISHABLE))
def test_the_system_finishes_from_each_finishable_status_in_at_most_two_steps(status: DossierStatus) -> None:
    """What ``results.apply_pending_result`` does: start processing when finish is not yet
    allowed, then finish; both steps are allowed transitions."""
    if A.FINISH not in allowed_actions(status):
        status = next_status(status, A.START_PROCESSING)
    assert next_status(status, A.FINISH) is DossierStatus.FINISHED
