"""The Usage record and the msgspec decode step shared by both usage-scanner twins.

The twins (``usage_scan_py`` and the compiled ``_usage_scan_c``) differ only in how they find the
bytes that may carry usage (SSE framing, marker search). Every candidate JSON document is handed
to an accumulator from this module, so decoding and normalisation live in one place and the twins
cannot disagree about them.

Normalisation (what a ``Usage`` means, whatever the provider):

* ``input_tokens`` counts *all* prompt tokens, cached ones included (OpenAI ``prompt_tokens``
  semantics). Anthropic reports ``input_tokens`` *excluding* cache reads and writes, so for
  Anthropic ``input_tokens = input_tokens + cache_read_input_tokens + cache_creation_input_tokens``.
* ``output_tokens`` includes reasoning tokens. A few OpenAI-compatible providers (xAI) report
  reasoning outside ``completion_tokens``; that is recognised by ``total_tokens == prompt +
  completion + reasoning`` and the reasoning is added back.
* ``cached_tokens`` are cache reads, ``cache_write_tokens`` cache writes (Anthropic; OpenAI where it
  reports ``cache_write_tokens``), of which ``cache_write_1h_tokens`` were written with Anthropic's 1-hour TTL
  (``usage.cache_creation.ephemeral_1h_input_tokens``; the rest are 5-minute writes).
* ``input_audio_tokens`` / ``output_audio_tokens`` are the audio part of the prompt / the output (OpenAI's
  ``prompt_tokens_details.audio_tokens`` and ``completion_tokens_details.audio_tokens``; Gemini's
  ``promptTokensDetails`` / ``candidatesTokensDetails`` entries with modality ``AUDIO``), and
  ``cached_audio_tokens`` the audio part of the cache reads (Gemini's ``cacheTokensDetails``).
* Gemini: ``output_tokens`` = ``candidatesTokenCount + thoughtsTokenCount`` (thinking is billed as output),
  ``input_tokens`` = ``promptTokenCount + toolUsePromptTokenCount``, ``cached_tokens`` =
  ``cachedContentTokenCount``.

Stream merge rules: OpenAI-style and Gemini usage are whole snapshots (the last non-null one
wins); Anthropic splits usage over ``message_start`` and ``message_delta``, so each field takes
its latest non-null value. Malformed or mistyped documents are skipped, never raised.

``final`` says the provider's own final count arrived: any OpenAI-style usage object (the usage
chunk, ``response.completed``, a whole body); Anthropic's top-level ``usage`` (``message_delta``
or a whole Message); a Gemini chunk with a ``finishReason`` (or a blocked prompt). Anthropic's
``message_start`` carries a placeholder ``output_tokens`` (1 or so) that is not a count, so it is
never read: a stream cut before ``message_delta`` has ``output_tokens`` 0, ``final`` False and its
real input counts. ``content_events`` is counted by the scanners (the accumulators never see
content); ``metering.estimate`` turns a non-final stream into the tokens to bill.
"""
from __future__ import annotations

import re
from typing import Annotated, Protocol, Self

import msgspec

# Bounds shared by both twins so their results stay identical.
MAX_LINE = 8 * 1024 * 1024  # an unfinished SSE line longer than this is dropped
MAX_BODY = 8 * 1024 * 1024  # a non-SSE body (JSON object/array) buffered by the scanner

FORMATS = ("openai", "anthropic", "gemini", "none")


class Usage(msgspec.Struct, gc=False):  # gc=False: scalar fields only, so never part of a reference cycle
    """Token usage of one upstream call, normalised across providers (see module docstring)."""

    input_tokens: int = 0  # total prompt tokens INCLUDING cached ones
    output_tokens: int = 0  # completion tokens, including reasoning
    cached_tokens: int = 0  # cache reads
    cache_write_tokens: int = 0  # cache writes (Anthropic cache_creation_input_tokens, OpenAI cache_write_tokens)
    reasoning_tokens: int = 0
    model: str | None = None  # model the provider reports, when present
    found: bool = False  # any usage was seen at all
    # (after `found`, so positional construction of the fields above keeps working)
    cache_write_1h_tokens: int = 0  # the part of cache_write_tokens written with a 1-hour TTL
    input_audio_tokens: int = 0  # the audio part of input_tokens
    cached_audio_tokens: int = 0  # the audio part of cached_tokens
    output_audio_tokens: int = 0  # the audio part of output_tokens
    final: bool = False  # the provider's final count was seen (see module docstring), not a partial one
    content_events: int = 0  # stream events that carried content (text, tool arguments, thinking), not framing
    error_event: bool = False  # the stream carried an in-band error event (or the body is an error object)
    # An OpenAI Responses answer's own id and its output items' ids (space-separated), read from the same document
    # as its usage (a whole body, `response.completed` or `response.incomplete`): what a later request may name
    # as `previous_response_id` or an input item's id (request_path/ownership.py).
    response_id: str | None = None
    output_item_ids: str | None = None


