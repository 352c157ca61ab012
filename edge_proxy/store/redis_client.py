"""The Redis client the gateway and the CLI use: one function turns `EDGE_PROXY_REDIS_URL` into a redis-py client.

    redis://[[user]:password@]host[:port][/db][?opts]        one server (redis-py's `Redis.from_url`)
    rediss://...                                             the same over TLS
    unix://[[user]:password@]/path/to/redis.sock[?db=N]       one server over a unix socket
    redis+cluster://[[user]:password@]host:port[,host:port...][/][?opts]
    rediss+cluster://...                                     a Redis Cluster (TLS); any reachable node finds the rest
    redis+sentinel://[[user]:password@]host:port[,host:port...]/<service name>[/db][?opts]
    rediss+sentinel://...                                    a Sentinel set (TLS to the master)

Cluster routing (MOVED, ASK, slot-map refreshes, retries during a failover) is redis-py's own `RedisCluster`;
Sentinel discovery and re-pointing after a failover is redis-py's `Sentinel.master_for`. Nothing here routes a
command by hand. The user name and password authenticate to the data nodes (master, replicas, cluster nodes);
sentinels that need their own take `?sentinel_password=`. Ports default to 6379 (26379 for sentinels).

A URL this module cannot read raises `SettingsError` naming `EDGE_PROXY_REDIS_URL`, before anything connects.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ..errors import SettingsError

VARIABLE = "EDGE_PROXY_REDIS_URL"
_PLAIN = ("redis", "rediss", "unix")
_CLUSTER = ("redis+cluster", "rediss+cluster")
_SENTINEL = ("redis+sentinel", "rediss+sentinel")
# query options each form accepts beyond redis-py's own (the plain form passes its query to Redis.from_url)
_CLUSTER_OPTS = {"max_connections": int, "require_full_coverage": bool}
_SENTINEL_OPTS = {"max_connections": int, "sentinel_password": str, "sentinel_username": str}


@dataclass(frozen=True)
class RedisTarget:
    """What a `redis+cluster://` or `redis+sentinel://` URL names, parsed and checked."""
    kind: str                                  # "cluster" | "sentinel"
    nodes: tuple[tuple[str, int], ...]         # startup nodes or sentinels
    tls: bool = False
    username: str | None = None
    password: str | None = None
    service: str | None = None                 # sentinel: the master's service name
    db: int = 0
    options: dict[str, Any] = field(default_factory=dict)


def _bad(url: str, why: str) -> SettingsError:
    # the URL may hold a password: name the variable and the problem, never echo the URL
    return SettingsError(f"{VARIABLE}: {why} (expected redis://, rediss://, unix://, redis+cluster://host:port,"
                         f"host:port or redis+sentinel://host:port,host:port/service)")


def _bool(url: str, name: str, text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise _bad(url, f"option {name} must be true or false, not {text!r}")


def _nodes(url: str, netloc: str, default_port: int) -> tuple[tuple[str, int], ...]:
    hosts = netloc.rsplit("@", 1)[-1]
    out = []
    for part in hosts.split(","):
        part = part.strip()
        if not part:
            raise _bad(url, "an empty host in the node list")
        if part.startswith("["):  # [::1]:7000
            host, _, rest = part[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port_text = part.partition(":")
        if not host:
            raise _bad(url, "a node without a host")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise _bad(url, f"port {port_text!r} is not a number") from None
        if not 0 < port < 65536:
            raise _bad(url, f"port {port} is out of range")
        out.append((host, port))
    return tuple(out)


def _credentials(netloc: str) -> tuple[str | None, str | None]:
    if "@" not in netloc:
        return None, None
    userinfo = netloc.rsplit("@", 1)[0]
    if ":" in userinfo:
        user, _, password = userinfo.partition(":")
        return unquote(user) or None, unquote(password)
    return None, unquote(userinfo)  # redis+sentinel://password@host: a bare word is the password


def _options(url: str, query: str, allowed: dict[str, type]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        kind = allowed.get(name)
        if kind is None:
            raise _bad(url, f"unknown option {name!r} (this form takes {', '.join(sorted(allowed)) or 'none'})")
        if kind is bool:
            out[name] = _bool(url, name, value)
        elif kind is int:
            try:
                out[name] = int(value)
            except ValueError:
                raise _bad(url, f"option {name} must be a whole number, not {value!r}") from None
        else:
            out[name] = unquote(value)
    return out


def parse_redis_url(url: str) -> RedisTarget | None:
    """The cluster or sentinel target `url` names; None for a plain redis://, rediss:// or unix:// URL (redis-py
    reads those itself). Raises SettingsError for anything else."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or not rest:
        raise _bad(url, "not a URL")
    if scheme in _PLAIN:
        return None
    if scheme not in _CLUSTER + _SENTINEL:
        raise _bad(url, f"unknown scheme {scheme!r}")
    # urlsplit would choke on the comma-separated netloc's ports, so split by hand: netloc, then path and query
    netloc, _, tail = rest.partition("/")
    if "?" in netloc:
        netloc, _, query = netloc.partition("?")
        path = ""
    else:
        parts = urlsplit("x://h/" + tail)
        path, query = parts.path.strip("/"), parts.query
    username, password = _credentials(netloc)
    tls = scheme.startswith("rediss")
    if scheme in _CLUSTER:
        if path:
            raise _bad(url, "a cluster URL has no path: Redis Cluster has only database 0")
        return RedisTarget("cluster", _nodes(url, netloc, 6379), tls, username, password,
                           options=_options(url, query, _CLUSTER_OPTS))
    segments = [unquote(s) for s in path.split("/") if s]
    if not segments:
        raise _bad(url, "a sentinel URL needs the master's service name: redis+sentinel://host:port/<service>")
    if len(segments) > 2:
        raise _bad(url, "a sentinel URL's path is /<service name>[/db]")
    db = 0
    if len(segments) == 2:
        if not segments[1].isdigit():
            raise _bad(url, f"database {segments[1]!r} is not a number")
        db = int(segments[1])
    return RedisTarget("sentinel", _nodes(url, netloc, 26379), tls, username, password, segments[0], db,
                       _options(url, query, _SENTINEL_OPTS))


