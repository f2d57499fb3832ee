"""One source of truth per Claude Code session (DESIGN §12.3.3, 12.6): however a session's metric
exports and event exports are split, interleaved and resent, the stored usage and diffs are its
events' figures, and its lines its metrics'."""

from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.db.models import Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.services import api_key_create
from metering.models import ActivityEvent, OtlpSession, OtlpStream, UsageRecord
from tests.conftest import make_user
from tests.otlp.test_intake import BASE, ClaudeCodeMeter, claude_code_events, post

MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5")


@pytest.fixture
def key(org, platform_team):
    dev = make_user("dev@acme.test", org, teams=[platform_team])
    key, secret = api_key_create(org=org, name="otlp", scopes={"ingest"}, owner=dev)
    key.secret = secret
    return key


@dataclass(frozen=True)
class Call:
    """One API request of the session, with the edits accepted and lines added after it."""

    model: str
    input: int
    output: int
    cache_read: int
    cache_write: int
    cost_micros: int
    edits: int
    lines: int


calls = st.builds(
    Call,
    model=st.sampled_from(MODELS),
    input=st.integers(0, 5_000),
    output=st.integers(0, 5_000),
    cache_read=st.integers(0, 50_000),
    cache_write=st.integers(0, 5_000),
    cost_micros=st.integers(0, 2_000_000),
    edits=st.integers(0, 2),
    lines=st.integers(0, 80),
)


def chunks(draw, items):
    """`items` cut into consecutive non-empty runs at drawn places: one export each."""
    cuts = draw(st.lists(st.booleans(), min_size=len(items) - 1, max_size=len(items) - 1))
    runs, run = [], [items[0]]
    for item, cut in zip(items[1:], cuts, strict=True):
        if cut:
            runs.append(run)
            run = []
        run.append(item)
    return runs + [run]


def metric_exports(draw, session):
    meter = ClaudeCodeMeter()  # delta, Claude Code's default: each collection its own window
    exports = []
    for run in chunks(draw, list(enumerate(session))):
        for _, call in run:
            meter.request(
                input=call.input,
                output=call.output,
                cache_read=call.cache_read,
                cache_write=call.cache_write,
                cost=call.cost_micros / 1e6,
                model=call.model,
            )
            if call.edits:
                meter.decision.add(call.edits, {**BASE, "decision": "accept", "tool_name": "Edit"})
            if call.lines:
                meter.lines.add(call.lines, {**BASE, "type": "added", "model": call.model})
        exports.append(("metrics", meter.collect()))
    return exports


def event_exports(draw, session):
    events = []
    for i, call in enumerate(session):
        events.append(("user_prompt", {"prompt.id": f"p-{i}", "prompt_length": 10}))
        events.append(
            (
                "api_request",
                {
                    "model": call.model,
                    "input_tokens": call.input,
                    "output_tokens": call.output,
                    "cache_read_tokens": call.cache_read,
                    "cache_creation_tokens": call.cache_write,
                    "cost_usd_micros": call.cost_micros,
                    "duration_ms": 900,
                    "request_id": f"req-{i}",
                },
            )
        )
        events += [
            ("tool_decision", {"tool_name": "Edit", "decision": "accept", "tool_use_id": f"toolu-{i}-{e}"})
            for e in range(call.edits)
        ]
    return [("logs", claude_code_events(*run)) for run in chunks(draw, events)]


def stored(org):
    usage = UsageRecord.objects.filter(org=org).aggregate(
        input=Sum("input_tokens", default=0),
        output=Sum("output_tokens", default=0),
        cost=Sum("cost", default=Decimal(0)),
        requests=Sum("request_count", default=0),
    )
    events = ActivityEvent.objects.filter(org=org)
    return {
        **usage,
        "accepted_diffs": events.filter(kind="diff_accepted").aggregate(n=Sum("quantity", default=0))["n"],
        "agent_runs": events.filter(kind="agent_run").aggregate(n=Sum("quantity", default=0))["n"],
        "lines_added": events.aggregate(n=Sum("lines_added", default=0))["n"],
        "usage_sources": set(UsageRecord.objects.filter(org=org).values_list("source", flat=True)),
    }


def of_the_events(session):
    return {
        "input": sum(c.input + c.cache_read + c.cache_write for c in session),
        "output": sum(c.output for c in session),
        "cost": sum((Decimal(c.cost_micros) / 1_000_000 for c in session), Decimal(0)),
        "requests": len(session),
        "accepted_diffs": sum(c.edits for c in session),
        "agent_runs": len(session),
        "lines_added": sum(c.lines for c in session),  # lines only ever come from the metrics
        "usage_sources": {"otlp_logs"},
    }


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(session=st.lists(calls, min_size=1, max_size=4), data=st.data())
def test_any_order_split_or_resend_of_a_sessions_exports_gives_its_events_figures(org, key, session, data):
    # The examples share the test's fixtures and transaction: each starts from an empty session.
    for model in (UsageRecord, ActivityEvent, OtlpSession, OtlpStream):
        model.objects.filter(org=org).delete()

    exports = metric_exports(data.draw, session) + event_exports(data.draw, session)
    order = list(data.draw(st.permutations(exports)))
    for again in data.draw(st.lists(st.sampled_from(exports), max_size=3)):
        order.insert(data.draw(st.integers(0, len(order))), again)
    for signal, message in order:
        assert post(key, signal, message)[0] == 200

    assert stored(org) == of_the_events(session)
