"""A real 6-node Redis Cluster (3 masters, 3 replicas) on spare loopback ports, for tests.

Built the way an operator builds one: six `redis-server --cluster-enabled yes` processes, then
`redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes`. The faults a deployment meets are methods:
`kill` a node (SIGKILL), `failover` on a replica (CLUSTER FAILOVER), `wait_for_failover`, a slot migration of a
key's slot in steps (`begin_migration` / `move_keys` / `finish_migration`, the SETSLOT + MIGRATE sequence that
`redis-cli --cluster reshard` runs), `freeze`/`thaw` (SIGSTOP/SIGCONT) and `flushall` on every master.

Every process dies with the test run (tests/processes.py), and `stop()` removes the temp dir.
"""
from __future__ import annotations

import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import redis

from . import processes
from .gateway_process import free_ports

NODE_TIMEOUT_MS = 1000   # how long a silent master has before its replica may take over on its own


@dataclass
class Node:
    port: int
    bus_port: int
    dir: Path
    proc: subprocess.Popen | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, timeout: float = 2) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class LocalRedisCluster(processes.ServerSet):
    def __init__(self, masters: int = 3, replicas: int = 1) -> None:
        self.size = masters * (1 + replicas)
        self.replicas = replicas
        self.dir: Path | None = None
        self.nodes: list[Node] = []
        self.frozen: set[int] = set()
        self.owned: dict[int, set[int]] = {}  # the slots a master owned when a fault was done to it

    # -- life cycle ---------------------------------------------------------------------------------------------
    def start(self) -> Self:
        self.dir = Path(tempfile.mkdtemp(prefix="edge-proxy-cluster-"))
        ports = free_ports(2 * self.size)
        for port, bus in zip(ports[::2], ports[1::2]):
            node = Node(port, bus, self.dir / str(port))
            node.dir.mkdir()
            self.nodes.append(node)
        try:
            for node in self.nodes:
                self._run(node)
            for node in self.nodes:
                processes.wait_until(node.client().ping, 10, f"redis-server on {node.port}")
            subprocess.run([processes.which("redis-cli", "apt-get install redis-tools"), "--cluster", "create",
                            *(n.addr for n in self.nodes), "--cluster-replicas", str(self.replicas),
                            "--cluster-yes"], check=True, capture_output=True, timeout=60)
            self.wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def _run(self, node: Node) -> None:
        # nodes.conf keeps the node's identity, so a node started again rejoins as itself
        node.proc = processes.spawn([
            processes.which("redis-server"), "--port", str(node.port), "--cluster-port", str(node.bus_port),
            "--bind", "127.0.0.1", "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--dir", str(node.dir), "--save", "",
            "--appendonly", "no", "--daemonize", "no", "--repl-diskless-sync-delay", "0"], node.dir / "redis.log")

    def processes(self):
        return [n.proc for n in self.nodes]

    @property
    def url(self) -> str:
        """EDGE_PROXY_REDIS_URL for this cluster: every node as a startup node."""
        return "redis+cluster://" + ",".join(n.addr for n in self.nodes)

    def node(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    def live(self) -> list[Node]:
        return [n for n in self.nodes if n.alive and n.port not in self.frozen]

    # -- what the cluster says about itself ---------------------------------------------------------------------
    def topology(self, via: Node | None = None) -> list[dict]:
        """CLUSTER NODES as seen by `via` (a live node by default): id, port, flags, master id, slots."""
        parsed = (via or self.live()[0]).client().execute_command("CLUSTER NODES")  # redis-py parses it
        out = []
        for addr, n in parsed.items():
            slots: list[int] = []
            for r in n["slots"]:  # [lo, hi] or [lo]; slots being migrated are under "migrations", not owned
                slots.extend(range(int(r[0]), int(r[-1]) + 1))
            out.append({"id": n["node_id"], "port": int(addr.split("@")[0].rsplit(":", 1)[1]),
                        "flags": n["flags"].split(","), "master": None if n["master_id"] == "-" else n["master_id"],
                        "slots": slots})
        return out

    def masters(self) -> list[int]:
        """Ports of the masters that own slots and are not failed."""
        return [n["port"] for n in self.topology() if "master" in n["flags"] and "fail" not in n["flags"]
                and n["slots"]]

    def replica_of(self, master_port: int) -> int:
        nodes = self.topology()
        master_id = next(n["id"] for n in nodes if n["port"] == master_port)
        return next(n["port"] for n in nodes if n["master"] == master_id and "fail" not in n["flags"])

    def node_id(self, port: int) -> str:
        return self.node(port).client().execute_command("CLUSTER MYID").decode()

    def slot_of(self, key: str) -> int:
        return int(self.live()[0].client().execute_command("CLUSTER KEYSLOT", key))

    def owner(self, slot: int) -> int:
        """The port of the master that owns `slot`."""
        return next(n["port"] for n in self.topology() if slot in n["slots"] and "fail" not in n["flags"])

    def master_for_key(self, key: str) -> int:
        return self.owner(self.slot_of(key))

    def promote(self, master: int, attempts: int = 3) -> None:
        """A manual failover of `master`: CLUSTER FAILOVER on its replica. Redis gives a manual failover 5 s for the
        replica to catch up and win the vote, and otherwise drops it silently (a busy machine under traffic); so
        it is asked again, up to `attempts` times, until the replica is a master."""
        replica = self.replica_of(master)
        self._remember_slots(master)

        def promoted() -> bool:
            return bool(self.node(replica).client().info("replication")["role"] == "master")
        for attempt in range(attempts):
            if attempt and promoted():  # the last request went through just after its wait ended
                return
            self.failover(replica)
            try:
                processes.wait_until(promoted, 8, f"{replica} to take over from {master}", 0.1)
                return
            except RuntimeError:
                if attempt == attempts - 1:
                    raise

    def wait_ok(self, timeout: float = 30) -> None:
        """Until every live node says cluster_state:ok, they all agree who owns every slot, and every live
        replica's link to its master is up (so a manual failover can start)."""
        def settled() -> bool:
            views = set()
            for node in self.live():
                c = node.client()
                if c.execute_command("CLUSTER INFO")["cluster_state"] != "ok":
                    return False
                views.add(tuple(sorted((s[0], s[1], s[2][1]) for s in c.execute_command("CLUSTER SLOTS"))))
                info = c.info("replication")
                if info["role"] == "slave" and info.get("master_link_status") != "up":
                    return False
            return len(views) == 1
        processes.wait_until(settled, timeout, "the cluster to settle (cluster_state:ok, one slot map)", 0.1)

    # -- faults ---------------------------------------------------------------------------------------------------
    def kill(self, port: int) -> None:
        """kill -9 a node."""
        node = self.node(port)
        self._remember_slots(port)
        self.frozen.discard(port)
        processes.kill(node.proc, signal.SIGKILL)

    def restart(self, port: int) -> None:
        """Start a killed node again; it rejoins (as a replica, if its master role was taken over)."""
        node = self.node(port)
        self._run(node)
        processes.wait_until(node.client().ping, 10, f"redis-server on {port}")

    def failover(self, replica_port: int, mode: str = "") -> None:
        """CLUSTER FAILOVER on a replica: plain (its master is alive and agrees), FORCE (the master is down) or
        TAKEOVER (no agreement from the other masters)."""
        self.node(replica_port).client().execute_command("CLUSTER FAILOVER", *([mode] if mode else []))

    def wait_for_failover(self, old_master: int, timeout: float = 30) -> int:
        """Until the slots `old_master` owned belong to another live master and the cluster is ok; returns that
        master's port. The slots are those `old_master` owned before the fault: read after it, a node that already
        saw the failover shows the old master with none, and no take-over of nothing would ever be seen."""
        slots = self.owned.get(old_master) or set(next(n["slots"] for n in self.topology() if n["port"] == old_master))

        def taken_over():
            for n in self.topology():
                if n["port"] != old_master and "master" in n["flags"] and slots & set(n["slots"]):
                    return n["port"] if n["port"] in {x.port for x in self.live()} else None
            return None
        new = processes.wait_until(taken_over, timeout, f"a replica to take over from {old_master}", 0.1)
        self.wait_ok(timeout)
        return new

    def _remember_slots(self, port: int) -> None:
        self.owned[port] = set(next(n["slots"] for n in self.topology() if n["port"] == port))

    def freeze(self, port: int) -> None:
        self._remember_slots(port)
        self.node(port).proc.send_signal(signal.SIGSTOP)
        self.frozen.add(port)

    def thaw(self, port: int) -> None:
        self.node(port).proc.send_signal(signal.SIGCONT)
        self.frozen.discard(port)

    def flushall(self) -> None:
        """FLUSHALL on every live master (replicas follow), and forget every script."""
        for port in self.masters():
            c = self.node(port).client()
            c.flushall()
            c.script_flush()

    # -- a slot migration, in the steps `redis-cli --cluster reshard` takes -------------------------------------
    def begin_migration(self, slot: int, to_port: int) -> int:
        """Mark `slot` importing on `to_port` and migrating on its owner; returns the owner's port. From here a
        key missing on the owner is answered with ASK."""
        src = self.owner(slot)
        if src == to_port:
            raise ValueError(f"slot {slot} is already on {to_port}")
        self.node(to_port).client().execute_command("CLUSTER SETSLOT", slot, "IMPORTING", self.node_id(src))
        self.node(src).client().execute_command("CLUSTER SETSLOT", slot, "MIGRATING", self.node_id(to_port))
        return src

    def move_keys(self, slot: int, src: int, to_port: int) -> int:
        """MIGRATE every key of `slot` from `src` to `to_port`; returns how many moved."""
        c = self.node(src).client(timeout=10)
        moved = 0
        while keys := c.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
            c.execute_command("MIGRATE", "127.0.0.1", to_port, "", 0, 5000, "REPLACE", "KEYS", *keys)
            moved += len(keys)
        return moved

    def finish_migration(self, slot: int, to_port: int) -> None:
        """Give `slot` to `to_port` on every master (the new owner first, as redis-cli does); from here clients
        that still send to the old owner get MOVED."""
        new_id = self.node_id(to_port)
        for port in [to_port] + [p for p in self.masters() if p != to_port]:
            self.node(port).client().execute_command("CLUSTER SETSLOT", slot, "NODE", new_id)
        self.wait_ok()

    def migrate_slot_of(self, key: str, to_port: int | None = None) -> tuple[int, int]:
        """Move `key`'s slot (with every key in it) to another master; returns (from port, to port)."""
        slot = self.slot_of(key)
        src = self.owner(slot)
        dst = to_port or next(p for p in self.masters() if p != src)
        self.begin_migration(slot, dst)
        self.move_keys(slot, src, dst)
        self.finish_migration(slot, dst)
        return src, dst
