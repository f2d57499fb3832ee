"""A bad item is rejected alone (DESIGN §12.2): 200 with partial_success counting it, and the good
item beside it stored. A 400 would make the client drop the whole batch."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2

from accounts.services import api_key_create
from metering.models import ActivityEvent, UsageRecord
from tests.otlp.test_mapping import STANDARD, counter, kvs, metrics_request, point, tokens


def ns(moment) -> int:
    return int(moment.timestamp() * 10**9)


NOW = timezone.now()
INPUT = {**STANDARD, "model": "claude-sonnet-4-5", "type": "input"}
GOOD = counter("claude_code.commit.count", point(1, STANDARD, time=ns(NOW)))
BAD_METRICS = {
    "unknown token type": counter("claude_code.token.usage", tokens("cacheCreation1h", 5)),
    "unknown decision": counter("claude_code.code_edit_tool.decision", point(1, {**STANDARD, "decision": "maybe"})),
    "a gauge": metrics_pb2.Metric(
        name="claude_code.token.usage", gauge=metrics_pb2.Gauge(data_points=[tokens("input", 5)])
    ),
    "a histogram": metrics_pb2.Metric(
        name="claude_code.cost.usage",
        histogram=metrics_pb2.Histogram(
            data_points=[metrics_pb2.HistogramDataPoint(count=1, sum=0.5, attributes=kvs(STANDARD))],
            aggregation_temporality=1,
        ),
    ),
    "a non-monotonic sum": counter("claude_code.token.usage", tokens("input", 5), monotonic=False),
    "unspecified temporality": counter("claude_code.token.usage", tokens("input", 5), temporality=0),
    "a count above 1,000": counter("claude_code.session.count", point(1001, STANDARD)),
    "fractional tokens": counter("claude_code.token.usage", tokens("input", 1.5)),
    "negative tokens": counter("claude_code.token.usage", tokens("input", -5)),
    "no user identity": counter("claude_code.session.count", point(1, {"session.id": "s-9"})),
    "a timestamp in the future": counter("claude_code.token.usage", point(5, INPUT, time=ns(NOW + timedelta(hours=1)))),
    "a timestamp over 400 days old": counter(
        "claude_code.token.usage",
        point(5, INPUT, time=ns(NOW - timedelta(days=401)), start=ns(NOW - timedelta(days=402))),
    ),
    "an over-long model name": counter("claude_code.token.usage", tokens("input", 5, model="m" * 300)),
}


@pytest.fixture
def secret(org):
    return api_key_create(org=org, name="otlp", scopes={"ingest"})[1]  # no owner: no fallback user


def post(secret, signal, message):
    response = Client().post(
        f"/v1/{signal}",
        message.SerializeToString(),
        content_type="application/x-protobuf",
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 200, response.content
    return response.content


@pytest.mark.parametrize("case", BAD_METRICS)
def test_a_bad_metric_point_is_rejected_and_the_good_one_stored(org, secret, case):
    answer = ExportMetricsServiceResponse.FromString(post(secret, "metrics", metrics_request(BAD_METRICS[case], GOOD)))
    assert answer.partial_success.rejected_data_points == 1, answer
    assert answer.partial_success.error_message
    assert not UsageRecord.objects.exists()
    assert list(ActivityEvent.objects.values_list("kind", flat=True)) == ["commit"]


def span(name, attrs, span_id):
    start = ns(NOW - timedelta(seconds=5))
    return trace_pb2.Span(
        trace_id=bytes(range(16)),
        span_id=span_id,
        name=name,
        start_time_unix_nano=start,
        end_time_unix_nano=start + 10**9,
        attributes=kvs(attrs),
    )


def test_a_span_without_a_model_is_rejected_and_its_neighbour_stored(org, secret):
    usage = {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 2}
    request = ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=Resource(attributes=kvs({"service.name": "bot", "enduser.id": "ana@example.com"})),
                scope_spans=[
                    trace_pb2.ScopeSpans(
                        spans=[
                            span("chat", usage, b"\x01" * 8),
                            span("chat gpt-5", {**usage, "gen_ai.request.model": "gpt-5"}, b"\x02" * 8),
                        ]
                    )
                ],
            )
        ]
    )
    answer = ExportTraceServiceResponse.FromString(post(secret, "traces", request))
    assert answer.partial_success.rejected_spans == 1
    assert "model" in answer.partial_success.error_message
    assert list(UsageRecord.objects.values_list("model__name", flat=True)) == ["gpt-5"]
