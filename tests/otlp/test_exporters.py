"""The OTLP intake driven by the real OpenTelemetry Python exporters over HTTP (DESIGN §12): the
SDK collects, its OTLP/HTTP exporters encode, compress, send and retry to a live server, and the
stored rows are checked against figures computed here from what was sent."""

import json
import math
import time
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import requests
import time_machine
from django.core.cache import cache
from django.db.models import Sum
from django.test import Client
from opentelemetry.exporter.otlp.json.http.metric_exporter import OTLPMetricExporter as JsonMetricExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import Counter
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from accounts.services import api_key_create
from metering.models import ActivityEvent, OtlpKeyStats, UsageRecord
from metering.pricing import PriceBook, Tokens, cost_of, price_set, quantize_money
from metering.ratelimit import WINDOW_SECONDS
from tests.conftest import make_user
from tests.otlp.test_intake import BASE, CHAT_SPAN, RESOURCE, ClaudeCodeMeter

FIXTURES = Path(__file__).parent / "fixtures"
DELTA, CUMULATIVE = AggregationTemporality.DELTA, AggregationTemporality.CUMULATIVE
NEVER = 3_600_000  # ms: the batch processors export when flushed, not on their own schedule


@pytest.fixture
def dev(org, platform_team):
    return make_user("dev@acme.test", org, teams=[platform_team])


@pytest.fixture
def key(org, dev):
    key, secret = api_key_create(org=org, name="otlp", scopes={"ingest"}, owner=dev)
    key.secret = secret
    return key


