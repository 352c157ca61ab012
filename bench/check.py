"""Fails only on a LARGE regression of a benchmark RATIO against bench/baseline.json; never on an absolute time.

    .venv/bin/python bench/check.py [--micro bench/out/micro.json] [--overhead bench/out/overhead.json]
    .venv/bin/python bench/check.py --update --micro m1.json m2.json --overhead o1.json o2.json o3.json
        # writes bench/baseline.json: the median of each ratio over the given runs

Ratios compared (each is measured against its own reference in the same run, so a slower or busier machine moves
both sides together):
  * from the pytest-benchmark JSON (median times): compiled/pure of the forward-token decoder, and of the usage
    scanner per stream when bench_usage_scan.py ran (lower is better);
  * from bench/overhead.py's JSON: gateway/direct latency at c=1 (p50, p90), streamed TTFB and last byte (p50), the
    same with everything pinned to one CPU (lower is better), gateway/direct requests/s at c=32 per upstream
    and load generator, gateway/bare forwarder requests/s with a merchant key and with a customer forward token
    on a meter (higher is better), and the gateway's added p50 and p99 at c=1 over the bare forwarder's (lower);
  * from bench/stream_relay.py's JSON (--stream): the gateway's worker CPU per 1,000-event stream over the bare
    forwarder's, and the last-byte time ratio (lower is better).
A ratio fails when it is worse than its baseline by more than 3x (FACTORS widens a few). p99 ratios against
direct are not checked: on a 2-core machine
running client, gateway and upstream at once they are scheduling noise (8x apart between identical runs). A ratio
absent from the baseline or from the run is reported and skipped: a run without nginx or wrk is not compared with
one that had them. Exit 0: no large regression; 1: a large regression (the message names it); 2: an input file is missing.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
DEFAULT_FACTOR = 3.0


def micro_ratios(doc: dict) -> dict[str, float]:
    """compiled/pure median-time ratios from a pytest-benchmark JSON."""
    med: dict[tuple[str, str, str], float] = {}
    for b in doc.get("benchmarks", []):
        name = b["name"].split("[")[0]
        params = b.get("params") or {}
        impl = params.get("impl")
        if impl is None:
            continue
        med[(name, params.get("stream", ""), impl)] = b["stats"]["median"]
    out = {}
    for (name, stream, impl), t in med.items():
        if impl != "c":
            continue
        pure = med.get((name, stream, "py"))
        if pure:
            key = {"test_forward_token_decode": "forward_token_decode",
                   "test_stream_scan": "usage_scan"}.get(name, name)
            out[f"{key}[{stream}]_c_over_py" if stream else f"{key}_c_over_py"] = round(t / pure, 4)
    return out


def overhead_ratios(doc: dict) -> dict[str, float]:
    # p99 ratios against direct are in the JSON but not checked: over 300 requests on 2 shared cores they moved 8x
    # between identical runs (one scheduling hiccup or GIL hand-off is the p99), so no factor is both safe and
    # useful. The gateway's added p99 over the bare forwarder's is checked, with a wide margin (FACTORS).
    return {k: v for k, v in (doc.get("ratios") or {}).items()
            if isinstance(v, (int, float)) and ("p99" not in k or k.endswith("_to_bare"))}


def stream_ratios(doc: dict) -> dict[str, float]:
    """gateway/bare forwarder per 1,000-event stream, from bench/stream_relay.py's JSON (lower is better)."""
    return {k: v for k, v in (doc.get("ratios") or {}).items() if isinstance(v, (int, float))}


# Wider margins where one run's ratio is mostly noise: an added p99 over the bare forwarder's added p99 (both a
# few scheduling hiccups on a shared 2-core machine), an added p50 whose floor (the bare forwarder's) is tens of
# microseconds, and the stream ratios (CPU read from /proc in 10 ms ticks; 0.74-5.4 between runs on a shared
# machine, issue 17's RESULTS).
FACTORS = {"latency_added_p99_to_bare": 10.0, "latency_added_p50_to_bare": 5.0,
           "stream_cpu_per_chunk_to_bare": 6.0, "stream_last_byte_to_bare": 5.0}


def direction(key: str) -> str:
    return "higher" if key.startswith("rps_") else "lower"


def factor(key: str) -> float:
    return FACTORS.get(key, DEFAULT_FACTOR)


