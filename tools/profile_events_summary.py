"""A speedscope file from ``py-spy record`` in a few lines: the share of the busy samples under
each of our functions (inclusive), and the deepest frame of ours (where the time is spent).

    .venv/bin/python tools/profile_events_summary.py profile-events/audit.speedscope.json [N]
"""

from __future__ import annotations

import json
import sys
from collections import Counter

OURS = ("shared/", "services/", "gateway/")
# the event loop's C code (uvloop) and thread-pool workers waiting on their queue: py-spy shows
# them as the outermost Python frame; not ours to cut
IDLE_LEAVES = {"Runner.run", "_worker"}


def main(path: str, n: int = 20) -> None:
    profile = json.load(open(path, encoding="utf-8"))
    frames = profile["shared"]["frames"]

    def name(i: int) -> str:
        f = frames[i]
        file = f.get("file", "")
        for root in OURS:
            if f"/{root}" in file:
                file = root + file.split(f"/{root}", 1)[1]
        return f"{f['name']} {file.rsplit('site-packages/', 1)[-1]}:{f.get('line', '')}"

    inclusive: Counter[str] = Counter()
    deepest: Counter[str] = Counter()
    total = idle = 0.0
    for thread in profile["profiles"]:
        for stack, weight in zip(thread["samples"], thread["weights"], strict=True):
            if not stack:
                continue
            total += weight
            if frames[stack[-1]]["name"] in IDLE_LEAVES:
                idle += weight
                continue
            names = [name(i) for i in stack]
            ours = [x for x in names if x.split(" ", 1)[1].startswith(OURS)]
            for x in {x.rsplit(":", 1)[0] for x in ours}:
                inclusive[x] += weight
            deepest[ours[-1] if ours else "(library only) " + names[-1]] += weight
    print(f"{path}: {total:.1f} s sampled, {100 * idle / total:.0f}% event loop / idle workers")
    print(" inclusive, our functions:")
    for x, w in inclusive.most_common(n):
        print(f"  {100 * w / total:5.1f}%  {x}")
    print(" deepest frame of ours:")
    for x, w in deepest.most_common(n):
        print(f"  {100 * w / total:5.1f}%  {x}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 20)
