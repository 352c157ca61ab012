"""The translators for the unified routes the pipeline adds: `/v1/responses`, `/v1/embeddings` and
`/v1/messages/count_tokens` for the models that do not speak them (edge_proxy/unified/responses.py,
responses_stream.py, embeddings.py, count_tokens.py).

Requests and answers are tables here; streams reuse the provider transcripts of tests/fixtures/translate and keep
their exact Responses output in tests/fixtures/routes/<case>.out.sse (rewritten by EDGE_PROXY_UPDATE_GOLDEN=1, to
be reviewed). Every output goes through the openai SDK's own types or stream parser.
"""
from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import httpx2
import openai
import pytest

from edge_proxy.stream_errors import sse_error_event
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from edge_proxy.unified import ChainStream
from edge_proxy.unified.anthropic import (
    AnthropicToOpenAIStream,
    openai_request_to_anthropic,
)
from edge_proxy.unified.count_tokens import (
    count_request,
    count_target,
    count_tokens_to_anthropic,
)
from edge_proxy.unified.embeddings import (
    embeddings_target,
    estimated_input_tokens,
    gemini_embed_path,
    gemini_embeddings_to_openai,
    openai_embeddings_to_gemini,
)
from edge_proxy.unified.gemini import GeminiToOpenAIStream, openai_request_to_gemini
from edge_proxy.unified import stream_usage
from edge_proxy.unified.stream_usage import StripUsage, UsageChunkStrip, with_usage_requested
from edge_proxy.unified.responses import (
    OpenAIToResponsesStream,
    openai_request_to_responses,
    openai_response_to_responses,
    responses_request_to_openai,
)

from .test_translate import (
    CREATED,
    OPENAI_REQUEST,
    UPDATE,
    _chunkings,
    _deep,
    _events,
    _run,
    ids,
)

TRANSLATE = Path(__file__).parent / "fixtures" / "translate"
ROUTES = Path(__file__).parent / "fixtures" / "routes"
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


# --- Responses request → hub ---------------------------------------------------------------------------------

RESPONSES_REQUESTS = [
    ("a string input is one user message",
     {"model": "claude-haiku-4-5", "input": "Hi"},
     {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "Hi"}]}),
    ("instructions, a multi-turn tool conversation and the options",
     {"model": "claude-haiku-4-5", "instructions": "Be brief.", "max_output_tokens": 50, "temperature": 0.2,
      "stream": True, "parallel_tool_calls": False, "store": True, "reasoning": {"effort": "low"},
      "input": [
          {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"},
                                       {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "low"}]},
          {"type": "reasoning", "id": "rs_1", "summary": []},
          {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
          {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
          {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}],
      "tools": [{"type": "function", "name": "get_weather", "description": "Weather", "parameters": WEATHER,
                 "strict": True}],
      "tool_choice": {"type": "function", "name": "get_weather"},
      "text": {"format": {"type": "json_schema", "name": "answer", "schema": WEATHER, "strict": True}}},
     {"model": "claude-haiku-4-5", "messages": [
         {"role": "system", "content": "Be brief."},
         {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"},
                                      {"type": "image_url", "image_url": {"url": "https://x.test/a.png",
                                                                          "detail": "low"}}]},
         {"role": "assistant", "content": "Checking.", "tool_calls": [
             {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                               "arguments": "{\"city\":\"Paris\"}"}}]},
         {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}],
      "max_tokens": 50, "temperature": 0.2, "stream": True, "stream_options": {"include_usage": True},
      "parallel_tool_calls": False,
      "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                                  "parameters": WEATHER, "strict": True}}],
      "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
      "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": WEATHER,
                                                                 "strict": True}}}),
    ("function calls without text start their own assistant turn",
     {"input": [{"role": "user", "content": "go"},
                {"type": "function_call", "call_id": "c1", "name": "a", "arguments": ""},
                {"type": "function_call", "call_id": "c2", "name": "b"},
                {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "1"}]},
                {"type": "function_call_output", "call_id": "c2", "output": "2"}],
      "text": {"format": {"type": "json_object"}}},
     {"messages": [{"role": "user", "content": "go"},
                   {"role": "assistant", "content": None, "tool_calls": [
                       {"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
                       {"id": "c2", "type": "function", "function": {"name": "b", "arguments": "{}"}}]},
                   {"role": "tool", "tool_call_id": "c1", "content": "1"},
                   {"role": "tool", "tool_call_id": "c2", "content": "2"}],
      "response_format": {"type": "json_object"}}),
]