def import_redis() -> None:
    """Import redis-py's asyncio clients without their OpenTelemetry metrics. redis-py 7 and later import
    OpenTelemetry's metrics API and SDK (and through them psutil and importlib.metadata) at their own import whenever
    those are installed, as the `otel` extra installs them, for a feature that is off until a program turns it on,
    which we never do: ~3.6 MB more in every worker and log writer process on Redis, and our promise that tracing
    off imports no OpenTelemetry broken. While redis-py imports, `opentelemetry` reads as absent (redis-py catches
    the ImportError and leaves its metrics off for good); afterwards it imports as usual, for our tracer (which
    `Services` makes after the Redis client). When OpenTelemetry or redis-py is in the process already, nothing is
    hidden."""
    if "redis" in sys.modules or "opentelemetry" in sys.modules:
        return
    sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # None: "import opentelemetry" raises
    try:
        import redis.asyncio
        import redis.asyncio.cluster
        import redis.asyncio.sentinel  # noqa: F401
    finally:
        del sys.modules["opentelemetry"]


def open_redis(url: str, timeout: float) -> Any:
    """A redis-py asyncio client for `url` (see the module docstring), with `timeout` seconds as its socket and
    connect timeout. Nothing connects until the first command. Close it with `await client.aclose()`."""
    target = parse_redis_url(url)
    import_redis()
    if target is None:
        import redis.asyncio

        try:
            return redis.asyncio.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        except ValueError as exc:  # redis-py's own parse error: a bad port, db or query option
            raise _bad(url, str(exc)) from None
    if target.kind == "cluster":
        return _cluster(target, timeout)
    return _sentinel(target, timeout)


def _cluster(target: RedisTarget, timeout: float) -> Any:
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    return RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
                        username=target.username, password=target.password, ssl=target.tls,
                        socket_timeout=timeout, socket_connect_timeout=timeout, **target.options)


def _sentinel(target: RedisTarget, timeout: float) -> Any:
    from redis.asyncio import Redis
    from redis.asyncio.sentinel import Sentinel

    options = dict(target.options)
    sentinel_kwargs = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if "sentinel_password" in options:
        sentinel_kwargs["password"] = options.pop("sentinel_password")
    if "sentinel_username" in options:
        sentinel_kwargs["username"] = options.pop("sentinel_username")
    # redis-py's Sentinel constructor carries no annotations before redis 8.2
    sentinel = Sentinel(list(target.nodes), sentinel_kwargs=sentinel_kwargs,  # type: ignore[no-untyped-call,unused-ignore]
                        socket_timeout=timeout, socket_connect_timeout=timeout, username=target.username,
                        password=target.password, ssl=target.tls, db=target.db, **options)

    class SentinelRedis(Redis):
        """The master's client; closing it also closes the connections to the sentinels."""

        async def aclose(self, close_connection_pool: bool | None = None) -> None:
            await super().aclose(close_connection_pool)
            for client in sentinel.sentinels:
                await client.aclose()

    assert target.service is not None  # parse_redis_url refuses a sentinel URL without one
    return sentinel.master_for(target.service, redis_class=SentinelRedis)
