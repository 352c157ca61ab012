"""A real Redis Sentinel set on spare loopback ports, for tests: one master, one replica, three sentinels.

Faults as methods: `failover` (SENTINEL FAILOVER), `kill` (SIGKILL), `wait_for_failover`, `freeze`/`thaw`
(SIGSTOP/SIGCONT), `flushall` on the master. Every process dies with the test run (tests/processes.py).
"""
from __future__ import annotations

import signal
import tempfile
from pathlib import Path
from typing import Self

import redis

from . import processes
from .gateway_process import free_ports

SERVICE = "edge"
DOWN_AFTER_MS = 1000    # how long a silent master has before the sentinels call it down


class LocalRedisSentinel(processes.ServerSet):
    def __init__(self, sentinels: int = 3) -> None:
        self.count = sentinels
        self.dir: Path | None = None
        self.data_ports: list[int] = []
        self.sentinel_ports: list[int] = []
        self.procs: dict[int, object] = {}

    def start(self) -> Self:
        self.dir = Path(tempfile.mkdtemp(prefix="edge-proxy-sentinel-"))
        ports = free_ports(2 + self.count)
        self.data_ports, self.sentinel_ports = ports[:2], ports[2:]
        master, replica = self.data_ports
        try:
            self._data(master)
            self._data(replica, "--replicaof", "127.0.0.1", str(master))
            for port in self.sentinel_ports:
                self._sentinel(port, master)
            self.wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def _data(self, port: int, *extra: str) -> None:
        d = self.dir / str(port)
        d.mkdir(exist_ok=True)
        self.procs[port] = processes.spawn([
            processes.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d),
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--repl-diskless-sync-delay", "0", *extra],
            d / "redis.log")
        processes.wait_until(self.client(port).ping, 10, f"redis-server on {port}")

    def _sentinel(self, port: int, master: int) -> None:
        d = self.dir / f"sentinel-{port}"
        d.mkdir()
        conf = d / "sentinel.conf"  # a sentinel rewrites its own config file, so each has one
        conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {d}\ndaemonize no\n"
                        f"sentinel monitor {SERVICE} 127.0.0.1 {master} 2\n"
                        f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                        f"sentinel failover-timeout {SERVICE} 5000\n"
                        f"sentinel parallel-syncs {SERVICE} 1\n")
        self.procs[port] = processes.spawn([processes.which("redis-server"), str(conf), "--sentinel"],
                                           d / "sentinel.log")
        processes.wait_until(self.client(port).ping, 10, f"redis-sentinel on {port}")

    def processes(self):
        return self.procs.values()

    @property
    def url(self) -> str:
        """EDGE_PROXY_REDIS_URL for this set."""
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports) + f"/{SERVICE}"

    @staticmethod
    def client(port: int, timeout: float = 2) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=timeout, socket_connect_timeout=timeout)

    def _live_sentinels(self) -> list[int]:
        return [p for p in self.sentinel_ports if self.procs[p].poll() is None]

    def master(self) -> int:
        """The master's port, as the sentinels say."""
        _host, port = self.client(self._live_sentinels()[0]).sentinel_get_master_addr_by_name(SERVICE)
        return int(port)

    def master_for_key(self, key: str) -> int:
        return self.master()

    def promote(self, master: int) -> None:
        """A manual failover: SENTINEL FAILOVER (there is one master)."""
        self.failover()

    def replica(self) -> int:
        return next(p for p in self.data_ports if p != self.master())

    def wait_ok(self, timeout: float = 30) -> None:
        """Until every sentinel agrees on the master, knows the replica (in sync, not down) and the other
        sentinels, so a failover can start."""
        def ready() -> bool:
            masters = set()
            for port in self._live_sentinels():
                s = self.client(port)
                state = s.sentinel_master(SERVICE)
                if state["num-other-sentinels"] < len(self._live_sentinels()) - 1 or state["num-slaves"] < 1:
                    return False
                if "s_down" in state["flags"] or "o_down" in state["flags"]:
                    return False
                if any(r.get("is_disconnected") or r.get("is_sdown") or r["master-link-status"] != "ok"
                       for r in s.sentinel_slaves(SERVICE)):
                    return False
                masters.add((state["ip"], state["port"]))
            if len(masters) != 1:
                return False
            port = masters.pop()[1]
            return self.client(port).info("replication")["role"] == "master"
        processes.wait_until(ready, timeout, "the sentinels to agree on a master with a replica in sync", 0.1)

    def failover(self) -> None:
        """SENTINEL FAILOVER: promote the replica now, without waiting for the master to be called down."""
        self.client(self._live_sentinels()[0]).execute_command("SENTINEL FAILOVER", SERVICE)

    def wait_for_failover(self, old_master: int, timeout: float = 30) -> int:
        """Until the sentinels name another master and it answers as one; returns its port."""
        def moved():
            port = self.master()
            return port if port != old_master and self.client(port).info("replication")["role"] == "master" \
                else None
        return processes.wait_until(moved, timeout, f"the sentinels to promote a replica of {old_master}", 0.1)

    def kill(self, port: int) -> None:
        processes.kill(self.procs[port], signal.SIGKILL)

    def restart(self, port: int) -> None:
        """Start a killed data node again, as a replica of the current master."""
        self._data(port, "--replicaof", "127.0.0.1", str(self.master()))

    def freeze(self, port: int) -> None:
        self.procs[port].send_signal(signal.SIGSTOP)

    def thaw(self, port: int) -> None:
        self.procs[port].send_signal(signal.SIGCONT)

    def flushall(self) -> None:
        c = self.client(self.master())
        c.flushall()
        c.script_flush()