@pytest.mark.parametrize("body,hub", [c[1:] for c in RESPONSES_REQUESTS], ids=[c[0] for c in RESPONSES_REQUESTS])
def test_responses_request_to_hub(body, hub):
    out = responses_request_to_openai(body)
    assert out == hub
    _deep(OPENAI_REQUEST[out.get("stream", False)].validate_python({"model": "m", **out}))
    openai_request_to_anthropic(out)  # and on to the providers' formats
    openai_request_to_gemini(out)


def test_responses_max_tokens_param():
    assert responses_request_to_openai({"input": "x", "max_output_tokens": 9},
                                       max_tokens_param="max_completion_tokens")["max_completion_tokens"] == 9


RESPONSES_ERRORS = [
    ({"input": "x", "previous_response_id": "resp_1"},
     "previous_response_id: the gateway keeps no conversation state for non-OpenAI models: send the whole input"),
    ({"input": "x", "background": True},
     "background: the gateway keeps no conversation state for non-OpenAI models: send the whole input"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]},
     "input[0].type: the gateway keeps no stored items for non-OpenAI models: send the item itself"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role: expected one of user, system, developer, assistant"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]},
     "input[0].content[0].image_url: only image_url images can be sent to a non-OpenAI model (not file_id)"),
    ({"input": "x", "tools": [{"type": "web_search"}]},
     "tools[0].type: OpenAI's built-in 'web_search' tool cannot run on a non-OpenAI model"),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": 3}]}, "input[0].output: expected a string"),
    ({"input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}},
     "text.format.schema: expected a JSON schema object"),
    ({"input": "x", "tools": [{"type": "function", "name": "f"}], "tool_choice": "sometimes"},
     "tool_choice: expected auto, none, required or {type: function, name}"),
    ({"input": 3}, "input: expected a list"),
]


@pytest.mark.parametrize("body,error", RESPONSES_ERRORS, ids=[e[1].split(":")[0] for e in RESPONSES_ERRORS])
def test_responses_request_errors(body, error):
    with pytest.raises(ValueError) as info:
        responses_request_to_openai(body)
    assert str(info.value) == error


# --- hub answer → Responses ------------------------------------------------------------------------------------

def _completion(message: dict, finish: str) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
                      "prompt_tokens_details": {"cached_tokens": 4}}}


RESPONSES_ANSWERS = [
    ("text", _completion({"role": "assistant", "content": "Hello!"}, "stop"), "completed",
     [{"type": "message", "id": "msg_gen1", "status": "completed", "role": "assistant",
       "content": [{"type": "output_text", "text": "Hello!", "annotations": [], "logprobs": []}]}]),
    ("a tool call", _completion({"role": "assistant", "content": None, "tool_calls": [
        {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"P\"}"}}]},
        "tool_calls"), "completed",
     [{"type": "function_call", "id": "fc_gen1", "call_id": "toolu_1", "name": "get_weather",
       "arguments": "{\"city\":\"P\"}", "status": "completed"}]),
    ("cut by its length", _completion({"role": "assistant", "content": "Hel"}, "length"), "incomplete",
     [{"type": "message", "id": "msg_gen1", "status": "completed", "role": "assistant",
       "content": [{"type": "output_text", "text": "Hel", "annotations": [], "logprobs": []}]}]),
]


@pytest.mark.parametrize("hub,status,output", [c[1:] for c in RESPONSES_ANSWERS], ids=[c[0] for c in RESPONSES_ANSWERS])
def test_hub_answer_to_responses(hub, status, output):
    out = openai_response_to_responses(hub, "claude-haiku-4-5", created=CREATED, id_factory=ids())
    assert (out["status"], out["output"], out["model"]) == (status, output, "claude-haiku-4-5")
    assert out["usage"] == {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
                            "output_tokens": 5,
                            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 17}
    parsed = Response.model_validate(out)
    if status == "completed" and output[0]["type"] == "message":
        assert parsed.output_text == "Hello!"


