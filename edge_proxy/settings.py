"""The gateway's settings, read once, in one place.

Precedence: command-line flags, then `EDGE_PROXY_*` environment variables, then an optional TOML file
(`EDGE_PROXY_CONFIG` or `--config`), then the defaults below. A bad value raises `SettingsError` naming the
variable. Secrets print masked.
"""
from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .errors import SettingsError

PREFIX = "EDGE_PROXY_"
UPSTREAM_PREFIX = PREFIX + "UPSTREAM_"
PROVIDER_KEY_PREFIX = PREFIX + "PROVIDER_KEY_"
_SECRET = {"admin_token", "provider_keys", "database_url", "redis_url"}
LOG_LEVELS = ("critical", "error", "warning", "warn", "info", "debug", "notset")  # Granian's LogLevels


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    database_url: str = "sqlite:///edge-proxy.db"
    redis_url: str | None = None
    admin_token: str | None = None
    # provider env suffix (catalogue name uppercased, "-" as "_") -> base URL / managed key
    upstreams: Mapping[str, str] = field(default_factory=dict)
    provider_keys: Mapping[str, str] = field(default_factory=dict)
    max_body_bytes: int = 32 * 1024 * 1024
    connect_timeout: float = 10.0
    read_timeout: float = 600.0
    max_stream_seconds: float = 3600.0  # the longest a streamed answer is relayed, however its provider keeps it alive
    principal_cache_size: int = 10_000
    principal_cache_ttl: float = 30.0
    revocation_poll: float = 0.25   # seconds between a worker's reads of the key-event counter (store/key_events.py)
    shutdown_grace: float = 30.0
    spill_dir: str = "edge-proxy-spill"
    prices_file: str | None = None
    log_queue_size: int = 100_000
    log_batch_size: int = 500
    log_flush_seconds: float = 0.2
    log_spill_after: float = 5.0
    log_writer: str = "process"  # process | inline
    pin_workers: bool = False  # one CPU per worker, its log writer left free (affinity.py)
    journal_fsync: bool = False
    journal_sync_seconds: float = 0.0
    journal_segment_bytes: int = 16 * 1024 * 1024
    byok_fee: str = "0"
    redis_timeout: float = 0.5
    lease_ttl: float = 30.0
    webhook_retry_seconds: float = 1.0
    webhook_max_attempts: int = 12
    webhook_timeout: float = 10.0
    webhook_concurrency: int = 8
    webhook_allow_http: bool = False
    webhook_allow: str | None = None   # host:port entries, comma-separated (see outbound/policy.py)
    webhooks_per_merchant: int = 10
    head_timeout: float | None = None   # unset: the read timeout
    max_connections_per_host: int = 512
    max_response_bytes: int | None = None   # unset: a provider's answer may be as long as it takes
    log_level: str = "info"
    region: str = "default"   # the region this gateway serves: on every record, and in its Redis leases' ids
    region_lease_ttl: float = 120.0  # how long a region serves from its lease without the shared database
    pure_python: bool = False
    # the merchant dashboard (edge_proxy/dashboard/): session limits in seconds, failed sign-ins allowed per client
    # address in 15 minutes, and whether a reverse proxy in front sets X-Forwarded-Proto / X-Forwarded-For
    dashboard_idle_timeout: float = 1800.0
    dashboard_session_lifetime: float = 43200.0
    dashboard_sign_in_attempts: int = 10
    behind_proxy: bool = False
    # observability (edge_proxy/observability/): where the workers' Prometheus files go (`serve` makes a temporary
    # one when unset; PROMETHEUS_MULTIPROC_DIR wins), an OTLP/HTTP collector for traces (unset: off), the access log
    metrics_dir: str | None = None
    otel_endpoint: str | None = None
    access_log: bool = False
    access_log_file: str | None = None   # unset: stdout

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, flags: Mapping[str, Any] | None = None) -> Settings:
        env = os.environ if env is None else env
        flags = {k: v for k, v in (flags or {}).items() if v is not None}
        values: dict[str, Any] = {}
        config = flags.pop("config", None) or env.get(PREFIX + "CONFIG")
        if config:
            values.update(_from_toml(config))
        for layer in (_from_env(env), flags):
            for name, value in layer.items():
                if name in ("upstreams", "provider_keys"):  # per-provider tables merge, provider by provider
                    value = {**values.get(name, {}), **value}
                values[name] = value
        return cls._coerce(values)

    @classmethod
    def _coerce(cls, values: dict[str, Any]) -> Settings:
        out: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in values:
                continue
            raw, name = values[f.name], PREFIX + f.name.upper()
            try:
                out[f.name] = _convert(f.type, raw)
            except (TypeError, ValueError):
                raise SettingsError(f"{name}: cannot read {raw!r} as {f.type}") from None
        settings = cls(**out)
        if settings.port < 0 or settings.port > 65535:
            raise SettingsError(f"{PREFIX}PORT: {settings.port} is not a TCP port")
        if settings.workers < 1:
            raise SettingsError(f"{PREFIX}WORKERS: must be at least 1")
        for name in ("max_body_bytes", "webhook_max_attempts", "webhook_retry_seconds", "webhook_concurrency",
                     "webhooks_per_merchant",
                     "max_connections_per_host", "webhook_timeout", "dashboard_idle_timeout", "revocation_poll",
                     "max_stream_seconds",
                     "dashboard_session_lifetime", "dashboard_sign_in_attempts"):
            if getattr(settings, name) <= 0:
                raise SettingsError(f"{PREFIX}{name.upper()}: must be positive")
        for name in ("head_timeout", "max_response_bytes"):
            value = getattr(settings, name)
            if value is not None and value <= 0:
                raise SettingsError(f"{PREFIX}{name.upper()}: must be positive (leave it unset for no limit)")
        from .outbound.policy import parse_allow_list
        try:
            parse_allow_list(settings.webhook_allow)
        except ValueError as exc:
            raise SettingsError(f"{PREFIX}WEBHOOK_ALLOW: {exc}") from None
        if settings.redis_url:  # a bad Redis URL fails here, at start-up, not at the first request
            from .store.redis_client import parse_redis_url
            parse_redis_url(settings.redis_url)
        if settings.log_level not in LOG_LEVELS:  # else Granian fails with a KeyError traceback at start
            raise SettingsError(f"{PREFIX}LOG_LEVEL: {settings.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        if settings.log_writer not in ("process", "inline"):
            raise SettingsError(f"{PREFIX}LOG_WRITER: {settings.log_writer!r} is not one of process, inline")
        if settings.journal_sync_seconds < 0:
            raise SettingsError(f"{PREFIX}JOURNAL_SYNC_SECONDS: must be 0 (off) or more")
        if settings.journal_segment_bytes < 4096:
            raise SettingsError(f"{PREFIX}JOURNAL_SEGMENT_BYTES: must be at least 4096")
        return settings

    def to_env(self) -> dict[str, str]:
        """The environment that makes a worker process load these same settings."""
        env: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "upstreams":
                env.update({UPSTREAM_PREFIX + k: v for k, v in value.items()})
            elif f.name == "provider_keys":
                env.update({PROVIDER_KEY_PREFIX + k: v for k, v in value.items()})
            elif value is not None:
                env[PREFIX + f.name.upper()] = ("1" if value else "0") if isinstance(value, bool) else str(value)
        return env

    def masked(self) -> dict[str, Any]:
        shown: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET and value:
                value = {k: "****" for k in value} if isinstance(value, Mapping) else _mask_url(str(value))
            shown[f.name] = value
        return shown

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def _convert(kind: Any, raw: Any) -> Any:
    kind = str(kind)
    if kind.startswith("Mapping"):
        if not isinstance(raw, Mapping):
            raise TypeError
        return {str(k): str(v) for k, v in raw.items()}
    if raw is None or raw == "":
        if "None" in kind:
            return None
        raise ValueError
    kind = kind.removesuffix(" | None")
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in ("1", "true", "yes", "on"):
            return True
        if str(raw).lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError
    if kind == "int":
        if isinstance(raw, bool):
            raise TypeError
        return int(raw)
    if kind == "float":
        return float(raw)
    return str(raw)


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    upstreams: dict[str, str] = {}
    keys: dict[str, str] = {}
    names = {f.name.upper(): f.name for f in fields(Settings)}
    for var, value in env.items():
        if not var.startswith(PREFIX):
            continue
        if var.startswith(UPSTREAM_PREFIX):
            upstreams[var[len(UPSTREAM_PREFIX):]] = value
        elif var.startswith(PROVIDER_KEY_PREFIX):
            keys[var[len(PROVIDER_KEY_PREFIX):]] = value
        elif var[len(PREFIX):] in names:
            values[names[var[len(PREFIX):]]] = value
    if upstreams:
        values["upstreams"] = upstreams
    if keys:
        values["provider_keys"] = keys
    return values


def _from_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise SettingsError(f"{PREFIX}CONFIG: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{PREFIX}CONFIG: {path} is not valid TOML: {exc}") from None
    values = dict(data)
    for table in ("upstreams", "provider_keys"):
        if table in values:
            values[table] = {env_name(k): v for k, v in values[table].items()}
    return values


def env_name(provider: str) -> str:
    """A provider's catalogue name as it appears in EDGE_PROXY_UPSTREAM_<PROVIDER>."""
    return provider.upper().replace("-", "_")


def _mask_url(value: str) -> str:
    if "@" in value and "://" in value:
        scheme, rest = value.split("://", 1)
        return f"{scheme}://****@{rest.rsplit('@', 1)[1]}"
    return "****" if "://" not in value else value
