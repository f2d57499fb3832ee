"""The OTLP intake end to end: data made by the OpenTelemetry SDK, encoded by its OTLP
encoders, posted to /v1/<signal>, and what is then stored (DESIGN §12.2, 12.3.3, 12.5, 12.6)."""

import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import Counter, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from accounts.access import Scope
from accounts.services import api_key_create
from metering import selectors, services
from metering.models import ActivityEvent, DirtyDay, OtlpKeyStats, OtlpSession, OtlpStream, UsageRecord
from metering.pricing import PriceBook
from metering.tasks import forget_idle_otlp_streams
from tests.conftest import PROMPT_TEXT, make_user
from tests.otlp.encoding import otlp_json

SESSION = "5d4c3b2a-cc01"
RESOURCE = Resource.create(
    {"service.name": "claude-code", "team.id": "Platform", "department": "engineering", "cost_center": "eng-123"}
)
CHAT_SPAN = {  # a GenAI chat span's attributes (DESIGN §12.3.4)
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-5-mini",
    "gen_ai.response.model": "gpt-5-mini",
    "gen_ai.usage.input_tokens": 1200,
    "gen_ai.usage.cache_read.input_tokens": 200,
    "gen_ai.usage.output_tokens": 80,
    "gen_ai.conversation.id": "conv-9",
}
BASE = {"session.id": SESSION, "user.email": "Dev@Acme.test", "organization.id": "anthropic-org-uuid"}


@pytest.fixture
def dev(org, platform_team):
    return make_user("dev@acme.test", org, teams=[platform_team])


@pytest.fixture
def key(org, dev):
    key, secret = api_key_create(org=org, name="otlp", scopes={"ingest"}, owner=dev)
    key.secret = secret
    return key


def post(key, signal: str, message, *, as_json=False) -> tuple[int, bytes]:
    if as_json:
        body, kind = otlp_json(message), "application/json"
    else:
        body, kind = message.SerializeToString(), "application/x-protobuf"
    response = Client().post(
        f"/v1/{signal}", body, content_type=kind, headers={"Authorization": f"Bearer {key.secret}"}
    )
    return response.status_code, response.content


class ClaudeCodeMeter:
    """Claude Code's counters, collected by the SDK as its exporter would send them."""

    def __init__(self, temporality=AggregationTemporality.DELTA, reader=None):
        # Another reader (an exporter's) may stand in for the in-memory one.
        self.reader = reader or InMemoryMetricReader(preferred_temporality={Counter: temporality})
        self.provider = provider = MeterProvider(
            resource=RESOURCE, metric_readers=[self.reader], shutdown_on_exit=reader is None
        )
        meter = provider.get_meter("com.anthropic.claude_code", "2.1.220")
        self.tokens = meter.create_counter("claude_code.token.usage", unit="tokens")
        self.cost = meter.create_counter("claude_code.cost.usage", unit="USD")
        self.decision = meter.create_counter("claude_code.code_edit_tool.decision")
        self.lines = meter.create_counter("claude_code.lines_of_code.count")
        self.sessions = meter.create_counter("claude_code.session.count")

    def request(self, *, input=0, output=0, cache_read=0, cache_write=0, cost=None, model="claude-sonnet-4-5"):
        attrs = {**BASE, "model": model}
        for kind, value in (
            ("input", input),
            ("output", output),
            ("cacheRead", cache_read),
            ("cacheCreation", cache_write),
        ):
            if value:
                self.tokens.add(value, {**attrs, "type": kind})
        if cost is not None:
            self.cost.add(cost, attrs)

    def collect(self):
        return encode_metrics(self.reader.get_metrics_data())


