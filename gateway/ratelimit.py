"""Token-bucket rate limits, per client and per route, in memory or shared through PostgreSQL.

The bucket is kept as GCRA's *theoretical arrival time* (TAT): one number per key, which makes
"refill, test, take" a single comparison, and a single ``INSERT … ON CONFLICT DO UPDATE`` in
the shared store (no read-modify-write race between gateway replicas). A bucket of ``burst``
tokens refilled at ``rate`` per second admits a request when ``max(TAT, now) + 1/rate - now
<= burst/rate``.

Headers follow draft-ietf-httpapi-ratelimit-headers: ``RateLimit-Limit`` (the burst),
``RateLimit-Remaining`` (tokens left), ``RateLimit-Reset`` (seconds until the bucket is full).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import text

from gateway.config import RateRule
from shared import clock
from shared.db import Database


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs on every request
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int
    retry_after: int = 0

    def headers(self) -> list[tuple[bytes, bytes]]:
        out = [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(self.reset).encode()),
        ]
        if not self.allowed:
            out.append((b"retry-after", str(self.retry_after).encode()))
        return out


def _decide(rule: RateRule, old_tat: float, now: float) -> tuple[bool, float, Decision]:
    interval = 1.0 / rule.rate
    window = rule.burst * interval
    tat = max(old_tat, now) + interval
    if tat - now <= window + 1e-9:
        remaining = int((window - (tat - now)) / interval + 1e-9)
        return True, tat, Decision(True, rule.burst, remaining, math.ceil(tat - now))
    wait = tat - window - now
    return False, old_tat, Decision(False, rule.burst, 0, math.ceil(old_tat - now), retry_after=max(1, math.ceil(wait)))


def tightest(decisions: Sequence[Decision]) -> Decision:
    """The decision to report: a refusal if any, else the bucket with the fewest tokens left."""
    if len(decisions) == 1:
        return decisions[0]
    refused = [d for d in decisions if not d.allowed]
    if refused:
        return max(refused, key=lambda d: d.retry_after)
    return min(decisions, key=lambda d: d.remaining)


class Limiter(Protocol):
    async def take(self, checks: Sequence[tuple[str, RateRule]]) -> list[Decision]: ...

    async def prune(self) -> None: ...


class MemoryLimiter:
    """One process's buckets (embedded mode, or a single gateway)."""

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}

    async def take(self, checks: Sequence[tuple[str, RateRule]]) -> list[Decision]:
        now = clock.epoch()
        if len(checks) == 1:  # most requests: the client's own bucket alone
            key, rule = checks[0]
            allowed, tat, decision = _decide(rule, self._tat.get(key, 0.0), now)
            if allowed:
                self._tat[key] = tat
            return [decision]
        outcomes = [_decide(rule, self._tat.get(key, 0.0), now) for key, rule in checks]
        # take from every bucket only when every bucket admits the request
        if all(allowed for allowed, _, _ in outcomes):
            for (key, _), (_, tat, _) in zip(checks, outcomes, strict=True):
                self._tat[key] = tat
        return [d for _, _, d in outcomes]

    async def prune(self) -> None:
        now = clock.epoch()
        for key in [k for k, tat in self._tat.items() if tat < now]:
            del self._tat[key]


_TAKE = """
    INSERT INTO rate_bucket (key, tat, allowed_at) VALUES (:key, {now} + {interval}, {now})
    ON CONFLICT (key) DO UPDATE SET
      tat = CASE WHEN {greatest}(rate_bucket.tat, {now}) + {interval} - {now} <= {window}
                 THEN {greatest}(rate_bucket.tat, {now}) + {interval} ELSE rate_bucket.tat END,
      allowed_at = CASE WHEN {greatest}(rate_bucket.tat, {now}) + {interval} - {now} <= {window}
                 THEN {now} ELSE rate_bucket.allowed_at END
    RETURNING tat, allowed_at
"""


def _take_sql(dialect: str) -> str:
    if dialect == "postgresql":
        # asyncpg sends untyped parameters; PostgreSQL needs their type for the arithmetic
        casts = {n: f"CAST(:{n} AS double precision)" for n in ("now", "interval", "window")}
        return _TAKE.format(greatest="GREATEST", **casts)
    return _TAKE.format(greatest="MAX", now=":now", interval=":interval", window=":window")


class DatabaseLimiter:
    """Buckets in the gateway's database, shared by every replica: one statement per bucket.

    Writes ``allowed_at = now`` only when it admits, which is how the statement's caller tells
    an admission from a refusal.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._sql = text(_take_sql(db.dialect))

    async def take(self, checks: Sequence[tuple[str, RateRule]]) -> list[Decision]:
        decisions: list[Decision] = []
        async with self.db.engine.begin() as conn:
            for key, rule in checks:
                now = clock.epoch()
                interval = 1.0 / rule.rate
                window = rule.burst * interval
                row = (
                    await conn.execute(
                        self._sql,
                        {"key": key, "now": now, "interval": interval, "window": window + 1e-9},
                    )
                ).one()
                tat, allowed_at = float(row[0]), float(row[1])
                if allowed_at == now:
                    remaining = int((window - (tat - now)) / interval + 1e-9)
                    decisions.append(Decision(True, rule.burst, max(0, remaining), math.ceil(tat - now)))
                else:
                    wait = tat + interval - window - now
                    decisions.append(
                        Decision(False, rule.burst, 0, math.ceil(tat - now), retry_after=max(1, math.ceil(wait)))
                    )
                    break  # the request is refused; leave the remaining buckets untouched
        return decisions

    async def prune(self) -> None:
        """A bucket whose TAT has passed is full, the same as no row."""
        async with self.db.engine.begin() as conn:
            await conn.execute(text("DELETE FROM rate_bucket WHERE tat < :now"), {"now": clock.epoch()})