# --- view Structs: only the fields we need; msgspec skips everything else while decoding ---
# gc=False: a decoded tree of them holds no cycles, and the GC need not track what lives for one decode.
# strict=False on the decoders lets an integral float such as 12.0 pass as a token count.

MAX_COUNT = 10**9
# No call reads or writes a billion tokens (the longest contexts are a few million): a count above that is not a
# count, and its document is skipped like a mistyped one. Unchecked, 10**20 reached the request log's 64-bit
# columns, the store refused the batch, and the log writer retried it for ever: no request after it was billed,
# and once a lease had passed the worker answered every request 503.
Count = Annotated[int, msgspec.Meta(le=MAX_COUNT)]


class _OAIDetails(msgspec.Struct, gc=False):
    cached_tokens: Count | None = None
    cache_write_tokens: Count | None = None
    reasoning_tokens: Count | None = None
    audio_tokens: Count | None = None


class _OAIUsage(msgspec.Struct, gc=False):
    prompt_tokens: Count | None = None  # chat completions, embeddings
    completion_tokens: Count | None = None
    total_tokens: Count | None = None
    input_tokens: Count | None = None  # Responses API
    output_tokens: Count | None = None
    prompt_tokens_details: _OAIDetails | None = None
    completion_tokens_details: _OAIDetails | None = None
    input_tokens_details: _OAIDetails | None = None
    output_tokens_details: _OAIDetails | None = None
    prompt_cache_hit_tokens: Count | None = None  # DeepSeek


class _OAIItem(msgspec.Struct, gc=False):
    id: str | None = None


class _OAIHolder(msgspec.Struct, gc=False):
    """The Responses API ``response`` object, or Groq's ``x_groq`` extension."""

    usage: _OAIUsage | None = None
    model: str | None = None
    id: str | None = None
    output: list[_OAIItem] | None = None  # a Responses object's output items (absent from every other object)


class _OAIEvent(msgspec.Struct, gc=False):
    usage: _OAIUsage | None = None
    model: str | None = None
    response: _OAIHolder | None = None
    x_groq: _OAIHolder | None = None
    id: str | None = None  # a whole Responses body is the response object itself
    output: list[_OAIItem] | None = None


class _AnthCacheCreation(msgspec.Struct, gc=False):
    ephemeral_5m_input_tokens: Count | None = None
    ephemeral_1h_input_tokens: Count | None = None


class _AnthUsage(msgspec.Struct, gc=False):
    input_tokens: Count | None = None
    output_tokens: Count | None = None
    cache_creation_input_tokens: Count | None = None
    cache_read_input_tokens: Count | None = None
    cache_creation: _AnthCacheCreation | None = None


class _AnthMessage(msgspec.Struct, gc=False):
    model: str | None = None
    usage: _AnthUsage | None = None


class _AnthEvent(msgspec.Struct, gc=False):
    model: str | None = None
    usage: _AnthUsage | None = None  # plain body, message_delta: the final count
    message: _AnthMessage | None = None  # message_start: input counts and a placeholder output_tokens


class _GemModality(msgspec.Struct, rename="camel", gc=False):
    modality: str | None = None
    token_count: Count | None = None


class _GemUsage(msgspec.Struct, rename="camel", gc=False):
    prompt_token_count: Count | None = None
    candidates_token_count: Count | None = None
    cached_content_token_count: Count | None = None
    thoughts_token_count: Count | None = None
    tool_use_prompt_token_count: Count | None = None
    prompt_tokens_details: list[_GemModality] | None = None
    cache_tokens_details: list[_GemModality] | None = None
    candidates_tokens_details: list[_GemModality] | None = None


