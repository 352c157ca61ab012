"""PostgreSQL for tests: throwaway databases, and a private server that fault tests may stop, restart or kill.

- The shared server (`EDGE_PROXY_TEST_POSTGRES`, default postgres:postgres on 127.0.0.1:5432, which
  scripts/services.sh starts) hosts throwaway databases for tests that only need the real thing:
  `create_database()`, `drop_database()`, `terminate()`.
- `PrivatePostgres` is a server of the test run's own: `initdb` into a temp dir, trust authentication, its unix
  socket in that dir, on a free loopback port. A fault test stops, restarts or `kill -9`s it without touching
  anyone else's server. fsync is off (the page cache survives a process crash, and no test crashes the machine);
  synchronous_commit stays on, since with it off a kill -9 loses commits already acknowledged. PostgreSQL
  refuses to run as root, so as root it runs as the `postgres` user in a temp dir that user owns. The postmaster
  dies with the test run (tests/processes.py), so it is started directly rather than through `pg_ctl start`,
  which would detach it; `pg_ctl stop` stops it.
"""
from __future__ import annotations

import asyncio
import os
import pwd
import re
import secrets
import subprocess
import tempfile
from pathlib import Path
from typing import Self

import asyncpg

from . import processes
from .gateway_process import free_port

ADMIN_URL = os.environ.get("EDGE_PROXY_TEST_POSTGRES", "postgresql://postgres:postgres@127.0.0.1:5432/postgres")


def _url_for(admin: str, db: str) -> str:
    return admin.rsplit("/", 1)[0] + "/" + db


async def create_database(admin: str = ADMIN_URL) -> str:
    name = "edge_proxy_test_" + secrets.token_hex(4)
    conn = await asyncpg.connect(admin, timeout=5)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return _url_for(admin, name)


async def drop_database(url: str, admin: str = ADMIN_URL) -> None:
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(admin, timeout=5)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


async def terminate(application_name: str, admin: str = ADMIN_URL) -> int:
    conn = await asyncpg.connect(admin, timeout=5)
    try:
        rows = await conn.fetch("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                                application_name)
        return len(rows)
    finally:
        await conn.close()


def server_binaries() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin with initdb in it (Debian's layout), else initdb's folder on
    PATH."""
    found = []
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        for d in root.iterdir():
            if (d / "bin" / "initdb").exists() and re.fullmatch(r"\d+(\.\d+)?", d.name):
                found.append((tuple(int(x) for x in d.name.split(".")), d / "bin"))
    if found:
        return max(found)[1]
    return Path(processes.which("initdb", "apt-get install postgresql")).parent


class PrivatePostgres(processes.ServerSet):
    """A PostgreSQL server of this test run's own (see the module docstring)."""

    def __init__(self) -> None:
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.user = "postgres" if os.getuid() == 0 else None
        self.bin = Path()

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def data(self) -> Path:
        assert self.dir is not None
        return self.dir / "data"

    def processes(self):
        return [self.proc]

    def start(self) -> Self:
        self.bin = server_binaries()
        # as root the postgres user must reach it: under /tmp, not a TMPDIR that only root may enter
        self.dir = Path(tempfile.mkdtemp(prefix="edge-proxy-pg-", dir="/tmp" if self.user else None))
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self.port = free_port()
        try:
            subprocess.run(processes.as_user(self.user) + [
                str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                "--locale=C", "--no-sync"], check=True, capture_output=True, timeout=120)
            self.start_server()
        except BaseException:
            self.stop()
            raise
        return self

    def start_server(self, timeout: float = 30) -> None:
        """Start the postmaster (again) and wait until it takes connections. After a kill -9 the old backends
        may still hold the shared memory for a moment: the start is retried until they are gone."""
        def up() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                self.proc = processes.spawn([
                    str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.dir),
                    "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off",
                    "-c", "max_connections=200"],
                    self.dir / "postgres.log", user=self.user)
            ready = subprocess.run([str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port),
                                    "-t", "1"], check=False, capture_output=True, timeout=10)
            return ready.returncode == 0
        processes.wait_until(up, timeout, f"PostgreSQL on {self.port} (log: {self.dir}/postgres.log)", 0.1)

    def stop_server(self) -> None:
        """A clean, fast shutdown (`pg_ctl stop -m fast`): open connections are closed."""
        subprocess.run(processes.as_user(self.user) + [str(self.bin / "pg_ctl"), "stop", "-D", str(self.data),
                                                       "-m", "fast", "-w"], check=True, capture_output=True,
                       timeout=60)
        processes.kill(self.proc)

    def restart(self) -> None:
        self.stop_server()
        self.start_server()

    def kill_server(self) -> None:
        """kill -9 the postmaster, as a crash would; its backends notice and exit."""
        processes.kill(self.proc)

    def ensure_running(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.start_server()

    def create_database(self) -> str:
        return asyncio.run(create_database(self.admin_url))

    def drop_database(self, url: str) -> None:
        asyncio.run(drop_database(url, self.admin_url))

    def terminate(self, application_name: str) -> int:
        return asyncio.run(terminate(application_name, self.admin_url))
