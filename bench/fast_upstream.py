"""A minimal, fast fake OpenAI upstream for benchmarks: raw asyncio Protocol on uvloop, httptools parsing.

    /work/main/.venv/bin/python bench/fast_upstream.py --port 9000 [--chunks 8] [--chunk-delay-ms 0]

Answers, with HTTP/1.1 keep-alive (one request after another on a connection; pipelined requests are
answered in order):

* ``POST /v1/chat/completions`` -> 200, a fixed ``chat.completion`` object in OpenAI's documented shape (id,
  object, created, model, choices[message, logprobs, finish_reason], usage with the token details,
  service_tier, system_fingerprint), sent with Content-Length. ``model`` echoes the request's ``model``.
* the same with ``"stream": true`` in the JSON body -> 200 ``text/event-stream``, chunked: ``--chunks`` (8)
  ``chat.completion.chunk`` events (role, then one word each, the last with ``finish_reason: "stop"``), one
  usage chunk (``choices: []``, as with ``stream_options.include_usage``), then ``data: [DONE]``. Each event
  is its own HTTP chunk. With ``--chunk-delay-ms D`` the events after the first are written D ms apart
  (libuv timers: millisecond resolution); with 0 (the default) they are all written at once.
* ``GET /healthz`` -> ``{"status":"ok"}``; anything else -> 404 JSON.

Usage (both shapes): prompt_tokens 12, completion_tokens 9, total_tokens 21. Nothing is logged per request.
It stops on SIGINT/SIGTERM, or by itself after ``--max-seconds`` (default 3600).
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import httptools
import msgspec
import uvloop

PROMPT_TOKENS, COMPLETION_TOKENS = 12, 9
WORDS = ["Hello", "!", " How", " can", " I", " help", " you", " today", "?"]


def completion_body(model: str) -> bytes:
    return msgspec.json.encode({
        "id": "chatcmpl-BNs2sSKbQ9cVh3Qh6X1pJp0Ywn7Tz",
        "object": "chat.completion",
        "created": 1745001234,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "Hello! How can I help you today?", "refusal": None,
                        "annotations": []},
            "logprobs": None,
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        },
        "service_tier": "default",
        "system_fingerprint": "fp_0392822090",
    })


def stream_events(model: str, n: int) -> list[bytes]:
    """n content events (the first carries the role), a usage event, and [DONE]: each one HTTP chunk."""
    def chunk(choices: list, usage=None) -> bytes:
        event = {"id": "chatcmpl-BNs2sSKbQ9cVh3Qh6X1pJp0Ywn7Tz", "object": "chat.completion.chunk",
                 "created": 1745001234, "model": model, "service_tier": "default",
                 "system_fingerprint": "fp_0392822090", "choices": choices, "usage": usage}
        return b"data: " + msgspec.json.encode(event) + b"\n\n"

    events = [chunk([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None},
                      "logprobs": None, "finish_reason": None}])]
    for i in range(max(0, n - 1)):
        last = i == n - 2
        events.append(chunk([{"index": 0, "delta": {} if last else {"content": WORDS[i % len(WORDS)]},
                              "logprobs": None, "finish_reason": "stop" if last else None}]))
    events.append(chunk([], {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                             "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
                             "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                             "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                           "accepted_prediction_tokens": 0,
                                                           "rejected_prediction_tokens": 0}}))
    events.append(b"data: [DONE]\n\n")
    return [b"%x\r\n%s\r\n" % (len(e), e) for e in events]


JSON_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
             b"openai-processing-ms: 1\r\nx-request-id: req_bench0000000000000000000000\r\n\r\n")
SSE_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            b"transfer-encoding: chunked\r\ncache-control: no-cache\r\nopenai-processing-ms: 1\r\n"
            b"x-request-id: req_bench0000000000000000000000\r\n\r\n")
LAST_CHUNK = b"0\r\n\r\n"
HEALTHY = b'{"status":"ok"}'
NOT_FOUND = b'{"error":{"message":"not found","type":"invalid_request_error"}}'


class _Req(msgspec.Struct):
    model: str = "gpt-4o-mini"
    stream: bool = False


_decode_req = msgspec.json.Decoder(_Req).decode


class Responses:
    """Pre-encoded responses, per model (a bounded cache: models are few)."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self._plain: dict[str, bytes] = {}
        self._stream: dict[str, list[bytes]] = {}

    def plain(self, model: str) -> bytes:
        r = self._plain.get(model)
        if r is None:
            body = completion_body(model)
            r = JSON_HEAD % len(body) + body
            if len(self._plain) < 64:
                self._plain[model] = r
        return r

    def stream(self, model: str) -> list[bytes]:
        r = self._stream.get(model)
        if r is None:
            r = stream_events(model, self.chunks)
            if len(self._stream) < 64:
                self._stream[model] = r
        return r


