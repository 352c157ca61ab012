"""Issue 16, the operator's half: one /metrics for the whole gateway, OpenTelemetry traces, the access log.

Real processes throughout: a 4-worker Granian gateway, the fake provider, and a real OTLP/HTTP receiver that
decodes the protobuf the official exporter sends. Waits are bounded polls for something to arrive, never a
timed assertion."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from edge_proxy.forward_token import encode_forward_token
from edge_proxy.observability.families import OTHER, family, status_class
from edge_proxy.observability.publisher import prepare_multiprocess_dir
from edge_proxy.settings import Settings

from .gateway_process import ROOT, GatewayProcess, base_env
from .otlp_receiver import OTLPReceiver
from .test_missing_drivers import clean_env, run_hidden

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello from my agent!"}]}
FORWARD = "/providers/openai/v1/chat/completions"
DASHBOARD = ROOT / "deploy" / "grafana" / "edge-proxy.json"
SPAN_KIND_SERVER, SPAN_KIND_CLIENT = 2, 3


def scrape(gw: GatewayProcess) -> str:
    r = httpx.get(gw.url + "/metrics", timeout=10)
    assert r.status_code == 200
    return r.text


def total(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    out = 0.0
    for found in re.finditer(rf"^{name}{{([^}}]*)}} (\S+)$", text, re.M):
        have = dict(re.findall(r'(\w+)="([^"]*)"', found.group(1)))
        if all(have.get(k) == v for k, v in labels.items()):
            out += float(found.group(2))
    return out


def wait_for(what, timeout: float = 30.0):
    """Poll until `what()` is truthy (bounded: the test fails, it never hangs)."""
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got:
            return got
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def send(gw: GatewayProcess, token: str, body: dict | None = None) -> httpx.Response:
    r = httpx.post(gw.url + FORWARD, json=body or CHAT, headers={"Authorization": f"Bearer {token}"}, timeout=15)
    return r


# -- /metrics from a 4-worker gateway -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def four_workers(fake, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics4")
    env = base_env(tmp / "g.db", fake.url, {"EDGE_PROXY_REGION": "eu-test"})
    gw = GatewayProcess(env, workers=4).start(tmp)
    yield gw
    gw.stop()


def test_any_worker_reports_the_whole_gateway(four_workers):
    gw = four_workers
    token = encode_forward_token(gw.secret_key)
    sent, prompt, completion = 40, 0, 0
    for _ in range(sent):
        r = send(gw, token)
        assert r.status_code == 200, r.text
        prompt += r.json()["usage"]["prompt_tokens"]
        completion += r.json()["usage"]["completion_tokens"]
    ok = {"provider": "openai", "model": "gpt-4o", "status": "2xx", "region": "eu-test"}
    # the other workers publish a few times a second: wait until all 40 are in, then every scrape, whichever
    # worker answers it, reports exactly 40
    wait_for(lambda: total(scrape(gw), "edge_proxy_requests_total", **ok) == sent)
    for _ in range(12):
        text = scrape(gw)
        assert total(text, "edge_proxy_requests_total", **ok) == sent
        assert total(text, "edge_proxy_requests_total") == sent
        assert total(text, "edge_proxy_tokens_total", kind="input", region="eu-test") == prompt
        assert total(text, "edge_proxy_tokens_total", kind="output", region="eu-test") == completion
        assert total(text, "edge_proxy_request_duration_seconds_count", provider="openai") == sent
        assert total(text, "edge_proxy_upstream_seconds_count", provider="openai") == sent
        assert total(text, "edge_proxy_cost_usd_total", provider="openai") > 0
        assert "pid=" not in text


def test_business_metrics_count_refusals_and_settled_charges(four_workers):
    gw = four_workers
    before = scrape(gw)
    # one request that is charged, so that this test does not rely on another having run first on its xdist worker
    assert send(gw, encode_forward_token(gw.secret_key)).status_code == 200
    broke = gw.create_merchant("broke", "0")  # its wallet cannot cover a request: 402
    r = send(gw, encode_forward_token(broke["secret_key"]))
    assert r.status_code == 402, r.text
    made = httpx.post(f"{gw.url}/v1/spend_keys", headers={"Authorization": f"Bearer {gw.secret_key}"}, timeout=10,
                      json={"name": "tiny", "spend_limit": {"amount": "0.000000001", "cycle": "daily"}})
    assert made.status_code == 201, made.text
    r = send(gw, made.json()["key"])  # the request's most cost is past the key's limit: 402 spend_limit_reached
    assert r.status_code == 402 and r.json()["error"]["type"] == "spend_limit_reached", r.text
    wait_for(lambda: total(scrape(gw), "edge_proxy_payment_required_total")
             == total(before, "edge_proxy_payment_required_total") + 2)
    wait_for(lambda: total(scrape(gw), "edge_proxy_spend_limit_refusals_total")
             == total(before, "edge_proxy_spend_limit_refusals_total") + 1)
    # what the first request was charged settles through the log writer: the charge counter follows
    wait_for(lambda: total(scrape(gw), "edge_proxy_charge_usd_total", region="eu-test") > 0)
    text = scrape(gw)
    assert total(text, "edge_proxy_log_queue_depth") >= 0
    assert re.search(r'^edge_proxy_webhook_deliveries_owed\{region="eu-test"\} 0\.0$', text, re.M)
    assert total(text, "edge_proxy_requests_total", status="4xx") == 2  # the two refusals, and only them


def test_the_grafana_dashboard_reads_only_metrics_the_gateway_exports(four_workers):
    gw = four_workers
    send(gw, encode_forward_token(gw.secret_key))
    exported = set(re.findall(r"^(edge_proxy_\w+)[{ ]", scrape(gw), re.M))
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for row in dashboard["panels"] for p in [row, *row.get("panels", [])]]
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    assert len(exprs) >= 10
    for expr in exprs:
        names = re.findall(r"\bedge_proxy_\w+", expr)
        assert names, expr
        for name in names:
            assert name in exported, f"{name} (in {expr!r}) is not exported"


# -- traces ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def receiver():
    server = OTLPReceiver().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def traced(fake, receiver, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("traced")
    env = base_env(tmp / "g.db", fake.url, {"EDGE_PROXY_OTEL_ENDPOINT": receiver.url,
                                            "OTEL_BSP_SCHEDULE_DELAY": "100",  # the SDK's batch interval, in ms
                                            "EDGE_PROXY_ACCESS_LOG": "1",
                                            "EDGE_PROXY_ACCESS_LOG_FILE": str(tmp / "access.jsonl")})
    gw = GatewayProcess(env, workers=2).start(tmp)
    gw.access_log = tmp / "access.jsonl"  # type: ignore[attr-defined]
    yield gw
    gw.stop()


def spans_of(receiver: OTLPReceiver, trace_id: str, n: int) -> list:
    return wait_for(lambda: len(got := [s for s in receiver.spans if s.trace_id == trace_id]) >= n and got)


def test_a_request_is_a_server_span_with_a_client_span_per_attempt(traced, receiver, fake):
    gw = traced
    body = {"model": "anthropic/fake-error-500", "messages": CHAT["messages"],
            "fallbacks": [{"url": "api.openai.com/v1/chat/completions", "model": "gpt-4o-mini"}]}
    r = httpx.post(gw.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {gw.secret_key}"},
                   timeout=15)
    assert r.status_code == 200, r.text
    seen = [x for x in fake.received if x.header("traceparent")]
    first, second = seen[-2], seen[-1]  # the primary (500) and the fallback that answered
    trace_id = second.header("traceparent").split("-")[1]
    spans = spans_of(receiver, trace_id, 3)
    [request] = [s for s in spans if s.kind == SPAN_KIND_SERVER]
    attempts = [s for s in spans if s.kind == SPAN_KIND_CLIENT]
    assert len(attempts) == 2 and request.parent_span_id == ""
    assert all(a.parent_span_id == request.span_id for a in attempts)  # both attempts: children of the request
    by_system = {s.attributes["gen_ai.system"]: s for s in attempts}
    failed, answered = by_system["anthropic"], by_system["openai"]
    # each provider received its own attempt span's traceparent (flags: sampled, and W3C level 2's random id)
    assert re.fullmatch(f"00-{trace_id}-{failed.span_id}-0[13]", first.header("traceparent"))
    assert re.fullmatch(f"00-{trace_id}-{answered.span_id}-0[13]", second.header("traceparent"))
    usage = r.json()["usage"]
    assert answered.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert answered.attributes["gen_ai.response.model"] == "gpt-4o-mini"
    assert answered.attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert answered.attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert answered.attributes["http.response.status_code"] == 200
    assert failed.attributes["http.response.status_code"] == 500 and failed.status_code == 2  # STATUS_CODE_ERROR
    assert request.attributes["gen_ai.system"] == "openai" and request.attributes["url.path"] == "/v1/chat/completions"
    assert request.resource["service.name"] == "edge-proxy"


def test_a_callers_traceparent_is_the_request_spans_parent(traced, receiver, fake):
    gw = traced
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    r = httpx.post(gw.url + FORWARD, json=CHAT, timeout=15, headers={
        "Authorization": f"Bearer {encode_forward_token(gw.secret_key)}",
        "traceparent": f"00-{caller_trace}-{caller_span}-01", "tracestate": "vendor=caller"})
    assert r.status_code == 200, r.text
    spans = spans_of(receiver, caller_trace, 2)
    [request] = [s for s in spans if s.kind == SPAN_KIND_SERVER]
    [attempt] = [s for s in spans if s.kind == SPAN_KIND_CLIENT]
    assert request.parent_span_id == caller_span and attempt.parent_span_id == request.span_id
    # the provider sees one trace context: the attempt span's, in the caller's trace (not the caller's own header)
    sent = fake.last()
    assert sent.header_values("traceparent") == [f"00-{caller_trace}-{attempt.span_id}-01"]
    assert sent.header_values("tracestate") in ([], ["vendor=caller"])


# -- the access log ------------------------------------------------------------------------------------------

def test_one_access_line_per_request_and_never_a_secret(traced, fake):
    gw = traced
    token = encode_forward_token(gw.secret_key, customer_id=None, provider_key="sk-byok-never-logged")
    r = send(gw, token)
    assert r.status_code == 200, r.text
    request_id = r.headers["x-lava-request-id"]
    log_path: Path = gw.access_log  # type: ignore[attr-defined]
    line = wait_for(lambda: next((json.loads(x) for x in (log_path.read_text().splitlines()
                                                           if log_path.exists() else [])
                                  if json.loads(x)["request_id"] == request_id), None))
    assert line["merchant_id"] == gw.merchant_id and line["provider"] == "openai"
    assert line["model"] == "gpt-4o-mini" and line["status"] == 200 and line["outcome"] == "completed"
    assert line["input_tokens"] == r.json()["usage"]["prompt_tokens"]
    assert line["output_tokens"] == r.json()["usage"]["completion_tokens"]
    assert line["latency_ms"] > 0 and line["overhead_ms"] > 0 and line["region"] == "default"
    assert set(line) >= {"customer_id", "cost_usd", "cached_tokens", "reasoning_tokens", "error_reason"}
    text = log_path.read_text()
    for secret in (gw.secret_key, token, "sk-byok-never-logged", "sk-managed-openai"):
        assert secret not in text


# -- settings and the missing extra ------------------------------------------------------------------------

def test_tracing_without_the_otel_extra_is_one_line_naming_it(tmp_path):
    env = clean_env(EDGE_PROXY_DATABASE_URL=f"sqlite:///{tmp_path / 'g.db'}",
                    EDGE_PROXY_OTEL_ENDPOINT="http://127.0.0.1:1")
    done = run_hidden("opentelemetry", "from edge_proxy.cli import main; sys.exit(main(['serve', '--port', '0']))",
                      env)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].endswith("pip install 'edge-proxy[otel]'"), done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_tracing_off_imports_no_opentelemetry(tmp_path):
    code = ("import sys; from edge_proxy.settings import Settings; from edge_proxy.services import Services; "
            f"Services(Settings.load(env={{'EDGE_PROXY_DATABASE_URL': 'sqlite:///{tmp_path / 'g.db'}'}})); "
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))")
    done = run_hidden("_unused_", code, clean_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_tracing_off_on_redis_imports_no_opentelemetry_even_through_redis_py(tmp_path, redis_topology):
    """redis-py 7+ imports OpenTelemetry's metrics SDK (and psutil) at its own import when installed, as the otel
    extra installs it: ~3.6 MB a process, for a feature we never turn on. The gateway imports redis-py with it hidden,
    and nothing imports it later, when the client connects and runs a script in a pipeline."""
    code = ("import asyncio, sys; from edge_proxy.settings import Settings; from edge_proxy.services import Services\n"
            f"svc = Services(Settings.load(env={{'EDGE_PROXY_DATABASE_URL': 'sqlite:///{tmp_path / 'g.db'}', "
            f"'EDGE_PROXY_REDIS_URL': {redis_topology.url!r}}}))\n"
            "async def go():\n"
            "    await svc.redis.ping()\n"
            "    async with svc.redis.pipeline(transaction=False) as pipe:\n"
            "        pipe.eval('return 1', 1, '{k}x')\n"
            "        assert await pipe.execute() == [1]\n"
            "    await svc.redis.aclose()\n"
            "asyncio.run(go())\n"
            "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'psutil'))))")
    done = run_hidden("_unused_", code, clean_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    # and redis-py's own OpenTelemetry metrics stay importable for a program that turns them on: only we hide it
    done = run_hidden("_unused_", "import redis.asyncio, sys; print('opentelemetry.sdk.metrics' in sys.modules)",
                      clean_env())
    assert done.stdout.strip() == "True", done.stderr


def test_the_multiprocess_directory_is_emptied_at_start(tmp_path):
    old = tmp_path / "m"
    old.mkdir()
    (old / "counter_123.db").write_bytes(b"stale")
    (old / "keep.txt").write_text("not ours")
    env: dict[str, str] = {}
    path, made = prepare_multiprocess_dir(Settings(metrics_dir=str(old)), env)
    assert (path, made) == (str(old), False) and sorted(p.name for p in old.iterdir()) == ["keep.txt"]
    assert env["PROMETHEUS_MULTIPROC_DIR"] == str(old)
    # PROMETHEUS_MULTIPROC_DIR, when set, wins; with neither, a fresh temporary directory
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "p")}
    assert prepare_multiprocess_dir(Settings(metrics_dir=str(old)), env)[0] == str(tmp_path / "p")
    path, made = prepare_multiprocess_dir(Settings(), {})
    assert made and Path(path).is_dir() and not list(Path(path).iterdir())
    Path(path).rmdir()


FAMILIES = [
    ("gpt-4o-mini", "gpt-4o"), ("gpt-4o-2024-08-06", "gpt-4o"), ("gpt-4.1-nano", "gpt-4.1"), ("o3-mini", "o3"),
    ("claude-sonnet-4-5", "claude-sonnet"), ("claude-3-5-haiku-latest", "claude-3-5"),
    ("models/gemini-2.5-flash", "gemini-2.5"), ("meta-llama/Llama-3.3-70B-Instruct", "llama-3"),
    ("accounts/fireworks/models/deepseek-v3", "deepseek"), ("my-own-finetune-123", OTHER), ("", OTHER),
]


@pytest.mark.parametrize("model, want", FAMILIES, ids=[f"{m or 'empty'} is {w}" for m, w in FAMILIES])
def test_a_model_maps_to_a_bounded_family(model, want):
    assert family(model) == want


@pytest.mark.parametrize("status, want", [(200, "2xx"), (402, "4xx"), (503, "5xx"), (0, "other")])
def test_status_classes(status, want):
    assert status_class(status) == want


def test_published_histograms_match_observing_one_by_one(tmp_path):
    """The publisher adds a batch's bucket counts at once (prometheus-client has no bulk observe): the exposition
    must be what observing each value would give."""
    import prometheus_client as pc

    from edge_proxy.metering.record import RequestRecord
    from edge_proxy.services import Services
    svc = Services(Settings(database_url=f"sqlite:///{tmp_path / 'g.db'}", spill_dir=str(tmp_path / "spill"),
                            region="r1"))
    latencies_ms = [0.04, 0.3, 4.0, 4.0, 75.0, 2500.0, 200_000.0]
    for i, ms in enumerate(latencies_ms):
        record = RequestRecord(request_id=f"req_{i}", created_at="2026-12-03T00:00:00Z", merchant_id="m",
                               provider="openai", model="gpt-4o-mini", status_code=200, latency_ms=ms)
        svc.metrics.finished.append((record, -1.0))
    svc.observability.publisher.publish()
    text = pc.generate_latest(svc.observability.publisher.registry).decode()
    want = pc.CollectorRegistry()
    one_by_one = pc.Histogram("edge_proxy_request_duration_seconds", "x", ("provider", "region"),
                              buckets=svc.observability.publisher.duration._upper_bounds[:-1], registry=want)
    for ms in latencies_ms:
        one_by_one.labels("openai", "r1").observe(ms / 1000)
    expected = [line for line in pc.generate_latest(want).decode().splitlines()
                if line.startswith("edge_proxy_request_duration_seconds_") and "_created" not in line]
    got = [line for line in text.splitlines()
           if line.startswith("edge_proxy_request_duration_seconds_") and "_created" not in line]
    assert got == expected and len(got) == len(expected) > 10
    assert total(text, "edge_proxy_upstream_seconds_count") == 0  # none of them reached a provider's head


def samples(text: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("edge_proxy_") and "_created" not in line}


def test_a_mixed_batch_publishes_what_counting_each_record_at_once_would(tmp_path):
    """The publisher sums a batch by provider, model and status before it touches a metric: every figure must be
    what counting each record on its own (prometheus-client's inc and observe, one call per record) gives."""
    import prometheus_client as pc

    from edge_proxy.metering.record import RequestRecord
    from edge_proxy.observability.publisher import BUCKETS
    from edge_proxy.services import Services
    svc = Services(Settings(database_url=f"sqlite:///{tmp_path / 'g.db'}", spill_dir=str(tmp_path / "spill"),
                            region="r1"))
    rows = [  # provider, model, status, error_reason, tokens (in, out, cached, reasoning), cost, latency, overhead, upstream
        ("openai", "gpt-4o-mini", 200, None, (12, 30, 4, 0), 1234, 12.5, 0.15, 0.01),
        ("openai", "gpt-4o-mini-2024-07-18", 200, None, (7, 3, 0, 2), 99, 0.04, 0.0, 0.002),
        ("openai", "gpt-4o", 502, "upstream_unreachable", (0, 0, 0, 0), 0, 3.0, 0.2, -1.0),
        ("anthropic", "claude-sonnet-4", 200, None, (100, 50, 0, 10), 5000, 2500.0, 0.3, 2.4),
        ("anthropic", "claude-sonnet-4", 402, "spend_limit_reached", (0, 0, 0, 0), 0, 0.3, 0.0, -1.0),
        ("anthropic", "claude-sonnet-4", 402, "insufficient_balance", (0, 0, 0, 0), 0, 0.3, 0.1, -1.0),
        (None, None, 401, "invalid_token", (0, 0, 0, 0), 0, 0.2, 0.0, -1.0),
        ("openai", "gpt-4o-mini", 200, None, (1, 1, 0, 0), 0, 200_000.0, 0.05, 199.0),
    ]
    want = pc.CollectorRegistry()
    r = ("region",)
    requests = pc.Counter("edge_proxy_requests_total", "x", ("provider", "model", "status", *r), registry=want)
    tokens = pc.Counter("edge_proxy_tokens_total", "x", ("provider", "model", "kind", *r), registry=want)
    cost = pc.Counter("edge_proxy_cost_usd_total", "x", ("provider", "model", *r), registry=want)
    payment_required = pc.Counter("edge_proxy_payment_required_total", "x", r, registry=want)
    spend_limit = pc.Counter("edge_proxy_spend_limit_refusals_total", "x", r, registry=want)
    duration = pc.Histogram("edge_proxy_request_duration_seconds", "x", ("provider", *r), buckets=BUCKETS,
                            registry=want)
    upstream = pc.Histogram("edge_proxy_upstream_seconds", "x", ("provider", *r), buckets=BUCKETS, registry=want)
    overhead = pc.Histogram("edge_proxy_overhead_seconds", "x", r, buckets=BUCKETS, registry=want)
    payment_required.labels("r1")
    spend_limit.labels("r1")
    for i, (provider, model, status, reason, counts, nanos, latency, over, up) in enumerate(rows):
        record = RequestRecord(request_id=f"req_{i}", created_at="2026-12-03T00:00:00Z", merchant_id="m",
                               provider=provider, model=model, status_code=status, error_reason=reason,
                               input_tokens=counts[0], output_tokens=counts[1], cached_tokens=counts[2],
                               reasoning_tokens=counts[3], cost_nanos=nanos, priced=True, latency_ms=latency,
                               overhead_ms=over)
        svc.metrics.finished.append((record, up))
        p, fam = provider or "none", family(model) if model else OTHER
        requests.labels(p, fam, status_class(status), "r1").inc()
        for kind, n in zip(("input", "output", "cached", "reasoning"), counts, strict=True):
            if n:
                tokens.labels(p, fam, kind, "r1").inc(n)
        if nanos:
            cost.labels(p, fam, "r1").inc(nanos / 1e9)
        if status == 402:
            payment_required.labels("r1").inc()
            if reason == "spend_limit_reached":
                spend_limit.labels("r1").inc()
        duration.labels(p, "r1").observe(latency / 1000)
        if up >= 0:
            upstream.labels(p, "r1").observe(up)
        if over:
            overhead.labels("r1").observe(over / 1000)
    svc.observability.publisher.publish()
    got = samples(pc.generate_latest(svc.observability.publisher.registry).decode())
    expected = samples(pc.generate_latest(want).decode())
    assert len(expected) > 60
    assert {k: v for k, v in got.items() if k.split("{")[0] in {n.split("{")[0] for n in expected}} == \
        pytest.approx(expected)


def test_an_idle_worker_parks_its_publisher_until_a_request_a_record_or_a_charge_moves(tmp_path, monkeypatch):
    """Each wake-up of an idle worker costs CPU by the clock (bench/RESULTS.md), which a relayed stream pays too:
    the publisher publishes every PUBLISH_SECONDS only while something moves. A request's arrival, a record (a
    stream that outlived the last busy turn) and a charge each wake it; what moves without a request (webhook
    deliveries, lease top-ups) is published within QUIET_PUBLISH_SECONDS."""
    import asyncio
    from types import SimpleNamespace

    import edge_proxy.observability as obs
    from edge_proxy.metering.record import RequestRecord

    from .fake_provider import FakeProvider
    from .inprocess import InProcess
    monkeypatch.setattr(obs, "PUBLISH_SECONDS", 0.01)
    monkeypatch.setattr(obs, "QUIET_PUBLISH_SECONDS", 60.0)  # longer than any wait below: only a wake publishes

    async def scenario():
        async with FakeProvider() as fake, InProcess(tmp_path, fake.url) as gw:
            svc = gw.svc
            publisher = svc.observability.publisher
            turns = 0
            publish = publisher.publish

            def counted() -> bool:
                nonlocal turns
                turns += 1
                return publish()
            publisher.publish = counted  # type: ignore[method-assign]

            def value(name: str, **labels: str) -> float:  # the sum of the samples whose labels include these
                return sum(sample.value for metric in publisher.registry.collect() for sample in metric.samples
                           if sample.name == name and labels.items() <= sample.labels.items())

            async def until(condition) -> None:
                async with asyncio.timeout(10):
                    while not condition():
                        await asyncio.sleep(0.005)

            async def parked() -> None:
                await until(lambda: svc.metrics.waiting is not None)
                before = turns
                await asyncio.sleep(0.2)   # 20 busy turns' worth, well inside QUIET_PUBLISH_SECONDS
                assert turns == before and svc.metrics.waiting is not None

            await parked()   # nothing moves after the start
            answer = await gw.call("POST", "/providers/openai/v1/chat/completions", body=CHAT, key=gw.secret_key)
            assert answer.status == 200
            await until(lambda: value("edge_proxy_requests_total", provider="openai", status="2xx") == 1)
            assert value("edge_proxy_http_requests_total") == 1

            await parked()
            record = RequestRecord(request_id="req_late", created_at="2026-12-05T00:00:00Z", merchant_id="m",
                                   provider="anthropic", model="claude-sonnet-4", status_code=200, latency_ms=2.0)
            svc.observability.finished(SimpleNamespace(head_at=0.0, sent_at=0.0), record)  # type: ignore[arg-type]
            await until(lambda: value("edge_proxy_requests_total", provider="anthropic", status="2xx") == 1)

            await parked()
            charged = value("edge_proxy_charge_usd_total")
            svc.observability.settled(SimpleNamespace(consumed=[("req_x", 2_000_000_000, 0)]))  # type: ignore[arg-type]
            await until(lambda: value("edge_proxy_charge_usd_total") == charged + 2.0)

            monkeypatch.setattr(obs, "QUIET_PUBLISH_SECONDS", 1.0)
            svc.metrics.wake()   # parked or not, its next park ends by the clock within a second
            await parked()
            svc.webhooks.delivered += 1   # moves without a request: no wake, the quiet turn carries it
            await until(lambda: value("edge_proxy_webhook_deliveries_sent_total") == 1)
    asyncio.run(scenario())