# --- streams: provider transcript → hub → Responses events -----------------------------------------------------

STREAMS = {  # case → (provider transcript in tests/fixtures/translate, first half, CRLF?)
    "anthropic_text": ("anthropic_to_openai_stream_text", "anthropic", False),
    "anthropic_tool_use": ("anthropic_to_openai_stream_tool_use", "anthropic", False),
    "anthropic_max_tokens": ("anthropic_to_openai_stream_max_tokens_cached", "anthropic", False),
    "anthropic_cut": ("anthropic_to_openai_stream_cut", "anthropic", False),
    "anthropic_error_event": ("anthropic_to_openai_stream_error_event", "anthropic", False),
    "gemini_text": ("gemini_to_openai_stream_text", "gemini", True),
    "gemini_function_call": ("gemini_to_openai_stream_function_call", "gemini", False),
}
EVENT = TypeAdapter(ResponseStreamEvent)


def _translator(first: str, model: str) -> ChainStream:
    # One id counter per half: how the chunks interleave the halves must not change the ids.
    head = (AnthropicToOpenAIStream if first == "anthropic" else GeminiToOpenAIStream)(
        model, True, created=CREATED, id_factory=ids())
    return ChainStream(head, OpenAIToResponsesStream(model, created=CREATED, id_factory=ids()))


@pytest.mark.parametrize("case", sorted(STREAMS))
def test_responses_stream(case):
    source, first, crlf = STREAMS[case]
    data = (TRANSLATE / f"{source}.in.sse").read_bytes()
    if crlf:
        data = data.replace(b"\n", b"\r\n")
    complete = json.loads((TRANSLATE / f"{source}.json").read_text()).get("complete", True)
    outputs = {name: _run(_translator(first, "some-model"), chunks, complete)
               for name, chunks in _chunkings(data).items()}
    golden = ROUTES / f"responses_{case}.out.sse"
    if UPDATE:
        golden.write_bytes(outputs["whole"])
    for name, out in outputs.items():
        assert out == golden.read_bytes(), f"chunking {name!r} differs from the golden transcript"
    _check_responses_stream(outputs["whole"])


def _check_responses_stream(out: bytes) -> None:
    events = _events(out)
    for i, (name, data) in enumerate(events):
        body = json.loads(data)
        assert name == body["type"] and body["sequence_number"] == i
        EVENT.validate_python(body)
    last = events[-1][0]
    assert last in ("response.completed", "response.incomplete", "response.failed")
    client = openai.OpenAI(api_key="k", base_url="http://gateway.test/v1", max_retries=0, http_client=httpx2.Client(
        transport=httpx2.MockTransport(lambda request: httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, content=out))))
    with client.responses.stream(model="m", input="hi") as stream:  # the SDK's accumulator
        typed = list(stream)
        if last == "response.failed":
            assert typed[-1].type == "response.failed" and any(e.type == "error" for e in typed)
            return
        # the SDK's helper hands back only completed responses; an incomplete one is the last event's
        final = typed[-1].response if last == "response.incomplete" else stream.get_final_response()
    text = "".join(e.delta for e in typed if e.type == "response.output_text.delta")
    assert final.output_text == text
    for item in final.output:
        if item.type == "function_call":
            assert isinstance(json.loads(item.arguments), dict)
    assert final.usage is not None and final.usage.total_tokens > 0


# --- embeddings ------------------------------------------------------------------------------------------------

