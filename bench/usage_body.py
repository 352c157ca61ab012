"""Cost of `usage_from_body` alone, per provider format: instructions per call (callgrind) and time per call.

    .venv/bin/python bench/usage_body.py [--tree DIR] [--calls 20000] [--no-callgrind]

Instructions come from two callgrind runs of a loop (N and 2N calls) whose difference is divided by N, so start-up
cancels out; the machine's load cannot move that figure. Times are the best of several timeit rounds: read them only
as ratios of runs made alternately on the same machine. `--tree` imports edge_proxy from another checkout (with its
compiled modules built or copied in), e.g. the commit you started from, for a before/after pair.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import timeit
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from instructions import instructions_of  # noqa: E402

BODIES: dict[str, tuple[str, bytes]] = {
    "openai_chat": ("openai", b'{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,'
                              b'"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":'
                              b'{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14}}'),
    "openai_details": ("openai", b'{"id":"chatcmpl-2","object":"chat.completion","model":"gpt-4o-2024-08-06","choices":'
                                 b'[{"index":0,"message":{"role":"assistant","content":"Hello there"},"finish_reason":'
                                 b'"stop"}],"usage":{"prompt_tokens":1200,"completion_tokens":197,"total_tokens":1397,'
                                 b'"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},'
                                 b'"completion_tokens_details":{"reasoning_tokens":64,"audio_tokens":0}}}'),
    "responses": ("openai", b'{"id":"resp_1","object":"response","status":"completed","model":"gpt-4.1","output":[{'
                            b'"type":"message","content":[{"type":"output_text","text":"Hi"}]}],"usage":{"input_tokens":'
                            b'30,"input_tokens_details":{"cached_tokens":0},"output_tokens":5,"output_tokens_details":'
                            b'{"reasoning_tokens":0},"total_tokens":35}}'),
    "embeddings": ("openai", b'{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],'
                             b'"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}'),
    "anthropic": ("anthropic", b'{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5",'
                               b'"content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn","usage":'
                               b'{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,'
                               b'"output_tokens":2}}'),
    "gemini": ("gemini", b'{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"finishReason":"STOP"}],'
                         b'"usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":2,"totalTokenCount":14},'
                         b'"modelVersion":"gemini-2.5-flash"}'),
    "error": ("openai", b'{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}'),
    "malformed": ("openai", b'{"id":"chatcmpl-1","choices":[{"index":0,"message":{"role":"assist'),
}

_LOOP = """
import sys
from edge_proxy.metering.usage import usage_from_body
fmt, body, n = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3])
for _ in range(n):
    usage_from_body(fmt, body)
"""


def instructions_per_call(fmt: str, body: bytes, calls: int, env: dict[str, str], tmp: Path) -> float:
    cmd = [sys.executable, "-c", _LOOP, fmt, body.decode()]
    small = instructions_of([*cmd, str(calls)], env, tmp / "small.out")
    large = instructions_of([*cmd, str(2 * calls)], env, tmp / "large.out")
    return (large - small) / calls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", default=str(BENCH.parent), help="checkout to import edge_proxy from")
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated body names")
    args = ap.parse_args()
    tree = str(Path(args.tree).resolve())
    env = {**os.environ, "PYTHONPATH": tree}
    sys.path.insert(0, tree)
    from edge_proxy.metering import usage
    assert usage.COMPILED, "compiled usage scanner not loaded"
    names = [n for n in BODIES if not args.only or n in args.only.split(",")]
    with tempfile.TemporaryDirectory() as d:
        for name in names:
            fmt, body = BODIES[name]
            ns = min(timeit.repeat(lambda f=fmt, b=body: usage.usage_from_body(f, b), number=20000, repeat=7)) / 20000
            line = f"{name:15s} {len(body):4d} B  {ns * 1e9:7.0f} ns/call"
            if not args.no_callgrind:
                line += f"  {instructions_per_call(fmt, body, args.calls, env, Path(d)):8.0f} instructions/call"
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
