"""The most a request can ask for, read from its body before it is sent: its model, its output limit and a bound
on its input tokens. A reservation is sized from these (charging.py), so they are read exactly as the provider
reads them: the body is parsed as JSON for real, and whitespace, a byte-order mark, key order, escaped key names
and number forms make no difference.

- **Output**: `max_tokens`, `max_completion_tokens` (OpenAI chat), `max_output_tokens` (Responses) or
  `generationConfig.maxOutputTokens` (Gemini, also snake_case); when several are given, the largest. Each must be
  a whole number from 1 to `MAX_OUTPUT_TOKENS`; anything else is a 400 before anything is reserved or sent.
- **Choices**: `n` (OpenAI chat) or `generationConfig.candidateCount` (Gemini, also snake_case) asks for that many
  answers, each up to the output limit and each billed: `choices`, a whole number from 1 to `MAX_CHOICES` (else a
  400), by which the output bound is multiplied (billing/engine.py).
- **Input**: one token per byte of the body (no tokenizer makes more tokens than bytes of text), plus
  `IMAGE_TOKENS` for each image part, whose tokens depend on its pixels, not on the bytes that name it. A part that
  brings content by reference (a file id or a file or video URL, an Anthropic document by URL) cannot be bounded
  from the request: `unbounded` says which, and a managed key refuses it (billing/engine.py).
"""
from __future__ import annotations

import os
from typing import Any, NamedTuple

import msgspec

from ..errors import InvalidRequest
from ._media_scan_py import has_media_markers
from ._media_scan_py import has_word_escape as has_word_escape  # selected here for request_path/ownership.py

MAX_OUTPUT_TOKENS = 10_000_000  # no model comes near: a larger output limit is a mistake or an attack
MAX_CHOICES = 128  # OpenAI's most for `n`; Gemini allows fewer candidates
IMAGE_TOKENS = 6_000  # above every provider's cost of one image (OpenAI high detail ~1.5k, Gemini tiles ~4k)
_BOM = b"\xef\xbb\xbf"

# A body that names no media anywhere (`has_media_markers`, a scan of every byte) is not parsed whole. The scan is
# compiled (_fastpath/media_scan.pyx) unless EDGE_PROXY_PURE_PYTHON forces its twin; reading that one variable at
# import is deliberate (as headers.py does): it chooses code, not behaviour.
IMPLEMENTATION = "py"
if os.environ.get("EDGE_PROXY_PURE_PYTHON", "") in ("", "0"):
    try:
        from ._media_scan_c import has_media_markers  # the same API (.pyi)
        from ._media_scan_c import has_word_escape as has_word_escape
        IMPLEMENTATION = "c"
    except ImportError:  # not built: tests/test_fastpath_loaded.py fails loudly on a build that should have it
        pass


class Bounds(NamedTuple):
    model: str | None
    max_output: int | None  # the client's output limit; None when it named none
    input_tokens: int  # the prompt has at most this many tokens
    unbounded: str | None = None  # why the input has no bound (content by reference), or None
    parsed: bool = True  # False: the body is not a JSON object (nothing about its cost is known)
    choices: int = 1  # the answers asked for (`n`, `candidateCount`), each up to `max_output`
    background: bool = False  # an OpenAI Responses `background: true`: it runs on after the request's answer


class _Head(msgspec.Struct):
    """The fields of a request body that bound its cost; every other field is skipped unread."""

    model: Any = None
    max_tokens: Any = None
    max_completion_tokens: Any = None
    max_output_tokens: Any = None
    n: Any = None
    generationConfig: Any = None  # noqa: N815 - Gemini's own field name
    generation_config: Any = None
    background: Any = None


_head = msgspec.json.Decoder(_Head).decode
_tuple_new = tuple.__new__
EMPTY = Bounds(None, None, 0)
NOT_JSON = Bounds(None, None, 0, parsed=False)


