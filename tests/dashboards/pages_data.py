"""Usage for the Analytics, Agents and Resources page tests: data.py's week, plus agents, service
types, conversations, reviewed diffs, threads and messages, and resource allocations.

Added on top of the week (Europe/Berlin; NOW is 20 Nov 2026, 13:00 there):

  admin    2 requests  agent Coder     service agent           conversation conv-a  Atlas
  manager  1 request   agent Coder     service embedding       conversation conv-m  Borealis (18th)
  member   2 requests  agent Reviewer  service text_generation conversation conv-r  =HYPERLINK(...)
           request ids "=1+2" and "@evil": spreadsheet formulas the CSV must neutralise
  web      1 request   agent Reviewer  service speech_to_text  conversation conv-w  Atlas, failed (18th)

  activity: the member accepts 3 Reviewer diffs and rejects 1; the admin accepts 1 Coder diff;
  threads: member 2, web 1; messages: member 5, admin 2, web 3.

  allocations (cores / RAM GB / storage GB, local times):
    member   Coder     2 / 4 / 10    17 Nov 22:00 - 19 Nov 02:00
    web      Reviewer  1 / 2 / 0     18 Nov 08:00 - 18 Nov 20:00
    nobody   Coder     4 / 8 / 100   19 Nov 20:00 - 20 Nov 12:00   (no user: only an admin sees it)
    manager  Reviewer  0.5 / 1 / 1   10 Nov 10:00 - 14 Nov 10:00   (10 hours inside ?range=7d)
    admin    -         1 / 0 / 0     20 Nov 10:00 - 20 Nov 11:30   (today: read raw)

Days up to the 18th are rolled up; the 19th is dirty again (a late record) and the 20th is today,
so every page reads rollups and raw rows alike.
"""

from datetime import datetime
from decimal import Decimal
from fractions import Fraction

import pytest

from metering.models import ResourceUsage
from metering.rollups import dirty_days_rebuild
from metering.selectors import visible
from metering.services import ingest_batch
from tests.dashboards.data import event, usage

FORMULA_PROJECT = '=HYPERLINK("http://evil.test","x")'


def pages_items() -> dict:
    def record(request_id, user, model, cost, **fields):
        return usage(0, user, model, cost, request_id=request_id, **fields)

    items = {
        "usage": [
            record("a-1", "admin@acme.test", "gpt-5", "0.30", hour=14, agent="Coder", service_type="agent",
                   conversation_id="conv-a", project="Atlas", cached_input_tokens=500, session_id="s-coder-a"),
            record("a-2", "admin@acme.test", "gpt-5", "0.20", hour=15, agent="Coder", service_type="agent",
                   conversation_id="conv-a", project="Atlas", session_id="s-coder-a"),
            record("m-1", "manager@acme.test", "text-embedding-3-small", "0.01", day=18, hour=9, agent="Coder",
                   service_type="embedding", conversation_id="conv-m", project="Borealis"),
            record("=1+2", "member@acme.test", "claude-sonnet-4-5", "0.40", hour=16, agent="Reviewer",
                   conversation_id="conv-r", project=FORMULA_PROJECT, cached_input_tokens=800,
                   session_id="s-reviewer-m"),
            record("@evil", "member@acme.test", "claude-sonnet-4-5", "0.60", hour=17, agent="Reviewer",
                   conversation_id="conv-r", project=FORMULA_PROJECT, session_id="s-reviewer-m"),
            record("-3+4", "web@acme.test", "whisper-1", "0.05", day=18, hour=11, agent="Reviewer",
                   service_type="speech_to_text", status="error", conversation_id="conv-w", project="Atlas"),
        ],
        "activity": [
            event(20, "member@acme.test", "diff_accepted", agent="Reviewer", quantity=3, lines_added=12),
            event(21, "member@acme.test", "diff_rejected", agent="Reviewer"),
            event(22, "admin@acme.test", "diff_accepted", agent="Coder", lines_added=4),
            event(23, "member@acme.test", "thread_created"),
            event(24, "member@acme.test", "thread_created", day=18),
            event(25, "web@acme.test", "thread_created", day=18),
            event(26, "member@acme.test", "message_sent", quantity=5),
            event(27, "admin@acme.test", "message_sent", quantity=2),
            event(28, "web@acme.test", "message_sent", quantity=3, day=18),
        ],
        "resources": [
            allocation("r-member", "member@acme.test", "Coder", "2", "4", "10", "2026-11-17T22:00", "2026-11-19T02:00"),
            allocation("r-web", "web@acme.test", "Reviewer", "1", "2", "0", "2026-11-18T08:00", "2026-11-18T20:00"),
            allocation("r-nobody", None, "Coder", "4", "8", "100", "2026-11-19T20:00", "2026-11-20T12:00"),
            allocation("r-manager", "manager@acme.test", "Reviewer", "0.5", "1", "1", "2026-11-10T10:00",
                       "2026-11-14T10:00"),
            allocation("r-admin", "admin@acme.test", None, "1", "0", "0", "2026-11-20T10:00", "2026-11-20T11:30"),
        ],
    }  # fmt: skip
    return items


def allocation(resource_id, user, agent, cpu, ram, storage, start, end) -> dict:
    body = {
        "resource_id": resource_id,
        "start": f"{start}:00+01:00",
        "end": f"{end}:00+01:00",
        "cpu_cores": cpu,
        "ram_gb": ram,
        "storage_gb": storage,
    }
    if user:
        body["user"] = user
    if agent:
        body["agent"] = agent
    return body


@pytest.fixture
def busy_week(week, org):
    result = ingest_batch(org=org, **pages_items())
    assert not result.rejected, result.rejected
    dirty_days_rebuild()
    late = usage(0, "member@acme.test", "gpt-5", "0.05", request_id="late-19", project="Borealis", hour=18)
    ingest_batch(org=org, usage=[late])
    return org


def allocated_hours(scope, start: datetime, end: datetime) -> dict[str, Fraction]:
    """Core-, RAM GB- and storage GB-hours of the allocations `scope` may see in [start, end),
    counted the slow, obvious way: each allocation's overlap with the range, in exact fractions."""
    totals = {"cpu": Fraction(0), "ram": Fraction(0), "storage": Fraction(0)}
    for a in ResourceUsage.objects.filter(visible(scope)):
        overlap = (min(a.end, end) - max(a.start, start)).total_seconds()
        if overlap <= 0:
            continue
        hours = Fraction(overlap) / 3600
        totals["cpu"] += Fraction(a.cpu_cores) * hours
        totals["ram"] += Fraction(a.ram_gb) * hours
        totals["storage"] += Fraction(a.storage_gb) * hours
    return totals


def close(value, expected: Fraction, places: int = 3) -> bool:
    """`value` (a Fraction, or a decimal as text or Decimal) within 10**-places of `expected`."""
    value = value if isinstance(value, Fraction) else Fraction(Decimal(str(value)))
    return abs(value - expected) < Fraction(1, 10**places)