class _GemCandidate(msgspec.Struct, rename="camel", gc=False):
    finish_reason: str | None = None


class _GemFeedback(msgspec.Struct, rename="camel", gc=False):
    block_reason: str | None = None


class _GemChunk(msgspec.Struct, rename="camel", gc=False):
    usage_metadata: _GemUsage | None = None
    model_version: str | None = None
    candidates: list[_GemCandidate] | None = None
    prompt_feedback: _GemFeedback | None = None


# Built once: a Decoder avoids re-deriving the type plan on every call.
_OAI = msgspec.json.Decoder(_OAIEvent, strict=False)
_ANTH = msgspec.json.Decoder(_AnthEvent, strict=False)
_GEM = msgspec.json.Decoder(_GemChunk, strict=False)
_GEM_LIST = msgspec.json.Decoder(list[_GemChunk], strict=False)
_WS = b" \t\r\n"


def _n(value: int | None) -> int:
    # Absent, null or (nonsensically) negative counts all read as zero.
    return value if value is not None and value > 0 else 0


# --- accumulators: feed(doc) takes one JSON document; feed_body(body) a whole response body ---

class Accumulator(Protocol):
    def feed(self, doc: bytes) -> None: ...
    def feed_body(self, body: bytes) -> None: ...
    def copy(self) -> Accumulator: ...
    def usage(self) -> Usage: ...
    def last(self) -> Usage: ...  # usage() without its copy: only for an accumulator never copied (body_usage)


class _SnapshotAcc:
    """Base for formats whose usage is a whole snapshot that the next one replaces."""

    __slots__ = ("_usage",)

    def __init__(self) -> None:
        self._usage = Usage()  # replaced, never mutated, so copies may share it

    def copy(self) -> Self:
        acc = type(self)()
        acc._usage = self._usage
        return acc

    def usage(self) -> Usage:
        return msgspec.structs.replace(self._usage)  # the caller owns its copy

    def last(self) -> Usage:
        return self._usage  # shared only with copies of this accumulator, and the caller made none


class _NoUsage(_SnapshotAcc):
    """Providers whose usage format is "none": nothing is read, the usage stays empty."""

    __slots__ = ()

    def feed(self, doc: bytes) -> None:
        pass

    feed_body = feed


class _OpenAIAcc(_SnapshotAcc):
    """OpenAI chat/Responses/embeddings and compatibles: the last non-null usage wins."""

    __slots__ = ()

    def feed(self, doc: bytes) -> None:
        try:
            usage = _openai_usage(_OAI.decode(doc), self._usage.model)
        except msgspec.DecodeError:
            return
        if usage is not None:
            self._usage = usage

    feed_body = feed


def _openai_usage(ev: _OAIEvent, model: str | None) -> Usage | None:
    """The usage an OpenAI-style document reports, None if it has none; `model` stands in when it names none."""
    r, g = ev.response, ev.x_groq
    holder = r if r is not None and r.usage is not None else g if g is not None and g.usage is not None else None
    u = ev.usage if ev.usage is not None else (holder.usage if holder is not None else None)
    if u is None:
        return None
    model = ev.model or (holder.model if holder is not None else None) or model
    # `_n` written out (a conditional expression, not a call): every OpenAI answer comes through here, most with
    # both details objects, and each call of `_n` is a Python frame.
    inp = u.prompt_tokens if u.prompt_tokens is not None else u.input_tokens
    inp = inp if inp is not None and inp > 0 else 0
    out = u.completion_tokens if u.completion_tokens is not None else u.output_tokens
    out = out if out is not None and out > 0 else 0
    pd = u.prompt_tokens_details or u.input_tokens_details
    cd = u.completion_tokens_details or u.output_tokens_details
    cached = u.prompt_cache_hit_tokens  # DeepSeek's spelling, when the details do not say
    write = in_audio = reasoning = out_audio = 0
    if pd is not None:
        if pd.cached_tokens is not None:
            cached = pd.cached_tokens
        wr, au = pd.cache_write_tokens, pd.audio_tokens
        write = wr if wr is not None and wr > 0 else 0
        in_audio = au if au is not None and au > 0 else 0
    if cd is not None:
        rs, au = cd.reasoning_tokens, cd.audio_tokens
        reasoning = rs if rs is not None and rs > 0 else 0
        out_audio = au if au is not None and au > 0 else 0
        # xAI-style: reasoning billed as output but left out of completion_tokens.
        if reasoning and u.total_tokens is not None and u.total_tokens == inp + out + reasoning:
            out += reasoning
    cached = cached if cached is not None and cached > 0 else 0
    # Positional, in Usage's field order: a keyword is matched against every field name
    usage = Usage(inp, out, cached, write, reasoning, model, True, 0, in_audio, 0, out_audio, True)
    # A Responses object (it has `output`; chat and embeddings objects do not): the ids it stored. Read by their
    # place in the object, never by a search for "id" keys, which metadata or a schema echoed back could forge.
    answer: _OAIEvent | _OAIHolder | None = ev if ev.output is not None else r
    if answer is not None and answer.output is not None and answer.id:
        usage.response_id = answer.id
        usage.output_item_ids = " ".join([item.id for item in answer.output if item.id]) or None
    return usage


