"""The provider catalogue (catalogue.toml) and the one question the proxy asks it: where may this URL go?

The gateway forwards only to catalogue hosts, over https on the default port, or to the base URL an operator
put in EDGE_PROXY_UPSTREAM_<NAME>. Every other target is refused before anything is sent, so the gateway can
never be used to reach loopback, private or link-local addresses. The check is an exact match of the host
against a fixed set of names, which is why IP literals in any notation, `user@host`, `#` and backslash tricks,
other schemes and other ports all fall out: none of them spells a catalogue host.
"""
from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import DisallowedUpstream, InvalidRequest, NotFound, SettingsError
from ..settings import PROVIDER_KEY_PREFIX, UPSTREAM_PREFIX, env_name

_DEFAULT_PORT = {"https": 443, "http": 80}
_KEY_HEADERS = {
    "bearer": b"authorization",
    "x-api-key": b"x-api-key",
    "x-goog-api-key": b"x-goog-api-key",
    "xi-api-key": b"xi-api-key",
}
_USAGE_FORMATS = {"openai", "anthropic", "gemini", "none"}
# A host (lowercase DNS name or IPv4-looking text) with an optional port: nothing else may stand in a netloc.
_NETLOC = re.compile(r"([a-z0-9.-]+)(?::([0-9]{1,5}))?")
# Control characters, whitespace, backslashes and fragments have no place in a forwarded URL.
_BAD_URL_CHARS = re.compile(r"[\x00-\x20\x7f\\#]")
_FREE_SUFFIXES = ("/count_tokens", ":countTokens", "/input_tokens")  # token counts cost nothing
# OpenAI's Responses API reads stored state by id (`previous_response_id`, `conversation`, input items' ids)
_STORED_STATE_PATHS = ("/responses", "/responses/input_tokens")
_METHODS = frozenset(("GET", "POST", "PUT", "PATCH", "DELETE"))
_SEGMENT = "[^/:]+"


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, url: str, what: str) -> tuple[Origin, str]:
        """Split an absolute URL into its origin and its path; raise DisallowedUpstream if it is not plain."""
        if _BAD_URL_CHARS.search(url):
            raise DisallowedUpstream()
        try:
            parts = urlsplit(url)
        except ValueError:
            raise DisallowedUpstream() from None
        scheme = parts.scheme.lower()
        match = _NETLOC.fullmatch(parts.netloc.lower())
        if scheme not in _DEFAULT_PORT or match is None:
            raise DisallowedUpstream(f"{what}: only plain http(s)://host[:port] URLs are allowed")
        port = int(match.group(2)) if match.group(2) else _DEFAULT_PORT[scheme]
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        return cls(scheme, match.group(1), port), path


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One `METHOD /path` a managed key may serve, relative to the provider's base path; `{name}` in the path
    stands for one path segment (up to a `:`, so Gemini's `/models/{model}:generateContent` reads as written)."""

    method: str
    path: str
    regex: re.Pattern[str]
    free: bool  # costs nothing (a model list, a token count): served without a price or a reservation
    # reads stored responses by id: on a managed key they must be the caller's (request_path/ownership.py)
    reads_stored: bool = False

    @classmethod
    def parse(cls, text: str, provider: str) -> Endpoint:
        method, _, path = text.partition(" ")
        if method not in _METHODS or not path.startswith("/") or _BAD_URL_CHARS.search(path):
            raise SettingsError(f"catalogue entry {provider!r}: managed endpoint {text!r} is not 'METHOD /path'")
        pattern = "".join(_SEGMENT if part.startswith("{") else re.escape(part)
                          for part in re.split(r"(\{[a-z_]+\})", path))
        free = method == "GET" or path.endswith(_FREE_SUFFIXES)
        return cls(method, path, re.compile(pattern), free, method == "POST" and path in _STORED_STATE_PATHS)


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    base_url: str
    auth: str
    usage_format: str
    docs: str
    aliases: tuple[str, ...] = ()
    public: Origin = field(default=Origin("https", "", 443))
    public_base_path: str = ""
    upstream: Origin = field(default=Origin("https", "", 443))
    upstream_base_path: str = ""
    managed_key: str | None = None
    # the shape of the gateway's own errors that this provider's SDKs read (request_path/replies.py)
    error_format: str | None = None
    managed_endpoints: tuple[Endpoint, ...] = ()
    # the header its key goes in, from `auth`: a field, not a property, as every request reads it
    key_header: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_header", _KEY_HEADERS[self.auth])

    @property
    def env_name(self) -> str:
        return env_name(self.name)


@dataclass(frozen=True, slots=True)
class Target:
    """Where one request goes: the provider it belongs to and the exact upstream address."""

    provider: Provider
    scheme: str
    host: str
    port: int
    path: str  # request-target: path and query


class Catalogue:
    def __init__(self, providers: list[Provider]) -> None:
        self.providers = {p.name: p for p in providers}
        self._by_name = dict(self.providers)
        for p in providers:
            for alias in p.aliases:
                self._by_name[alias] = p
        # origin -> [(base path, provider, reached through the public origin?)], longest base path first
        routes: dict[Origin, list[tuple[str, Provider, bool]]] = {}
        for p in providers:
            routes.setdefault(p.public, []).append((p.public_base_path, p, True))
            if p.upstream != p.public:
                routes.setdefault(p.upstream, []).append((p.upstream_base_path, p, False))
        for entries in routes.values():
            entries.sort(key=lambda e: len(e[0]), reverse=True)
        self._routes = routes
        self._resolved: dict[tuple[str, str, str], Target] = {}  # provider paths seen, bounded below
        self._routed: dict[tuple[str, str], Target] = {}  # whole `/providers/` request paths seen, bounded below

    @classmethod
    def load(cls, upstreams: Mapping[str, str] | None = None, provider_keys: Mapping[str, str] | None = None,
             path: str | None = None) -> Catalogue:
        raw = _read_toml(path)
        upstreams = dict(upstreams or {})
        provider_keys = dict(provider_keys or {})
        providers = []
        for name, entry in raw.items():
            p = _provider(name, entry, upstreams.pop(env_name(name), None), provider_keys.pop(env_name(name), None))
            providers.append(p)
        unknown = [(k, UPSTREAM_PREFIX) for k in upstreams] + [(k, PROVIDER_KEY_PREFIX) for k in provider_keys]
        for name, prefix in unknown:
            raise SettingsError(f"{prefix}{name}: no provider named {name.lower().replace('_', '-')!r} in the "
                                "catalogue")
        return cls(providers)

    def by_name(self, name: str) -> Provider:
        p = self._by_name.get(name)
        if p is None:
            raise NotFound(f"no provider named {name!r} in the catalogue")
        return p

    def resolve_url(self, url: str, extra_query: str = "") -> Target:
        """The target for a `/v1/forward?u=` URL (already percent-decoded once)."""
        origin, path = Origin.parse(url, "u")
        entries = self._routes.get(origin)
        if not entries:
            raise DisallowedUpstream()
        bare = path.split("?", 1)[0]
        for base, provider, public in entries:
            if _under(bare, base):
                return self._target(provider, path, public, extra_query)
        _, provider, public = entries[-1]
        return self._target(provider, path, public, extra_query)

    def base_paths(self, url: str) -> tuple[str, ...]:
        """The provider base paths served at `url`'s origin (none for a URL off the catalogue)."""
        try:
            origin, _ = Origin.parse(url, "u")
        except DisallowedUpstream:
            return ()
        return tuple(base for base, _, _ in self._routes.get(origin, ()))

    def join_forward_url(self, u: str, suffix: str) -> str:
        """`join_forward_url` with the base paths of `u`'s origin: what `/v1/forward/<suffix>?u=` means."""
        return join_forward_url(u, suffix, self.base_paths(u))

    def resolve_provider_path(self, name: str, path: str, query: str) -> Target:
        """The target for `/providers/{name}/{path}`: the provider's own path from its origin.

        An SDK calls the same few paths over and over, so resolved targets are memoised (up to 4096)."""
        key = (name, path, query)
        target = self._resolved.get(key)
        if target is not None:
            return target
        provider = self.by_name(name)
        if _BAD_URL_CHARS.search(path) or _BAD_URL_CHARS.search(query):
            raise DisallowedUpstream()
        target = self._target(provider, path or "/", True, query)
        if len(self._resolved) < 4096:
            self._resolved[key] = target
        return target

    def resolve_providers_route(self, route_path: str, query: str) -> Target:
        """`resolve_provider_path` of a whole request path, `/providers/{name}/{path}`, memoised by that path as it
        arrives (up to 4096): a repeated path is one dict lookup, without splitting it first."""
        key = (route_path, query)
        target = self._routed.get(key)
        if target is None:
            name, _, rest = route_path[len("/providers/"):].partition("/")
            target = self.resolve_provider_path(name, "/" + rest, query)
            if len(self._routed) < 4096:
                self._routed[key] = target
        return target

    @staticmethod
    def _target(provider: Provider, path: str, public: bool, extra_query: str) -> Target:
        if public and provider.upstream != provider.public:
            base = provider.public_base_path
            if _under(path.split("?", 1)[0], base):
                path = provider.upstream_base_path + path[len(base):]
        if extra_query:
            path += ("&" if "?" in path else "?") + extra_query
        up = provider.upstream
        return Target(provider, up.scheme, up.host, up.port, path)


def _under(path: str, base: str) -> bool:
    return path == base or path.startswith(base + "/") or base == ""


# Beside this module, as genai_prices.json is beside metering/genai_source.py (importlib.resources would bring in
# zipfile, tempfile and shutil for one read of a file on disk).
_SHIPPED = Path(__file__).with_name("catalogue.toml")


def _read_toml(path: str | Path | None) -> dict[str, Any]:
    with open(path or _SHIPPED, "rb") as fh:
        return tomllib.load(fh)


def _provider(name: str, entry: dict[str, Any], override: str | None, key: str | None) -> Provider:
    auth, usage_format = entry.get("auth"), entry.get("usage_format")
    if not isinstance(auth, str) or auth not in _KEY_HEADERS or not isinstance(usage_format, str) \
            or usage_format not in _USAGE_FORMATS:
        raise SettingsError(f"catalogue entry {name!r}: unknown auth or usage_format")
    public, public_path = Origin.parse(entry["base_url"], f"catalogue entry {name!r}")
    upstream, upstream_path = public, public_path
    if override:
        try:
            upstream, upstream_path = Origin.parse(override, UPSTREAM_PREFIX + env_name(name))
        except DisallowedUpstream as exc:
            raise SettingsError(str(exc)) from None
    return Provider(
        name=name,
        base_url=entry["base_url"],
        auth=entry["auth"],
        usage_format=entry["usage_format"],
        docs=entry.get("docs", ""),
        aliases=tuple(entry.get("aliases", ())),
        public=public,
        public_base_path=public_path.rstrip("/"),
        upstream=upstream,
        upstream_base_path=upstream_path.rstrip("/"),
        managed_key=key or None,
        error_format=entry["usage_format"] if entry["usage_format"] in ("anthropic", "gemini") else None,
        managed_endpoints=tuple(Endpoint.parse(e, name) for e in entry.get("managed_endpoints", ())),
    )


def managed_key_may_serve(provider: Provider, method: str, target_path: str) -> bool:
    """May the operator's managed key serve METHOD on this request-target of `provider`?"""
    return managed_endpoint(provider, method, target_path) is not None


_ENDPOINTS: dict[tuple[str, str, str], Endpoint | None] = {}  # an SDK calls the same few paths over and over


def managed_endpoint(provider: Provider, method: str, target_path: str) -> Endpoint | None:
    """The endpoint the catalogue lists for managed keys that METHOD on this request-target of `provider` is, or
    None. `target_path` is what the request would be sent as (Target.path: the upstream base path, the rest, any
    query); the query does not matter. Raises InvalidRequest for a path with dot segments (safe_target_path)."""
    key = (provider.name, method, target_path)
    try:
        return _ENDPOINTS[key]
    except KeyError:
        pass
    found = _managed_endpoint(provider, method, target_path)
    if len(_ENDPOINTS) < 4096:
        _ENDPOINTS[key] = found
    return found


def _managed_endpoint(provider: Provider, method: str, target_path: str) -> Endpoint | None:
    bare = safe_target_path(target_path).split("?", 1)[0]
    base = provider.upstream_base_path
    if not _under(bare, base):
        return None
    rest = bare[len(base):] or "/"
    return next((e for e in provider.managed_endpoints if e.method == method and e.regex.fullmatch(rest)), None)


def safe_target_path(target_path: str) -> str:
    """The request-target unchanged, or InvalidRequest (400) when a path segment is a dot segment (`.`, `..`)
    or hides one or a slash behind percent-encoding (`%2e%2e`, `%2f`, `%5c`, twice-encoded `%252e`): a
    provider, or a proxy before it, that normalises the path would send the request somewhere else."""
    path = target_path.split("?", 1)[0]
    for segment in path.split("/"):
        decoded = segment
        for _ in range(3):   # decode until stable: a server that decodes twice must not find one either
            plain = unquote(decoded)
            if plain == decoded:
                break
            decoded = plain
        if decoded in (".", "..") or "/" in decoded or "\\" in decoded:
            raise InvalidRequest(f"target path {path!r}: dot segments ('.', '..') and encoded slashes are "
                                 "not allowed")
    return target_path


def decode_forward_url(raw: str) -> str:
    """`u` arrives percent-encoded or raw; decode it exactly once."""
    return unquote(raw)


def join_forward_url(u: str, suffix: str, base_paths: tuple[str, ...] = ()) -> str:
    """`u` with a path appended (`/v1/forward/<suffix>?u=...`), joined by exactly one `/`.

    HTTP clients that take `<gateway>/v1/forward?u=<base>` as their base URL put the API path after
    `/v1/forward`, or glue it to the end of `u` itself: the openai SDK sends
    `/v1/forward/?u=https://api.openai.com/v1chat/completions`. `base_paths` are the provider base paths of
    `u`'s origin (`Catalogue.base_paths`); a path that starts with one of them but is under none of them had its
    `/` lost that way, and gets it back. A query on `u` stays at the end; an empty (or all-slash) suffix adds
    nothing."""
    head, sep, query = u.partition("?")
    if suffix.strip("/"):
        head = head.rstrip("/") + "/" + suffix.lstrip("/")
    scheme, colon, rest = head.partition("://")
    slash = rest.find("/")
    if colon and slash > 0 and base_paths:
        path = rest[slash:]
        if not any(_under(path, b) for b in base_paths if b):
            glued = max((b for b in base_paths if b and path.startswith(b)), key=len, default=None)
            if glued is not None:
                head = scheme + colon + rest[:slash] + glued + "/" + path[len(glued):]
    return head + sep + query