EMBEDDING_REQUESTS = [
    ("one string", {"model": "gemini-embedding-001", "input": "hello"},
     {"requests": [{"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "hello"}]}}]}),
    ("a list with dimensions", {"model": "x", "input": ["a", "b"], "dimensions": 4, "encoding_format": "base64"},
     {"requests": [{"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]},
                    "outputDimensionality": 4},
                   {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]},
                    "outputDimensionality": 4}]}),
]


@pytest.mark.parametrize("body,gemini", [c[1:] for c in EMBEDDING_REQUESTS], ids=[c[0] for c in EMBEDDING_REQUESTS])
def test_embeddings_request(body, gemini):
    assert openai_embeddings_to_gemini(body, "gemini-embedding-001") == gemini
    assert gemini_embed_path("models/gemini-embedding-001") == "/models/gemini-embedding-001:batchEmbedContents"


@pytest.mark.parametrize("body,error", [
    ({"input": [1, 2, 3]}, "input: Gemini embeds text, not token ids: send strings"),
    ({"input": [[1, 2]]}, "input: Gemini embeds text, not token ids: send strings"),
    ({"input": []}, "input: expected a non-empty string or list of strings"),
    ({"input": "x", "encoding_format": "int8"}, "encoding_format: expected float or base64"),
    ({"input": "x", "dimensions": "4"}, "dimensions: expected an integer"),
])
def test_embeddings_request_errors(body, error):
    with pytest.raises(ValueError) as info:
        openai_embeddings_to_gemini(body, "g")
    assert str(info.value) == error


def test_embeddings_targets():
    assert (embeddings_target("openai", "openai"), embeddings_target("gemini", "google")) == ("openai", "gemini")
    with pytest.raises(ValueError, match="model: provider 'anthropic' has no embeddings API"):
        embeddings_target("anthropic", "anthropic")


@pytest.mark.parametrize("encoding", [None, "float", "base64"])
def test_embeddings_through_the_openai_sdk(encoding):
    """The SDK asks for base64 unless told otherwise and decodes it: both shapes come out as its floats."""
    vectors = [[0.5, -0.25, 1.0], [0.125, 0.0, -1.0]]

    def handler(request):
        sent = json.loads(request.content)
        gemini = openai_embeddings_to_gemini(sent, "gemini-embedding-001")
        answer = {"embeddings": [{"values": v} for v in vectors[:len(gemini["requests"])]]}
        body = gemini_embeddings_to_openai(answer, sent["model"], sent.get("encoding_format"))
        return httpx2.Response(200, json=body)

    client = openai.OpenAI(api_key="k", base_url="http://gateway.test/v1", max_retries=0,
                           http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))
    kwargs = {"encoding_format": encoding} if encoding else {}
    r = client.embeddings.create(model="gemini-embedding-001", input=["a", "b"], **kwargs)
    got = [d.embedding for d in r.data]
    if encoding == "base64":  # asked for explicitly, the SDK hands the base64 text over as it came
        got = [list(struct.unpack("<3f", base64.b64decode(e))) for e in got]
    assert got == vectors and r.model == "gemini-embedding-001"


GEMINI_EMBED_ESTIMATES = [  # (id, inputs, tokens): one per digit, one per four other UTF-8 bytes, per input
    ("english text: four characters a token, rounded up", ["hello world"], 3),
    ("digits count one each, as Gemini's tokenizer splits numbers", ["2024"], 4),
    ("digits among letters", ["a1b2"], 3),
    ("CJK text counts its UTF-8 bytes (3 a character)", ["数字"], 2),
    ("accented letters count their two bytes", ["résumé"], 2),
    ("an empty input is still a token", [""], 1),
    ("each input rounds up on its own", ["a", "b", "c"], 3),
    ("a string input is one input", "hello world", 3),
]


@pytest.mark.parametrize("inputs,tokens", [c[1:] for c in GEMINI_EMBED_ESTIMATES],
                         ids=[c[0] for c in GEMINI_EMBED_ESTIMATES])
def test_gemini_embeddings_are_billed_on_an_input_estimate(inputs, tokens):
    assert estimated_input_tokens({"model": "gemini-embedding-001", "input": inputs}) == tokens


def test_embed_content_answer_and_base64_bytes():
    out = gemini_embeddings_to_openai({"embedding": {"values": [1.5, 2.0]}}, "g", "base64")
    assert struct.unpack("<2f", base64.b64decode(out["data"][0]["embedding"])) == (1.5, 2.0)
    with pytest.raises(ValueError, match=r"embeddings\[0\].values: expected a list of numbers"):
        gemini_embeddings_to_openai({"embeddings": [{"values": ["x"]}]}, "g")


# --- count_tokens ----------------------------------------------------------------------------------------------

COUNT_BODY = {"model": "x", "system": "Be brief.", "messages": [{"role": "user", "content": "Hi there"}],
              "tools": [{"name": "get_weather", "input_schema": WEATHER}]}


def test_count_for_gemini():
    path, body = count_request(COUNT_BODY, "gemini", "gemini-2.5-flash")
    assert path == "/models/gemini-2.5-flash:countTokens"
    assert body == {"generateContentRequest": {
        "model": "models/gemini-2.5-flash", "contents": [{"role": "user", "parts": [{"text": "Hi there"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "tools": [{"functionDeclarations": [{"name": "get_weather", "parametersJsonSchema": WEATHER}]}]}}
    assert count_tokens_to_anthropic({"totalTokens": 11, "promptTokensDetails": []}, "gemini") == {"input_tokens": 11}


def test_count_for_openai_is_a_responses_input_tokens_request():
    path, body = count_request(COUNT_BODY, "openai", "gpt-4o-mini")
    assert path == "/responses/input_tokens"
    assert body == {"model": "gpt-4o-mini", "instructions": "Be brief.",
                    "input": [{"role": "user", "content": "Hi there"}],
                    "tools": [{"type": "function", "name": "get_weather", "parameters": WEATHER}]}
    client = openai.OpenAI(api_key="k", base_url="http://x.test/v1", max_retries=0, http_client=httpx2.Client(
        transport=httpx2.MockTransport(lambda r: httpx2.Response(
            200, json={"object": "response.input_tokens", "input_tokens": 9}))))
    answer = client.responses.input_tokens.count(**body).model_dump()
    assert count_tokens_to_anthropic(answer, "openai") == {"input_tokens": 9}


def test_count_targets_and_errors():
    assert [count_target(f, p) for f, p in (("anthropic", "anthropic"), ("gemini", "google"), ("openai", "openai"))] \
        == ["anthropic", "gemini", "openai"]
    with pytest.raises(ValueError, match="model: provider 'mistral' has no token counting endpoint"):
        count_target("openai", "mistral")
    with pytest.raises(ValueError, match="input_tokens: expected a token count"):
        count_tokens_to_anthropic({"input_tokens": -1}, "openai")
    with pytest.raises(ValueError, match="totalTokens: expected a token count"):
        count_tokens_to_anthropic({}, "gemini")


def test_hub_to_responses_request_round_trip():
    hub = {"model": "m", "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
                                      {"role": "assistant", "content": None, "tool_calls": [
                                          {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                                      {"role": "tool", "tool_call_id": "c", "content": "r"}]}
    back = responses_request_to_openai(openai_request_to_responses(hub))
    assert back == hub


# --- stream usage on the unified routes --------------------------------------------------------------------------

USAGE_REQUESTS = [
    ("a stream without stream_options gets include_usage", {"stream": True, "model": "m"},
     ({"stream": True, "model": "m", "stream_options": {"include_usage": True}}, False)),
    ("other stream_options are kept", {"stream": True, "stream_options": {"include_obfuscation": False}},
     ({"stream": True, "stream_options": {"include_obfuscation": False, "include_usage": True}}, False)),
    ("include_usage false is overridden upstream", {"stream": True, "stream_options": {"include_usage": False}},
     ({"stream": True, "stream_options": {"include_usage": True}}, False)),
    ("a client that asked keeps its body", {"stream": True, "stream_options": {"include_usage": True}},
     ({"stream": True, "stream_options": {"include_usage": True}}, True)),
    ("a request that does not stream is left alone", {"model": "m"}, ({"model": "m"}, False)),
]


@pytest.mark.parametrize("body,want", [c[1:] for c in USAGE_REQUESTS], ids=[c[0] for c in USAGE_REQUESTS])
def test_with_usage_requested(body, want):
    assert with_usage_requested(body) == want


def _chunk(choices: list, usage) -> bytes:
    return b"data: " + json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                                   "choices": choices, "usage": usage}, separators=(",", ":")).encode() + b"\n\n"


USAGE_STREAM = (_chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}], None)
                + _chunk([{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}], None)
                + _chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}], None)
                + _chunk([], {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4})
                + b"data: [DONE]\n\n")


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_usage_chunk_strip(eol):
    data = USAGE_STREAM.replace(b"\n", eol)
    usage_event = _chunk([], {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}).replace(b"\n", eol)
    want = data.replace(usage_event, b"")
    assert want != data
    for name, chunks in _chunkings(data).items():
        strip = UsageChunkStrip()
        assert b"".join(strip.feed(c) for c in chunks) + strip.finish(True) == want, name
    client = openai.OpenAI(api_key="k", base_url="http://x.test/v1", max_retries=0, http_client=httpx2.Client(
        transport=httpx2.MockTransport(lambda r: httpx2.Response(200, headers={"content-type": "text/event-stream"},
                                                                 content=want))))
    chunks = list(client.chat.completions.create(model="m", messages=[], stream=True))
    assert [c.usage for c in chunks] == [None, None, None] and chunks[1].choices[0].delta.content == "Hi"


