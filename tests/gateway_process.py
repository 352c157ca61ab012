"""Runs a real gateway (`python -m edge_proxy serve`, Granian + RSGI) as a subprocess for the tests."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx2 as httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """`n` different free ports: each socket stays bound until all are drawn, so the kernel cannot hand out one
    twice (separate free_port() calls can, and a server set then starts two servers on one port)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def base_env(db_path: Path, fake_url: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_PROXY_")}
    env["EDGE_PROXY_DATABASE_URL"] = f"sqlite:///{db_path}"
    env["EDGE_PROXY_READ_TIMEOUT"] = "2"
    env["EDGE_PROXY_CONNECT_TIMEOUT"] = "2"
    env["EDGE_PROXY_SPILL_DIR"] = str(db_path.parent / "spill")
    env["EDGE_PROXY_PRICES_FILE"] = str(ROOT / "tests" / "fixtures" / "prices_override.toml")
    if fake_url:
        env["EDGE_PROXY_UPSTREAM_OPENAI"] = fake_url + "/v1"
        env["EDGE_PROXY_UPSTREAM_ANTHROPIC"] = fake_url + "/v1"
        env["EDGE_PROXY_UPSTREAM_GOOGLE"] = fake_url + "/v1beta"
        env["EDGE_PROXY_PROVIDER_KEY_OPENAI"] = "sk-managed-openai"
        env["EDGE_PROXY_PROVIDER_KEY_ANTHROPIC"] = "sk-managed-anthropic"
        env["EDGE_PROXY_PROVIDER_KEY_GOOGLE"] = "managed-google-key"
    env.update(extra or {})
    return env


def cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_proxy", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=check)


@dataclass
class GatewayProcess:
    env: dict[str, str]
    workers: int = 1
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    secret_key: str = ""
    merchant_id: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def create_merchant(self, name: str = "acme", balance: str = "100") -> dict:
        return json.loads(cli(self.env, "merchants", "create", "--name", name, "--balance", balance).stdout)

    def start(self, log_dir: Path) -> GatewayProcess:
        merchant = self.create_merchant()
        self.secret_key, self.merchant_id = merchant["secret_key"], merchant["merchant_id"]
        self.log_path = log_dir / f"gateway-{self.port}.log"
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge_proxy", "serve", "--port", str(self.port), "--workers", str(self.workers)],
            env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                    self._wait_all_workers(deadline)
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gateway did not come up:\n{self.log()}")

    def _wait_all_workers(self, deadline: float) -> None:
        """The first worker answers /healthz; the others may still be starting, and a signal sent to a worker
        that has not finished starting is not one it drains on (a test's SIGTERM once caught the second worker
        there, and its records waited in the journal for the next start). Granian logs "Started worker-N" when
        a worker is up; with its log level above INFO there is nothing to wait for."""
        while time.monotonic() < deadline and "Started worker" in (text := self.log()):
            if all(f"Started worker-{i}\n" in text for i in range(1, self.workers + 1)):
                return
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.killpg(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""


def start_pair(env: dict[str, str], log_dir: Path) -> tuple[GatewayProcess, GatewayProcess]:
    """Two gateway processes on one database (`env`), the second serving the merchant the first created."""
    first = GatewayProcess(env).start(log_dir)
    second = GatewayProcess(env)
    second.create_merchant = lambda *a, **k: {"secret_key": first.secret_key,  # type: ignore[method-assign]
                                              "merchant_id": first.merchant_id}
    try:
        second.start(log_dir)
    except Exception:
        first.stop()
        raise
    return first, second
