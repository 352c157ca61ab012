"""What the operator's managed keys may serve, and what a managed request may not carry up or bring back: the
catalogue's managed endpoints, dot segments in a target path, account headers and a `key=` parameter.
Pure functions, one row per case; the request path calls them (see the README's trust model)."""
from __future__ import annotations

import pytest

from edge_proxy.errors import InvalidRequest, SettingsError
from edge_proxy.headers import drop_key_param, request_headers, response_headers
from edge_proxy.providers import Catalogue
from edge_proxy.providers.catalogue import Endpoint, managed_endpoint, managed_key_may_serve, safe_target_path

CATALOGUE = Catalogue.load()
# the same providers with the test suite's loopback upstreams, whose base paths the target paths then carry
OVERRIDDEN = Catalogue.load({"OPENAI": "http://127.0.0.1:9000/v1", "GOOGLE": "http://127.0.0.1:9000/gemini/v1beta"})

SCOPE = [
    ("openai", "POST", "/v1/chat/completions", True),
    ("openai", "POST", "/v1/chat/completions?stream=true", True),
    ("openai", "POST", "/v1/responses", True),
    ("openai", "POST", "/v1/embeddings", True),
    ("openai", "GET", "/v1/models", True),
    ("openai", "GET", "/v1/models/gpt-4o-mini", True),
    ("openai", "GET", "/v1/chat/completions", False),
    ("openai", "DELETE", "/v1/models/gpt-4o-mini", False),
    ("openai", "GET", "/v1/files", False),
    ("openai", "POST", "/v1/files", False),
    ("openai", "DELETE", "/v1/files/file-abc", False),
    ("openai", "GET", "/v1/files/file-abc/content", False),
    ("openai", "POST", "/v1/batches", False),
    ("openai", "POST", "/v1/fine_tuning/jobs", False),
    ("openai", "POST", "/v1/assistants", False),
    ("openai", "POST", "/v1/threads/runs", False),
    ("openai", "POST", "/v1/uploads", False),
    ("openai", "POST", "/v1/vector_stores", False),
    ("openai", "GET", "/v1/responses/resp_abc", False),
    ("openai", "POST", "/v1/images/generations", False),
    ("openai", "POST", "/v1/audio/speech", False),
    ("openai", "POST", "/v1/chat/completions/extra", False),
    ("openai", "POST", "/v2/chat/completions", False),
    ("openai", "POST", "/chat/completions", False),
    ("anthropic", "POST", "/v1/messages", True),
    ("anthropic", "POST", "/v1/messages/count_tokens", True),
    ("anthropic", "POST", "/v1/messages/batches", False),
    ("anthropic", "GET", "/v1/files", False),
    ("google", "POST", "/v1beta/models/gemini-2.0-flash:generateContent", True),
    ("google", "POST", "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse", True),
    ("google", "POST", "/v1beta/models/gemini-2.0-flash:countTokens", True),
    ("google", "POST", "/v1beta/models/text-embedding-004:embedContent", True),
    ("google", "POST", "/v1beta/models/text-embedding-004:batchEmbedContents", True),
    ("google", "POST", "/v1beta/models/a/b:generateContent", False),
    ("google", "POST", "/v1beta/cachedContents", False),
    ("google", "POST", "/v1beta/tunedModels", False),
    ("google", "GET", "/v1beta/files", False),
    ("google-openai-compatible", "POST", "/v1beta/openai/chat/completions", True),
    ("google-openai-compatible", "POST", "/v1beta/openai/embeddings", True),
    ("groq", "POST", "/openai/v1/chat/completions", True),
    ("groq", "POST", "/openai/v1/audio/transcriptions", False),
    ("novita", "POST", "/v3/openai/chat/completions", True),
    ("mistral", "POST", "/v1/chat/completions", True),
    ("mistral", "POST", "/v1/files", False),
    ("elevenlabs", "POST", "/v1/text-to-speech/voice", False),
]


@pytest.mark.parametrize("provider, method, path, allowed", SCOPE,
                         ids=[f"{p} {m} {path} is {'served' if ok else 'refused'}" for p, m, path, ok in SCOPE])
def test_a_managed_key_serves_only_the_endpoints_the_gateway_meters(provider, method, path, allowed):
    assert managed_key_may_serve(CATALOGUE.by_name(provider), method, path) is allowed


FREE = [  # (provider, method, path, free): what costs nothing is served without a price or a reservation
    ("anthropic", "POST", "/v1/messages/count_tokens", True),
    ("openai", "POST", "/v1/responses/input_tokens", True),
    ("google", "POST", "/v1beta/models/gemini-2.5-flash:countTokens", True),
    ("openai", "GET", "/v1/models", True),
    ("openai", "POST", "/v1/responses", False),
    ("openai", "POST", "/v1/embeddings", False),
    ("google", "POST", "/v1beta/models/gemini-embedding-001:batchEmbedContents", False),
    ("google", "POST", "/v1beta/models/gemini-embedding-001:embedContent", False),
    ("anthropic", "POST", "/v1/messages", False),
]


@pytest.mark.parametrize("provider, method, path, free", FREE,
                         ids=[f"{p} {m} {path} is {'free' if free else 'paid'}" for p, m, path, free in FREE])
