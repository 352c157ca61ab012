"""On the operator's managed key, a request may name only the stored state its own merchant made: its OpenAI responses.

Every merchant's stored responses live in the operator's one OpenAI project, which would let any of them continue
any other's conversation by its id. So before a request to an endpoint that reads stored state by id (the
catalogue's `reads_stored`: OpenAI's `POST /responses` and `/responses/input_tokens`) is sent on the managed key,
every id it names must belong to the caller's merchant:
- `previous_response_id`: a response the merchant owns;
- an input item's `id` (an `item_reference`, or an output item passed back, which OpenAI also reads from storage
  by its id): an output item of a response the merchant owns;
- `conversation`: never, as the managed key does not serve `/conversations`, so no merchant owns one.
Anything else (another merchant's id, an id nobody logged) is refused before anything is sent, as OpenAI answers an
id it does not know (404). A lookup the store cannot answer refuses the request too (503, the pipeline's).

Owners are remembered in a per-worker cache the moment an answer's ids are read (`remember`: the relay, then
`Exchange.finish`), and kept in the database with the request's log row (log_sinks/owners.py), so they outlive a
restart and are seen by every worker sharing the database once that row's batch is written. The caller's own key
(BYOK) is its own project: nothing here applies to it.

No merchant can own any other stored object on the managed key: it serves no `/files`, `/vector_stores`,
`/containers`, prompt, skill or cache endpoint, and no owner is kept for the containers and audio answers that
answers make (only for responses and their items). So a body naming one by id (`NEVER_OWNED`, per managed endpoint,
hence per provider) is refused before anything is sent (`refuse_unowned`, 400). Both checks read the body as the
provider does, so a body they read (its bytes hold one of their keys, or a `\\u` escape of a letter, digit or
underscore, which could spell one) is refused if any object in it repeats a key: our parser keeps the last, another
may keep the first. A body that is not a JSON object in UTF-8 (compressed, UTF-16) is refused by both (400), token
counts included, which billing does not read.
"""
from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from ..billing.bounds import has_word_escape
from ..errors import InvalidRequest, StoredObjectNotFound, StoredObjectRefused
from ..log_sinks import owners
from ..lru import TTLCache

if TYPE_CHECKING:
    from ..auth import Principal
    from ..store.db import Database
    from .plan import Attempt

CACHE_SIZE = 100_000  # ids: a few MB, many minutes of answers before an id has to be read back from the database
_FOREVER = float("inf")  # an owner never changes


StoredIds = tuple[str | None, str | None, list[str]]  # previous response, conversation, input items' ids


def _names_stored_state(body: bytes) -> bool:
    """Whether a JSON body shows an `id`, `previous_response_id` or `conversation` key as itself in quotes (not
    keys that merely end in `id`, as `call_id` or a tool parameter's `user_id`, common in agents' requests). The
    only other way to write one is a `\\u` escape of its letters, which `refuse_unowned` looks for anyway."""
    return b'"id"' in body or b'"previous_response_id"' in body or b'"conversation"' in body


def named_ids(doc: dict[str, Any]) -> StoredIds:
    """The previous response, conversation and input item ids a parsed Responses request names: a 400 for one of
    a type OpenAI does not take."""
    previous, conversation, items = doc.get("previous_response_id"), doc.get("conversation"), doc.get("input")
    if isinstance(conversation, dict):
        conversation = conversation.get("id")
    if not isinstance(items, list):
        items = [] if items is None or isinstance(items, str) else None
    if (items is None or not _is_id(previous) or not _is_id(conversation)
            or not all(isinstance(item, dict) and _is_id(item.get("id")) for item in items)):
        raise InvalidRequest("invalid request body: `previous_response_id`, `conversation` (or its `id`) and each "
                             "`input` item's `id` must be strings, `input` a string or a list of objects")
    return previous, conversation, [item["id"] for item in items if item.get("id") is not None]


def _is_id(value: Any) -> bool:
    return value is None or isinstance(value, str)


