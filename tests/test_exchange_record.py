"""The record `Exchange.finish` logs (request_path/exchange.py), built in one positional call.

finish passes every field of `RequestRecord` by position, so its order is pinned here: a field inserted or moved
without updating finish fails the first test. The table then finishes representative exchanges against a real
journal and checks that the record, and the journal line, equal a record built by keywords from the same facts
(the rule as it stood before the positional call: a blank record, the provider's counts, the estimate's, the price).
"""
from __future__ import annotations

import functools
import types

import msgspec
import pytest

from edge_proxy.auth import Principal
from edge_proxy.billing.charging import Billing
from edge_proxy.billing.engine import NOTHING, Reservation
from edge_proxy.metering.estimate import Billed, billed_usage
from edge_proxy.metering.journal import Journal
from edge_proxy.metering import opened as opened_module
from edge_proxy.metering.log_queue import LogQueue
from edge_proxy.metering.opened import Opened, opened_line
from edge_proxy.metering.pricing import PriceTable
from edge_proxy.metering.record import RequestRecord
from edge_proxy.metering.usage import StreamScanner, usage_from_body
from edge_proxy.metering.usage_types import Usage
from edge_proxy.request_path import exchange as exchange_module
from edge_proxy.request_path.exchange import Exchange
from edge_proxy.request_path.plan import Attempt
from edge_proxy.services import Services

# The order Exchange.finish passes the fields in. Change it only together with that call.
FINISH_ORDER = (
    "request_id", "created_at", "merchant_id", "customer_id", "meter_slug", "meter_id", "provider",
    "provider_key_type", "model", "endpoint", "stream", "status_code", "outcome", "error_reason", "input_tokens",
    "output_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens", "cache_write_1h_tokens",
    "input_audio_tokens", "cached_audio_tokens", "output_audio_tokens", "input_characters", "output_characters",
    "input_seconds", "output_seconds", "usage_source", "cost_nanos", "input_cost_nanos", "output_cost_nanos",
    "priced", "charge_nanos", "charge_rate", "payer", "reserved_nanos", "hold_id", "spend_key_id", "latency_ms",
    "overhead_ms", "metadata", "response_id", "operator_nanos", "uncollected_nanos", "merchant_reserved_nanos",
    "merchant_hold_id", "region", "free", "output_item_ids",
)
# every token count a scanner's Usage carries goes on the record under its own name (content_events counts
# stream events, not tokens: the estimate reads it, the record does not carry it)
USAGE_COUNTS = tuple(f.name for f in msgspec.structs.fields(Usage) if f.type is int and f.name != "content_events")

NOW_ISO = "2026-12-04T12:00:00.000Z"
STARTED, SENT, HEAD, REPLIED, ENDED = 100.0, 100.0015, 100.25, 100.2504, 100.75  # perf_counter seconds

OPENAI_BODY = (b'{"id":"chatcmpl-1","model":"gpt-4o-mini-2024-07-18","choices":[{"message":{"content":"hi"}}],'
               b'"usage":{"prompt_tokens":120,"completion_tokens":30,"total_tokens":150,'
               b'"prompt_tokens_details":{"cached_tokens":64,"audio_tokens":7},'
               b'"completion_tokens_details":{"reasoning_tokens":5,"audio_tokens":3}}}')
