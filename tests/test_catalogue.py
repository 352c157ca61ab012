"""Where a request may go: the catalogue, the overrides, and every SSRF trick refused before anything is sent."""
from __future__ import annotations

import pytest

from edge_proxy.errors import DisallowedUpstream, NotFound, SettingsError
from edge_proxy.providers import Catalogue

SDK_PROVIDERS = {
    "openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com/v1",
    "mistral": "https://api.mistral.ai/v1", "deepseek": "https://api.deepseek.com/v1", "xai": "https://api.x.ai/v1",
    "google": "https://generativelanguage.googleapis.com/v1beta",
    "googleOpenaiCompatible": "https://generativelanguage.googleapis.com/v1beta/openai",
    "kluster": "https://api.kluster.ai/v1", "inference": "https://api.inference.net/v1",
    "groq": "https://api.groq.com/openai/v1", "novita": "https://api.novita.ai/v3/openai",
    "vercel": "https://api.v0.dev/v1", "together": "https://api.together.xyz/v1",
    "hyperbolic": "https://api.hyperbolic.xyz/v1", "elevenlabs": "https://api.elevenlabs.io/v1",
    "sambanova": "https://api.sambanova.ai/v1", "deepinfra": "https://api.deepinfra.com/v1/openai",
    "cohere": "https://api.cohere.ai/compatibility/v1", "parasail": "https://api.parasail.io/v1",
    "nebius": "https://api.studio.nebius.com/v1", "fireworks": "https://api.fireworks.ai/inference/v1",
    "embercloud": "https://api.embercloud.ai/v1", "cerebras": "https://api.cerebras.ai/v1",
    "targon": "https://api.targon.com/v1", "gmicloud": "https://api.gmi-serving.com/v1",
    "chutes": "https://llm.chutes.ai/v1", "baseten": "https://inference.baseten.co/v1",
    "moonshot": "https://api.moonshot.ai/v1",
}


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return Catalogue.load({"OPENAI": "http://127.0.0.1:9000/v1"}, {"ANTHROPIC": "sk-ant-managed"})


def test_every_provider_the_lava_sdk_lists_is_in_the_catalogue(cat):
    assert len(SDK_PROVIDERS) == 28
    for name, base in SDK_PROVIDERS.items():
        assert cat.by_name(name).base_url == base
        if name != "openai":  # overridden below
            target = cat.resolve_url(base + "/chat/completions")
            assert (target.scheme, target.host, target.port) == ("https", base.split("/")[2], 443)
            assert target.path == base.split(base.split("/")[2], 1)[1] + "/chat/completions"


ROUTES = [
    ("a public OpenAI URL goes to the override", "https://api.openai.com/v1/chat/completions", "",
     ("openai", "http", "127.0.0.1", 9000, "/v1/chat/completions")),
    ("the override's own URL is allowed", "http://127.0.0.1:9000/v1/models", "",
     ("openai", "http", "127.0.0.1", 9000, "/v1/models")),
    ("u's own query string is kept", "https://api.anthropic.com/v1/messages?beta=true", "",
     ("anthropic", "https", "api.anthropic.com", 443, "/v1/messages?beta=true")),
    ("other forward parameters are appended", "https://api.anthropic.com/v1/messages?beta=true", "x=1",
     ("anthropic", "https", "api.anthropic.com", 443, "/v1/messages?beta=true&x=1")),
    ("the longest base path picks Google's OpenAI-compatible entry",
     "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions", "",
     ("google-openai-compatible", "https", "generativelanguage.googleapis.com", 443, "/v1beta/openai/chat/completions")),
    ("Google native stays Google", "https://generativelanguage.googleapis.com/v1beta/models/g:generateContent", "",
     ("google", "https", "generativelanguage.googleapis.com", 443, "/v1beta/models/g:generateContent")),
    ("an explicit :443 is the same origin", "https://api.mistral.ai:443/v1/chat/completions", "",
     ("mistral", "https", "api.mistral.ai", 443, "/v1/chat/completions")),
    ("upper-case scheme and host are normalised", "HTTPS://API.GROQ.COM/openai/v1/models", "",
     ("groq", "https", "api.groq.com", 443, "/openai/v1/models")),
]


@pytest.mark.parametrize("url,extra,expected", [r[1:] for r in ROUTES], ids=[r[0] for r in ROUTES])
def test_routes(cat, url, extra, expected):
    t = cat.resolve_url(url, extra)
    assert (t.provider.name, t.scheme, t.host, t.port, t.path) == expected