def claude_code_events(*events: tuple[str, dict]):
    """Claude Code's events as its log exporter sends them: event name, attributes."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("com.anthropic.claude_code.events", "2.1.220")
    now = time.time_ns()
    for offset, (name, attrs) in enumerate(events):
        logger.emit(timestamp=now + offset, event_name=name, body=name, attributes={**BASE, **attrs})
    return encode_logs(exporter.get_finished_logs())


def usage_rows(org):
    return list(UsageRecord.objects.filter(org=org).order_by("timestamp", "request_id"))


def test_claude_code_metrics_make_one_record_per_request_and_a_resend_stores_nothing(org, key, dev, platform_team):
    meter = ClaudeCodeMeter()
    meter.request(input=120, output=300, cache_read=4000, cache_write=500, cost=0.0215)
    meter.decision.add(2, {**BASE, "decision": "accept", "tool_name": "Edit"})
    meter.lines.add(40, {**BASE, "type": "added", "model": "claude-sonnet-4-5"})
    message = meter.collect()

    assert post(key, "metrics", message)[0] == 200
    [record] = usage_rows(org)
    # Claude Code's input excludes the cache; ours includes it (DESIGN §12.3.1).
    assert (record.input_tokens, record.cached_input_tokens, record.cache_write_tokens, record.output_tokens) == (
        4620,
        4000,
        500,
        300,
    )
    assert record.cost == Decimal("0.0215")
    assert (record.request_count, record.source, record.user_id, record.team_id) == (
        0,
        "otlp_metrics",
        dev.pk,
        platform_team.pk,
    )
    assert record.request_id.startswith("otlp:m:")
    assert sorted(t.name for t in record.tags.all()) == ["cost_center:eng-123", "department:engineering"]
    events = ActivityEvent.objects.filter(org=org)
    assert sorted(events.values_list("kind", "quantity", "lines_added")) == [
        ("diff_accepted", 1, 0),
        ("diff_accepted", 1, 0),
        ("lines_changed", 0, 40),
    ]
    assert DirtyDay.objects.filter(org=org).exists()

    stored = (UsageRecord.objects.count(), ActivityEvent.objects.count())
    assert post(key, "metrics", message)[0] == 200  # a resend
    assert post(key, "metrics", message, as_json=True)[0] == 200  # the same export as OTLP/JSON
    assert (UsageRecord.objects.count(), ActivityEvent.objects.count()) == stored
    stats = OtlpKeyStats.objects.get(api_key=key, signal="metrics")
    assert (stats.requests, stats.stored, stats.rejected) == (3, 4, 0)
    assert stats.duplicates == 8


def test_cumulative_points_count_their_increase_once_across_exports(org, key):
    meter = ClaudeCodeMeter(AggregationTemporality.CUMULATIVE)
    meter.request(input=100, output=10, cost=0.5)
    first = meter.collect()
    meter.request(input=50, output=5, cost=0.25)
    second = meter.collect()
    for message in (first, second, second, first):  # a resend and a stale copy change nothing
        assert post(key, "metrics", message)[0] == 200
    rows = usage_rows(org)
    assert sum(r.input_tokens for r in rows) == 150
    assert sum(r.output_tokens for r in rows) == 15
    assert sum(r.cost for r in rows) == Decimal("0.75")


def test_events_take_over_a_session_from_its_metrics_in_either_order(org, key):
    meter = ClaudeCodeMeter()
    meter.request(input=120, output=300, cost=0.02)
    meter.decision.add(1, {**BASE, "decision": "accept", "tool_name": "Edit"})
    meter.sessions.add(1, BASE)
    metrics = meter.collect()
    events = claude_code_events(
        (
            "api_request",
            {
                "model": "claude-sonnet-4-5",
                "input_tokens": 120,
                "output_tokens": 300,
                "cache_read_tokens": 0,
                "cache_creation_tokens": 0,
                "cost_usd": 0.019,
                "cost_usd_micros": 20000,
                "duration_ms": 2100,
                "request_id": "req_01",
            },
        ),
        ("tool_decision", {"tool_name": "Edit", "decision": "accept", "tool_use_id": "toolu_1", "source": "config"}),
        ("user_prompt", {"prompt.id": "p-1", "prompt_length": 42}),
    )
    outcomes = []
    for order in ((metrics, "metrics"), (events, "logs")), ((events, "logs"), (metrics, "metrics")):
        UsageRecord.objects.all().delete()
        ActivityEvent.objects.all().delete()
        OtlpSession.objects.all().delete()
        for message, signal in order:
            assert post(key, signal, message)[0] == 200
        outcomes.append(_session_figures(org))
    assert outcomes[0] == outcomes[1]
    usage, kinds = outcomes[0]
    # Usage and diffs from the events (request id, cost in micros, one request); sessions from metrics.
    assert usage == [("otlp:cc-req:req_01", "otlp_logs", 1, Decimal("0.02"))]
    assert kinds == [("agent_run", "otlp_logs"), ("diff_accepted", "otlp_logs"), ("session_start", "otlp_metrics")]
    assert OtlpSession.objects.get(org=org, session_id=SESSION).usage_source == "logs"


def _session_figures(org):
    usage = [(r.request_id, r.source, r.request_count, r.cost) for r in usage_rows(org)]
    kinds = sorted(ActivityEvent.objects.filter(org=org).values_list("kind", "source"))
    return usage, kinds


@pytest.mark.parametrize("setting, source", [("logs", "otlp_logs"), ("metrics", "otlp_metrics")])
def test_a_key_fixed_to_one_source_ignores_the_other(org, key, setting, source):
    key.otlp_usage_source = setting
    key.save()
    meter = ClaudeCodeMeter()
    meter.request(input=10, output=20, cost=0.01)
    assert post(key, "metrics", meter.collect())[0] == 200
    events = claude_code_events(
        (
            "api_request",
            {
                "model": "claude-sonnet-4-5",
                "input_tokens": 10,
                "output_tokens": 20,
                "cost_usd": 0.01,
                "request_id": "r1",
            },
        )
    )
    assert post(key, "logs", events)[0] == 200
    assert [r.source for r in usage_rows(org)] == [source]


@pytest.mark.django_db(transaction=True)
def test_metrics_and_events_of_one_session_sent_at_once_count_once(org, key):
    """Two threads (two connections) send the same session's metrics and events at the same
    moment, several times over: the row lock on OtlpSession leaves the events' figures only."""
    for round in range(4):
        session = f"race-{round}"
        base = {**BASE, "session.id": session}
        meter = ClaudeCodeMeter()
        for kind, value in (("input", 100), ("output", 50)):
            meter.tokens.add(value, {**base, "model": "claude-sonnet-4-5", "type": kind})
        metrics = meter.collect()
        exporter = InMemoryLogRecordExporter()
        provider = LoggerProvider(resource=RESOURCE)
        provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
        provider.get_logger("com.anthropic.claude_code.events").emit(
            timestamp=time.time_ns(),
            event_name="api_request",
            attributes={
                **base,
                "model": "claude-sonnet-4-5",
                "input_tokens": 100,
                "output_tokens": 50,
                "cost_usd": 0.001,
                "request_id": f"req-{round}",
            },
        )
        events = encode_logs(exporter.get_finished_logs())
        start, answers = threading.Barrier(2), []

        def send(signal, message, start=start, answers=answers):
            start.wait()
            try:
                answers.append(post(key, signal, message)[0])
            finally:
                connection.close()

        threads = [threading.Thread(target=send, args=a) for a in (("metrics", metrics), ("logs", events))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert answers == [200, 200]
        rows = UsageRecord.objects.filter(org=org, session__session_id=session)
        assert [(r.source, r.input_tokens) for r in rows] == [("otlp_logs", 100)]


def test_genai_spans_become_priced_records_and_agent_runs(org, key, dev):
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot", "enduser.id": "dev@acme.test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("support-bot")
    with tracer.start_as_current_span(
        "invoke_agent triage",
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "triage",
            "gen_ai.usage.input_tokens": 999,
            "gen_ai.usage.output_tokens": 999,
        },
    ):
        with tracer.start_as_current_span(
            "chat gpt-5-mini",
            attributes=CHAT_SPAN,
        ):
            pass
        with tracer.start_as_current_span("execute_tool lookup", attributes={"gen_ai.operation.name": "execute_tool"}):
            pass
    message = encode_spans(exporter.get_finished_spans())
    assert post(key, "traces", message)[0] == 200
    [record] = usage_rows(org)
    assert (record.input_tokens, record.cached_input_tokens, record.output_tokens) == (1200, 200, 80)
    assert (record.source, record.request_count, record.user_id, record.conversation_id) == (
        "otlp_traces",
        1,
        dev.pk,
        "conv-9",
    )
    assert record.request_id.startswith("otlp:span:")
    price = PriceBook.load().price_at(record.model_id, record.timestamp)
    assert price is not None and record.cost > 0  # priced from the table: spans carry no cost
    assert list(ActivityEvent.objects.filter(org=org).values_list("kind", "quantity")) == [("agent_run", 1)]
    assert post(key, "traces", message, as_json=True)[0] == 200  # hex ids in JSON name the same spans
    assert UsageRecord.objects.filter(org=org).count() == 1