def request_bounds(body: bytes) -> Bounds:
    """The bounds of a request body; a body that is not a JSON object has `parsed` False. Raises InvalidRequest
    for an output limit that is not a whole number in range."""
    data = body[3:] if body.startswith(_BOM) else body
    if not data or data.isspace():
        return EMPTY
    try:
        head = _head(data)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        return NOT_JSON._replace(input_tokens=len(body))
    # Each limit the body names is checked, and the largest one counts; most bodies name one or none.
    most = head.max_tokens  # the usual case, a whole number in range, is checked here without a call
    if most is not None and not (type(most) is int and 1 <= most <= MAX_OUTPUT_TOKENS):
        most = _output_limit("max_tokens", most)
    if head.max_completion_tokens is not None:
        most = _larger(most, _output_limit("max_completion_tokens", head.max_completion_tokens))
    if head.max_output_tokens is not None:
        most = _larger(most, _output_limit("max_output_tokens", head.max_output_tokens))
    choices = 1 if head.n is None else _choices("n", head.n)
    if head.generationConfig is not None or head.generation_config is not None:
        most = _gemini_limit(head, most)
        choices = max(choices, _gemini_choices(head))
    model = head.model if isinstance(head.model, str) and head.model else None
    images, unbounded = _media(data) if has_media_markers(data) else (0, None)
    # tuple.__new__: the NamedTuple's Python-level __new__ costs twice as much (billing/charging.py, _tuple_new)
    return _tuple_new(Bounds, (model, most, len(body) + images * IMAGE_TOKENS, unbounded, True, choices,
                               head.background is True))


def _gemini_limit(head: _Head, most: int | None) -> int | None:
    for config in (head.generationConfig, head.generation_config):
        if isinstance(config, dict):
            for name in ("maxOutputTokens", "max_output_tokens"):
                if name in config:
                    most = _larger(most, _output_limit(f"generationConfig.{name}", config[name]))
    return most


def _gemini_choices(head: _Head) -> int:
    choices = 1
    for config in (head.generationConfig, head.generation_config):
        if isinstance(config, dict):
            for name in ("candidateCount", "candidate_count"):
                if config.get(name) is not None:
                    choices = max(choices, _choices(f"generationConfig.{name}", config[name]))
    return choices


def _choices(name: str, value: Any) -> int:
    if type(value) is int and 1 <= value <= MAX_CHOICES:
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name}: must be a whole number of answers, not {msgspec.json.encode(value).decode()}")
    raise InvalidRequest(f"{name}: must be from 1 to {MAX_CHOICES}, not {value}")


def _larger(most: int | None, limit: int) -> int:
    return limit if most is None or limit > most else most


def _output_limit(name: str, value: Any) -> int:
    if type(value) is int and 1 <= value <= MAX_OUTPUT_TOKENS:  # the usual case; a bool is not an int here
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name}: must be a whole number of tokens, not {msgspec.json.encode(value).decode()}")
    if not 1 <= value <= MAX_OUTPUT_TOKENS:
        raise InvalidRequest(f"{name}: must be from 1 to {MAX_OUTPUT_TOKENS}, not {value}")
    return value


# --- media parts ----------------------------------------------------------------------------------------------

_IMAGE_TYPES = frozenset({"image_url", "input_image", "image"})
_BY_REFERENCE = {
    "file_id": "a file by id", "file_url": "a file by URL", "fileUri": "a file by URI", "file_uri": "a file by URI",
    "video_url": "a video by URL",
}


def _media(data: bytes) -> tuple[int, str | None]:
    """(image parts, why the input is unbounded or None), from the whole parsed body."""
    try:
        body = msgspec.json.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return 0, None
    images = 0
    unbounded: str | None = None
    stack: list[Any] = [body]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        stack.extend(v for v in node.values() if isinstance(v, (dict, list)))
        kind = node.get("type")
        mime = node.get("mimeType") or node.get("mime_type")  # a Gemini inlineData / fileData part
        if kind in _IMAGE_TYPES or "image_url" in node or (isinstance(mime, str) and mime.startswith("image/")):
            images += 1  # by bytes, id or URL alike: an image costs by its pixels
            continue
        if kind == "document" and isinstance(node.get("source"), dict):
            if node["source"].get("type") not in ("base64", "text", "content"):
                unbounded = unbounded or "a document by reference"
            continue
        for key, why in _BY_REFERENCE.items():
            ref = node.get(key)  # an id, URL or URI, or {"url": ...}; not a tool schema's property of that name
            if ref is not None and not (isinstance(ref, dict) and "url" not in ref):
                unbounded = unbounded or why
    return images, unbounded
