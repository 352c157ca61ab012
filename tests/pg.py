"""A throwaway PostgreSQL database on the local server (127.0.0.1:5432), for tests that need the real thing."""
from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import asyncpg

ADMIN_URL = os.environ.get("EDGE_PROXY_TEST_POSTGRES", "postgresql://postgres:postgres@127.0.0.1:5432/postgres")


def _url_for(db: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + db


async def create_database() -> str:
    name = "edge_proxy_test_" + secrets.token_hex(4)
    conn = await asyncpg.connect(ADMIN_URL, timeout=5)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return _url_for(name)


async def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(ADMIN_URL, timeout=5)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


async def terminate(application_name: str) -> int:
    conn = await asyncpg.connect(ADMIN_URL, timeout=5)
    try:
        rows = await conn.fetch("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                                application_name)
        return len(rows)
    finally:
        await conn.close()


def _cluster() -> list[str]:
    version = sorted(os.listdir("/etc/postgresql"), key=lambda v: [int(x) for x in v.split(".")])[-1]
    return [version, "main"]


def stop_server() -> None:
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *_cluster(), "stop", "-m", "fast"], check=True,
                   capture_output=True, timeout=60)


def start_server() -> None:
    if Path("/etc/postgresql").is_dir():
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *_cluster(), "start"], check=False,
                       capture_output=True, timeout=60)
    subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-t", "30"], check=True, capture_output=True,
                   timeout=60)