def test_summary_counts_requests_from_request_count(org, key, admin):
    meter = ClaudeCodeMeter()
    meter.request(input=10, output=20, cost=0.01)
    assert post(key, "metrics", meter.collect())[0] == 200
    events = claude_code_events(
        (
            "api_request",
            {
                "model": "claude-haiku-4-5",
                "input_tokens": 5,
                "output_tokens": 5,
                "cost_usd": 0.001,
                "request_id": "r-a",
                "session.id": "other-session",
            },
        ),
        (
            "api_error",
            {
                "model": "claude-haiku-4-5",
                "error": "overloaded",
                "status_code": "529",
                "request_id": "r-b",
                "session.id": "other-session",
            },
        ),
    )
    assert post(key, "logs", events)[0] == 200
    now = timezone.now()
    answer = selectors.summary(
        selectors.Query(Scope(org=org, role="admin"), now - timedelta(days=1), now + timedelta(minutes=1))
    )
    rows = usage_rows(org)
    assert answer["requests"] == sum(r.request_count for r in rows) == 2  # the metrics record stands for none
    assert answer["failed_requests"] == 1


def test_a_partly_bad_request_stores_the_good_items_and_says_what_it_rejected(org, key):
    events = claude_code_events(
        ("api_request", {"model": "claude-sonnet-4-5", "input_tokens": 10, "output_tokens": 1, "request_id": "ok"}),
        ("api_request", {"model": "claude-sonnet-4-5", "input_tokens": -5, "output_tokens": 1, "request_id": "bad"}),
        ("some_future_event", {}),
    )
    status, body = post(key, "logs", events)
    assert status == 200
    answer = ExportLogsServiceResponse.FromString(body)
    assert answer.partial_success.rejected_log_records == 1
    assert "bad" in answer.partial_success.error_message or "input_tokens" in answer.partial_success.error_message
    assert [r.request_id for r in usage_rows(org)] == ["otlp:cc-req:ok"]


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="SQLite caps the parameters of one statement, so Django splits big bulk inserts there",
)
def test_the_query_count_does_not_grow_with_the_batch(org, key):
    def sent(n: int, offset: int) -> int:
        events = claude_code_events(
            *[
                (
                    "api_request",
                    {
                        "model": "claude-sonnet-4-5",
                        "input_tokens": 10,
                        "output_tokens": 1,
                        "request_id": f"r{offset + i}",
                        "session.id": f"s{offset + i % 3}",
                    },
                )
                for i in range(n)
            ]
        )
        with CaptureQueriesContext(connection) as queries:
            assert post(key, "logs", events)[0] == 200
        return len(queries)

    sent(1, 0)  # the user, team, model and agent exist from here on
    assert sent(3, 100) == sent(60, 1000)
    assert UsageRecord.objects.filter(org=org).count() == 64


