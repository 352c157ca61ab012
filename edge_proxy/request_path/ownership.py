"""On the operator's managed key, a request may name only the stored OpenAI responses of its own merchant.

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
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from ..errors import InvalidRequest, StoredObjectNotFound
from ..log_sinks import owners
from ..lru import TTLCache

if TYPE_CHECKING:
    from ..store.db import Database
    from .plan import Attempt

CACHE_SIZE = 100_000  # ids: a few MB, many minutes of answers before an id has to be read back from the database
_FOREVER = float("inf")  # an owner never changes


class _Conversation(msgspec.Struct, gc=False):
    id: str | None = None


class _Item(msgspec.Struct, gc=False):
    id: str | None = None


class _Named(msgspec.Struct, gc=False):
    """The fields of a Responses request that name stored objects; msgspec skips everything else."""

    previous_response_id: str | None = None
    conversation: str | _Conversation | None = None
    input: str | list[_Item] | None = None


_decode = msgspec.json.Decoder(_Named).decode


def may_name_stored(body: bytes) -> bool:
    """Whether a JSON body may have an `id`, `previous_response_id` or `conversation` key: without a `\\u` escape
    (the only way to write a key's letters other than as themselves) such a key shows as `id"` or
    `conversation"`. Most bodies have neither and are not decoded."""
    return b'id"' in body or b'conversation"' in body or b"\\u" in body


def named_ids(body: bytes) -> tuple[str | None, str | None, list[str]]:
    """The previous response, conversation and input item ids a Responses request body names."""
    try:
        named = _decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid request body: {exc}") from None
    except msgspec.DecodeError:
        raise InvalidRequest("request body is not valid JSON") from None
    conversation = named.conversation
    if isinstance(conversation, _Conversation):
        conversation = conversation.id
    items = named.input if isinstance(named.input, list) else ()
    return named.previous_response_id, conversation, [item.id for item in items if item.id is not None]


class Owners:
    """Which merchant owns each response and output item id made on the managed key (see the module docstring)."""

    __slots__ = ("_db", "_cache")

    def __init__(self, db: Database, size: int = CACHE_SIZE) -> None:
        self._db = db
        self._cache: TTLCache[str, str] = TTLCache(size, _FOREVER)

    def remember(self, merchant_id: str, response_id: str, item_ids: str | None) -> None:
        """A managed answer's ids are its merchant's from now on, in this worker (the database has them once the
        request's log row is written)."""
        self._cache.put(response_id, merchant_id)
        for item_id in (item_ids or "").split():
            self._cache.put(item_id, merchant_id)

    async def check(self, merchant_id: str, attempts: list[Attempt], content_encoding: str | None) -> None:
        """Refuse a request whose `reads_stored` attempts name an id its merchant does not own."""
        if content_encoding not in (None, "", "identity"):
            raise InvalidRequest("content-encoding: the gateway must read which stored responses a request names "
                                 "on the managed key, so its body cannot be compressed")
        bodies = {id(a.body): a.body for a in attempts if a.reads_stored}  # fallbacks share the client's ids
        for body in bodies.values():
            if not may_name_stored(body):
                continue
            previous, conversation, items = named_ids(body)
            if previous is not None and not await self._owns(merchant_id, previous):
                raise StoredObjectNotFound(f"Previous response with id '{previous}' not found.",
                                           "previous_response_id", "previous_response_not_found")
            if conversation is not None:
                raise StoredObjectNotFound(f"Conversation with id '{conversation}' not found.", "conversation")
            for item_id in items:
                if not await self._owns(merchant_id, item_id):
                    raise StoredObjectNotFound(f"Item with id '{item_id}' not found.", "input")

    async def _owns(self, merchant_id: str, object_id: str) -> bool:
        owner = self._cache.get(object_id)
        if owner is None:
            owner = await owners.owner(self._db, object_id)
            if owner is None:  # not logged yet (another worker's answer, its batch not written) or not a response
                return False
            self._cache.put(object_id, owner)
        return owner == merchant_id
