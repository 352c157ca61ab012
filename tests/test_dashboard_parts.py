"""The dashboard's parts in process: session expiry on a clock of our own, the SVG chart, the webhook deliveries
probe, and the small parsers. The rules as a browser meets them are in test_dashboard.py."""
from __future__ import annotations

import asyncio
import importlib.machinery
import sys
import types

import msgspec
import pytest

from edge_proxy.dashboard import chart, key_pages, sessions, web
from edge_proxy.store import open_store


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    asyncio.run(s.open())
    yield s
    asyncio.run(s.close())


@pytest.mark.parametrize("steps, alive", [
    pytest.param([60, 600, 1200, 1700], True, id="requests within the idle limit keep a session alive"),
    pytest.param([1801], False, id="30 minutes without a request end it"),
    pytest.param([1700] * 25, True, id="a busy session lives up to its lifetime (12 h)"),
    pytest.param([1700] * 26, False, id="past 12 hours a busy session ends all the same"),
])
def test_sessions_end_when_idle_or_old(store, steps, alive):
    async def run():
        clock = Clock()
        _, key = await store.create_merchant("m", 0)
        s = sessions.Sessions(store, idle=1800, lifetime=43200, clock=clock)
        sid, _ = await s.sign_in(key)
        found = True
        for step in steps:
            clock.now += step
            found = await s.find(sid) is not None
            if not found:
                break
        return found
    assert asyncio.run(run()) is alive


def test_a_session_is_stored_as_a_hash_and_ended_with_its_key(store):
    async def run():
        _, key = await store.create_merchant("m", 0)
        s = sessions.Sessions(store, idle=1800, lifetime=43200)
        sid, session = await s.sign_in(key)
        assert session.session_hash == sessions.session_hash(sid) != sid and session.merchant_name == "m"
        assert (await store.db.fetchone("SELECT count(*) FROM dashboard_sessions WHERE session_hash = ?", sid))[0] == 0
        await s.end_for_key(session.secret_key_id)
        assert await s.find(sid) is None
        assert await s.find("x" * 101) is None and await s.find(None) is None
    asyncio.run(run())


def test_failed_sign_ins_age_out_of_the_window(store):
    async def run():
        clock = Clock()
        throttle = sessions.SignInThrottle(store.db, attempts=2, clock=clock)
        await throttle.failed("10.0.0.1")
        await throttle.failed("10.0.0.1")
        with pytest.raises(sessions.TooManySignIns):
            await throttle.check("10.0.0.1")
        await throttle.check("10.0.0.2")  # another address is not affected
        clock.now += sessions.FAILURE_WINDOW + 1
        await throttle.check("10.0.0.1")
    asyncio.run(run())


@pytest.mark.parametrize("nanos, ceiling", [
    (0, 1), (1, 1), (3, 5), (7, 10), (12, 20), (4_999, 5_000), (130_000_000, 200_000_000),
])
def test_the_charts_scale_is_a_round_amount(nanos, ceiling):
    assert chart.nice_ceiling(nanos) == ceiling


def test_the_chart_escapes_its_text_and_draws_the_rest_as_other():
    days = ["2026-03-01", "2026-03-02"]
    names = [f"m{i}" for i in range(7)]
    values = {"2026-03-01": {**{n: 10 for n in names}, "<b>x</b>": 5, "y": 5}, "2026-03-02": {"m0": 40}}
    svg = chart.stacked_bars("Cost <per> day", days, values, names)
    assert "<b>" not in svg and "&lt;per&gt;" in svg
    assert svg.count('data-series="other"') == 1 and "other: $0.00000001" in svg  # the two small ones: 10 nanos
    assert svg.count('class="bar"') == 9  # 7 named + other on day 1, m0 on day 2
    assert chart.legend(names, True)[-1][0] == "other"


@pytest.mark.parametrize("nanos, shown", [
    (None, "—"), (0, "$0.00"), (5_000_000_000, "$5.00"), (1_500_000_000, "$1.50"), (123, "$0.000000123"),
    (-2_500_000_000, "$-2.50"),
])
def test_money_is_exact_with_two_decimals_at_least(nanos, shown):
    assert web.money(nanos) == shown


@pytest.mark.parametrize("header, cookies", [
    ("", {}),
    ("a=1; ep_dashboard_session=abc; b=2", {"a": "1", "ep_dashboard_session": "abc", "b": "2"}),
    ('q="quoted"; broken; =x; a=1; a=2', {"q": "quoted", "a": "1"}),
])
def test_cookies_are_parsed_first_value_wins(header, cookies):
    assert web.parse_cookies(header) == cookies


def test_webhook_deliveries_show_only_when_the_gateway_records_them(monkeypatch):
    assert key_pages.deliveries_reader() is None or callable(key_pages.deliveries_reader())
    module = types.ModuleType("tests._fake_deliveries")
    module.__spec__ = importlib.machinery.ModuleSpec("tests._fake_deliveries", None)

    class Delivery(msgspec.Struct):
        delivery_id: str
        status: str
        body: str
        merchant_id: str

    async def recent_deliveries(db, merchant_id, webhook_id, limit):
        return [Delivery("dlv_1", "failed", "{...}", merchant_id)]

    module.recent_deliveries = recent_deliveries
    monkeypatch.setitem(sys.modules, "tests._fake_deliveries", module)
    monkeypatch.setattr(key_pages, "DELIVERY_MODULES", ("edge_proxy.no_such_package.deliveries",
                                                        "tests._fake_deliveries"))
    reader = key_pages.deliveries_reader()
    assert reader is recent_deliveries
    rows = asyncio.run(reader(None, "mer_1", "whk_1", 10))
    assert key_pages.delivery_fields(rows[0]) == {"delivery_id": "dlv_1", "status": "failed"}
    monkeypatch.setattr(key_pages, "DELIVERY_MODULES", ("edge_proxy.no_such_package.deliveries",))
    assert key_pages.deliveries_reader() is None
