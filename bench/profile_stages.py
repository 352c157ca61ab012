"""Where the request path's time goes, stage by stage, from a cProfile dump of bench_request_path.py.

    .venv/bin/python -m cProfile -o /tmp/rp.prof bench/bench_request_path.py --requests 10000
    .venv/bin/python bench/profile_stages.py /tmp/rp.prof

Prints each stage's inclusive time per call and its share of `Gateway.__rsgi__`. cProfile's own cost per call
inflates stages made of many small calls, so compare shares between trees, not the microseconds.
"""
from __future__ import annotations

import pstats
import sys

# label -> (file name suffix, function name)
STAGES = {
    "__rsgi__ (all)": ("app.py", "__rsgi__"),
    "serve": ("pipeline.py", "serve"),
    "auth: authorize": ("access.py", "authorize"),
    "auth: router match": ("routes.py", "match"),
    "read_body": ("body.py", "read_body"),
    "metadata split": ("metadata.py", "split_metadata_param"),
    "plan: providers_plan": ("plan.py", "providers_plan"),
    "  request_bounds": ("bounds.py", "request_bounds"),
    "quote": ("engine.py", "quote"),
    "scope_to_key": ("pipeline.py", "scope_to_key"),
    "reserve": ("engine.py", "reserve"),
    "_forward": ("pipeline.py", "_forward"),
    "  upstream_headers": ("plan.py", "upstream_headers"),
    "  journal opened": ("log_queue.py", "opened"),
    "    opened_line": ("opened.py", "opened_line"),
    "relay": ("relay.py", "relay"),
    "  response_headers": ("headers.py", "response_headers"),
    "  stamp": ("exchange.py", "stamp"),
    "  body_usage": ("usage_types.py", "body_usage"),
    "  finish": ("exchange.py", "finish"),
    "    _apply_usage": ("exchange.py", "_apply_usage"),
    "    price": ("services.py", "price"),
    "    log_queue.put": ("log_queue.py", "put"),
    "    now_iso": ("clock.py", "now_iso"),
    "    metrics observe": ("metrics.py", "observe"),
    "request id": ("services.py", "next"),
    "Exchange.__init__": ("exchange.py", "__init__"),
}


def main(path: str) -> None:
    stats = pstats.Stats(path).stats  # type: ignore[attr-defined]  # pstats keeps its table there
    rows = {}
    for label, (file, func) in STAGES.items():
        hits = [v for k, v in stats.items() if k[0].endswith(file) and k[2] == func]
        if hits:
            rows[label] = (sum(v[1] for v in hits), sum(v[3] for v in hits))
    total = rows["__rsgi__ (all)"][1]
    for label, (calls, cum) in rows.items():
        print(f"{label:24s} calls {calls:7d}  {cum / calls * 1e6:8.2f} us/call  {cum / total * 100:5.1f} % of __rsgi__")


if __name__ == "__main__":
    main(sys.argv[1])
