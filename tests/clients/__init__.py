"""Real client libraries against a real gateway process and the fake provider (issue 18).

Each module drives one library (the openai and anthropic SDKs, LangChain, LiteLLM, and the Vercel AI SDK from
Node) over the routes it can use (`/v1` unified, `/providers/{name}`, `/v1/forward?u=`) for OpenAI, Anthropic and
Gemini models, and checks the answer the library hands back and the request-log row of every call
(`ledger.check_logged`).
"""
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"}
EMBEDDING_MODELS = {"openai": "text-embedding-3-small", "gemini": "gemini-embedding-001"}
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
           "required": ["city", "unit"], "additionalProperties": False}
WEATHER_ARGS = {"city": "fake", "unit": "c"}
PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}
PERSON_VALUE = {"name": "fake", "age": 1}