class Sent:
    """Mixed into a real exporter: keeps what each export came to and, with `resend`, sends every
    batch twice, as a client does when an acknowledgement is lost."""

    def __init__(self, *args, resend=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.resend = resend
        self.results = []

    def export(self, batch, *args, **kwargs):
        for _ in range(2 if self.resend else 1):
            self.results.append(super().export(batch, *args, **kwargs).name)
        return self.results[-1]


class MetricExporter(Sent, OTLPMetricExporter):
    pass


class LogExporter(Sent, OTLPLogExporter):
    pass


class SpanExporter(Sent, OTLPSpanExporter):
    pass


class JsonExporter(Sent, JsonMetricExporter):
    pass


@pytest.fixture
def exporter(live_server, key):
    """Makes exporters aimed at the live server with the key, as OTEL_EXPORTER_OTLP_ENDPOINT and
    _HEADERS would. At teardown the exporters close first, so the providers' and readers' shutdown
    (passed to `closing`) sends nothing after the test's assertions, and nothing is left for exit."""
    made, closers = [], []

    def make(cls, signal: str, **options):
        made.append(
            cls(endpoint=f"{live_server.url}/v1/{signal}", headers={"Authorization": f"Bearer {key.secret}"}, **options)
        )
        return made[-1]

    make.closing = closers.append
    yield make
    for thing in made + closers:
        thing.shutdown()


class ExportingMeter(ClaudeCodeMeter):
    """ClaudeCodeMeter's instruments, read by a PeriodicExportingMetricReader in front of `exporter`
    that exports only on flush(), so the temporality is the exporter's preference. Its provider is
    not shut down at exit (the server is gone by then)."""

    def __init__(self, exporter):
        super().__init__(reader=PeriodicExportingMetricReader(exporter, export_interval_millis=math.inf))

    def flush(self):
        self.reader.force_flush()


@dataclass(frozen=True)
class Request:
    id: str
    model: str
    input: int
    output: int
    cache_read: int
    cache_write: int
    cost_micros: int


# One session: two halves, each with its API requests, accepted edits and lines added.
HALVES = (
    (
        [
            Request("req_a1", "claude-sonnet-4-5", 120, 300, 4000, 500, 21_500),
            Request("req_a2", "claude-haiku-4-5", 40, 90, 0, 0, 650),
        ],
        2,
        40,
    ),
    (
        [
            Request("req_b1", "claude-sonnet-4-5", 75, 410, 6100, 0, 19_875),
            Request("req_b2", "claude-sonnet-4-5", 10, 5, 6200, 300, 4_105),
        ],
        1,
        25,
    ),
)


class ClaudeCodeSession:
    """One Claude Code session as its two exporters send it (OTEL_METRICS_EXPORTER and
    OTEL_LOGS_EXPORTER both otlp): each pipeline buffers until flushed."""

    def __init__(self, exporter, *, temporality=DELTA, compression=Compression.NoCompression, resend=False):
        self.metrics = exporter(
            MetricExporter,
            "metrics",
            preferred_temporality={Counter: temporality},
            compression=compression,
            resend=resend,
        )
        self.meter = ExportingMeter(self.metrics)
        exporter.closing(self.meter.provider)
        self.logs = exporter(LogExporter, "logs", compression=compression, resend=resend)
        self.provider = LoggerProvider(resource=RESOURCE, shutdown_on_exit=False)
        self.provider.add_log_record_processor(BatchLogRecordProcessor(self.logs, schedule_delay_millis=NEVER))
        exporter.closing(self.provider)
        self.logger = self.provider.get_logger("com.anthropic.claude_code.events", "2.1.220")
        self.edits = 0
        self.meter.sessions.add(1, {**BASE, "start_type": "fresh"})

    def play(self, steps: str):
        """'1', '2': the session's first or second half happens; 'M', 'E': metrics or events export."""
        for step in steps:
            if step == "M":
                self.meter.flush()
            elif step == "E":
                assert self.provider.force_flush()
            else:
                self.half(*HALVES[int(step) - 1])
        assert self.metrics.results and set(self.metrics.results) == {"SUCCESS"}
        assert self.logs.results and set(self.logs.results) == {"SUCCESS"}

    def half(self, calls, edits, lines):
        for r in calls:
            self.meter.request(
                input=r.input,
                output=r.output,
                cache_read=r.cache_read,
                cache_write=r.cache_write,
                cost=r.cost_micros / 1e6,
                model=r.model,
            )
            self.emit("user_prompt", {"prompt.id": f"prompt-{r.id}", "prompt_length": 64})
            self.emit(
                "api_request",
                {
                    "model": r.model,
                    "input_tokens": r.input,
                    "output_tokens": r.output,
                    "cache_read_tokens": r.cache_read,
                    "cache_creation_tokens": r.cache_write,
                    "cost_usd": r.cost_micros / 1e6,
                    "cost_usd_micros": r.cost_micros,
                    "duration_ms": 1800,
                    "request_id": r.id,
                },
            )
        for _ in range(edits):
            self.edits += 1
            self.meter.decision.add(1, {**BASE, "decision": "accept", "tool_name": "Edit", "language": "Python"})
            self.emit(
                "tool_decision",
                {"tool_name": "Edit", "decision": "accept", "tool_use_id": f"toolu_{self.edits}", "source": "config"},
            )
        self.meter.lines.add(lines, {**BASE, "type": "added", "model": calls[0].model})

    def emit(self, name, attrs):
        self.logger.emit(timestamp=time.time_ns(), event_name=name, body=name, attributes={**BASE, **attrs})


def expected_figures():
    """What the session's events say (usage and diffs) and its metrics say (sessions, lines)."""
    calls = [r for half in HALVES for r in half[0]]
    return {
        "usage": {
            "input": sum(r.input + r.cache_read + r.cache_write for r in calls),
            "cached": sum(r.cache_read for r in calls),
            "cache_write": sum(r.cache_write for r in calls),
            "output": sum(r.output for r in calls),
            "cost": sum(Decimal(r.cost_micros) / 1_000_000 for r in calls),
            "requests": len(calls),
        },
        "ids": sorted(f"otlp:cc-req:{r.id}" for r in calls),
        "activity": {
            ("agent_run", "otlp_logs"): (len(calls), 0),
            ("diff_accepted", "otlp_logs"): (sum(h[1] for h in HALVES), 0),
            ("lines_changed", "otlp_metrics"): (0, sum(h[2] for h in HALVES)),
            ("session_start", "otlp_metrics"): (1, 0),
        },
        "usage_sources": {"otlp_logs"},
    }


def stored_figures(org):
    rows = UsageRecord.objects.filter(org=org)
    totals = rows.aggregate(
        input=Sum("input_tokens"),
        cached=Sum("cached_input_tokens"),
        cache_write=Sum("cache_write_tokens"),
        output=Sum("output_tokens"),
        cost=Sum("cost"),
        requests=Sum("request_count"),
    )
    activity = {}
    for kind, source, quantity, lines in ActivityEvent.objects.filter(org=org).values_list(
        "kind", "source", "quantity", "lines_added"
    ):
        q, n = activity.get((kind, source), (0, 0))
        activity[(kind, source)] = (q + quantity, n + lines)
    return {
        "usage": totals,
        "ids": sorted(rows.values_list("request_id", flat=True)),
        "activity": activity,
        "usage_sources": set(rows.values_list("source", flat=True)),
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "temporality, compression",
    [
        (DELTA, Compression.NoCompression),
        (CUMULATIVE, Compression.NoCompression),
        (DELTA, Compression.Gzip),
        (CUMULATIVE, Compression.Deflate),
    ],
    ids=["delta", "cumulative", "delta-gzip", "cumulative-deflate"],
)
def test_a_claude_code_session_through_both_exporters_counts_its_events(
    exporter, org, dev, platform_team, temporality, compression
):
    session = ClaudeCodeSession(exporter, temporality=temporality, compression=compression)
    session.play("1ME2EM")
    assert stored_figures(org) == expected_figures()
    record = UsageRecord.objects.filter(org=org).order_by("request_id").first()
    assert (record.user_id, record.team_id, record.session.session_id) == (dev.pk, platform_team.pk, BASE["session.id"])
    assert sorted(t.name for t in record.tags.all()) == ["cost_center:eng-123", "department:engineering"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "steps",
    ["12ME", "12EM", "1M2EM", "1E2MME"],
    ids=["metrics-then-events", "events-then-metrics", "metrics-before-and-after", "events-first-metrics-twice"],
)
def test_metrics_before_or_after_the_events_end_in_the_events_figures(exporter, org, steps):
    ClaudeCodeSession(exporter).play(steps)
    assert stored_figures(org) == expected_figures()


@pytest.mark.django_db(transaction=True)
def test_every_export_sent_twice_stores_it_once(exporter, org, key):
    session = ClaudeCodeSession(exporter, resend=True)
    session.play("1ME2ME")
    assert len(session.logs.results) == 4 and len(session.metrics.results) == 4
    assert stored_figures(org) == expected_figures()
    stats = OtlpKeyStats.objects.get(api_key=key, signal="logs")
    # Every event item came twice; the second copy of each was a duplicate.
    assert stats.stored == stats.duplicates == 4 + 4 + 3  # prompts, requests, edits


@pytest.mark.django_db(transaction=True)
def test_a_429_is_waited_out_and_the_resent_export_is_stored(exporter, live_server, key, org, settings, caplog):
    settings.API_RATE_LIMIT_PER_MINUTE = 1
    cache.clear()  # the counters are per key id and minute, and ids recur across test runs
    # 0.9 s before a window ends, the limiter's Retry-After is 1 s and the retry lands in the
    # next window: the SDK's real wait is one second, not up to a minute.
    window_end = (int(time.time()) // WINDOW_SECONDS + 1) * WINDOW_SECONDS
    metrics = exporter(MetricExporter, "metrics", preferred_temporality={Counter: DELTA})
    meter = ExportingMeter(metrics)
    exporter.closing(meter.provider)
    with time_machine.travel(window_end - 0.9, tick=True):
        meter.request(input=100, output=20, cache_read=1000, cost=0.0125)
        spent = requests.post(
            f"{live_server.url}/v1/metrics",
            data=b"",
            headers={"Authorization": f"Bearer {key.secret}", "Content-Type": "application/x-protobuf"},
        )
        assert spent.status_code == 200  # the window's one request
        started = time.monotonic()
        meter.flush()
        waited = time.monotonic() - started
    assert metrics.results == ["SUCCESS"]
    assert "retrying in 1.00s" in caplog.text
    assert 1 <= waited < 5
    [record] = UsageRecord.objects.filter(org=org)
    assert (record.input_tokens, record.cached_input_tokens, record.output_tokens, record.cost) == (
        1100,
        1000,
        20,
        Decimal("0.0125"),
    )


GPT = ("gpt-5-mini", Decimal("0.25"), Decimal("0.025"), Decimal("2"))
EMBEDDING = ("text-embedding-3-small", Decimal("0.02"), Decimal("0"), Decimal("0"))


@pytest.mark.django_db(transaction=True)
def test_genai_spans_are_priced_from_the_table_and_the_agent_span_is_a_run(exporter, org, dev):
    # Set here: a transactional test's flush may have removed the migration's default prices.
    for name, input, cached, output in (GPT, EMBEDDING):
        price_set(
            model=name,
            effective_from=date(2025, 1, 1),
            input=input,
            cached_input=cached,
            output=output,
            provider="openai",
        )
    spans = exporter(SpanExporter, "traces")
    provider = TracerProvider(
        resource=Resource.create({"service.name": "support-bot", "enduser.id": "dev@acme.test"}), shutdown_on_exit=False
    )
    provider.add_span_processor(BatchSpanProcessor(spans, schedule_delay_millis=NEVER))
    exporter.closing(provider)
    tracer = provider.get_tracer("support-bot")
    agent_usage = {"gen_ai.usage.input_tokens": 7200, "gen_ai.usage.output_tokens": 80}  # its children's, again
    with tracer.start_as_current_span(
        "invoke_agent triage",
        attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "triage", **agent_usage},
    ):
        with tracer.start_as_current_span(
            "embeddings text-embedding-3-small",
            attributes={
                "gen_ai.operation.name": "embeddings",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "text-embedding-3-small",
                "gen_ai.usage.input_tokens": 6000,
            },
        ):
            pass
        with tracer.start_as_current_span(
            "chat gpt-5-mini",
            attributes=CHAT_SPAN,
        ):
            pass
    assert provider.force_flush()
    assert spans.results == ["SUCCESS"]

    rows = {r.model.name: r for r in UsageRecord.objects.filter(org=org).select_related("model")}
    assert sorted(rows) == ["gpt-5-mini", "text-embedding-3-small"]
    chat, embedding = rows["gpt-5-mini"], rows["text-embedding-3-small"]
    # Priced here by hand: (uncached input, cached input, output) at the rates set above, per million.
    million = Decimal(1_000_000)
    assert chat.cost == quantize_money((1000 * GPT[1] + 200 * GPT[2] + 80 * GPT[3]) / million)
    assert embedding.cost == quantize_money(6000 * EMBEDDING[1] / million)
    book = PriceBook.load()
    for record, tokens in ((chat, Tokens(input=1200, cached_input=200, output=80)), (embedding, Tokens(input=6000))):
        price = book.price_at(record.model_id, record.timestamp)
        assert (record.price_id, record.cost_source, record.cost) == (price.pk, "priced", cost_of(tokens, price))
        assert (record.source, record.request_count, record.user_id) == ("otlp_traces", 1, dev.pk)
    assert (chat.service_type, chat.conversation_id, chat.input_tokens, chat.output_tokens) == (
        "text_generation",
        "conv-9",
        1200,
        80,
    )
    assert (embedding.service_type, embedding.input_tokens, embedding.output_tokens) == ("embedding", 6000, 0)
    # The agent span's own usage is not counted: only its children's tokens are stored.
    totals = UsageRecord.objects.filter(org=org).aggregate(i=Sum("input_tokens"), o=Sum("output_tokens"))
    assert totals == {"i": 7200, "o": 80}
    [run] = ActivityEvent.objects.filter(org=org).select_related("agent")
    assert (run.kind, run.quantity, run.agent.name, run.source) == ("agent_run", 1, "triage", "otlp_traces")


@pytest.mark.django_db(transaction=True)
def test_the_beta_json_exporter_sends_cumulative_claude_code_metrics(exporter, org):
    metrics = exporter(JsonExporter, "metrics")  # the SDK's default: cumulative
    meter = ExportingMeter(metrics)
    exporter.closing(meter.provider)
    meter.request(input=100, output=10, cache_read=900, cost=0.5)
    meter.flush()
    meter.request(input=50, output=5, cache_write=200, cost=0.25)
    meter.flush()
    meter.flush()  # unchanged cumulative values: a zero increase
    assert metrics.results == ["SUCCESS"] * 3
    rows = UsageRecord.objects.filter(org=org)
    assert {r.request_id[:7] for r in rows} == {"otlp:m:"}
    totals = rows.aggregate(
        i=Sum("input_tokens"), c=Sum("cached_input_tokens"), w=Sum("cache_write_tokens"), o=Sum("output_tokens")
    )
    assert totals == {"i": 1250, "c": 900, "w": 200, "o": 15}
    assert sum(r.cost for r in rows) == Decimal("0.75")


@pytest.mark.parametrize("signal, name", [("metrics", "metrics"), ("logs", "logs"), ("traces", "trace")])
def test_the_otlp_spec_examples_are_answered_200_and_ignored(org, key, signal, name):
    """The opentelemetry-proto examples are generic data (a counter, a gauge and histograms, a
    plain log record, a server span): none is mapped (DESIGN §12.2 'ignored'), none is an error."""
    body = (FIXTURES / f"{name}.json").read_bytes()
    if signal == "traces":  # were a span a GenAI span, it would have to be stored
        spans = json.loads(body)["resourceSpans"][0]["scopeSpans"][0]["spans"]
        assert not any(a["key"].startswith("gen_ai.") for span in spans for a in span["attributes"])
    response = Client().post(
        f"/v1/{signal}", body, content_type="application/json", headers={"Authorization": f"Bearer {key.secret}"}
    )
    assert (response.status_code, response["Content-Type"]) == (200, "application/json")
    assert "partialSuccess" not in json.loads(response.content)
    assert not UsageRecord.objects.exists() and not ActivityEvent.objects.exists()
    stats = OtlpKeyStats.objects.get(api_key=key, signal=signal)
    items = {"metrics": 4, "logs": 1, "traces": 1}[signal]
    assert (stats.requests, stats.stored, stats.rejected, stats.ignored) == (1, 0, 0, items)
