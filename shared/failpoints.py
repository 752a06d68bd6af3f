"""Failpoints: named places where a fault test can kill this process at the worst moment.

``LIENTHONG_FAILPOINTS="relay.after_read@3,inbox.after_commit@2"`` kills the process with SIGKILL
the 3rd time the relay has read committed events and is about to publish them, or the 2nd time a
consumer has committed a batch and not yet acked it. Unset (always, outside fault tests), a
failpoint is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import sys

_ARMED: dict[str, int] = {}
for _spec in filter(None, os.environ.get("LIENTHONG_FAILPOINTS", "").split(",")):
    _name, _, _count = _spec.partition("@")
    _ARMED[_name.strip()] = int(_count or 1)


def failpoint(name: str) -> None:
    if not _ARMED or name not in _ARMED:
        return
    _ARMED[name] -= 1
    if _ARMED[name] <= 0:
        print(f"failpoint {name}: killing process {os.getpid()}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
