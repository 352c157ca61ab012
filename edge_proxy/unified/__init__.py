"""The unified API's translation layer: pure functions and stream translators, no HTTP.

OpenAI chat completions is the hub format. A request goes client format → OpenAI → provider format, and the
response comes back the same way, so Anthropic ↔ Gemini is two translators composed (`ChainStream` for streams):

| module | what |
|---|---|
| `anthropic.py` | OpenAI ⇄ Anthropic Messages: requests, responses, errors, streams, both directions |
| `anthropic_clients.py` | its `/v1/messages` half (Anthropic clients, OpenAI-format upstream), re-exported by it |
| `gemini.py` | OpenAI ⇄ Gemini generateContent: requests, responses, errors, SSE streams, both directions |
| `gemini_clients.py` | its Gemini-client half (`/v1/rewrite/google/…`), re-exported by it |
| `models.py` | `provider/model` names, provider guessing by prefix, the `fallbacks` list |
| `rewrite.py` | `/v1/rewrite/{client_format}/{provider_url}` parsing |

The provider's catalogue `usage_format` picks the translator: "openai" none, "anthropic" and "gemini" theirs.
Every stream translator has the same contract (`_common.StreamTranslator`): `feed(bytes) -> bytes`, then one
`finish(complete) -> bytes`; a cut upstream ends in one error event in the client's format, never a `[DONE]`.
Ids the upstream did not give come from an injectable `id_factory`; OpenAI's `created` is injectable too.
"""
from ._common import ChainStream, IdFactory, default_id, include_usage

__all__ = ["ChainStream", "IdFactory", "default_id", "include_usage"]
