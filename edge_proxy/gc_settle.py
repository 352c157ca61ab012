"""The collector's settings for a long-lived process once it has started: a gateway worker (app.py) and its log
writer process (log_sinks/writer_process.py)."""
from __future__ import annotations

import gc


def settle_gc() -> None:
    """Once a process has started: everything built so far lives for the process's life, so move it out of the
    collector's sight (a full collection then walks only what came after: no gen-2 collection at all in 30,000
    c=1 requests, bench/RESULTS.md), and let the youngest generation grow before it is scanned. Requests make few
    reference cycles, so this trades rare, slightly longer collections for fewer ones (about 4% of the request
    path, bench_request_path). A log writer's batch (500 records and their transfers, alive until it commits)
    otherwise set off 2-4 young collections, and now and then a full one of ~7 ms inside a flush."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
