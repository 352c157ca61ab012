"""An optional driver that is not installed gives one line naming the extra to install, and a non-zero exit, never
a traceback: asyncpg (the `postgres` extra) for the gateway and every CLI command that opens the store, the MCP SDK
and httpx2 (the `mcp` extra) for `edge-proxy mcp`, httpx2 (the `client` extra) for `import edge_proxy.client`.

Each case runs in a subprocess whose `sys.modules[name] = None` makes the package unimportable, as if it had never
been installed."""
from __future__ import annotations

import subprocess
import sys

import pytest

from .gateway_process import ROOT, free_port

PG_URL = "postgresql://edge@127.0.0.1:1/edge"   # never reached: the check comes first

CLI = [
    ("serve without asyncpg", "asyncpg", ["serve", "--port", "0"], 2, "pip install 'edge-proxy[postgres]'"),
    ("merchants create without asyncpg", "asyncpg", ["merchants", "create", "--name", "a"], 2,
     "pip install 'edge-proxy[postgres]'"),
    ("balances reconcile without asyncpg", "asyncpg", ["balances", "reconcile"], 2,
     "pip install 'edge-proxy[postgres]'"),
    ("mcp without the MCP SDK", "mcp", ["mcp"], 1, "pip install 'edge-proxy[mcp]'"),
    ("mcp without httpx2", "httpx2", ["mcp"], 1, "pip install 'edge-proxy[mcp]'"),
]


def run_hidden(module: str, code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    shim = f"import sys; sys.modules[{module!r}] = None\n" + code
    return subprocess.run([sys.executable, "-c", shim], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def clean_env(**extra: str) -> dict[str, str]:
    import os
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_PROXY_")}
    env.update(extra)
    return env


@pytest.mark.parametrize("why, module, argv, code, extra", CLI, ids=[c[0] for c in CLI])
def test_the_cli_names_the_extra_in_one_line(why, module, argv, code, extra):
    argv = [a if a != "0" else str(free_port()) for a in argv]
    done = run_hidden(module, f"from edge_proxy.cli import main; sys.exit(main({argv!r}))",
                      clean_env(EDGE_PROXY_DATABASE_URL=PG_URL))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code, done.stderr
    assert len(lines) == 1 and lines[0].startswith("edge-proxy: ") and lines[0].endswith(extra), done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_the_postgresql_message_names_the_variable():
    done = run_hidden("asyncpg", "from edge_proxy.cli import main; sys.exit(main(['merchants', 'create', "
                                 "'--name', 'a']))", clean_env(EDGE_PROXY_DATABASE_URL=PG_URL))
    assert "EDGE_PROXY_DATABASE_URL: PostgreSQL needs the asyncpg driver" in done.stderr


def test_sqlite_needs_no_optional_driver(tmp_path):
    done = run_hidden("asyncpg", "from edge_proxy.cli import main; sys.exit(main(['merchants', 'create', "
                                 "'--name', 'a']))", clean_env(EDGE_PROXY_DATABASE_URL=f"sqlite:///{tmp_path}/a.db"))
    assert done.returncode == 0, done.stderr
    assert '"merchant_id"' in done.stdout


def test_importing_the_client_without_httpx2_names_the_client_extra():
    done = run_hidden("httpx2", "import edge_proxy.client", clean_env())
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        "ImportError: edge_proxy.client needs the client extra (httpx2 is not installed): "
        "pip install 'edge-proxy[client]'")