def test_token_counts_are_the_free_endpoints(provider, method, path, free):
    endpoint = managed_endpoint(CATALOGUE.by_name(provider), method, path)
    assert endpoint is not None and endpoint.free is free


@pytest.mark.parametrize("provider, path, allowed", [
    ("openai", "/v1/chat/completions", True), ("openai", "/v1/files", False),
    ("google", "/gemini/v1beta/models/g:generateContent", True), ("google", "/v1beta/models/g:generateContent", False),
], ids=["an overridden upstream keeps chat", "and still refuses files", "gemini under the replaced base path",
        "a path outside the replaced base path"])
def test_the_scope_follows_an_operator_replaced_base_url(provider, path, allowed):
    assert managed_key_may_serve(OVERRIDDEN.by_name(provider), "POST", path) is allowed


def test_every_provider_whose_usage_the_gateway_reads_lists_a_metered_endpoint_and_the_others_none():
    for p in CATALOGUE.providers.values():
        posts = [e for e in p.managed_endpoints if e.method == "POST"]
        assert bool(posts) is (p.usage_format != "none"), p.name


@pytest.mark.parametrize("text", ["POST chat/completions", "FETCH /x", "POST", "POST /a b", "POST /a#b"])
def test_a_malformed_managed_endpoint_in_the_catalogue_is_a_settings_error(text):
    with pytest.raises(SettingsError):
        Endpoint.parse(text, "openai")


UNSAFE = ["/v1/../files", "/v1/./chat/completions", "/v1/%2e%2e/files", "/v1/%2E%2E/files", "/v1/.%2e/files",
          "/v1/%2e/chat/completions", "/v1/chat%2fcompletions", "/v1/chat%2Fcompletions", "/v1/a%5cb",
          "/v1/%252e%252e/files", "/v1/%25252e%25252e/files", "/v1/chat/completions/..", "/.."]


@pytest.mark.parametrize("path", UNSAFE)
def test_a_dot_segment_or_an_encoded_slash_in_a_target_path_is_refused(path):
    with pytest.raises(InvalidRequest, match="dot segments"):
        safe_target_path(path + "?x=1")
    with pytest.raises(InvalidRequest):
        managed_key_may_serve(CATALOGUE.by_name("openai"), "POST", path)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/models/gpt-4o", "/v1/a..b/c", "/v1/.well-known/x",
                                  "/v1beta/models/g:generateContent", "/v1/x?path=../../etc", "/v1/%41bc"])
def test_a_path_with_dots_inside_names_or_in_the_query_is_left_as_it_is(path):
    assert safe_target_path(path) == path


HEADERS_UP = [("openai-organization", "org-attacker"), ("openai-project", "proj_x"), ("x-goog-user-project", "p"),
              ("content-type", "application/json"), ("openai-beta", "assistants=v2"), ("x-request-id", "r1")]


def test_a_managed_request_carries_no_account_selecting_header_up():
    sent = bytes(request_headers(HEADERS_UP, b"authorization", "sk-operator", managed=True)).decode()
    names = [line.split(":", 1)[0] for line in sent.split("\r\n") if line]
    assert names == ["accept-encoding", "content-type", "openai-beta", "x-request-id", "authorization"]


def test_an_unmanaged_request_keeps_them_as_before():
    sent = bytes(request_headers(HEADERS_UP, b"authorization", "sk-own")).decode()
    assert "openai-organization: org-attacker\r\n" in sent and "x-goog-user-project: p\r\n" in sent


HEADERS_DOWN = [(b"openai-organization", b"operator-org"), (b"openai-project", b"proj_op"),
                (b"anthropic-organization-id", b"uuid"), (b"openai-processing-ms", b"12"), (b"x-request-id", b"r"),
                (b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]


@pytest.mark.parametrize("managed, expected", [
    (True, ["openai-processing-ms", "x-request-id", "content-type"]),
    (False, ["openai-organization", "openai-project", "anthropic-organization-id", "openai-processing-ms",
             "x-request-id", "content-type"]),
], ids=["a managed answer loses the operator's account headers", "an unmanaged answer keeps them"])
def test_account_describing_response_headers(managed, expected):
    assert [name for name, _ in response_headers(HEADERS_DOWN, managed=managed)] == expected


KEY_PARAMS = [
    ("/v1beta/models/g:generateContent?key=AIza-client", "/v1beta/models/g:generateContent"),
    ("/v1beta/models/g:streamGenerateContent?alt=sse&key=AIza", "/v1beta/models/g:streamGenerateContent?alt=sse"),
    ("/v1beta/models/g:generateContent?key=a&key=b&alt=sse", "/v1beta/models/g:generateContent?alt=sse"),
    ("/x?%6Bey=AIza", "/x"), ("/x?%6b%65%79=AIza&a=1", "/x?a=1"), ("/x?key", "/x"), ("/x?key=", "/x"),
    ("/x?keys=1&monkey=2&KEY=3", "/x?keys=1&monkey=2&KEY=3"), ("/x", "/x"), ("/x?a=key%3D1", "/x?a=key%3D1"),
]


@pytest.mark.parametrize("target, expected", KEY_PARAMS, ids=[t for t, _ in KEY_PARAMS])
def test_a_key_query_parameter_is_dropped_however_it_is_spelled(target, expected):
    assert drop_key_param(target) == expected
