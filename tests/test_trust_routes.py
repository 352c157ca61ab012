"""Every credential does exactly what its role allows: the route table walked with every kind of credential.

The walk reads `routes.ROUTES` itself, so a new route is walked as soon as it is in the table. Each route is
called in-process (tests/inprocess.py) with each kind of credential, and the status is checked against what its
access level says (`EXPECTED`): a refused role gets its 401 or 403; an allowed role anything else (never a 5xx);
another merchant's key on the merchant's ids gets 404, and never the merchant's data. The README's trust table is
checked against the route tables here too (edge_proxy/trust_table.py renders it).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge_proxy import trust_table
from edge_proxy.access import Access
from edge_proxy.routes import ROUTES, Route

from .inprocess import Answer
from .trust_world import (
    EXPIRED_SPEND,
    KINDS,
    MALFORMED,
    MERCHANT,
    NONE,
    OPERATOR,
    OTHER,
    REVOKED_SECRET,
    REVOKED_SPEND,
    SPEND,
    TOKEN,
    World,
    route_name,
)

ROOT = Path(__file__).resolve().parent.parent

ALLOWED = "allowed"        # anything but 401 and 403, and never a 5xx
OWN = "its own data only"  # allowed; on the merchant's ids a 404, and nothing of the merchant's in the answer
SIGN_IN = "sign-in page"   # the dashboard: no session, so a GET is sent to its sign-in page

_REFUSED_EVERYWHERE = {NONE: 401, MALFORMED: 401, REVOKED_SPEND: 401, EXPIRED_SPEND: 401, REVOKED_SECRET: 401}
EXPECTED: dict[Access, dict[str, object]] = {
    Access.PUBLIC: dict.fromkeys(KINDS, ALLOWED),
    Access.PROXY: {**_REFUSED_EVERYWHERE, OPERATOR: 401, MERCHANT: ALLOWED, TOKEN: ALLOWED, OTHER: OWN,
                   SPEND: ALLOWED},
    Access.MERCHANT: {**_REFUSED_EVERYWHERE, OPERATOR: 401, MERCHANT: ALLOWED, TOKEN: ALLOWED, OTHER: OWN,
                      SPEND: 403},
    Access.OPERATOR: {**_REFUSED_EVERYWHERE, OPERATOR: ALLOWED, MERCHANT: 401, TOKEN: 401, OTHER: 401, SPEND: 401},
    # a bearer credential opens no dashboard page: only the dashboard's own session does (tests/test_trust_dashboard)
    Access.DASHBOARD: dict.fromkeys(KINDS, SIGN_IN),
}

def expected_for(route: Route, kind: str) -> object:
    row = EXPECTED.get(route.access)
    if row is None:
        pytest.fail(f"{route_name(route)} has access {route.access}, which EXPECTED does not know: say what each kind "
                    "of credential gets on it")
    outcome = row[kind]
    if route.retired and outcome in (ALLOWED, OWN):
        return 403  # a retired route refuses everyone it admits, and says why
    return outcome


def check(answer: Answer, outcome: object, owned: bool, world: World, where: str) -> None:
    text = answer.body.decode(errors="replace")
    assert answer.status < 500, (where, answer.status, text)
    if isinstance(outcome, int):
        assert answer.status == outcome, (where, answer.status, text)
        assert answer.json()["error"]["message"], where
    elif outcome == SIGN_IN:
        assert answer.status == 303 and (answer.header("location") or "").startswith("/dashboard/login"), \
            (where, answer.status, answer.headers)
    elif outcome == OWN and owned:
        assert answer.status == 404, (where, answer.status, text)
    else:
        assert answer.status not in (401, 403), (where, answer.status, text)
    if outcome == OWN:  # an id the caller sent may be named back ("no customer 'cus_...'"); no other may
        leaked = [i for i in world.ours if i in text and i not in where]
        assert leaked == [], (where, "another merchant's ids in the answer", leaked)


CASES = [pytest.param(route, kind, id=f"{kind} calls {route_name(route)}") for route in ROUTES for kind in KINDS]


@pytest.mark.parametrize(("route", "kind"), CASES)
def test_every_route_answers_every_credential_as_its_access_says(trust_world, route, kind):
    world = trust_world
    outcome = expected_for(route, kind)
    method, path, body, owned = world.run(world.request_for(route))
    answer = world.run(world.gw.call(method, path, body=body, headers=world.credentials[kind]))
    check(answer, outcome, owned, world, f"{kind}: {method} {path}")


def test_every_access_level_says_what_each_kind_of_credential_gets():
    assert set(EXPECTED) == set(Access)
    assert all(set(row) == set(KINDS) for row in EXPECTED.values())


def test_a_route_whose_access_level_is_not_in_the_expectations_fails_the_walk(monkeypatch):
    monkeypatch.delitem(EXPECTED, Access.MERCHANT)
    with pytest.raises(pytest.fail.Exception, match="EXPECTED does not know"):
        expected_for(Route(("GET",), "/v1/new", None, Access.MERCHANT), MERCHANT)


def test_every_route_of_the_table_is_walked():
    walked = {values[0] for values in (c.values for c in CASES)}
    assert walked == set(ROUTES) and len(CASES) == len(ROUTES) * len(KINDS)


# -- the README's trust table -------------------------------------------------------------------------------------
def _readme_table() -> str:
    text = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- trust-table: start.*?-->\n(.*?)<!-- trust-table: end -->", text, re.S)
    assert found, "README.md has no trust table between <!-- trust-table: start --> and <!-- trust-table: end -->"
    return found.group(1)


def test_the_readme_trust_table_is_the_route_table():
    assert _readme_table() == trust_table.render(), "python -m edge_proxy.trust_table prints the table to paste"


# what a table cell promises, as the walk's outcomes for the same role
_CELL_OUTCOMES = {"yes": {ALLOWED, SIGN_IN}, "own": {ALLOWED, OWN}, "scoped": {ALLOWED}, "401": {401}, "403": {403},
                  "sign-in": {SIGN_IN}}
_ROLE_KINDS = {"anonymous": NONE, "spend key": SPEND, "merchant": MERCHANT, "operator": OPERATOR}


@pytest.mark.parametrize("route", [r for r in ROUTES if r.access is not Access.DASHBOARD], ids=route_name)
def test_each_cell_of_the_trust_table_is_what_the_walk_expects(route):
    for role, cell in zip(trust_table.ROLES, trust_table.cells(route)):
        assert expected_for(route, _ROLE_KINDS[role]) in _CELL_OUTCOMES[cell], (route_name(route), role, cell)