def test_usage_chunk_strip_passes_errors_through_and_ends_a_cut_with_one():
    error = b'data: {"error":{"message":"x","type":"server_error"}}\n\n'
    strip = UsageChunkStrip()
    # the event the cut broke is dropped: sent before the error event, it would have garbled that event's line
    assert (strip.feed(USAGE_STREAM[:40]) + strip.feed(USAGE_STREAM[40:60]) + strip.finish(False)
            == sse_error_event("openai"))
    strip = UsageChunkStrip()
    assert strip.feed(error) + strip.finish(True) == error


_CONTENT = _chunk([{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}], None)
_LONG = b'data: {"choices":[{"index":0,"delta":{"content":"' + b"x" * (8 << 20) + b'"}}],"usage":null}\n\n'
STRIP_SIZES = [  # id, the pieces a stream arrives in (each about 1.4 MiB or 8 MiB in all)
    ("8,000 events that arrive in one piece (a relay behind its provider)", [_CONTENT * 8000]),
    ("one 8 MiB event that arrives in 8 KiB pieces", [_LONG[i:i + 8192] for i in range(0, len(_LONG), 8192)]),
]


@pytest.mark.parametrize("pieces", [row[1] for row in STRIP_SIZES], ids=[row[0] for row in STRIP_SIZES])
def test_usage_chunk_strip_reads_each_byte_about_once(pieces, monkeypatch):
    """Linear, so a long stream never holds the event loop: scanning from an event's start again at each piece or
    for each event took seconds of CPU for these, and every other request stalled. Counted in bytes searched for
    an event's end (not timed): at most three times what arrived; the quadratic scan searched thousands of times that."""
    searched = [0]

    class Counted:
        def search(self, data):
            searched[0] += len(data)
            return stream_usage._EVENT_END_RE.search(data)

        def finditer(self, data):
            searched[0] += len(data)
            return stream_usage._EVENT_END_RE.finditer(data)
    monkeypatch.setattr(stream_usage, "_EVENT_END_RE", stream_usage._EVENT_END, raising=False)
    monkeypatch.setattr(stream_usage, "_EVENT_END", Counted())
    strip = UsageChunkStrip()
    out = b"".join(strip.feed(p) for p in pieces) + strip.finish(True)
    arrived = sum(map(len, pieces))
    assert out == b"".join(pieces) and searched[0] <= 3 * arrived, (searched[0], arrived)


def test_strip_usage_is_an_attempt_translation():
    t = StripUsage()
    assert t.client_format == "openai" and t.body(b'{"x": 1}', 200) == b'{"x": 1}'
    stream = t.stream()
    assert stream.feed(USAGE_STREAM) + stream.finish(True) == USAGE_STREAM.replace(
        _chunk([], {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}), b"")