# The stored objects a managed endpoint's body can name by id that no merchant owns on the managed key: a key path
# (a list on the way stands for each of its elements) and what its value names. It is refused when that value is
# an id (a string) or a non-empty list of ids.
_FILES_AND_TOOLS = (
    ("prompt.id", "a stored prompt"),
    ("tools[].container", "a code interpreter container"),  # by id; `{"type": "auto"}` makes a new one
    ("tools[].container.file_ids", "stored files"),
    ("tools[].vector_store_ids", "vector stores"),
    ("tools[].input_image_mask.file_id", "a stored file"),
    ("input[].content[].file_id", "a stored file"),  # input_file, input_image
    ("input[].output[].file_id", "a stored file"),  # a tool output's parts, a computer call's screenshot
    ("input[].container_id", "a code interpreter container"),  # a code_interpreter_call passed back
)
_MESSAGES = (
    ("container", "a code execution container"),
    ("container.id", "a code execution container"),
    ("container.skills", "skills"),
    ("messages[].content[].source.file_id", "a stored file"),
    ("messages[].content[].file_id", "a stored file"),  # container_upload
    ("messages[].content[].content[].source.file_id", "a stored file"),  # in a tool result
    ("messages[].content[].source.content[].source.file_id", "a stored file"),  # in a document
)
_GEMINI = (  # Gemini reads both spellings of a key
    ("cachedContent", "a cached context"),
    ("cached_content", "a cached context"),
    ("tools[].fileSearch.fileSearchStoreNames", "file search stores"),
    ("tools[].file_search.file_search_store_names", "file search stores"),
)
NEVER_OWNED: dict[str, tuple[tuple[str, str], ...]] = {  # catalogue path (every provider serving it) -> key paths
    "/responses": _FILES_AND_TOOLS,  # OpenAI
    "/responses/input_tokens": _FILES_AND_TOOLS,
    "/chat/completions": (  # OpenAI and OpenAI-format providers
        ("messages[].content[].file.file_id", "a stored file"),
        ("messages[].content[].file_id", "a stored file"),  # Mistral's file chunk
        ("messages[].audio.id", "a stored audio answer"),  # an earlier audio answer, by id
        ("extra_body.google.cached_content", "a cached context"),  # Gemini's OpenAI-compatible API
    ),
    "/messages": _MESSAGES,  # Anthropic
    "/messages/count_tokens": _MESSAGES,
    "/models/{model}:generateContent": _GEMINI,  # Google
    "/models/{model}:streamGenerateContent": _GEMINI,
    "/models/{model}:countTokens": (*_GEMINI, ("generateContentRequest.cachedContent", "a cached context"),
                                    ("generate_content_request.cached_content", "a cached context")),
}
_PATHS = {endpoint: tuple((path, what, tuple(k.removesuffix("[]") for k in path.split(".")))
                          for path, what in rows) for endpoint, rows in NEVER_OWNED.items()}


def _marker(keys: list[tuple[str, ...]]) -> re.Pattern[bytes]:
    """What a body naming any of these key paths shows in its bytes, unless a `\\u` escape spells a key: the last key
    of each path other than the common `id`, as `"name"`. One expression, as its leading quote is found at memchr
    speed: several times faster than a search for each name."""
    names = dict.fromkeys(next(k for k in reversed(path) if k != "id") for path in keys)
    return re.compile(b'"(?:%s)"' % b"|".join(re.escape(name.encode()) for name in names))


_MARKERS = {endpoint: _marker([keys for _, _, keys in rows]) for endpoint, rows in _PATHS.items()}


def refuse_unowned(endpoint: str, body: bytes, reads_stored: bool, parsed: bool) -> StoredIds | None:
    """Refuse a body for a managed `endpoint` (its catalogue path) that names a stored object no merchant owns, or
    that repeats a key where it may name stored state, or that is not a JSON object (`parsed`, its bounds'): the
    checks read UTF-8 bytes, and a token count is free, so billing does not refuse it. Bodies without the markers
    are not parsed. For an endpoint that `reads_stored`, answers the ids the body names, for `Owners.check` (None
    when it names none): the body is parsed once for both checks."""
    markers = _MARKERS.get(endpoint)
    if markers is None and not reads_stored:
        return None  # an endpoint that reads no stored object (embeddings)
    if not parsed:  # UTF-16 or -32 (Python's json.loads reads them), compressed: the markers cannot show
        raise InvalidRequest("the request body is not a JSON object in UTF-8, so the gateway cannot check which "
                             "stored objects it names on its managed key; send your own key as provider_key (BYOK)")
    # a `\\u` escape of a letter, digit or underscore, the only escapes that can spell a key read here
    # (`"file\\u005fid"`); text a client's serializer escaped (`\\u00e9`, `\\u0416`, Go's `\\u003c`) is not one
    escaped = b"\\u00" in body and has_word_escape(body)
    named = markers is not None and markers.search(body) is not None
    if not (escaped or named or (reads_stored and _names_stored_state(body))):
        return None
    doc = _parse_unique(body)
    for path, what, keys in _PATHS.get(endpoint, ()):
        if _names(doc, keys):
            raise StoredObjectRefused(f"{path}: names {what}, which no merchant owns on the gateway's managed key; "
                                      "for stored files, containers, vector stores and prompts send your own key "
                                      "as provider_key (BYOK)", path)
    if not reads_stored:
        return None
    ids = named_ids(doc)
    return ids if ids[0] is not None or ids[1] is not None or ids[2] else None