def test_idle_stream_state_is_forgotten(org, key):
    meter = ClaudeCodeMeter(AggregationTemporality.CUMULATIVE)
    meter.request(input=10, output=1)
    assert post(key, "metrics", meter.collect())[0] == 200
    assert OtlpStream.objects.filter(org=org).count() == 2
    OtlpStream.objects.update(updated_at=timezone.now() - timedelta(days=36))
    assert forget_idle_otlp_streams() == 2
    assert not OtlpStream.objects.exists()


def test_a_conflict_retries_the_whole_request_streams_state_included(org, key, monkeypatch):
    # A concurrent writer's row refusing ours rolls back the request's transaction, in which the
    # cumulative streams' state had already advanced: the run that follows must start from the
    # state before it, or the increase would be counted from the wrong base.
    meter = ClaudeCodeMeter(AggregationTemporality.CUMULATIVE)
    meter.request(input=100, output=10, cost=0.5)
    first = meter.collect()
    meter.request(input=50, output=5, cost=0.25)
    second = meter.collect()
    assert post(key, "metrics", first)[0] == 200

    def streams():
        return sorted(OtlpStream.objects.filter(org=org).values_list("stream_hash", "last_value"))

    before, write, runs = streams(), services._write, []

    def conflicting_once(*args):
        runs.append(streams())  # as the run is about to write its rows
        if len(runs) == 1:
            raise IntegrityError("a concurrent writer took one of our ids")
        return write(*args)

    monkeypatch.setattr(services, "_write", conflicting_once)
    assert post(key, "metrics", second)[0] == 200

    # Both runs advanced the streams from the same state, once.
    assert len(runs) == 2 and runs[0] == runs[1] != before
    rows = usage_rows(org)
    assert (sum(r.input_tokens for r in rows), sum(r.output_tokens for r in rows)) == (150, 15)
    assert sum(r.cost for r in rows) == Decimal("0.75")
    assert OtlpKeyStats.objects.get(api_key=key, signal="metrics").requests == 2


def test_prompt_text_sent_in_an_event_is_stored_nowhere(org, key):
    # Claude Code sends the prompt itself when OTEL_LOG_USER_PROMPTS=1: Tally keeps its id and
    # length, never the text (nor, by the run-wide watch in tests/conftest.py, logs it).
    message = claude_code_events(("user_prompt", {"prompt.id": "p-9", "prompt_length": 45, "prompt": PROMPT_TEXT}))
    assert post(key, "logs", message)[0] == 200
    stored = list(ActivityEvent.objects.filter(org=org).values()) + list(UsageRecord.objects.filter(org=org).values())
    assert [(row["event_id"], row["metadata"].get("prompt_length")) for row in stored] == [("otlp:cc-prompt:p-9", 45)]
    assert PROMPT_TEXT not in repr(stored)
