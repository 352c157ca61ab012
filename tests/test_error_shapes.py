"""The gateway's own errors in the error shape of the format a route speaks (`request_path.replies.error_body`).

Each SDK raises its own error class for the status and shows our message, not a bare "Unauthorized".
"""
from __future__ import annotations

import json

import anthropic
import httpx2
import openai
import pytest

from edge_proxy.errors import (
    BodyTooLarge,
    GatewayError,
    InsufficientBalance,
    InvalidRequest,
    InvalidToken,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    UpstreamTimedOut,
)
from edge_proxy.request_path.replies import error_body

ERRORS = [  # (error, the anthropic SDK's class for its status, Google's canonical code)
    (InvalidRequest("model: expected a model name"), anthropic.BadRequestError, "INVALID_ARGUMENT"),
    (InvalidToken(), anthropic.AuthenticationError, "UNAUTHENTICATED"),
    (InsufficientBalance(), anthropic.APIStatusError, "FAILED_PRECONDITION"),
    (NotFound("unknown model 'x'"), anthropic.NotFoundError, "NOT_FOUND"),
    (BodyTooLarge(), anthropic.APIStatusError, "INVALID_ARGUMENT"),
    (RateLimited("slow down"), anthropic.RateLimitError, "RESOURCE_EXHAUSTED"),
    (ServiceUnavailable("no managed key"), anthropic.InternalServerError, "UNAVAILABLE"),
    (UpstreamTimedOut(), anthropic.InternalServerError, "DEADLINE_EXCEEDED"),
    (GatewayError(), anthropic.InternalServerError, "INTERNAL"),
]


def _client(sdk, exc: GatewayError, fmt: str):
    transport = httpx2.MockTransport(lambda request: httpx2.Response(
        exc.status, headers={"content-type": "application/json"}, content=error_body(exc, fmt)))
    return sdk(api_key="k", base_url="http://gateway.test", max_retries=0, http_client=httpx2.Client(transport=transport))


@pytest.mark.parametrize("exc,cls,grpc", ERRORS, ids=[type(e[0]).__name__ for e in ERRORS])
def test_anthropic_shape_is_what_the_anthropic_sdk_reads(exc, cls, grpc):
    body = json.loads(error_body(exc, "anthropic"))
    assert body == {"type": "error", "error": {"type": exc.type, "message": exc.message}}
    with pytest.raises(cls) as info:
        _client(anthropic.Anthropic, exc, "anthropic").messages.create(
            model="m", max_tokens=1, messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == exc.status and exc.message in str(info.value)
    assert info.value.body == body


@pytest.mark.parametrize("exc,cls,grpc", ERRORS, ids=[type(e[0]).__name__ for e in ERRORS])
def test_gemini_shape(exc, cls, grpc):
    assert json.loads(error_body(exc, "gemini")) == {"error": {"code": exc.status, "message": exc.message,
                                                             "status": grpc}}


@pytest.mark.parametrize("fmt", ["openai", "lava", ""])
def test_other_formats_keep_our_body_which_the_openai_sdk_reads(fmt):
    exc = InvalidToken()
    assert error_body(exc, fmt) == exc.body()
    with pytest.raises(openai.AuthenticationError) as info:
        _client(openai.OpenAI, exc, fmt).chat.completions.create(model="m", messages=[])
    assert exc.message in str(info.value)