SSRF = [
    ("a host outside the catalogue", "https://evil.example.com/v1/chat/completions"),
    ("a catalogue host as a subdomain of another", "https://api.openai.com.evil.com/v1"),
    ("a lookalike suffix", "https://evilapi.openai.com/v1"),
    ("loopback by name", "https://localhost/v1"),
    ("loopback IPv4", "https://127.0.0.1/v1"),
    ("loopback in decimal notation", "https://2130706433/v1"),
    ("loopback in hex notation", "https://0x7f000001/v1"),
    ("loopback in octal notation", "https://0177.0.0.1/v1"),
    ("a short IPv4 form", "https://127.1/v1"),
    ("IPv6 loopback", "https://[::1]/v1"),
    ("IPv4-mapped IPv6", "https://[::ffff:127.0.0.1]/v1"),
    ("a private address", "https://10.0.0.1/v1"),
    ("a link-local metadata address", "http://169.254.169.254/latest/meta-data/"),
    ("the override host on another port", "http://127.0.0.1:9001/v1"),
    ("the override host over https", "https://127.0.0.1:9000/v1"),
    ("userinfo before a catalogue host", "https://user:pw@api.openai.com/v1"),
    ("a catalogue host as userinfo", "https://api.openai.com@evil.com/v1"),
    ("a fragment trick", "https://api.openai.com#@evil.com/v1"),
    ("a backslash trick", "https://api.openai.com\\@evil.com/v1"),
    ("a backslash authority", "https:\\\\evil.com/v1"),
    ("plain http to a public provider", "http://api.openai.com/v1"),
    ("another port on a provider", "https://api.openai.com:8443/v1"),
    ("a ftp scheme", "ftp://api.openai.com/v1"),
    ("a file URL", "file:///etc/passwd"),
    ("a gopher URL", "gopher://api.openai.com:443/_x"),
    ("a scheme-relative URL", "//api.openai.com/v1"),
    ("no scheme", "api.openai.com/v1/chat/completions"),
    ("a trailing dot", "https://api.openai.com./v1"),
    ("a percent-encoded host", "https://api%2eopenai.com/v1"),
    ("a unicode lookalike host", "https://api.openaі.com/v1"),
    ("CRLF injection in the path", "https://api.openai.com/v1\r\nHost: evil.com"),
    ("a space in the path", "https://api.openai.com/v1 HTTP/1.1"),
    ("a NUL byte", "https://api.openai.com\x00.evil.com/v1"),
    ("an empty host", "https:///v1"),
    ("a bad port", "https://api.openai.com:99999/v1"),
]


@pytest.mark.parametrize("url", [s[1] for s in SSRF], ids=[s[0] for s in SSRF])
def test_ssrf_targets_are_refused(cat, url):
    with pytest.raises(DisallowedUpstream) as info:
        cat.resolve_url(url)
    assert info.value.status == 403


def test_provider_paths_reach_the_provider_origin(cat):
    t = cat.resolve_provider_path("anthropic", "/v1/messages", "beta=true")
    assert (t.host, t.path) == ("api.anthropic.com", "/v1/messages?beta=true")
    assert cat.resolve_provider_path("openai", "/v1/chat/completions", "").port == 9000


def test_provider_paths_refuse_control_characters(cat):
    with pytest.raises(DisallowedUpstream):
        cat.resolve_provider_path("openai", "/v1/x\r\nHost: evil", "")


def test_unknown_provider_name_is_404(cat):
    with pytest.raises(NotFound):
        cat.resolve_provider_path("nope", "/v1", "")


def test_managed_keys_and_key_headers(cat):
    assert cat.by_name("anthropic").managed_key == "sk-ant-managed"
    assert cat.by_name("openai").managed_key is None
    assert cat.by_name("anthropic").key_header == b"x-api-key"
    assert cat.by_name("google").key_header == b"x-goog-api-key"
    assert cat.by_name("openai").key_header == b"authorization"


@pytest.mark.parametrize("upstreams,keys", [({"NOPE": "http://127.0.0.1:1/v1"}, {}), ({}, {"NOPE": "k"}),
                                            ({"OPENAI": "http://user@127.0.0.1:1/v1"}, {})],
                         ids=["an override for an unknown provider", "a key for an unknown provider",
                              "an override with userinfo"])
def test_bad_provider_settings_name_the_variable(upstreams, keys):
    with pytest.raises(SettingsError, match="EDGE_PROXY_"):
        Catalogue.load(upstreams, keys)


# --- /v1/forward?u=<base> + an appended path: exactly one "/" between them ---------------------------------------

