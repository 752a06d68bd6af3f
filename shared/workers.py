"""Several worker processes of one part on one port: what a worker must know about its siblings.

``serve PART`` with ``workers`` > 1 (``LIENTHONG_<PART>_WORKERS``) starts that many processes
accepting on one listening socket (``lienthong.distributed``). Everything a part shares between
requests lives in its database or on the bus, so siblings stay correct the way replicas in
Kubernetes do: numbering counters are rows locked by the upsert that takes them, the outbox relay
runs in one process at a time (an advisory lock), consumers compete on the part's queue and the
inbox applies each event once, migrations take an advisory lock, notify claims deliveries with
``SKIP LOCKED``, audit appends under its head row's lock and ignores a checkpoint another
process already signed. What is per process and would be wrong is refused at start
(:func:`refusal`): signing's PKCS#11 token, and the gateway's in-memory rate limits.

Metrics: a worker's counters live in its memory, and a scrape reaches one worker of the port.
So every worker of a multi-process part writes its metrics to files in one directory
(prometheus_client's multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``, set by the supervisor
before any worker imports prometheus_client) and ``/metrics`` sums them: counters and histograms
over all workers (dead ones included, as counters must), gauges once per worker with a ``pid``
label (the shared ones in ``shared.metrics``: the newest value of a live worker). Python's
``process_*`` and ``python_gc_*`` metrics are not reported then.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# "2/3": this process is worker 2 of 3 (set by the supervisor; absent in a one-process part)
WORKER_ENV = "LIENTHONG_WORKER"

# Parts whose state cannot be shared by several processes, and why (said at start-up).
SINGLE_PROCESS = {
    "signing": (
        "signing keeps its signers' keys in one PKCS#11 token session (SoftHSM2 here, an HSM in "
        "production) and its custody register in that process; a second process would hold its "
        "own session and its own view of keys generated meanwhile. Run signing with "
        "LIENTHONG_SIGNING_WORKERS=1 (more replicas need an HSM shared by network)."
    ),
}


def refusal(part: str, workers: int) -> str | None:
    """Why ``part`` cannot run ``workers`` processes, or None when it can."""
    if workers > 1 and part in SINGLE_PROCESS:
        return SINGLE_PROCESS[part]
    return None


def pool_share(pool_size: int, workers: int) -> int:
    """Connections one worker's pool may open: ``database_pool_size`` is the part's, shared out
    among its workers, so N workers do not open N times the connections PostgreSQL allows."""
    return max(2, -(-pool_size // workers))


def worker_label() -> str | None:
    """``"2/3"`` in the second of three worker processes; None in a one-process part."""
    return os.environ.get(WORKER_ENV)


def metrics_text() -> tuple[bytes, str]:
    """The part's Prometheus text: this process's registry, or, with several workers, all of them."""
    if os.environ.get(METRICS_DIR_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def worker_exited(pid: int) -> None:
    """Drop a dead worker's live gauges (its counters stay: they count what it did)."""
    if os.environ.get(METRICS_DIR_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
