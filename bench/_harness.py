"""Shared plumbing for the benchmark scripts (overhead.py, profile_gateway.py, locust_setup.py).

Processes: the fast fake upstream, nginx answering a fixed JSON body, the gateway (Granian, 1 worker) configured
as a user would (environment + the CLI), each in its own session so that stopping it stops only it.
Measurement: a lean keep-alive HTTP/1.1 client (raw asyncio Protocol + httptools) that timestamps the first
response byte, the first body byte and the end of the message; RSS and CPU from /proc. Saturation load (wrk, or
Python load generators) is in _load.py.

Everything here talks to 127.0.0.1 only, and every load loop is bounded in count and in time.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httptools

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PYTHON = sys.executable
HOST = "127.0.0.1"
SRC = ROOT   # the folder whose edge_proxy/ the gateway and the CLI import (see snapshot_tree)

# What the official OpenAI Python SDK sends (less Host/Content-Length/Authorization, which are added per target).
SDK_HEADERS: list[tuple[str, str]] = [
    ("accept-encoding", "gzip, deflate"),
    ("connection", "keep-alive"),
    ("accept", "application/json"),
    ("content-type", "application/json"),
    ("user-agent", "OpenAI/Python 1.54.3"),
    ("x-stainless-lang", "python"),
    ("x-stainless-package-version", "1.54.3"),
    ("x-stainless-os", "Linux"),
    ("x-stainless-arch", "x64"),
    ("x-stainless-runtime", "CPython"),
    ("x-stainless-runtime-version", "3.11.7"),
    ("x-stainless-async", "async:asyncio"),
    ("x-stainless-retry-count", "0"),
]
PLAIN_BODY = (b'{"messages":[{"role":"system","content":"You are a helpful assistant."},'
              b'{"role":"user","content":"Say hello."}],"model":"gpt-4o-mini"}')
STREAM_BODY = (b'{"messages":[{"role":"system","content":"You are a helpful assistant."},'
               b'{"role":"user","content":"Say hello."}],"model":"gpt-4o-mini","stream":true,'
               b'"stream_options":{"include_usage":true}}')
UPSTREAM_PATH = "/v1/chat/completions"
GATEWAY_PATH = "/providers/openai/v1/chat/completions"
PROVIDER_KEY = "sk-bench"

# The fixed body nginx answers with (OpenAI's chat.completion shape, with usage).
NGINX_JSON = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1745001234, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I help you today?",
                                         "refusal": None}, "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21},
    "service_tier": "default", "system_fingerprint": "fp_0392822090",
}, separators=(",", ":"))


def snapshot_tree(tmp: Path) -> Path:
    """Copy edge_proxy/ (compiled modules included) to tmp and run the gateway and the CLI from that copy, so a
    run measures one version of the code even while someone edits the work tree."""
    global SRC
    dst = tmp / "src"
    shutil.copytree(ROOT / "edge_proxy", dst / "edge_proxy", ignore=shutil.ignore_patterns("__pycache__"))
    SRC = dst
    return dst


def tree_hash(src: Path | None = None) -> str:
    import hashlib
    base = src or SRC
    digest = hashlib.sha256()
    for f in sorted((base / "edge_proxy").rglob("*")):
        if f.is_file() and f.suffix in (".py", ".so", ".toml"):
            digest.update(str(f.relative_to(base)).encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()[:16]


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None, what: str = "server") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited early with {proc.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {HOST}:{port} within {timeout}s")


# -- processes -----------------------------------------------------------------------------------------------
@dataclass
class Proc:
    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    popen: subprocess.Popen | None = None

    def start(self) -> Proc:
        self._log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd or SRC, stdout=self._log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM to this process's own session (it was started with start_new_session), then SIGKILL."""
        p = self.popen
        if p is None or p.poll() is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)
        except ProcessLookupError:
            pass
        self._log.close()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None


def _task_files(pid: int, name: str) -> dict[int, str] | None:
    """The text of /proc/<pid>/task/<tid>/<name> for each thread, by tid; None when the process is gone. A thread
    that ended meanwhile is left out (its time is in no file any more)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    out = {}
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/{name}") as f:
                out[int(tid)] = f.read()
        except OSError:
            continue
    return out


def cpu_ns(pid: int) -> int | None:
    """CPU time of a live process in nanoseconds, summed over its threads' schedstat (cpu_seconds counts clock
    ticks, 10 ms each: too coarse for a block of a few hundred milliseconds)."""
    files = _task_files(pid, "schedstat")
    return None if files is None else sum(int(text.split()[0]) for text in files.values())


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread of a process, keyed "name/tid" (Granian names its Rust threads)."""
    out: dict[str, float] = {}
    tck = os.sysconf("SC_CLK_TCK")
    for tid, raw in (_task_files(pid, "stat") or {}).items():
        name = raw[raw.index("(") + 1: raw.rindex(")")]
        fields = raw.rpartition(")")[2].split()
        out[f"{'main' if tid == pid else name}/{tid}"] = (int(fields[11]) + int(fields[12])) / tck
    return out