def load(paths: list[str], what: str, allow_missing: bool) -> list[dict]:
    docs = []
    for path in paths:
        p = Path(path)
        if not p.exists():
            if allow_missing:
                print(f"check: {what} {p} not found: skipped")
                continue
            print(f"check: FAIL: {what} {p} not found (run the benchmark first, or pass --allow-missing)")
            sys.exit(2)
        docs.append(json.loads(p.read_text()))
    return docs


def median_ratios(per_run: list[dict[str, float]]) -> dict[str, float]:
    """Several runs (--update from repeated runs): the median of each ratio."""
    keys = sorted({k for r in per_run for k in r})
    return {k: round(statistics.median(r[k] for r in per_run if k in r), 4) for k in keys}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--micro", nargs="+", default=[str(BENCH / "out" / "micro.json")],
                    help="pytest-benchmark JSON file(s); several: the median of each ratio")
    ap.add_argument("--overhead", nargs="+", default=[str(BENCH / "out" / "overhead.json")],
                    help="bench/overhead.py JSON file(s); several: the median of each ratio")
    ap.add_argument("--stream", nargs="+", default=[],
                    help="bench/stream_relay.py JSON file(s); several: the median of each ratio")
    ap.add_argument("--baseline", default=str(BENCH / "baseline.json"))
    ap.add_argument("--allow-missing", action="store_true", help="skip an input file that does not exist")
    ap.add_argument("--update", action="store_true", help="write the baseline from these files instead of checking")
    args = ap.parse_args()

    current: dict[str, dict[str, float]] = {}
    micro = load(args.micro, "micro-benchmark JSON", args.allow_missing)
    if micro:
        current["micro"] = median_ratios([micro_ratios(d) for d in micro])
    overhead = load(args.overhead, "overhead JSON", args.allow_missing)
    if overhead:
        current["overhead"] = median_ratios([overhead_ratios(d) for d in overhead])

    stream = load(args.stream, "stream relay JSON", args.allow_missing)
    if stream:
        current["stream"] = median_ratios([stream_ratios(d) for d in stream])

    if args.update:
        doc = {
            "about": "Ratios from bench/check.py --update; check.py fails when a ratio is worse than this by more "
                     f"than {DEFAULT_FACTOR:g}x (p99 ratios are not checked). Lower is better except rps_* "
                     "(gateway/direct requests/s).",
            "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "runs": {"micro": len(micro), "overhead": len(overhead), "stream": len(stream)},
            "machine": overhead[-1].get("machine", {}) if overhead else {},
            **current,
        }
        Path(args.baseline).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"check: wrote {args.baseline}")
        return 0

    base = json.loads(Path(args.baseline).read_text())
    failures, checked = [], 0
    print(f"{'ratio':<44}{'baseline':>10}{'now':>10}{'limit':>10}  verdict")
    for section in ("micro", "overhead", "stream"):
        if section not in current:
            continue
        now, then = current[section], base.get(section, {})
        for key in sorted(set(now) | set(then)):
            if key not in now or key not in then:
                print(f"{section + ':' + key:<44}{then.get(key, '-')!s:>10}{now.get(key, '-')!s:>10}{'':>10}  "
                      f"skipped ({'not in this run' if key not in now else 'no baseline'})")
                continue
            b, v, f = then[key], now[key], factor(key)
            if direction(key) == "lower":
                limit, bad = b * f, v > b * f
            else:
                limit, bad = b / f, v < b / f
            checked += 1
            print(f"{section + ':' + key:<44}{b:>10.4g}{v:>10.4g}{limit:>10.4g}  {'REGRESSION' if bad else 'ok'}")
            if bad:
                worse = v / b if direction(key) == "lower" else b / v
                failures.append(f"{section}:{key} is {v:.4g} against a baseline of {b:.4g} ({worse:.1f}x worse; "
                                f"the limit is {f:g}x, {'lower' if direction(key) == 'lower' else 'higher'} is better)")
    if checked == 0:
        print("check: FAIL: no ratio could be compared with the baseline")
        return 1
    if failures:
        print("check: FAIL: large regression of a benchmark ratio against bench/baseline.json:")
        for f in failures:
            print(f"  - {f}")
        return 1
    print(f"check: ok ({checked} ratios within their limits)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
