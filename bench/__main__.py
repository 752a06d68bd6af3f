"""``make bench``: every benchmark in turn; each prints its figures and writes bench/results/.

``make bench ONLY=mixed`` (or ``ONLY=mixed,gateway``) runs only those; ``PROFILE=<part>`` has
the benchmarks that support it (mixed) profile that part with py-spy during the measured phase.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import traceback

BENCHMARKS = [
    "bench.bus",
    "bench.gateway",
    "bench.audit",
    "bench.signing",
    "bench.intake",
    "bench.search",
    "bench.document",
    "bench.mixed",
    "bench.console",
]


def selected(only: str) -> list[str]:
    if not only.strip():
        return BENCHMARKS
    wanted = [f"bench.{n.strip().removeprefix('bench.')}" for n in only.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"no such benchmark: {', '.join(unknown)}; one of "
                         + ", ".join(n.removeprefix("bench.") for n in BENCHMARKS))
    return wanted


def main() -> int:
    failed = []
    for name in selected(os.environ.get("ONLY", "")):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                print(f"{name}: not written yet")
                continue
            raise
        print(f"== {name}", flush=True)
        try:
            asyncio.run(module.main())
        except Exception:
            traceback.print_exc()
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
