"""The circuit breaker's schedule: an open circuit lets a first trial through early and backs
off from there, so a short outage costs about its own length (not a fixed 10 s wait). Driven by
an injected clock: no sleeping."""

from __future__ import annotations

from gateway.proxy import Breaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _first_success_after_outage(breaker: Breaker, clock: Clock, *, outage: float, every: float = 0.05) -> float:
    """A part down for ``outage`` seconds under steady traffic; when did a request get through
    again, counted from the part's return?"""
    start = clock.now
    while True:
        clock.now += every
        up = clock.now - start >= outage
        if breaker.allow():
            if up:
                breaker.success()
                return clock.now - (start + outage)
            breaker.failure()


def test_a_two_second_outage_is_over_for_callers_within_three_seconds_of_the_return() -> None:
    clock = Clock()
    breaker = Breaker(failures=5, max_open=10.0, first_probe=0.5, clock=clock)
    back_after = _first_success_after_outage(breaker, clock, outage=2.0)
    assert back_after <= 3.0, back_after
    assert breaker.state == "closed"
    # the old fixed 10 s: the same outage kept callers out for more than 8 s after the return
    fixed = Breaker(failures=5, max_open=10.0, first_probe=10.0, clock=clock)
    assert _first_success_after_outage(fixed, clock, outage=2.0) > 8.0


def test_trials_back_off_from_each_failure_up_to_the_longest_wait() -> None:
    clock = Clock()
    breaker = Breaker(failures=2, max_open=4.0, first_probe=0.5, clock=clock)
    assert breaker.allow()
    breaker.failure()
    assert breaker.allow()
    breaker.failure()  # opened: the first trial in 0.5 s
    assert breaker.state == "open" and not breaker.allow()
    waits = []
    for _ in range(5):
        opened = clock.now
        while not breaker.allow():
            clock.now += 0.01
        waits.append(round(clock.now - opened, 1))
        assert not breaker.allow()  # one trial at a time
        breaker.failure()
    assert waits == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert breaker.retry_after() == 4
    while not breaker.allow():
        clock.now += 0.01
    breaker.success()
    assert breaker.state == "closed" and breaker.allow()
    # closed again: it takes `failures` failures in a row to open it, and the wait starts over
    breaker.failure()
    assert breaker.allow()
    breaker.failure()
    opened = clock.now
    while not breaker.allow():
        clock.now += 0.01
    assert round(clock.now - opened, 1) == 0.5


def test_a_trial_that_tells_nothing_frees_the_next_one() -> None:
    clock = Clock()
    breaker = Breaker(failures=1, max_open=10.0, first_probe=0.5, clock=clock)
    breaker.allow()
    breaker.failure()
    clock.now += 0.6
    assert breaker.allow()
    assert not breaker.allow()
    breaker.release_trial()
    assert breaker.allow()