def _simple(status: bytes, body: bytes) -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
            % len(body) + body)


class Server(asyncio.Protocol):
    __slots__ = ("responses", "delay", "transport", "parser", "url", "body", "close_after", "loop")

    def __init__(self, responses: Responses, delay: float) -> None:
        self.responses, self.delay = responses, delay
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []
        self.close_after = False
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(_simple(b"400 Bad Request", b'{"error":"bad request"}'))
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self.transport = None

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        t = self.transport
        if t is None:
            return
        keep = self.parser.should_keep_alive()
        path = self.url.partition(b"?")[0]
        if path == b"/v1/chat/completions":
            try:
                req = _decode_req(b"".join(self.body)) if self.body else _Req()
            except (msgspec.DecodeError, msgspec.ValidationError):
                t.write(_simple(b"400 Bad Request", b'{"error":{"message":"bad json","type":"invalid_request_error"}}'))
            else:
                if req.stream:
                    events = self.responses.stream(req.model)
                    if self.delay <= 0:
                        t.write(b"".join((SSE_HEAD, *events, LAST_CHUNK)))
                    else:
                        t.write(SSE_HEAD + events[0])
                        self._later(events, 1, keep)
                        return
                else:
                    t.write(self.responses.plain(req.model))
        elif path == b"/healthz":
            t.write(_simple(b"200 OK", HEALTHY))
        else:
            t.write(_simple(b"404 Not Found", NOT_FOUND))
        if not keep:
            t.close()

    def _later(self, events: list[bytes], i: int, keep: bool) -> None:
        def tick() -> None:
            t = self.transport
            if t is None:
                return
            if i < len(events):
                t.write(events[i])
                self._later(events, i + 1, keep)
            else:
                t.write(LAST_CHUNK)
                if not keep:
                    t.close()
        self.loop.call_later(self.delay, tick)


async def serve(host: str, port: int, chunks: int, delay_ms: float, max_seconds: float) -> None:
    loop = asyncio.get_running_loop()
    responses = Responses(chunks)
    server = await loop.create_server(lambda: Server(responses, delay_ms / 1000.0), host, port,
                                      backlog=4096, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"fast_upstream listening on http://{host}:{port}", flush=True)
    try:
        await asyncio.wait_for(stop.wait(), max_seconds)
    except TimeoutError:
        print("fast_upstream: --max-seconds reached, stopping", file=sys.stderr, flush=True)
    server.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--chunks", type=int, default=8, help="content events per stream (default 8)")
    ap.add_argument("--chunk-delay-ms", type=float, default=0.0,
                    help="delay between stream events after the first (default 0: all written at once)")
    ap.add_argument("--max-seconds", type=float, default=3600.0, help="stop by itself after this long")
    args = ap.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("fast_upstream: loopback only")
    uvloop.run(serve(args.host, args.port, args.chunks, args.chunk_delay_ms, args.max_seconds))


if __name__ == "__main__":
    main()
