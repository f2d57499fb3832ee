"""Usage data for the dashboard page tests: a small, hand-countable week at Acme.

Time is frozen at NOW; everything happens on 18 and 19 November 2026 (Europe/Berlin), so
`?range=7d` covers all of it. Who does what (team = the user's first team):

  admin   Ada Admin    no team    2 requests  gpt-5                          agent run
  manager Max Manager  Platform   3 requests  claude-sonnet-4-5              agent run, 2 tasks
  member  Mia Member   Platform   6 requests  gpt-5 (2) sonnet haiku mini gemini  diff (+30/-10), diff (+5/-0)
  web     Wes Web      Web        4 requests  gpt-5-mini                     task
"""

from datetime import UTC, datetime
from decimal import Decimal
from html.parser import HTMLParser

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from metering.rollups import dirty_days_rebuild
from metering.services import ingest_batch
from tests.conftest import make_user

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
WEEK = "range=7d"


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def usage(n: int, user: str, model: str, cost: str, *, day=19, hour=10, **fields) -> dict:
    return {
        "request_id": f"r-{user}-{n}",
        "timestamp": f"2026-11-{day}T{hour:02d}:{n:02d}:00+01:00",
        "user": user,
        "model": model,
        "input_tokens": 1000 * (n + 1),
        "output_tokens": 100 * (n + 1),
        "cost": cost,
        **fields,
    }


def event(n: int, user: str, kind: str, *, day=19, **fields) -> dict:
    return {
        "event_id": f"e-{user}-{n}",
        "timestamp": f"2026-11-{day}T11:{n:02d}:00+01:00",
        "user": user,
        "kind": kind,
        **fields,
    }


MEMBER_MODELS = ("gpt-5", "claude-sonnet-4-5", "claude-haiku-4-5", "gpt-5-mini", "gemini-2.5-pro")


def week_items():
    items = {"usage": [], "activity": []}
    for n in range(2):
        items["usage"].append(usage(n, "admin@acme.test", "gpt-5", "0.50", project="Atlas", session_id="s-admin"))
    for n in range(3):
        items["usage"].append(
            usage(n, "manager@acme.test", "claude-sonnet-4-5", "1.25", day=18, project="Atlas", session_id="s-max")
        )
    for n, model in enumerate(MEMBER_MODELS):
        items["usage"].append(usage(n, "member@acme.test", model, "0.10", project="Borealis", session_id="s-mia"))
    for n in range(4):
        items["usage"].append(usage(n, "web@acme.test", "gpt-5-mini", "0.0125", day=18, session_id="s-wes"))
    items["activity"] += [
        event(0, "admin@acme.test", "agent_run"),
        event(0, "manager@acme.test", "agent_run", day=18, session_id="s-max"),
        event(1, "manager@acme.test", "task_completed", quantity=2),
        event(0, "member@acme.test", "diff_accepted", lines_added=30, lines_removed=10, session_id="s-mia"),
        event(1, "member@acme.test", "diff_accepted", lines_added=5),
        event(0, "web@acme.test", "task_completed"),
    ]
    return items


@pytest.fixture
def week(frozen, org, admin, manager, member, web_member):
    """The week above, the 18th rolled up and the 19th left raw, so pages read both."""
    result = ingest_batch(org=org, **week_items())
    assert not result.rejected, result.rejected
    dirty_days_rebuild()
    # A late record marks the 19th dirty again: it is read from the raw rows, the 18th from rollups.
    ingest_batch(org=org, usage=[usage(9, "member@acme.test", "gpt-5", "0.05", project="Borealis")])
    return org


def more_people(org, team, count: int, start: int = 0):
    """`count` more members of `team`, each with one request on the 19th."""
    for i in range(start, start + count):
        make_user(f"dev{i:03d}@acme.test", org, teams=[team], name=f"Dev {i:03d}")
    ingest_batch(
        org=org, usage=[usage(i % 50, f"dev{i:03d}@acme.test", "gpt-5", "0.01") for i in range(start, start + count)]
    )


def count_queries(client, url, **headers) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url, **headers).status_code == 200
    return len(queries)


HTMX = {"HTTP_HX_REQUEST": "true"}


def htmx_to(target: str) -> dict:
    return {**HTMX, "HTTP_HX_TARGET": target}


# --- Reading the HTML ------------------------------------------------------------------------


class _Hooks(HTMLParser):
    """Collects data-kpi/data-value pairs and data-row values, in document order."""

    def __init__(self):
        super().__init__()
        self.kpis: dict[str, str] = {}
        self.rows: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "data-kpi" in attrs:
            self.kpis[attrs["data-kpi"]] = attrs.get("data-value")
        if "data-row" in attrs and tag == "tr":
            self.rows.append(attrs["data-row"])
        if "id" in attrs:
            self.ids.add(attrs["id"])


def hooks(response) -> _Hooks:
    parser = _Hooks()
    parser.feed(response.content.decode())
    return parser


def json_script(response, element_id: str):
    import json
    import re

    html = response.content.decode()
    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html, re.S)
    assert match, f"no json_script #{element_id}"
    return json.loads(match.group(1))


def money(value) -> Decimal:
    return Decimal(str(value))