class _AnthropicAcc:
    """Anthropic messages: each raw field takes its latest non-null value."""

    __slots__ = ("_final", "_found", "_inp", "_model", "_out", "_read", "_w1h", "_w5m", "_write")

    def __init__(self) -> None:
        self._inp: int | None = None
        self._out: int | None = None
        self._write: int | None = None
        self._read: int | None = None
        self._w5m: int | None = None
        self._w1h: int | None = None
        self._model: str | None = None
        self._found = self._final = False

    def feed(self, doc: bytes) -> None:
        try:
            ev = _ANTH.decode(doc)
        except msgspec.DecodeError:
            return
        msg = ev.message
        if msg is not None:
            self._model = msg.model or self._model
            self._merge(msg.usage, final=False)
        self._model = ev.model or self._model
        if ev.usage is not None:
            self._merge(ev.usage, final=True)
            self._final = True

    feed_body = feed

    def _merge(self, u: _AnthUsage | None, final: bool) -> None:
        if u is None:
            return
        self._found = True
        if u.input_tokens is not None:
            self._inp = u.input_tokens
        if final and u.output_tokens is not None:  # message_start's output_tokens is a placeholder
            self._out = u.output_tokens
        if u.cache_creation_input_tokens is not None:
            self._write = u.cache_creation_input_tokens
        if u.cache_read_input_tokens is not None:
            self._read = u.cache_read_input_tokens
        c = u.cache_creation
        if c is not None:
            if c.ephemeral_5m_input_tokens is not None:
                self._w5m = c.ephemeral_5m_input_tokens
            if c.ephemeral_1h_input_tokens is not None:
                self._w1h = c.ephemeral_1h_input_tokens

    def copy(self) -> _AnthropicAcc:
        acc = _AnthropicAcc()
        acc._inp, acc._out, acc._write, acc._read = self._inp, self._out, self._write, self._read
        acc._w5m, acc._w1h, acc._model, acc._found = self._w5m, self._w1h, self._model, self._found
        acc._final = self._final
        return acc

    def usage(self) -> Usage:
        w1h = _n(self._w1h)
        # cache_creation_input_tokens is every write; its breakdown by TTL, when present, cannot add up to less
        read, write = _n(self._read), max(_n(self._write), _n(self._w5m) + w1h)
        # Anthropic's input_tokens excludes cache traffic; ours includes it.
        inp = _n(self._inp) + read + write
        return Usage(inp, _n(self._out), read, write, 0, self._model, self._found, cache_write_1h_tokens=w1h,
                     final=self._final)

    last = usage  # a new Usage each time already


