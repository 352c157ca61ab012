"""The request path: one story for every proxied request, on every route.

1. **authenticate**: the router did it, by the permission table (`routes.py`), and hands over the principal;
2. **read** the body within its limit, and the request's metadata;
3. **plan** the attempts: one pass-through attempt for a forward route, up to six translated ones (the primary
   and its fallbacks) for a unified route; a bad request is refused here, before anything is sent, and so is one
   naming a stored object its merchant does not own on the operator's managed key (`ownership.py`);
4. for each attempt, in order: **admit** it under the spend key's policy, **reserve** the most it can cost
   from the payer, **forward** it. An attempt that fails before any byte of its answer went to the client
   (5xx, 429, unreachable, timed out) is logged and the next one is tried;
5. **relay** the answer, whole or streamed, translated or not (`relay.py`);
6. **settle and log**: every attempt ends in `Exchange.finish`, which puts its record on the log queue; the log
   writer prices it, bills it, writes it and releases its reservation.

Every error the gateway raises is answered once, as JSON in the route's format (`replies.py`). Anything else (a
bug) is answered with a JSON 500, its traceback goes to the server log, and the attempt is still logged once,
which also releases its reservation.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import (EndpointNotMetered, GatewayError, InvalidRequest, ServiceUnavailable, UpstreamTimedOut,
                      UpstreamUnreachable)
from ..headers import drop_key_param
from ..metadata import parse_metadata, split_metadata_param
from ..providers.catalogue import managed_endpoint, safe_target_path
from ..store.outage import is_outage, store_unavailable
from ..upstream import UpstreamError, UpstreamTimeout
from .body import read_body
from .exchange import Exchange
from .ownership import refuse_unowned
from .relay import BodyBroken, relay
from .replies import send_error

if TYPE_CHECKING:
    from granian.rsgi import Headers, HTTPProtocol, Scope

    from ..auth import Principal
    from ..services import Services
    from ..upstream import UpstreamResponse
    from .plan import Attempt, Plan

    Planner = Callable[[Services, Scope, Headers, str, bytes], Plan]
    RouteFormat = Callable[[Services, Scope], str | None]

log = logging.getLogger("edge_proxy")
FELL_BACK = "fell_back"  # the error_reason of an attempt that failed and was followed by the next one
_RETRYABLE = (UpstreamTimedOut, UpstreamUnreachable)


async def serve(svc: Services, scope: Scope, headers: Headers, proto: HTTPProtocol, principal: Principal,
                planner: Planner, route_format: RouteFormat) -> None:
    """Tell one request's story. ``headers`` is ``scope.headers``, read once by the app (Granian builds a new
    object at each read). ``route_format`` gives the route's error shape for a refusal before a plan exists (a
    plan knows its own); it runs only then."""
    ex = Exchange(svc, svc.request_ids.next(), principal, time.perf_counter())
    fmt = None
    plan = None
    try:
        try:
            query, meta = scope.query_string, None
            if query:  # most requests have no query string, so nothing to take `metadata=` out of
                query, meta = split_metadata_param(query)
            raw_meta = headers.get("x-lava-metadata")
            if raw_meta is not None:
                ex.metadata = parse_metadata(raw_meta, "x-lava-metadata")
            elif meta is not None:
                ex.metadata = parse_metadata(meta, "metadata")
            body = await read_body(proto, headers, svc.settings.max_body_bytes)
            plan = planner(svc, scope, headers, query, body)
            fmt = plan.error_format
            ex.attempt = plan.attempts[0]
            stored = False
            for attempt in plan.attempts:  # every attempt is priced and bounded before anything is sent
                scope_to_key(attempt, principal, plan.attempts[0])
                attempt.quote = svc.billing.quote(principal, attempt)
                stored |= attempt.reads_stored
            if stored:  # the stored responses it names on the managed key must be its merchant's
                await svc.owners.check(principal, plan.attempts, headers.get("content-encoding"))
        except GatewayError as exc:
            _fail(svc, proto, ex, exc, fmt if plan is not None else route_format(svc, scope))
            return
        last = len(plan.attempts) - 1
        for i, attempt in enumerate(plan.attempts):
            if i:
                ex = Exchange(svc, svc.request_ids.next(), principal, time.perf_counter(), ex.metadata)
                ex.attempt = attempt
            try:
                response = await _forward(svc, plan, attempt, ex)
                if i < last and (response.status >= 500 or response.status == 429):
                    response.abort()
                    ex.finish(response.status, "error", FELL_BACK)
                    continue
                await relay(proto, plan, attempt, ex, response)
                return
            except GatewayError as exc:
                if i < last and isinstance(exc, (*_RETRYABLE, BodyBroken)):
                    ex.finish(exc.status, "error", FELL_BACK)
                    continue
                _fail(svc, proto, ex, exc, fmt, attempt.label if plan.unified else None)
                return
    except BaseException as exc:
        # A store that did not answer, a bug or a cancellation: still log the attempt once, which also releases
        # its reservation.
        outage = is_outage(exc)
        ex.finish(503 if outage else 500, "error", "store_unavailable" if outage else "internal_error")
        if isinstance(exc, Exception):
            if outage:
                log.warning("store unreachable on %s %s (%s: %s)", scope.method, scope.path, type(exc).__name__, exc)
            else:
                log.exception("unhandled error on %s %s", scope.method, scope.path)
            if not ex.answered:
                svc.metrics.errors += 1
                send_error(proto, store_unavailable() if outage else GatewayError(), ex.request_id, fmt)
            return
        raise


def scope_to_key(attempt: Attempt, principal: Principal, first: Attempt) -> None:
    """What the key an attempt would be sent with may do. The operator's managed key serves only the endpoints the
    catalogue lists for it (the ones whose usage the gateway reads and prices), with no account-level header and
    no `key=` parameter of the caller's; a caller's own key (BYOK) belongs to one provider."""
    provider = attempt.provider
    if principal.provider_key is not None:
        if provider is not first.provider:
            raise InvalidRequest("fallbacks: a forward token's provider_key belongs to one provider; fallbacks to "
                                 "another provider need the gateway's managed key")
        safe_target_path(attempt.target.path)
        endpoint = managed_endpoint(provider, attempt.method, attempt.target.path)
        attempt.free = endpoint is not None and endpoint.free  # a token count is free on any key
        attempt.metered = endpoint is not None and not endpoint.free
        return
    if provider.managed_key is None:
        raise ServiceUnavailable(f"no managed key for provider {provider.name!r}: set EDGE_PROXY_PROVIDER_KEY_"
                                 f"{provider.env_name} or send provider_key in the forward token")
    endpoint = managed_endpoint(provider, attempt.method, attempt.target.path)
    if endpoint is None:
        raise EndpointNotMetered(f"the gateway's managed key for {provider.name!r} does not serve "
                                 f"{attempt.method} {attempt.target.path.split('?', 1)[0]}: only the endpoints whose "
                                 "usage it can meter; send your own key as provider_key (BYOK)")
    attempt.free = endpoint.free
    attempt.metered = not endpoint.free
    attempt.reads_stored = endpoint.reads_stored  # in the operator's project, shared by every merchant
    # the stored objects no merchant owns there; and the responses it names, for Owners.check
    attempt.stored_ids = refuse_unowned(endpoint.path, attempt.body, endpoint.reads_stored, attempt.bounds.parsed)
    path = attempt.target.path
    if "?" in path:
        kept = drop_key_param(path)
        if kept != path:
            attempt.target = dataclasses.replace(attempt.target, path=kept)


async def _forward(svc: Services, plan: Plan, attempt: Attempt, ex: Exchange) -> UpstreamResponse:
    """Admit, reserve and send one attempt; upstream failures become 502 (unreachable) and 504 (timed out)."""
    principal = ex.principal
    if principal.spend_key is not None:
        await svc.spend_keys.admit(principal.spend_key, attempt.provider.name, attempt.model, ex.request_id,
                                   attempt.quote.max_cost)
    assert principal.billing is not None  # every principal is billed somehow (auth.py)
    ex.reservation = await svc.billing.reserve(ex.request_id, principal.billing, attempt.quote)
    target = attempt.target
    headers = plan.upstream_headers(attempt, principal)
    if svc.tracer is not None:  # observability hook: the attempt's span, and its traceparent for the provider
        headers = svc.tracer.attempt_started(ex, attempt, headers)
    svc.log_queue.opened(ex)  # journaled before it is sent: if this process dies now, it is still billed
    ex.sent_at = time.perf_counter()
    try:
        response = await svc.upstream.request(attempt.method, target.scheme, target.host, target.port,
                                              target.path, headers, attempt.body)
    except UpstreamTimeout:
        raise UpstreamTimedOut() from None
    except UpstreamError:
        raise UpstreamUnreachable() from None
    ex.head_at = time.perf_counter()
    return response


def _fail(svc: Services, proto: HTTPProtocol, ex: Exchange, exc: GatewayError, fmt: str | None,
          label: str | None = None) -> None:
    svc.metrics.errors += 1
    if label is not None:
        exc.headers = [*exc.headers, ("x-edge-proxy-model", label)]
    ex.answered = True
    send_error(proto, exc, ex.request_id, fmt)
    ex.finish(exc.status, "error", exc.reason or exc.type)
