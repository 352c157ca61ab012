"""A model's family, for metric labels: a short, fixed list of names, so a series per model cannot grow without bound.

A caller may send any model string; labelling series by it would let one client create unlimited time series.
The family is the longest known prefix of the model name (after any `vendor/` part), and "other" when none fits.
"""
from __future__ import annotations

OTHER = "other"

# Longest prefix first within a group does not matter: `family()` takes the longest match.
_FAMILIES = (
    "gpt-5", "gpt-4.1", "gpt-4o", "gpt-4", "gpt-3.5", "gpt-oss", "o1", "o3", "o4", "chatgpt", "text-embedding",
    "whisper", "tts", "dall-e", "gpt-image", "omni-moderation", "text-moderation",
    "claude-opus", "claude-sonnet", "claude-haiku", "claude-3-7", "claude-3-5", "claude-3", "claude",
    "gemini-3", "gemini-2.5", "gemini-2.0", "gemini-1.5", "gemini", "gemma",
    "mistral", "mixtral", "codestral", "ministral", "magistral", "pixtral", "devstral",
    "llama-4", "llama-3", "llama", "deepseek", "grok", "qwen", "command", "embed", "rerank",
    "kimi", "moonshot", "glm", "phi", "nemotron", "eleven", "sonar",
    "fake",  # the test suite's fake provider
)
_BY_LENGTH = tuple(sorted(_FAMILIES, key=len, reverse=True))
_CACHE_LIMIT = 4096


class Families:
    """Model name -> family, memoised (a bounded dict: past its limit, new names are worked out each time)."""

    __slots__ = ("_known",)

    def __init__(self) -> None:
        self._known: dict[str, str] = {}

    def __call__(self, model: str | None) -> str:
        if not model:
            return OTHER
        known = self._known.get(model)
        if known is not None:
            return known
        found = family(model)
        if len(self._known) < _CACHE_LIMIT:
            self._known[model] = found
        return found


def family(model: str) -> str:
    name = model.lower().rsplit("/", 1)[-1].removeprefix("models/")
    for prefix in _BY_LENGTH:
        if name.startswith(prefix):
            return prefix
    return OTHER


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "other"
