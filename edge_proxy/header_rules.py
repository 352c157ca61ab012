"""Which headers the proxy drops on the way up and on the way down: the tables both header filters read
(`_headers_py.py`, the specification, and its compiled twin built from `_fastpath/headers.pyx`)."""
from __future__ import annotations

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
    "trailer", "transfer-encoding", "upgrade",
})
DROP_UP = HOP_BY_HOP | {
    "host", "content-length", "accept-encoding",
    # the gateway's own credentials, and every header a catalogue provider takes its key in (catalogue.py
    # _KEY_HEADERS): the key that goes up is the one the gateway adds, never a client's own beside it
    "authorization", "x-api-key", "x-goog-api-key", "xi-api-key",
    # the gateway's own controls
    "x-lava-metadata",
}
DROP_DOWN = HOP_BY_HOP | {"content-length"}
# Headers that pick, or tell, which provider account serves a request: not the client's to pick or see when the
# account is the operator's (managed requests).
ACCOUNT_REQUEST_HEADERS = frozenset({"openai-organization", "openai-project", "x-goog-user-project"})
ACCOUNT_RESPONSE_HEADERS = frozenset({"openai-organization", "openai-project", "anthropic-organization-id"})
DROP_UP_MANAGED = DROP_UP | ACCOUNT_REQUEST_HEADERS
DROP_DOWN_MANAGED = DROP_DOWN | ACCOUNT_RESPONSE_HEADERS