def thread_cpu_delta(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """Share of one core each thread used between two thread_cpu() readings (threads under 1% left out)."""
    out = {}
    for k, v in after.items():
        share = (v - before.get(k, 0.0)) / seconds
        if share >= 0.01:
            out[k] = round(share, 3)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def set_affinity(pids: list[int], cpus: set[int]) -> None:
    """Pin every thread of these processes (Granian's Rust threads included) to `cpus`."""
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                os.sched_setaffinity(int(tid), cpus)
            except OSError:
                pass


def have_root() -> bool:
    return os.geteuid() == 0


def ensure_tool(binary: str, packages: list[str], allow_install: bool) -> tuple[str | None, str]:
    """The tool's path, installing it with apt-get when missing (root only). Returns (path or None, note)."""
    path = shutil.which(binary) or next((p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}")
                                         if os.access(p, os.X_OK)), None)
    if path:
        return path, f"{binary}: {path}"
    if not allow_install:
        return None, f"{binary}: not installed (--no-install)"
    if not have_root() or not shutil.which("apt-get"):
        return None, f"{binary}: not installed and cannot apt-get (not root or no apt-get)"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for attempt in range(2):
        if attempt == 1:
            log("apt-get update")
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=300)
        for pkg in packages:
            log(f"apt-get install {pkg}")
            r = subprocess.run(["apt-get", "install", "-y", "-qq", pkg], env=env, capture_output=True, timeout=300)
            path = shutil.which(binary) or (f"/usr/sbin/{binary}" if os.access(f"/usr/sbin/{binary}", os.X_OK) else None)
            if r.returncode == 0 and path:
                return path, f"{binary}: installed {pkg} with apt-get ({path})"
    return None, f"{binary}: apt-get install {'/'.join(packages)} failed"


def start_fast_upstream(tmp: Path, port: int | None = None, chunks: int = 8, delay_ms: float = 0.0,
                        max_seconds: float = 1800) -> tuple[Proc, int]:
    port = port or free_port()
    p = Proc("fast_upstream", [PYTHON, str(BENCH / "fast_upstream.py"), "--port", str(port), "--chunks", str(chunks),
                               "--chunk-delay-ms", str(delay_ms), "--max-seconds", str(max_seconds)],
             tmp / f"fast_upstream-{port}.log").start()
    wait_port(port, 20, p.popen, "fast_upstream")
    return p, port


def start_nginx(nginx: str, tmp: Path, body: str = NGINX_JSON) -> tuple[Proc, int]:
    """nginx, 1 worker, on a free loopback port, answering every request with 200 and `body`."""
    assert "'" not in body and "$" not in body and "\\" not in body
    port = free_port()
    d = tmp / f"nginx-{port}"
    d.mkdir(parents=True, exist_ok=True)
    conf = d / "nginx.conf"
    temps = "\n".join(f"    {k}_temp_path {d}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf.write_text(f"""daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
{temps}
    server {{
        listen {HOST}:{port} backlog=4096;
        location / {{
            default_type application/json;
            return 200 '{body}';
        }}
    }}
}}
""")
    p = Proc("nginx", [nginx, "-p", str(d), "-e", str(d / "error.log"), "-c", str(conf)], d / "stdout.log").start()
    wait_port(port, 10, p.popen, "nginx")
    return p, port


def gateway_env(db: Path, upstream_url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_PROXY_")}
    env.update({
        "EDGE_PROXY_DATABASE_URL": f"sqlite:///{db}",
        "EDGE_PROXY_UPSTREAM_OPENAI": upstream_url,
        "EDGE_PROXY_PROVIDER_KEY_OPENAI": PROVIDER_KEY,
        "EDGE_PROXY_LOG_LEVEL": "warning",
        # keep whatever the gateway writes beside its store (a relative default would land in the work tree)
        "EDGE_PROXY_SPILL_DIR": str(db.parent / "spill"),
    })
    env.update(extra or {})
    return env


def cli(env: dict[str, str], *args: str) -> str:
    r = subprocess.run([PYTHON, "-m", "edge_proxy", *args], env=env, cwd=SRC, capture_output=True, text=True,
                       timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"edge_proxy {' '.join(args[:2])} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout.strip()


def create_merchant(env: dict[str, str], name: str = "bench", balance: str = "1000000") -> dict:
    return json.loads(cli(env, "merchants", "create", "--name", name, "--balance", balance))


def create_customer(env: dict[str, str], secret_key: str, balance: str = "1000000") -> str:
    """A customer of the merchant (`edge_proxy customers create`): its id."""
    return json.loads(cli(env, "customers", "create", "--secret-key", secret_key, "--balance", balance))["customer_id"]


def create_meter(env: dict[str, str], secret_key: str, slug: str, rate_type: str = "percentage",
                 tier_type: str = "tokens_1m", rate: str = "10") -> str:
    """A meter of the merchant (`edge_proxy meters create`): its slug."""
    return json.loads(cli(env, "meters", "create", "--secret-key", secret_key, "--slug", slug, "--rate-type",
                          rate_type, "--tier-type", tier_type, "--rate", rate))["meter_slug"]


def create_token(env: dict[str, str], secret_key: str, customer_id: str | None = None,
                 meter_slug: str | None = None) -> str:
    args = ["tokens", "create", "--secret-key", secret_key]
    if customer_id:
        args += ["--customer-id", customer_id]
    if meter_slug:
        args += ["--meter-slug", meter_slug]
    return cli(env, *args)


@dataclass
class Gateway:
    proc: Proc
    port: int
    env: dict[str, str]
    workers: list[int] = field(default_factory=list)

    @property
    def main_pid(self) -> int:
        return self.proc.pid

    def log_writers(self) -> list[int]:
        """Each worker's log writer process (EDGE_PROXY_LOG_WRITER=process)."""
        return [pid for w in self.workers for pid in children(w)]

    def rss(self) -> dict[str, int | None]:
        out: dict[str, int | None] = {"main": rss_kb(self.main_pid)}
        for i, w in enumerate(self.workers):
            out[f"worker{i + 1}"] = rss_kb(w)
        for i, w in enumerate(self.log_writers()):
            out[f"log_writer{i + 1}"] = rss_kb(w)
        return out


