"""A private redis-server on a free loopback port, so fault tests can stop and freeze it (kill -STOP)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import redis

from . import processes
from .gateway_process import free_port


class RedisServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (tests/run.sh installs it)")
        # it dies with the test run, even a killed one (tests/processes.py)
        self.proc = processes.spawn([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                     "--appendonly", "no"], None)
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2)

    def freeze(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.thaw()
            self.proc.terminate()
            self.proc.wait(10)
