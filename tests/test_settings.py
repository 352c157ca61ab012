"""Settings: flags over EDGE_PROXY_* variables over the TOML file over defaults; errors name the variable."""
from __future__ import annotations

import base64
import json

import pytest
from granian.log import LogLevels

from edge_proxy.errors import SettingsError
from edge_proxy.settings import LOG_LEVELS, Settings

from .gateway_process import base_env, cli


def test_defaults_are_the_embedded_ones():
    s = Settings.load(env={})
    assert (s.host, s.port, s.workers) == ("127.0.0.1", 8080, 1)
    assert s.database_url == "sqlite:///edge-proxy.db" and s.redis_url is None and s.admin_token is None


def test_flags_win_over_the_environment_which_wins_over_the_file(tmp_path):
    config = tmp_path / "edge.toml"
    config.write_text('port = 7000\nworkers = 3\nhost = "0.0.0.0"\n'
                      '[upstreams]\nopenai = "http://127.0.0.1:9/v1"\ngoogle-openai-compatible = "http://127.0.0.1:8/v1"\n'
                      '[provider_keys]\nanthropic = "sk-from-file"\n')
    env = {"EDGE_PROXY_CONFIG": str(config), "EDGE_PROXY_PORT": "7100", "EDGE_PROXY_PROVIDER_KEY_OPENAI": "sk-env"}
    s = Settings.load(env=env, flags={"port": 7200, "host": None})
    assert s.port == 7200 and s.workers == 3 and s.host == "0.0.0.0"
    assert s.upstreams == {"OPENAI": "http://127.0.0.1:9/v1", "GOOGLE_OPENAI_COMPATIBLE": "http://127.0.0.1:8/v1"}
    assert s.provider_keys == {"ANTHROPIC": "sk-from-file", "OPENAI": "sk-env"}  # tables merge per provider


BAD = [
    ("a port that is not a number", {"EDGE_PROXY_PORT": "eighty"}, "EDGE_PROXY_PORT"),
    ("a port out of range", {"EDGE_PROXY_PORT": "70000"}, "EDGE_PROXY_PORT"),
    ("zero workers", {"EDGE_PROXY_WORKERS": "0"}, "EDGE_PROXY_WORKERS"),
    ("a timeout that is not a number", {"EDGE_PROXY_READ_TIMEOUT": "soon"}, "EDGE_PROXY_READ_TIMEOUT"),
    ("a stream deadline of zero", {"EDGE_PROXY_MAX_STREAM_SECONDS": "0"}, "EDGE_PROXY_MAX_STREAM_SECONDS"),
    ("a boolean that is not one", {"EDGE_PROXY_PURE_PYTHON": "maybe"}, "EDGE_PROXY_PURE_PYTHON"),
    ("a missing config file", {"EDGE_PROXY_CONFIG": "/nonexistent/edge.toml"}, "EDGE_PROXY_CONFIG"),
    ("a log level that is not one", {"EDGE_PROXY_LOG_LEVEL": "loud"}, "EDGE_PROXY_LOG_LEVEL"),
    ("a webhook retry wait of zero (no backoff: every attempt at once)", {"EDGE_PROXY_WEBHOOK_RETRY_SECONDS": "0"},
     "EDGE_PROXY_WEBHOOK_RETRY_SECONDS"),
    ("a negative webhook retry wait", {"EDGE_PROXY_WEBHOOK_RETRY_SECONDS": "-1"}, "EDGE_PROXY_WEBHOOK_RETRY_SECONDS"),
]


@pytest.mark.parametrize("env,variable", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_bad_setting_names_its_variable(env, variable):
    with pytest.raises(SettingsError, match=variable):
        Settings.load(env=env)


def test_the_log_levels_are_granians():
    assert set(LOG_LEVELS) == {level.value for level in LogLevels}


def test_secrets_print_masked():
    s = Settings.load(env={"EDGE_PROXY_ADMIN_TOKEN": "hunter2", "EDGE_PROXY_PROVIDER_KEY_OPENAI": "sk-live",
                           "EDGE_PROXY_DATABASE_URL": "postgresql://app:pw@db/edge"})
    shown = json.dumps(s.masked())
    assert "hunter2" not in shown and "sk-live" not in shown and ":pw@" not in shown


def test_a_worker_loads_the_same_settings_from_the_environment_it_is_given():
    s = Settings.load(env={"EDGE_PROXY_PORT": "9001", "EDGE_PROXY_UPSTREAM_OPENAI": "http://127.0.0.1:9/v1"})
    assert Settings.load(env=s.to_env()) == s


def test_the_cli_reads_the_same_store_and_prints_a_bare_token(tmp_path):
    env = base_env(tmp_path / "cli.db", None)
    merchant = json.loads(cli(env, "merchants", "create", "--name", "acme", "--balance", "2.5").stdout)
    assert merchant["secret_key"].startswith("ep_sk_") and merchant["balance"] == "2.5"
    shown = json.loads(cli(env, "merchants", "show", "--secret-key", merchant["secret_key"]).stdout)
    assert shown["merchant_id"] == merchant["merchant_id"] and "secret_key" not in shown
    out = cli(env, "tokens", "create", "--secret-key", merchant["secret_key"], "--customer-id", "cus_1").stdout
    assert out.count("\n") == 1
    assert json.loads(base64.b64decode(out.strip())) == {"secret_key": merchant["secret_key"], "customer_id": "cus_1"}
    bad = cli(env, "merchants", "create", "--name", "x", "--balance", "-1", check=False)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "--balance" in bad.stderr
    bad = cli({**env, "EDGE_PROXY_PORT": "nope"}, "merchants", "show", "--secret-key", "x", check=False)
    assert bad.returncode == 2 and "EDGE_PROXY_PORT" in bad.stderr
    bad = cli({**env, "EDGE_PROXY_LOG_LEVEL": "loud"}, "serve", check=False)  # refused before Granian starts
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "EDGE_PROXY_LOG_LEVEL" in bad.stderr