def start_gateway(tmp: Path, env: dict[str, str], workers: int = 1, port: int | None = None,
                  launcher: list[str] | None = None) -> Gateway:
    """`python -m edge_proxy serve`, or `launcher + [serve args]` (bench/granian_variants.py)."""
    port = port or free_port()
    serve = ["serve", "--port", str(port), "--workers", str(workers)]
    argv = (launcher + serve) if launcher else [PYTHON, "-m", "edge_proxy", *serve]
    p = Proc("gateway", argv, tmp / f"gateway-{port}.log", env=env).start()
    try:
        wait_port(port, 30, p.popen, "gateway")
        deadline = time.monotonic() + 20
        while True:
            if _get_status(port, "/healthz") == 200:
                break
            if time.monotonic() > deadline or p.popen.poll() is not None:
                raise RuntimeError("gateway /healthz never answered 200")
            time.sleep(0.05)
        deadline = time.monotonic() + 10
        kids: list[int] = []
        while len(kids) < workers and time.monotonic() < deadline:
            kids = children(p.pid)
            time.sleep(0.05)
    except Exception:
        p.stop()
        raise RuntimeError(f"gateway did not come up:\n{p.log_text()}") from None
    return Gateway(p, port, env, kids)


def _get_status(port: int, path: str) -> int | None:
    try:
        with socket.create_connection((HOST, port), timeout=2) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode())
            data = s.recv(64)
        return int(data.split(b" ", 2)[1])
    except (OSError, ValueError, IndexError):
        return None


def request_bytes(port: int, path: str, auth: str, body: bytes, headers: list[tuple[str, str]] = SDK_HEADERS) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"host: {HOST}:{port}", *(f"{k}: {v}" for k, v in headers),
             f"authorization: Bearer {auth}", f"content-length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


# -- the lean client -----------------------------------------------------------------------------------------
class Result:
    __slots__ = ("t0", "t_head", "t_body", "t_end", "status", "nbytes", "chunks", "overhead_ms", "body")

    def __init__(self) -> None:
        self.t0 = self.t_head = self.t_body = self.t_end = 0
        self.status = 0
        self.nbytes = 0
        self.chunks = 0  # HTTP chunks of a chunked body, the empty last one included
        self.overhead_ms: float | None = None
        self.body: list[bytes] | None = None


class LeanConn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request at a time; perf_counter_ns timestamps."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.fut: asyncio.Future | None = None
        self.res = Result()
        self.keep_body = False
        self.closed = False

    @classmethod
    async def open(cls, port: int) -> LeanConn:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(cls, HOST, port)
        return proto

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.fut is not None and not self.fut.done():
            self.fut.set_exception(ConnectionError("connection closed before the response ended"))

    def data_received(self, data: bytes) -> None:
        if not self.res.t_head:
            self.res.t_head = time.perf_counter_ns()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.fut is not None and not self.fut.done():
                self.fut.set_exception(exc)

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"x-edge-proxy-overhead-ms":
            try:
                self.res.overhead_ms = float(value)
            except ValueError:
                pass

    def on_body(self, body: bytes) -> None:
        r = self.res
        if not r.t_body:
            r.t_body = time.perf_counter_ns()
        r.nbytes += len(body)
        if r.body is not None:
            r.body.append(body)

    def on_chunk_complete(self) -> None:
        self.res.chunks += 1

    def on_message_complete(self) -> None:
        r = self.res
        r.t_end = time.perf_counter_ns()
        r.status = self.parser.get_status_code()
        if self.fut is not None and not self.fut.done():
            self.fut.set_result(r)

    async def request(self, data: bytes, keep_body: bool = False, timeout: float = 30.0) -> Result:
        if self.closed:
            raise ConnectionError("connection is closed")
        self.res = r = Result()
        if keep_body:
            r.body = []
        self.fut = asyncio.get_running_loop().create_future()
        r.t0 = time.perf_counter_ns()
        self.transport.write(data)
        return await asyncio.wait_for(self.fut, timeout)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, int(round(q * len(values) + 0.5)) - 1))]