def _parse_unique(body: bytes) -> Any:
    """The body, refusing a repeated key. A body with NaN or Infinity never gets here: its bounds say it is not
    JSON (`parsed`), as msgspec reads it."""
    try:
        return json.loads(body, object_pairs_hook=_unique)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InvalidRequest("request body is not valid JSON") from None


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise StoredObjectRefused(f"{key}: the key is repeated in one object; providers may read another "
                                          "occurrence than the gateway, so it cannot check which stored objects "
                                          "the request names", key)
            seen.add(key)
    return obj


def _names(doc: Any, keys: tuple[str, ...]) -> bool:
    """Whether `doc` holds an id or a non-empty list at the key path `keys`, through any list on the way."""
    nodes = [doc]
    for key in keys:
        nodes = [item[key] for node in nodes for item in (node if isinstance(node, list) else (node,))
                 if isinstance(item, dict) and key in item]
    return any(isinstance(v, str) or (isinstance(v, list) and v) for v in nodes)


class Owners:
    """Which merchant owns each response and output item id made on the managed key (see the module docstring)."""

    __slots__ = ("_db", "_cache")

    def __init__(self, db: Database, size: int = CACHE_SIZE) -> None:
        self._db = db
        self._cache: TTLCache[str, owners.Owner] = TTLCache(size, _FOREVER)

    def remember(self, caller: Principal, response_id: str, item_ids: str | None) -> None:
        """A managed answer's ids are its caller's from now on (its merchant's, and its customer's if a customer's
        forward token asked), in this worker; the database has them once the request's log row is written."""
        owner, cache = (caller.merchant_id, caller.customer_id), self._cache
        for object_id in (response_id, *(item_ids or "").split()):
            if cache.get(object_id) is None:  # the first owner stays, as in the database (log_sinks/owners.py)
                cache.put(object_id, owner)

    async def check(self, caller: Principal, attempts: list[Attempt], content_encoding: str | None) -> None:
        """Refuse a request whose `reads_stored` attempts name an id its caller does not own: another merchant's,
        or, for a customer's forward token, another customer's or the merchant's own (the merchant itself may
        name any of its customers')."""
        merchant_id, customer_id = caller.merchant_id, caller.customer_id
        if content_encoding not in (None, "", "identity"):
            raise InvalidRequest("content-encoding: the gateway must read which stored responses a request names "
                                 "on the managed key, so its body cannot be compressed")
        named = {id(a.body): a.stored_ids for a in attempts if a.stored_ids}  # fallbacks share the client's ids
        for previous, conversation, items in named.values():
            if previous is not None and not await self._owns(merchant_id, customer_id, previous):
                raise StoredObjectNotFound(f"Previous response with id '{previous}' not found.",
                                           "previous_response_id", "previous_response_not_found")
            if conversation is not None:
                raise StoredObjectNotFound(f"Conversation with id '{conversation}' not found.", "conversation")
            for item_id in items:
                if not await self._owns(merchant_id, customer_id, item_id):
                    raise StoredObjectNotFound(f"Item with id '{item_id}' not found.", "input")

    async def _owns(self, merchant_id: str, customer_id: str | None, object_id: str) -> bool:
        owner = self._cache.get(object_id)
        if owner is None:
            if "\x00" in object_id:  # never an id (PostgreSQL's text cannot hold one): not a lookup's 500
                return False
            owner = await owners.owner(self._db, object_id)
            if owner is None:  # not logged yet (another worker's answer, its batch not written) or not a response
                return False
            self._cache.put(object_id, owner)
        return owner[0] == merchant_id and (customer_id is None or owner[1] == customer_id)