ANTHROPIC_STREAM = [
    b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-3-5-haiku-20241022",'
    b'"usage":{"input_tokens":40,"output_tokens":1,"cache_read_input_tokens":100,'
    b'"cache_creation_input_tokens":50,"cache_creation":{"ephemeral_5m_input_tokens":20,'
    b'"ephemeral_1h_input_tokens":30}}}}\n\n',
    b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"text_delta","text":"a"}}\n\n',
    b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":17}}\n\n',
]
OPENAI_CUT_STREAM = [b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n'] * 6  # no usage chunk: cut, or no
# include_usage


def stream_usage(fmt: str, chunks: list[bytes]) -> Usage:
    scanner = StreamScanner(fmt)
    for chunk in chunks:
        scanner.feed(chunk)
    return scanner.result()


def lease(hold_id: str) -> types.SimpleNamespace:
    return types.SimpleNamespace(hold_id=hold_id)


def provider(name: str, usage_format: str) -> types.SimpleNamespace:
    return types.SimpleNamespace(name=name, usage_format=usage_format)


def attempt(name: str, fmt: str, model: str | None, path: str, body: bytes = b'{"messages":[]}' * 20, *,
            stream: bool = False, free: bool = False, input_estimate: int | None = None) -> Attempt:
    a = Attempt(provider(name, fmt), types.SimpleNamespace(path=path), model, body, None,  # type: ignore[arg-type]
                stream=stream)
    a.free, a.input_estimate = free, input_estimate
    return a


MERCHANT = Principal(merchant_id="mer_1", secret_key_id="sk_1", billing=Billing("merchant", "mer_1", merchant_id="mer_1"))
CUSTOMER = Principal(merchant_id="mer_1", secret_key_id="sk_2", customer_id="cus_1", meter_slug="chat",
                     billing=Billing("customer", "cus_1", merchant_id="mer_1"),
                     spend_key=types.SimpleNamespace(spend_key_id="spk_1"))  # type: ignore[arg-type]
BYOK = Principal(merchant_id="mer_2", secret_key_id="sk_3", provider_key="sk-own", disable_billing=True,
                 billing=Billing("none", None, merchant_id="mer_2"))
CUSTOMER_HELD = Reservation(payer=lease("hold_cus"), payer_nanos=5_000, merchant=lease("hold_mer"),  # type: ignore[arg-type]
                            merchant_nanos=7_000)
MERCHANT_HELD = Reservation(payer=lease("hold_mer"), payer_nanos=9_000)  # type: ignore[arg-type]


class Case(msgspec.Struct):
    principal: Principal
    attempt: Attempt | None
    usage: Usage | None
    status: int
    outcome: str
    reason: str | None = None
    stream: bool = False
    sent: bool = True
    replied: bool = True
    held: Reservation = NOTHING
    metadata: dict[str, str] | None = None


def every_count() -> Usage:
    """A usage whose every token count is different, so a count carried to the wrong field shows."""
    return Usage(**{name: 11 * (i + 1) for i, name in enumerate(USAGE_COUNTS)}, model="gpt-4o-mini", found=True,
                 final=True)


CASES = {
    "a merchant key's answer, priced from the provider's counts":
        Case(MERCHANT, attempt("openai", "openai", "gpt-4o-mini", "/v1/chat/completions"),
             usage_from_body("openai", OPENAI_BODY), 200, "completed", held=MERCHANT_HELD),
    "a customer token's stream, held on both wallets, with 1-hour cache writes and metadata":
        Case(CUSTOMER, attempt("anthropic", "anthropic", "claude-3-5-haiku-20241022", "/v1/messages?beta=true",
                               stream=True), stream_usage("anthropic", ANTHROPIC_STREAM), 200, "completed",
             stream=True, held=CUSTOMER_HELD, metadata={"user": "u1", "team": "t"}),
    "a stream the client left is estimated from its content events":
        Case(CUSTOMER, attempt("openai", "openai", "gpt-4o-mini", "/v1/chat/completions", stream=True),
             stream_usage("openai", OPENAI_CUT_STREAM), 200, "partial", stream=True, held=CUSTOMER_HELD),
    "a stream the provider cut is an error with the usage that passed":
        Case(MERCHANT, attempt("openai", "openai", "gpt-4o-mini", "/v1/chat/completions", stream=True),
             stream_usage("openai", OPENAI_CUT_STREAM), 200, "error", "upstream_interrupted", stream=True),
    "an answer without usage is logged with none":
        Case(MERCHANT, attempt("openai", "openai", "gpt-4o-mini", "/v1/chat/completions"), None, 200, "completed"),
    "a provider error without usage, on a BYOK key":
        Case(BYOK, attempt("openai", "openai", "gpt-4o-mini", "/v1/chat/completions"), Usage(), 502, "error",
             "provider_status_502"),
    "a model without a price stays unpriced":
        Case(MERCHANT, attempt("openai", "openai", "no-such-model-xyz", "/v1/chat/completions"),
             Usage(10, 5, found=True, final=True), 200, "completed"),
    "a free endpoint is priced at nothing":
        Case(MERCHANT, attempt("openai", "openai", "gpt-4o-mini", "/v1/count_tokens", free=True),
             Usage(10, 0, found=True, final=True), 200, "completed"),
    "an answer without counts is billed the planner's input estimate":
        Case(MERCHANT, attempt("google", "gemini", "text-embedding-004", "/v1beta/models/x:embedContent",
                               input_estimate=321), Usage(), 200, "completed"),
    "every token count the provider sent reaches the record":
        Case(MERCHANT, attempt("openai", "openai", "gpt-4o", "/v1/chat/completions"), every_count(), 200,
             "completed"),
    "a refusal before anything was sent is logged unused and unpriced":
        Case(CUSTOMER, attempt("openai", "openai", "gpt-4o-mini", "/v1/chat/completions"), every_count(), 402,
             "error", "insufficient_balance", sent=False, replied=True),
    "an error before an attempt was planned":
        Case(MERCHANT, None, None, 400, "error", "invalid_request", sent=False, replied=False),
    # the edges of billed_usage's provider rule, as finish applies it
    "a final count from a provider whose usage format is none is not billed":
        Case(MERCHANT, attempt("openai", "none", "gpt-4o-mini", "/v1/chat/completions"),
             Usage(10, 5, found=True, final=True), 200, "completed"),
    "a stream's final count is the provider's, not its content events":
        Case(MERCHANT, attempt("openai", "openai", "gpt-4o-mini", "/v1/chat/completions", stream=True),
             Usage(10, 5, 2, found=True, final=True, content_events=50), 200, "completed", stream=True),
    "a final count beats the planner's input estimate":
        Case(MERCHANT, attempt("google", "gemini", "text-embedding-004", "/v1beta/models/x:embedContent",
                               input_estimate=321), Usage(10, 0, found=True, final=True), 200, "completed"),
    "a final count on a provider error status is the provider's":
        Case(MERCHANT, attempt("openai", "openai", "gpt-4o-mini", "/v1/chat/completions"),
             Usage(7, 0, found=True, final=True), 500, "error", "provider_status_500"),
    "a final flag without found usage goes by the rule (none)":
        Case(MERCHANT, attempt("openai", "openai", "gpt-4o-mini", "/v1/chat/completions"),
             Usage(final=True), 200, "completed"),
    "a final flag without found usage goes by the rule (the input estimate)":
        Case(MERCHANT, attempt("google", "gemini", "text-embedding-004", "/v1beta/models/x:embedContent",
                               input_estimate=321), Usage(final=True), 200, "completed"),
}


@pytest.fixture(scope="module")
def prices() -> PriceTable:
    return PriceTable.load()


@pytest.fixture
def world(tmp_path, prices, monkeypatch):
    """A real log queue over a real journal, the real pricing, and a clock that stands still."""
    journal = Journal(tmp_path)
    journal.open()

    async def commit(request_ids: list[str], lines: list[bytes]) -> None:
        raise AssertionError("nothing is committed here")

    queue = LogQueue(journal, commit)
    finished: list[RequestRecord] = []
    svc = types.SimpleNamespace(settings=types.SimpleNamespace(region="eu-west"), log_queue=queue, prices=prices,
                                observability=types.SimpleNamespace(finished=lambda ex, r: finished.append(r)))
    svc.price = functools.partial(Services.price, types.SimpleNamespace(prices=prices))
    monkeypatch.setattr(exchange_module, "now_iso", lambda: NOW_ISO)
    monkeypatch.setattr(exchange_module.time, "perf_counter", lambda: ENDED)
    yield svc, queue, finished
    journal.close()


def exchange(svc, case: Case, request_id: str = "req_1") -> Exchange:
    ex = Exchange(svc, request_id, case.principal, STARTED, case.metadata)
    ex.attempt, ex.usage, ex.stream, ex.reservation = case.attempt, case.usage, case.stream, case.held
    if case.sent:
        ex.sent_at, ex.head_at = SENT, HEAD
    if case.replied:
        ex.replied_at = REPLIED if case.sent else STARTED + 0.0007
        ex.answered = True
    return ex


def by_keywords(svc, ex: Exchange, status: int, outcome: str, reason: str | None) -> RequestRecord:
    """The record of a finished exchange, built the plain way: keywords, then the counts, then the price."""
    p, a, held = ex.principal, ex.attempt, ex.reservation
    fields = {
        "request_id": ex.request_id, "created_at": NOW_ISO, "merchant_id": p.merchant_id,
        "customer_id": p.customer_id, "meter_slug": p.meter_slug,
        "provider_key_type": "unmanaged" if p.provider_key else "managed", "stream": ex.stream,
        "status_code": status, "outcome": outcome, "error_reason": reason,
        "latency_ms": round((ENDED - ex.started) * 1e6) / 1000,
        "overhead_ms": round(ex.overhead(ex.replied_at) * 1e6) / 1000 if ex.replied_at else 0.0,
        "metadata": ex.metadata, "payer": p.billing.payer_kind if p.billing else "merchant",
        "reserved_nanos": held.payer_nanos, "hold_id": held.payer.hold_id if held.payer else None,
        "merchant_reserved_nanos": held.merchant_nanos,
        "merchant_hold_id": held.merchant.hold_id if held.merchant else None,
        "spend_key_id": p.spend_key.spend_key_id if p.spend_key else None, "region": svc.settings.region,
        "usage_source": "none",
    }
    if a is not None:
        fields.update(provider=a.provider.name, endpoint=a.target.path.split("?", 1)[0], model=a.model, free=a.free)
    if ex.sent_at:
        usage = ex.usage or Usage()
        if usage.found:
            fields.update({name: getattr(usage, name) for name in USAGE_COUNTS})
            if usage.model:
                fields["model"] = usage.model
        billed = billed_usage(usage, fmt=a.provider.usage_format if a else "none", stream=ex.stream, status=status,
                              request_bytes=len(a.body) if a else 0, input_estimate=a.input_estimate if a else None)
        fields.update({f.name: getattr(billed, f.name) for f in msgspec.structs.fields(Billed)})
    record = RequestRecord(**fields)
    if ex.sent_at:
        svc.price(record)
    return record


def test_finish_passes_the_fields_in_the_records_order():
    assert RequestRecord.__struct_fields__ == FINISH_ORDER, (
        "Exchange.finish builds RequestRecord positionally: a field inserted or moved needs its place in that call "
        "(and in FINISH_ORDER); a new field at the end needs it only if finish sets it")
    values = tuple(range(len(FINISH_ORDER)))  # not kw_only: every field can be passed by position, in this order
    assert msgspec.structs.astuple(RequestRecord(*values)) == values


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_finish_logs_the_record_a_keyword_build_gives(world, case):
    svc, queue, finished = world
    ex = exchange(svc, case)
    ex.finish(case.status, case.outcome, case.reason)
    expected = by_keywords(svc, exchange(svc, case), case.status, case.outcome, case.reason)
    [record] = finished
    assert msgspec.structs.asdict(record) == msgspec.structs.asdict(expected)
    assert record == expected
    [(request_id, line, segment)] = queue._queue
    assert request_id == "req_1" and segment is not None
    assert line == msgspec.json.encode(expected) + b"\n"  # the journal line, to the byte


def test_the_cases_cover_what_finish_decides(prices):
    """The table is worth something only if its rows reach every branch: priced and not, free, estimated, none,
    provider counts, a customer's holds, nothing sent."""
    records: list[RequestRecord] = []
    svc = types.SimpleNamespace(settings=types.SimpleNamespace(region=None), prices=prices,
                                log_queue=types.SimpleNamespace(put=records.append),
                                observability=types.SimpleNamespace(finished=lambda ex, r: None),
                                price=functools.partial(Services.price, types.SimpleNamespace(prices=prices)))
    for case in CASES.values():
        exchange(svc, case).finish(case.status, case.outcome, case.reason)
    assert {r.usage_source for r in records} == {"provider", "estimated", "none"}
    assert {(r.priced, r.free) for r in records} == {(True, False), (False, False), (True, True)}
    assert any(r.merchant_hold_id and r.hold_id and r.spend_key_id and r.metadata for r in records)
    assert any(r.cache_write_1h_tokens and r.input_audio_tokens and r.cached_audio_tokens and r.output_audio_tokens
               for r in records)
    assert any(r.provider is None for r in records)


def test_a_customer_stream_record_to_the_byte(world):
    """One record pinned as bytes: what the journal, the writer and the log store read."""
    svc, queue, _ = world
    case = CASES["a customer token's stream, held on both wallets, with 1-hour cache writes and metadata"]
    exchange(svc, case).finish(case.status, case.outcome, case.reason)
    [(_, line, _)] = queue._queue
    cost = msgspec.json.decode(line)
    assert cost["priced"] is True and cost["cost_nanos"] > 0  # the price is the price table's: not pinned here
    assert line == (
        b'{"request_id":"req_1","created_at":"2026-12-04T12:00:00.000Z","merchant_id":"mer_1","customer_id":"cus_1",'
        b'"meter_slug":"chat","provider":"anthropic","model":"claude-3-5-haiku-20241022","endpoint":"/v1/messages",'
        b'"stream":true,"status_code":200,"input_tokens":190,"output_tokens":17,"cached_tokens":100,'
        b'"cache_write_tokens":50,"cache_write_1h_tokens":30,'
        + b'"cost_nanos":%d,"input_cost_nanos":%d,"output_cost_nanos":%d,"priced":true,'
        % (cost["cost_nanos"], cost["input_cost_nanos"], cost["output_cost_nanos"])
        + b'"payer":"customer","reserved_nanos":5000,"hold_id":"hold_cus","spend_key_id":"spk_1","latency_ms":750.0,'
        b'"overhead_ms":1.9,"metadata":{"user":"u1","team":"t"},"merchant_reserved_nanos":7000,'
        b'"merchant_hold_id":"hold_mer","region":"eu-west"}\n')


def test_the_opened_line_is_the_opened_entry_and_its_newline(monkeypatch):
    """The opened line is a tuple encoded with its newline in one call: the same bytes as the `Opened` entry the
    replay decodes, plus a newline."""
    monkeypatch.setattr(opened_module.time, "time", lambda: 1764849600.25)
    for case in CASES.values():
        if case.attempt is None:
            continue
        svc = types.SimpleNamespace(settings=types.SimpleNamespace(region="eu-west"))
        ex, p, a, held = exchange(svc, case), case.principal, case.attempt, case.held
        entry = Opened(
            "req_1", 1764849600.25, p.merchant_id, p.customer_id, p.meter_slug,
            p.billing.payer_kind if p.billing else "merchant", "unmanaged" if p.provider_key else "managed",
            p.spend_key.spend_key_id if p.spend_key else None, held.payer.hold_id if held.payer else None,
            held.payer_nanos, held.merchant.hold_id if held.merchant else None, held.merchant_nanos, a.provider.name,
            a.model, a.target.path, a.stream, len(a.body), a.free, "eu-west", case.metadata)
        assert opened_line(ex) == msgspec.json.encode(entry) + b"\n"
