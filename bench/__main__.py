"""``make bench``: every benchmark in turn; each prints its figures and writes bench/results/."""

from __future__ import annotations

import asyncio
import importlib
import sys
import traceback

BENCHMARKS = [
    "bench.bus",
    "bench.gateway",
    "bench.audit",
    "bench.signing",
    "bench.intake",
    "bench.document",
    "bench.mixed",
    "bench.console",
]


def main() -> int:
    failed = []
    for name in BENCHMARKS:
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