class _GeminiAcc(_SnapshotAcc):
    """Gemini generateContent: the last usageMetadata snapshot wins."""

    __slots__ = ()

    def feed(self, doc: bytes) -> None:
        try:
            self._take(_GEM.decode(doc))
        except msgspec.DecodeError:
            return

    def feed_body(self, body: bytes) -> None:
        # streamGenerateContent without alt=sse answers with a JSON array of chunks.
        if body.lstrip(_WS)[:1] == b"[":
            for chunk in _decode_array(body):
                self._take(chunk)
        else:
            self.feed(body)

    def _take(self, c: _GemChunk) -> None:
        model = c.model_version or self._usage.model
        m = c.usage_metadata
        if m is None:
            if model != self._usage.model:
                self._usage = msgspec.structs.replace(self._usage, model=model)
            return
        thoughts = _n(m.thoughts_token_count)
        out = _n(m.candidates_token_count) + thoughts
        cached = _n(m.cached_content_token_count)
        inp = _n(m.prompt_token_count) + _n(m.tool_use_prompt_token_count)
        # The chunk that ends the answer (a finishReason, or a blocked prompt) carries the final count.
        final = any(cand.finish_reason for cand in c.candidates or ()) or (
            c.prompt_feedback is not None and bool(c.prompt_feedback.block_reason))
        self._usage = Usage(inp, out, cached, 0, thoughts, model, True,
                            input_audio_tokens=_audio(m.prompt_tokens_details),
                            cached_audio_tokens=_audio(m.cache_tokens_details),
                            output_audio_tokens=_audio(m.candidates_tokens_details),
                            final=final or self._usage.final)


def _audio(details: list[_GemModality] | None) -> int:
    """The AUDIO entry of a Gemini per-modality token breakdown."""
    if details:
        for d in details:
            if d.modality == "AUDIO":
                return _n(d.token_count)
    return 0


def _decode_array(body: bytes) -> list[_GemChunk]:
    """Decode a JSON array of Gemini chunks; for a truncated one, its complete elements."""
    try:
        return _GEM_LIST.decode(body)
    except msgspec.DecodeError:
        pass
    # Cut after one of the last few '}' and close the array: the first prefix that decodes
    # holds every element that fully arrived. Bounded: this runs once, at result().
    end = len(body)
    for _ in range(32):
        end = body.rfind(b"}", 0, end)
        if end < 0:
            break
        try:
            return _GEM_LIST.decode(body[: end + 1] + b"]")
        except msgspec.DecodeError:
            continue
    return []


_ACCUMULATORS: dict[str, type[Accumulator]] = {"openai": _OpenAIAcc, "anthropic": _AnthropicAcc, "gemini": _GeminiAcc}


def new_accumulator(fmt: str) -> Accumulator:
    """A fresh accumulator for a catalogue usage format; ValueError for an unknown one."""
    if fmt == "none":
        return _NoUsage()
    try:
        return _ACCUMULATORS[fmt]()
    except KeyError:
        raise ValueError(f"unknown usage format {fmt!r}; expected one of {FORMATS}") from None


_GEMINI_PART = re.compile(rb'"text"[ \t\r\n]*:[ \t\r\n]*"[^"]|"functionCall"')


def body_content_events(fmt: str, body: bytes) -> int:
    """Content events in a JSON body: each Gemini content part (text or function call) of its array stream.

    Other formats stream only as SSE, so a JSON body of theirs is a whole answer (or an error): 0."""
    return len(_GEMINI_PART.findall(body)) if fmt == "gemini" and body.lstrip(_WS)[:1] == b"[" else 0


_ERROR_BODY = re.compile(rb'[ \t\r\n]*\{[ \t\r\n]*"(?:error"|type"[ \t\r\n]*:[ \t\r\n]*"error")')


def body_is_error(body: bytes) -> bool:
    """Whether a JSON body is an error object: its first key is "error" (OpenAI, Gemini) or it starts with
    "type": "error" (Anthropic)."""
    # Most bodies start '{"' and a key that begins with neither e(rror) nor t(ype): no pattern call (~1,500
    # instructions) for them.
    if body[:2] == b'{"' and body[2:3] not in (b"e", b"t"):
        return False
    return _ERROR_BODY.match(body) is not None


def body_usage(fmt: str, body: bytes) -> Usage:
    """Usage from a whole (non-streamed) JSON response body; never raises on bad bodies.

    The OpenAI format, most bodies, is read without an accumulator: one decode and one call build the Usage."""
    if type(body) is not bytes:  # bytes(body) of a bytes object costs a call for nothing
        body = bytes(body)
    if fmt == "openai":
        try:
            found = _openai_usage(_OAI.decode(body), None)
        except msgspec.DecodeError:
            found = None
        usage = found if found is not None else Usage()  # an OpenAI-style JSON body has no content events
    else:
        acc = new_accumulator(fmt)
        acc.feed_body(body)
        usage = acc.last()  # this accumulator is ours alone: its usage needs no copy
        usage.content_events = body_content_events(fmt, body)
    usage.error_event = fmt != "none" and body_is_error(body)
    return usage
