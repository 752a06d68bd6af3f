"""Profiling a part under load: py-spy samples the part's process (and its worker processes)
while a benchmark's measured phase runs, writes ``bench/results/profile-<part>.speedscope.json``
(open it in https://www.speedscope.app) and a one-page summary ``profile-<part>.txt``: where the
part's CPU went, by package and by function, as shares of its samples. Only threads holding the
GIL are sampled (``--gil``): a worker waiting in the event loop is not counted as busy, and C code
that releases the GIL (hashing a file in a thread, say) is not counted either.

``make bench ONLY=mixed PROFILE=intake`` (or ``PROFILE=intake,audit``). py-spy attaches with
ptrace: run as the parts' user, or as root, or with ``kernel.yama.ptrace_scope=0``. It samples
without pausing the process (``--nonblocking``), at 100 Hz: it costs the machine a little CPU of
its own (its process, not the part's).
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import RESULTS

RATE_HZ = 100
TOP = 25


def requested(value: str, known: tuple[str, ...] | list[str]) -> list[str]:
    """The parts ``PROFILE`` names (comma-separated); an unknown one is an error, not ignored."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    unknown = [p for p in parts if p not in known]
    if unknown:
        raise SystemExit(f"PROFILE: no part {', '.join(unknown)}; one of {', '.join(known)}")
    return parts


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("PROFILE needs py-spy: pip install py-spy (it is in the dev extras)")
    return found


class Profiler:
    """py-spy on each named part's process tree for ``seconds``; ``stop`` waits for it and
    writes the summaries."""

    def __init__(self, pids: dict[str, int], seconds: float) -> None:
        self.pids, self.seconds = pids, seconds
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def path(self, part: str) -> Path:
        return RESULTS / f"profile-{part}.speedscope.json"

    def start(self) -> None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        for part, pid in self.pids.items():
            self.children[part] = subprocess.Popen(
                [
                    py_spy(), "record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--gil",
                    "--rate", str(RATE_HZ), "--duration", str(max(1, math.ceil(self.seconds))),
                    "--format", "speedscope", "--output", str(self.path(part)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )

    async def stop(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for part, child in self.children.items():
            _, err = await asyncio.to_thread(child.communicate, timeout=self.seconds + 60)
            if child.returncode != 0 or not self.path(part).exists():
                print(f"profile of {part} failed: {err.decode(errors='replace').strip()[-500:]}", flush=True)
                continue
            summary = summarise(json.loads(self.path(part).read_text()))
            text = render(part, summary, self.seconds)
            (RESULTS / f"profile-{part}.txt").write_text(text)
            print(text, flush=True)
            found[part] = {
                "speedscope": str(self.path(part).relative_to(RESULTS.parent.parent)),
                "samples": summary["samples"],
                "top_packages": dict(list(summary["packages"].items())[:10]),
                "top_self": dict(list(summary["self"].items())[:10]),
            }
        return found


# this checkout: a frame's file is named from here, so a checkout whose own directory's name holds
# one of ours (``/work/wt-gateway/shared/…``) does not put every frame in that package
ROOT = str(Path(__file__).resolve().parent.parent) + "/"


def package_of(file: str) -> str:
    """Where a frame's code lives: a third-party package, one of ours (``services/intake``,
    ``shared``), or the standard library."""
    if "site-packages/" in file:
        return file.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if file.startswith(ROOT):
        top, _, rest = file[len(ROOT) :].partition("/")
        return f"services/{rest.split('/', 1)[0].removesuffix('.py')}" if top == "services" else top
    for ours in ("services/", "gateway/", "shared/", "lienthong/", "bench/"):
        if "/" + ours in file:
            rest = file.rsplit("/" + ours, 1)[1].split("/")
            return ours + rest[0].removesuffix(".py") if ours == "services/" else ours.rstrip("/")
    if "/lib/python" in file:
        return "python:" + file.rsplit("/lib/python", 1)[1].split("/", 1)[-1].split("/", 1)[0].removesuffix(".py")
    return file or "?"


def summarise(speedscope: dict[str, Any]) -> dict[str, Any]:
    """Shares (percent of on-CPU samples) by package (self time), by function (self time, where
    the CPU was), and by function inclusive (what it and everything it called took)."""
    frames = speedscope["shared"]["frames"]
    labels = [f"{f.get('name', '?')} ({package_of(f.get('file', ''))}:{f.get('line', '')})" for f in frames]
    packages = [package_of(f.get("file", "")) for f in frames]
    # --subprocesses puts a frame naming the process at the root of each stack: not code
    synthetic = {i for i, f in enumerate(frames) if not f.get("file") and str(f.get("name", "")).startswith("process ")}
    ours = {i for i, p in enumerate(packages) if p.startswith(("services/", "shared", "gateway"))}
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    total, samples = 0.0, 0
    for profile in speedscope.get("profiles", []):
        for stack, weight in zip(profile.get("samples", []), profile.get("weights", []), strict=False):
            stack = [i for i in stack if i not in synthetic]
            samples += 1
            total += weight
            if not stack:
                own["(no Python frame)"] += weight
                by_package["(no Python frame)"] += weight
                continue
            own[labels[stack[-1]]] += weight
            by_package[packages[stack[-1]]] += weight
            for label in {labels[i] for i in stack if i in ours}:
                inclusive[label] += weight

    def shares(counter: Counter[str]) -> dict[str, float]:
        return {k: round(100 * v / total, 1) for k, v in counter.most_common(TOP)} if total else {}

    return {
        "samples": samples,
        "cpu_seconds": round(total, 2),
        "packages": shares(by_package),
        "self": shares(own),
        "inclusive": shares(inclusive),
    }


def render(part: str, summary: dict[str, Any], seconds: float) -> str:
    lines = [
        f"profile of {part}: {summary['samples']} samples holding the GIL at {RATE_HZ} Hz over {seconds:.0f} s "
        f"({summary['cpu_seconds']} s, all its processes); shares in percent of those samples",
        "",
        "by package (self: the code that was running)",
        *(f"  {share:5.1f}  {name}" for name, share in summary["packages"].items()),
        "",
        "by function, self",
        *(f"  {share:5.1f}  {name}" for name, share in summary["self"].items()),
        "",
        "our functions (services/, shared/, gateway/), inclusive: it and what it called",
        *(f"  {share:5.1f}  {name}" for name, share in summary["inclusive"].items()),
        "",
    ]
    return "\n".join(lines)