OPENAI = "https://api.openai.com"
GOOGLE = "https://generativelanguage.googleapis.com"
JOIN_CASES = [
    # (u, suffix, joined)  — the suffix is what came after /v1/forward in the gateway's path
    ("base without slash, suffix with slash", f"{OPENAI}/v1", "/chat/completions", f"{OPENAI}/v1/chat/completions"),
    ("base with slash, suffix with slash", f"{OPENAI}/v1/", "/chat/completions", f"{OPENAI}/v1/chat/completions"),
    ("base with slash, suffix without", f"{OPENAI}/v1/", "chat/completions", f"{OPENAI}/v1/chat/completions"),
    ("neither has a slash", f"{OPENAI}/v1", "chat/completions", f"{OPENAI}/v1/chat/completions"),
    ("many slashes on both sides", f"{OPENAI}/v1//", "//chat/completions", f"{OPENAI}/v1/chat/completions"),
    ("a query on u stays last", f"{OPENAI}/v1?api-version=2", "/chat/completions",
     f"{OPENAI}/v1/chat/completions?api-version=2"),
    ("a query on u with a trailing slash", f"{OPENAI}/v1/?a=1&b=2", "/embeddings", f"{OPENAI}/v1/embeddings?a=1&b=2"),
    ("an empty suffix leaves u alone", f"{OPENAI}/v1/chat/completions", "", f"{OPENAI}/v1/chat/completions"),
    ("a bare slash suffix leaves u alone", f"{OPENAI}/v1/chat/completions", "/", f"{OPENAI}/v1/chat/completions"),
    ("a trailing slash on the suffix is kept", f"{OPENAI}/v1", "/models/", f"{OPENAI}/v1/models/"),
    ("the openai SDK glues the path to u", f"{OPENAI}/v1chat/completions", "/", f"{OPENAI}/v1/chat/completions"),
    ("a glued path with a query", f"{OPENAI}/v1embeddings?x=1", "", f"{OPENAI}/v1/embeddings?x=1"),
    ("a path under the base is not touched", f"{OPENAI}/v1/responses", "", f"{OPENAI}/v1/responses"),
    ("the longest glued base wins", f"{GOOGLE}/v1betamodels/g:generateContent", "/",
     f"{GOOGLE}/v1beta/models/g:generateContent"),
    ("an origin off the catalogue is joined but never repaired", "https://example.com/v1chat", "/x",
     "https://example.com/v1chat/x"),
]


@pytest.mark.parametrize("u,suffix,joined", [c[1:] for c in JOIN_CASES], ids=[c[0] for c in JOIN_CASES])
def test_join_forward_url(cat, u, suffix, joined):
    assert cat.join_forward_url(u, suffix) == joined


def test_join_forward_url_without_base_paths_only_joins():
    from edge_proxy.providers import join_forward_url
    assert join_forward_url(f"{OPENAI}/v1chat/completions", "/") == f"{OPENAI}/v1chat/completions"
    assert join_forward_url(f"{OPENAI}/v1", "/chat/completions", ("/v1",)) == f"{OPENAI}/v1/chat/completions"


def test_joined_forward_url_resolves_to_the_provider_path(cat):
    target = cat.resolve_url(cat.join_forward_url("https://api.anthropic.com/v1messages", "/"))
    assert (target.provider.name, target.path) == ("anthropic", "/v1/messages")


ROUTE_PATHS = [  # (the request path, its query) -> what resolve_provider_path gives for its name and rest
    ("/providers/openai/v1/chat/completions", ""), ("/providers/openai/v1/chat/completions", "a=1"),
    ("/providers/anthropic/v1/messages", "beta=true"), ("/providers/openai", ""), ("/providers/openai/", ""),
    ("/providers/google/v1beta/models/gemini-2.5-flash:generateContent", "alt=sse"),
]


@pytest.mark.parametrize("path,query", ROUTE_PATHS)
def test_a_providers_route_resolves_as_its_name_and_path(cat, path, query):
    name, _, rest = path[len("/providers/"):].partition("/")
    expected = cat.resolve_provider_path(name, "/" + rest, query)
    for _ in range(2):  # the first resolves, the second is the memo's: the same target
        assert cat.resolve_providers_route(path, query) == expected


def test_a_providers_route_that_is_refused_is_refused_every_time():
    cat = Catalogue.load()
    for _ in range(2):
        with pytest.raises(NotFound, match="no provider named 'nope' in the catalogue"):
            cat.resolve_providers_route("/providers/nope/v1", "")
        with pytest.raises(DisallowedUpstream):
            cat.resolve_providers_route("/providers/openai/v1/x\r\nHost: evil", "")
    assert cat._routed == {}


def test_the_providers_route_memo_is_bounded():
    cat = Catalogue.load()
    for i in range(5000):
        assert cat.resolve_providers_route(f"/providers/openai/v1/x{i}", "").path == f"/v1/x{i}"
    assert len(cat._routed) == 4096 and len(cat._resolved) == 4096


def test_key_header_is_the_auth_schemes_header():
    import dataclasses
    cat = Catalogue.load()
    by_auth = {p.auth: p.key_header for p in cat.providers.values()}
    assert by_auth == {"bearer": b"authorization", "x-api-key": b"x-api-key", "x-goog-api-key": b"x-goog-api-key",
                       "xi-api-key": b"xi-api-key"}
    openai = cat.by_name("openai")
    assert dataclasses.replace(openai, auth="x-api-key").key_header == b"x-api-key"
    assert dataclasses.replace(openai) == openai and "key_header" not in repr(openai)
