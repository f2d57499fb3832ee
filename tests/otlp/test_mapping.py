"""OTLP requests mapped to §5 ingest items (DESIGN §12.3–§12.6), built with the protobuf classes."""

import json
from datetime import UTC, datetime

import pytest
import time_machine
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2

from metering.otlp import ids
from metering.otlp.attributes import typed_attributes
from metering.otlp.mapping import KeySettings, StreamPoint, map_logs, map_metrics, map_traces
from metering.otlp.temporality import next_delta
from metering.schemas import parse_item

T = int(datetime(2026, 12, 7, 10, 0, tzinfo=UTC).timestamp()) * 10**9
START = T - 60 * 10**9
STAMP = "2026-12-07T10:00:00+00:00"
SETTINGS = KeySettings(owner=None, use_client_cost=True)
CC_SCOPE = "com.anthropic.claude_code"
STANDARD = {"session.id": "s-1", "user.email": "Ana@Example.com", "organization.id": "org-uuid", "terminal.type": "vsc"}


def any_value(value) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    return AnyValue(string_value=value)


def kvs(attrs: dict | None) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in (attrs or {}).items()]


# ---------------------------------------------------------------- metric builders


def point(value, attrs=None, time=T, start=START, **fields):
    number = {"as_double": value} if isinstance(value, float) else {"as_int": value}
    return metrics_pb2.NumberDataPoint(
        attributes=kvs(attrs), start_time_unix_nano=start, time_unix_nano=time, **number, **fields
    )


def counter(name, *points, temporality=1, monotonic=True):
    return metrics_pb2.Metric(
        name=name, sum=metrics_pb2.Sum(data_points=points, aggregation_temporality=temporality, is_monotonic=monotonic)
    )


def metrics_request(*metrics, resource=None, scope=CC_SCOPE):
    return ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                resource=Resource(attributes=kvs({"service.name": "claude-code", **(resource or {})})),
                scope_metrics=[
                    metrics_pb2.ScopeMetrics(scope=InstrumentationScope(name=scope, version="2.1.0"), metrics=metrics)
                ],
            )
        ]
    )


def tokens(kind, value, **attrs):
    return point(value, {**STANDARD, "model": "claude-sonnet-4-5", "type": kind, **attrs})


def cost(value, **attrs):
    return point(value, {**STANDARD, "model": "claude-sonnet-4-5", **attrs})


def no_deltas(points):
    assert points == [], "delta points must not be sent to the stream state"
    return []


def run_metrics(*metrics, settings=SETTINGS, resource=None, deltas=no_deltas):
    return map_metrics(metrics_request(*metrics, resource=resource), settings, deltas)


def one_request():
    return (
        counter(
            "claude_code.token.usage",
            tokens("input", 100),
            tokens("output", 40),
            tokens("cacheRead", 1000),
            tokens("cacheCreation", 200),
        ),
        counter("claude_code.cost.usage", cost(0.0123)),
    )


# ---------------------------------------------------------------- Claude Code metrics: the join


def test_token_and_cost_points_of_one_collection_make_one_usage_record():
    mapped = run_metrics(*one_request())
    assert mapped.ignored == 0 and mapped.rejected == []
    [derived] = mapped.items
    assert (derived.kind, derived.source, derived.session, derived.role) == (
        "usage",
        "otlp_metrics",
        "s-1",
        "metrics_usage",
    )
    item = derived.item
    assert item["request_id"].startswith("otlp:m:") and len(item["request_id"]) == len("otlp:m:") + 32
    assert item | {"request_id": None, "metadata": None} == {
        "request_id": None,
        "metadata": None,
        "timestamp": STAMP,
        "user": "ana@example.com",
        "agent": "claude-code",
        "model": "claude-sonnet-4-5",
        "provider": "anthropic",
        "service_type": "text_generation",
        "input_tokens": 1300,
        "cached_input_tokens": 1000,
        "cache_write_tokens": 200,
        "output_tokens": 40,
        "request_count": 0,
        "session_id": "s-1",
        "cost": "0.0123",
    }
    assert item["metadata"] == {"organization.id": "org-uuid", "terminal.type": "vsc"}


def test_the_join_ignores_start_times_which_differ_per_stream():
    mapped = run_metrics(
        counter("claude_code.token.usage", point(5, {**STANDARD, "model": "m", "type": "input"}, start=START - 99)),
        counter("claude_code.cost.usage", point(0.5, {**STANDARD, "model": "m"}, start=START)),
    )
    [derived] = mapped.items
    assert derived.item["input_tokens"] == 5 and derived.item["cost"] == "0.5"


def test_points_at_different_end_times_do_not_join():
    mapped = run_metrics(
        counter("claude_code.token.usage", point(5, {**STANDARD, "model": "m", "type": "input"}, time=T)),
        counter("claude_code.cost.usage", point(0.5, {**STANDARD, "model": "m"}, time=T + 1)),
    )
    token_only, cost_only = (d.item for d in mapped.items)
    assert (token_only["input_tokens"], token_only["cost"]) == (5, "0")
    assert (cost_only["input_tokens"], cost_only["cost"]) == (0, "0.5")
    assert token_only["request_id"] != cost_only["request_id"]


def test_points_with_different_attributes_make_separate_records():
    mapped = run_metrics(
        counter("claude_code.token.usage", tokens("input", 5), tokens("input", 7, model="claude-opus-4-1")),
    )
    assert sorted((d.item["model"], d.item["input_tokens"]) for d in mapped.items) == [
        ("claude-opus-4-1", 7),
        ("claude-sonnet-4-5", 5),
    ]


def test_a_token_only_record_costs_zero_when_client_costs_are_used():
    [derived] = run_metrics(counter("claude_code.token.usage", tokens("output", 3))).items
    assert derived.item["cost"] == "0"


def test_without_client_costs_a_token_record_has_no_cost_so_it_is_priced():
    mapped = run_metrics(*one_request(), settings=KeySettings(owner=None, use_client_cost=False))
    [derived] = mapped.items
    assert "cost" not in derived.item
    assert derived.item["input_tokens"] == 1300


def test_without_client_costs_a_cost_only_point_makes_nothing():
    mapped = run_metrics(
        counter("claude_code.cost.usage", cost(0.5)), settings=KeySettings(owner=None, use_client_cost=False)
    )
    assert mapped.items == [] and mapped.ignored == 1


def test_a_cost_is_a_decimal_of_the_double_cut_to_ten_places():
    [derived] = run_metrics(counter("claude_code.cost.usage", cost(0.1234567890123))).items
    assert derived.item["cost"] == "0.123456789"  # 0.12345678901|23 rounded, trailing zero dropped


def test_zero_valued_points_make_nothing():
    mapped = run_metrics(
        counter("claude_code.token.usage", tokens("input", 0)),
        counter("claude_code.cost.usage", cost(0.0)),
        counter("claude_code.commit.count", point(0, STANDARD)),
    )
    assert mapped.items == [] and mapped.ignored == 3 and mapped.rejected == []


def test_a_double_token_value_without_fraction_is_fine():
    [derived] = run_metrics(counter("claude_code.token.usage", tokens("input", 12.0))).items
    assert derived.item["input_tokens"] == 12 and isinstance(derived.item["input_tokens"], int)


def test_a_fractional_token_value_rejects_its_point():
    mapped = run_metrics(counter("claude_code.token.usage", tokens("input", 1.5), tokens("output", 4)))
    assert mapped.rejected == [
        "data point of claude_code.token.usage at 2026-12-07T10:00:00Z: value 1.5 is not a whole number"
    ]
    [derived] = mapped.items
    assert (derived.item["input_tokens"], derived.item["output_tokens"]) == (0, 4)


def test_a_negative_value_rejects_its_point():
    mapped = run_metrics(counter("claude_code.commit.count", point(-2, STANDARD)))
    assert mapped.rejected == ["data point of claude_code.commit.count at 2026-12-07T10:00:00Z: value -2 is negative"]


def test_a_point_without_a_value_is_rejected():
    bare = metrics_pb2.NumberDataPoint(attributes=kvs(STANDARD), time_unix_nano=T)
    mapped = run_metrics(counter("claude_code.commit.count", bare))
    assert mapped.rejected == ["data point of claude_code.commit.count at 2026-12-07T10:00:00Z: no value"]


def test_a_point_flagged_without_a_recorded_value_is_ignored():
    mapped = run_metrics(counter("claude_code.commit.count", point(3, STANDARD, flags=1)))
    assert mapped.items == [] and mapped.ignored == 1


def test_a_mapped_metric_that_is_not_a_monotonic_sum_rejects_all_its_points():
    gauge = metrics_pb2.Metric(
        name="claude_code.token.usage", gauge=metrics_pb2.Gauge(data_points=[tokens("input", 1), tokens("output", 1)])
    )
    not_monotonic = counter("claude_code.commit.count", point(1, STANDARD), monotonic=False)
    unspecified = counter("claude_code.session.count", point(1, STANDARD), temporality=0)
    mapped = run_metrics(gauge, not_monotonic, unspecified)
    assert mapped.items == []
    assert len(mapped.rejected) == 4
    assert mapped.rejected[0] == (
        "data point of claude_code.token.usage at 2026-12-07T10:00:00Z: claude_code.token.usage is not a "
        "monotonic Sum with delta or cumulative temporality"
    )


def test_other_metrics_and_active_time_are_ignored():
    mapped = run_metrics(
        counter("claude_code.active_time.total", point(3.5, {**STANDARD, "type": "cli"})),
        counter("gen_ai.client.token.usage", point(10, STANDARD), point(11, STANDARD)),
        metrics_pb2.Metric(name="gemini_cli.token.usage", gauge=metrics_pb2.Gauge(data_points=[point(1)])),
    )
    assert mapped.items == [] and mapped.ignored == 4 and mapped.rejected == []


def test_an_unknown_token_type_is_rejected():
    mapped = run_metrics(counter("claude_code.token.usage", tokens("cacheCreation1h", 5)))
    assert mapped.items == [] and mapped.ignored == 0
    assert ["type 'cacheCreation1h' is not one of" in reason for reason in mapped.rejected] == [True]


# ---------------------------------------------------------------- Claude Code metrics: counts and lines


def test_a_session_count_of_n_makes_n_session_starts_with_numbered_ids():
    mapped = run_metrics(counter("claude_code.session.count", point(3, {**STANDARD, "start_type": "fresh"})))
    assert [d.item["kind"] for d in mapped.items] == ["session_start"] * 3
    base = ids.metric_event_id(
        typed_attributes(metrics_request().resource_metrics[0].resource.attributes),
        InstrumentationScope(name=CC_SCOPE, version="2.1.0"),
        "claude_code.session.count",
        kvs({**STANDARD, "start_type": "fresh"}),
        T,
    )
    assert [d.item["event_id"] for d in mapped.items] == [f"{base}:1", f"{base}:2", f"{base}:3"]
    first = mapped.items[0]
    assert (first.role, first.session, first.source) == (None, "s-1", "otlp_metrics")
    assert first.item["quantity"] == 1 and first.item["agent"] == "claude-code"
    assert first.item["timestamp"] == STAMP and first.item["session_id"] == "s-1"
    assert first.item["metadata"]["start_type"] == "fresh"


def test_edit_decisions_become_diff_events_counted_as_metrics_usage():
    mapped = run_metrics(
        counter(
            "claude_code.code_edit_tool.decision",
            point(2, {**STANDARD, "decision": "accept", "tool_name": "Edit", "language": "Python"}),
            point(1, {**STANDARD, "decision": "reject", "tool_name": "Write"}),
            point(1, {**STANDARD, "decision": "maybe"}),
        )
    )
    assert [d.item["kind"] for d in mapped.items] == ["diff_accepted", "diff_accepted", "diff_rejected"]
    assert {d.role for d in mapped.items} == {"metrics_usage"}
    assert mapped.items[0].item["metadata"]["tool_name"] == "Edit"
    assert "decision" not in mapped.items[0].item["metadata"]
    assert mapped.ignored == 0 and len(mapped.rejected) == 1 and "decision 'maybe'" in mapped.rejected[0]


def test_commits_and_pull_requests_become_events():
    mapped = run_metrics(
        counter("claude_code.commit.count", point(1, STANDARD)),
        counter("claude_code.pull_request.count", point(2, STANDARD)),
    )
    assert [d.item["kind"] for d in mapped.items] == ["commit", "pull_request", "pull_request"]


def test_a_count_over_1000_rejects_its_point():
    mapped = run_metrics(counter("claude_code.commit.count", point(1001, STANDARD), point(1000, STANDARD, time=T + 1)))
    assert mapped.rejected == [
        "data point of claude_code.commit.count at 2026-12-07T10:00:00Z: value 1001 is over 1,000 events"
    ]
    assert len(mapped.items) == 1000


def test_lines_of_code_make_one_lines_changed_event_of_quantity_zero():
    mapped = run_metrics(
        counter(
            "claude_code.lines_of_code.count",
            point(1200, {**STANDARD, "type": "added", "model": "m"}),
            point(3, {**STANDARD, "type": "removed"}),
            point(3, {**STANDARD, "type": "moved"}),
        )
    )
    added, removed = (d.item for d in mapped.items)
    assert added["kind"] == "lines_changed" and added["lines_added"] == 1200 and added["quantity"] == 0
    assert "lines_removed" not in added and removed["lines_removed"] == 3
    assert not added["event_id"].endswith(":1") and len(added["event_id"]) == len("otlp:m:") + 32
    assert added["metadata"]["model"] == "m"
    assert {d.role for d in mapped.items} == {None}
    assert mapped.ignored == 0 and len(mapped.rejected) == 1 and "type 'moved'" in mapped.rejected[0]


# ---------------------------------------------------------------- who, team, project, tags, metadata (§12.4)


def user_of_point(attrs, resource=None, owner=None):
    mapped = run_metrics(
        counter("claude_code.commit.count", point(1, attrs)),
        resource=resource,
        settings=KeySettings(owner=owner, use_client_cost=True),
    )
    return mapped.items[0].item["user"] if mapped.items else mapped.rejected


def test_the_user_is_the_email_lowercased():
    assert user_of_point({"user.email": "Bo@X.COM", "enduser.id": "e@x.com"}) == "bo@x.com"


def test_the_user_falls_back_to_enduser_id_on_the_resource():
    assert user_of_point({"user.account_uuid": "u-1"}, resource={"enduser.id": "Dev@X.com"}) == "dev@x.com"


def test_the_user_falls_back_to_the_key_owner_before_anthropic_ids():
    assert user_of_point({"user.account_uuid": "u-1", "user.id": "i-1"}, owner="owner@x.com") == "owner@x.com"


def test_the_user_falls_back_to_the_anthropic_account_then_the_install():
    assert user_of_point({"user.account_uuid": "u-1", "user.id": "i-1"}) == "anthropic:u-1"
    assert user_of_point({"user.id": "i-1"}) == "install:i-1"


def test_no_user_rejects_the_point():
    [reason] = user_of_point({"session.id": "s"})
    assert reason.startswith("data point of claude_code.commit.count at 2026-12-07T10:00:00Z: no user")


def test_the_item_attribute_wins_over_the_resource():
    assert user_of_point({"user.email": "point@x.com"}, resource={"user.email": "resource@x.com"}) == "point@x.com"


def test_team_project_and_repository_come_from_their_keys_in_order():
    attrs = {**STANDARD, "team.id": "platform", "team": "ignored", "project": "checkout"}
    [derived] = run_metrics(
        counter("claude_code.commit.count", point(1, attrs)),
        resource={"team.name": "Platform Team", "vcs.repository.name": "acme/web"},
    ).items
    # Keys in order, each on the point then the resource: the resource's team.name beats the point's team.id.
    assert derived.item["team"] == "Platform Team"
    assert (derived.item["project"], derived.item["repository"]) == ("checkout", "acme/web")
    assert derived.item["metadata"]["team.id"] == "platform"


def test_team_project_and_repository_are_left_out_when_absent():
    [derived] = run_metrics(counter("claude_code.commit.count", point(1, STANDARD))).items
    assert not {"team", "project", "repository"} & derived.item.keys()


def test_resource_labels_become_tags_and_infrastructure_does_not():
    resource = {
        "department": "engineering",
        "cost_center": "eng-123",
        "team.id": "platform",
        "host.name": "laptop",
        "os.type": "linux",
        "service.version": "2.1",
        "app.version": "2.1",
        "user.email": "x@y.z",
        "prompt": "secret",
    }
    attrs = {**STANDARD, "department": "engineering", "cost_center": "eng-123"}
    [derived] = run_metrics(counter("claude_code.commit.count", point(1, attrs)), resource=resource).items
    assert derived.item["tags"] == ["cost_center:eng-123", "department:engineering"]
    # Values the point repeats from the resource are tags already, not metadata.
    assert derived.item["metadata"] == {"organization.id": "org-uuid", "terminal.type": "vsc"}


def test_tags_beyond_20_go_to_metadata():
    resource = {f"label{i:02}": f"v{i}" for i in range(25)}
    [derived] = run_metrics(counter("claude_code.commit.count", point(1, STANDARD)), resource=resource).items
    assert derived.item["tags"] == [f"label{i:02}:v{i}" for i in range(20)]
    assert {k: v for k, v in derived.item["metadata"].items() if k.startswith("label")} == {
        f"label{i:02}": f"v{i}" for i in range(20, 25)
    }


def test_metadata_keeps_64_keys_cuts_long_values_and_never_stores_content():
    attrs = {**STANDARD, **{f"k{i:03}": "x" for i in range(100)}, "a_long": "y" * 5000}
    attrs |= {"prompt": "p", "tool_input": "t", "gen_ai.input.messages": "m", "response": "r", "body": "b"}
    [derived] = run_metrics(counter("claude_code.commit.count", point(1, attrs))).items
    meta = derived.item["metadata"]
    assert len(meta) == 64
    assert meta["a_long"] == "y" * 1024
    assert "k099" not in meta  # the first 64 by key
    assert not {"prompt", "tool_input", "gen_ai.input.messages", "response", "body"} & meta.keys()


# ---------------------------------------------------------------- ids (§12.6)


def test_ids_are_deterministic_and_depend_on_the_end_time():
    first = run_metrics(*one_request()).items[0].item["request_id"]
    again = run_metrics(*one_request()).items[0].item["request_id"]
    later = run_metrics(
        counter("claude_code.cost.usage", point(0.1, {**STANDARD, "model": "claude-sonnet-4-5"}, time=T + 1))
    )
    assert first == again != later.items[0].item["request_id"]


def test_typed_values_hash_apart():
    assert ids.h(typed_attributes(kvs({"a": 5}))) != ids.h(typed_attributes(kvs({"a": "5"})))
    assert ids.h(typed_attributes(kvs({"a": 1, "b": 2}))) == ids.h(typed_attributes(kvs({"b": 2, "a": 1})))


OTLP_JSON = {
    "resourceMetrics": [
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "claude-code"}}]},
            "scopeMetrics": [
                {
                    "scope": {"name": CC_SCOPE, "version": "2.1.0"},
                    "metrics": [
                        {
                            "name": "claude_code.token.usage",
                            "unit": "tokens",
                            "sum": {
                                "aggregationTemporality": 1,
                                "isMonotonic": True,
                                "dataPoints": [
                                    {
                                        "attributes": [
                                            {"key": "session.id", "value": {"stringValue": "s-1"}},
                                            {"key": "user.email", "value": {"stringValue": "ana@example.com"}},
                                            {"key": "model", "value": {"stringValue": "claude-sonnet-4-5"}},
                                            {"key": "type", "value": {"stringValue": "input"}},
                                            {"key": "event.sequence", "value": {"intValue": "7"}},
                                        ],
                                        "startTimeUnixNano": str(START),
                                        "timeUnixNano": str(T),
                                        "asDouble": 12,
                                    }
                                ],
                            },
                        },
                        {
                            "name": "claude_code.session.count",
                            "sum": {
                                "aggregationTemporality": 1,
                                "isMonotonic": True,
                                "dataPoints": [
                                    {
                                        "attributes": [{"key": "session.id", "value": {"stringValue": "s-1"}}],
                                        "timeUnixNano": T,
                                        "asInt": "2",
                                        "unknownField": 1,
                                    }
                                ],
                            },
                        },
                    ],
                }
            ],
        }
    ]
}


def test_protobuf_and_otlp_json_encodings_of_the_same_data_get_the_same_ids():
    attrs = {"session.id": "s-1", "user.email": "ana@example.com", "model": "claude-sonnet-4-5", "type": "input"}
    built = metrics_request(
        metrics_pb2.Metric(
            name="claude_code.token.usage",
            unit="tokens",
            sum=metrics_pb2.Sum(
                aggregation_temporality=1,
                is_monotonic=True,
                data_points=[point(12.0, {**attrs, "event.sequence": 7})],
            ),
        ),
        counter("claude_code.session.count", point(2, {"session.id": "s-1"}, start=0)),
    )
    # The protobuf wire bytes, decoded again, as the HTTP layer sees them.
    from_proto = ExportMetricsServiceRequest.FromString(built.SerializeToString())
    from_json = json_format.Parse(json.dumps(OTLP_JSON), ExportMetricsServiceRequest(), ignore_unknown_fields=True)
    settings = KeySettings(owner="owner@example.com", use_client_cost=True)
    a = [d.item for d in map_metrics(from_proto, settings, no_deltas).items]
    b = [d.item for d in map_metrics(from_json, settings, no_deltas).items]
    assert [i.get("request_id") or i["event_id"] for i in a] == [i.get("request_id") or i["event_id"] for i in b]
    assert a == b and len(a) == 3


# ---------------------------------------------------------------- cumulative points (§12.5)


class StateKeeper:
    """The caller's side of `deltas`, in memory: what streams.py does with OtlpStream rows."""

    def __init__(self):
        self.states, self.calls = {}, []

    def __call__(self, points: list[StreamPoint]) -> list:
        self.calls.append(points)
        out = []
        for p in points:
            delta, self.states[p.stream_hash] = next_delta(
                self.states.get(p.stream_hash), p.start_ns, p.time_ns, p.value, T
            )
            out.append(delta)
        return out


def cumulative_request(input_value, output_value, cost_value, time):
    return (
        counter(
            "claude_code.token.usage",
            point(input_value, {**STANDARD, "model": "m", "type": "input"}, time=time),
            point(output_value, {**STANDARD, "model": "m", "type": "output"}, time=time),
            temporality=2,
        ),
        counter("claude_code.cost.usage", point(cost_value, {**STANDARD, "model": "m"}, time=time), temporality=2),
    )


def test_cumulative_points_go_to_deltas_once_in_time_order_and_their_increases_are_used():
    keeper = StateKeeper()
    first = run_metrics(*cumulative_request(100, 10, 0.5, T), deltas=keeper)
    assert len(keeper.calls) == 1 and len(keeper.calls[0]) == 3
    assert len({p.stream_hash for p in keeper.calls[0]}) == 3  # `type` is part of the stream
    assert (first.items[0].item["input_tokens"], first.items[0].item["cost"]) == (100, "0.5")

    second = run_metrics(*cumulative_request(150, 10, 0.75, T + 60 * 10**9), deltas=keeper)
    [item] = [d.item for d in second.items]
    assert (item["input_tokens"], item["output_tokens"], item["cost"]) == (50, 0, "0.25")


def test_a_resent_cumulative_request_makes_nothing():
    keeper = StateKeeper()
    run_metrics(*cumulative_request(100, 10, 0.5, T), deltas=keeper)
    resent = run_metrics(*cumulative_request(100, 10, 0.5, T), deltas=keeper)
    assert resent.items == [] and resent.ignored == 3


def test_cumulative_points_of_a_stream_are_sent_in_time_order():
    keeper = StateKeeper()
    attrs = {**STANDARD, "type": "added"}
    run_metrics(
        counter(
            "claude_code.lines_of_code.count",
            point(30, attrs, time=T + 2),
            point(10, attrs, time=T + 1),
            temporality=2,
        ),
        deltas=keeper,
    )
    assert [p.time_ns for p in keeper.calls[0]] == [T + 1, T + 2]


def test_deltas_is_called_once_even_with_no_cumulative_points():
    calls = []
    run_metrics(counter("claude_code.commit.count", point(1, STANDARD)), deltas=lambda p: calls.append(p) or [])
    assert calls == [[]]


# ---------------------------------------------------------------- Claude Code events (§12.3.2)


def log(attrs=None, event_name="", body=None, time=T, observed=0):
    record = logs_pb2.LogRecord(
        event_name=event_name, attributes=kvs(attrs), time_unix_nano=time, observed_time_unix_nano=observed
    )
    if body is not None:
        record.body.CopyFrom(any_value(body))
    return record


def logs_request(*records, resource=None, scope="com.anthropic.claude_code.events", service="claude-code"):
    return ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(
                resource=Resource(attributes=kvs({"service.name": service, **(resource or {})})),
                scope_logs=[
                    logs_pb2.ScopeLogs(scope=InstrumentationScope(name=scope, version="2.1.0"), log_records=records)
                ],
            )
        ]
    )


API_REQUEST = {
    **STANDARD,
    "model": "claude-sonnet-4-5",
    "input_tokens": 10,
    "output_tokens": 20,
    "cache_read_tokens": 300,
    "cache_creation_tokens": 40,
    "cost_usd": 0.05,
    "duration_ms": 1234,
    "request_id": "req_1",
    "prompt.id": "p-1",
}


def run_logs(*records, settings=SETTINGS, **kwargs):
    return map_logs(logs_request(*records, **kwargs), settings)


def test_an_api_request_event_becomes_a_usage_record():
    mapped = run_logs(log(API_REQUEST, event_name="claude_code.api_request"))
    [derived] = mapped.items
    assert (derived.kind, derived.source, derived.session, derived.role) == ("usage", "otlp_logs", "s-1", "logs_usage")
    item = derived.item
    assert item | {"metadata": None} == {
        "request_id": "otlp:cc-req:req_1",
        "timestamp": STAMP,
        "user": "ana@example.com",
        "agent": "claude-code",
        "model": "claude-sonnet-4-5",
        "provider": "anthropic",
        "service_type": "text_generation",
        "status": "success",
        "input_tokens": 350,
        "cached_input_tokens": 300,
        "cache_write_tokens": 40,
        "output_tokens": 20,
        "cost": "0.05",
        "duration_ms": 1234,
        "request_count": 1,
        "session_id": "s-1",
        "metadata": None,
    }
    assert item["metadata"] == {"organization.id": "org-uuid", "prompt.id": "p-1", "terminal.type": "vsc"}


@pytest.mark.parametrize(
    "record, service, scope",
    [
        (log(API_REQUEST, event_name="api_request"), "claude-code", "x"),
        (log(API_REQUEST, body="claude_code.api_request"), "other", "other"),
        (log({**API_REQUEST, "event.name": "api_request"}), "claude-code-cli", "other"),
        (log({**API_REQUEST, "event.name": "api_request"}), "other", "com.anthropic.claude_code.events"),
        (log({**API_REQUEST, "event.name": "api_request"}, body="claude_code.api_request"), "x", "x"),
    ],
)
def test_the_event_name_comes_from_event_name_body_or_attribute_with_the_prefix_added(record, service, scope):
    [derived] = run_logs(record, service=service, scope=scope).items
    assert derived.item["request_id"] == "otlp:cc-req:req_1"
    assert "event.name" not in derived.item.get("metadata", {})


def test_a_bare_name_from_another_service_is_not_claude_code():
    mapped = run_logs(log({**API_REQUEST, "event.name": "api_request"}), service="my-app", scope="my-app")
    assert mapped.items == [] and mapped.ignored == 1


def test_numbers_sent_as_strings_are_read():
    attrs = {
        **API_REQUEST,
        "input_tokens": "10",
        "cache_read_tokens": "300",
        "cost_usd": "0.0512345",
        "duration_ms": "99",
    }
    [derived] = run_logs(log(attrs, event_name="claude_code.api_request")).items
    assert derived.item["input_tokens"] == 350
    assert derived.item["cost"] == "0.0512345" and derived.item["duration_ms"] == 99


def test_cost_usd_micros_is_preferred_to_cost_usd():
    attrs = {**API_REQUEST, "cost_usd_micros": 51234}
    [derived] = run_logs(log(attrs, event_name="claude_code.api_request")).items
    assert derived.item["cost"] == "0.051234"
    assert not {"cost_usd", "cost_usd_micros"} & derived.item["metadata"].keys()


def test_without_client_costs_an_api_request_is_priced():
    settings = KeySettings(owner=None, use_client_cost=False)
    [derived] = run_logs(log(API_REQUEST, event_name="claude_code.api_request"), settings=settings).items
    assert "cost" not in derived.item


def test_an_api_request_without_a_cost_is_priced():
    attrs = {k: v for k, v in API_REQUEST.items() if k != "cost_usd"}
    [derived] = run_logs(log(attrs, event_name="claude_code.api_request")).items
    assert "cost" not in derived.item


def test_the_request_id_falls_back_to_the_client_request_id_then_a_hash():
    attrs = {k: v for k, v in API_REQUEST.items() if k != "request_id"}
    [client] = run_logs(log({**attrs, "client_request_id": "c-9"}, event_name="claude_code.api_request")).items
    assert client.item["request_id"] == "otlp:cc-req-client:c-9"
    [hashed] = run_logs(log(attrs, event_name="claude_code.api_request")).items
    [again] = run_logs(log(attrs, event_name="claude_code.api_request")).items
    assert hashed.item["request_id"].startswith("otlp:l:") and hashed.item["request_id"] == again.item["request_id"]
    [later] = run_logs(log(attrs, event_name="claude_code.api_request", time=T + 1)).items
    assert later.item["request_id"] != hashed.item["request_id"]


def test_a_fractional_token_count_rejects_the_record():
    mapped = run_logs(log({**API_REQUEST, "output_tokens": 2.5}, event_name="claude_code.api_request"))
    assert mapped.rejected == [
        "log record claude_code.api_request at 2026-12-07T10:00:00Z: output_tokens 2.5 is not a whole number"
    ]


def test_an_absurd_token_count_is_rejected_without_being_expanded():
    mapped = run_logs(log({**API_REQUEST, "input_tokens": "1e999999999"}, event_name="claude_code.api_request"))
    assert mapped.rejected == [
        "log record claude_code.api_request at 2026-12-07T10:00:00Z: input_tokens 1E+999999999 is too large"
    ]


def test_an_absurd_cost_is_rejected():
    mapped = run_logs(log({**API_REQUEST, "cost_usd": "1e30"}, event_name="claude_code.api_request"))
    assert mapped.rejected == ["log record claude_code.api_request at 2026-12-07T10:00:00Z: cost 1E+30 is too large"]
    assert run_metrics(counter("claude_code.cost.usage", cost(1e300))).rejected[0].endswith("is too large")


def test_a_non_numeric_token_count_rejects_the_record():
    mapped = run_logs(log({**API_REQUEST, "input_tokens": "lots"}, event_name="claude_code.api_request"))
    assert mapped.rejected[0].endswith("input_tokens 'lots' is not a number")


def test_an_api_request_without_a_model_is_rejected():
    attrs = {k: v for k, v in API_REQUEST.items() if k != "model"}
    mapped = run_logs(log(attrs, event_name="claude_code.api_request"))
    assert mapped.rejected == ["log record claude_code.api_request at 2026-12-07T10:00:00Z: no model attribute"]


def test_an_api_error_is_an_error_record_costing_zero():
    attrs = {
        **STANDARD,
        "model": "m",
        "error": "overloaded",
        "status_code": "529",
        "duration_ms": 50,
        "request_id": "r",
    }
    [derived] = run_logs(log(attrs, event_name="claude_code.api_error")).items
    item = derived.item
    assert item["request_id"] == "otlp:cc-err:r" and derived.role == "logs_usage"
    assert (item["status"], item["cost"], item["request_count"], item["duration_ms"]) == ("error", "0", 1, 50)
    assert "input_tokens" not in item
    assert item["metadata"]["error"] == "overloaded" and item["metadata"]["status_code"] == "529"


def test_an_edit_tool_decision_becomes_a_diff_event():
    attrs = {**STANDARD, "tool_name": "Edit", "decision": "reject", "source": "user_reject", "tool_use_id": "toolu_1"}
    [derived] = run_logs(log(attrs, event_name="claude_code.tool_decision")).items
    assert (derived.kind, derived.role, derived.session) == ("activity", "logs_usage", "s-1")
    assert derived.item["event_id"] == "otlp:cc-tool:toolu_1:reject"
    assert (derived.item["kind"], derived.item["quantity"]) == ("diff_rejected", 1)


def test_a_decision_on_another_tool_is_ignored():
    attrs = {**STANDARD, "tool_name": "Bash", "decision": "accept", "tool_use_id": "toolu_2"}
    mapped = run_logs(log(attrs, event_name="claude_code.tool_decision"))
    assert mapped.items == [] and mapped.ignored == 1


def test_a_user_prompt_is_an_agent_run_and_its_text_is_never_stored():
    attrs = {**STANDARD, "prompt.id": "p-7", "prompt_length": 42, "prompt": "secret plans"}
    [derived] = run_logs(log(attrs, event_name="claude_code.user_prompt")).items
    assert (derived.item["kind"], derived.item["event_id"], derived.role) == ("agent_run", "otlp:cc-prompt:p-7", None)
    assert derived.item["metadata"] == {"organization.id": "org-uuid", "prompt_length": 42, "terminal.type": "vsc"}


def test_other_events_and_plain_logs_are_ignored():
    mapped = run_logs(
        log(STANDARD, event_name="claude_code.tool_result"),
        log(STANDARD, body="Connected to the API"),
        log(STANDARD),
    )
    assert mapped.items == [] and mapped.ignored == 3


def test_the_timestamp_falls_back_to_event_timestamp_then_observed_time():
    attrs = {**API_REQUEST, "event.timestamp": "2026-12-07T09:30:00.250Z"}
    [from_attr] = run_logs(log(attrs, event_name="claude_code.api_request", time=0, observed=T)).items
    assert from_attr.item["timestamp"] == "2026-12-07T09:30:00.250000+00:00"
    assert "event.timestamp" not in from_attr.item["metadata"]
    [observed] = run_logs(log(API_REQUEST, event_name="claude_code.api_request", time=0, observed=T)).items
    assert observed.item["timestamp"] == STAMP


def test_a_record_without_any_time_is_rejected():
    mapped = run_logs(log(API_REQUEST, event_name="claude_code.api_request", time=0))
    assert mapped.rejected == [
        "log record claude_code.api_request at an unknown time: "
        "no time_unix_nano, event.timestamp or observed_time_unix_nano"
    ]


def test_an_event_without_a_user_is_rejected_and_the_owner_is_the_fallback():
    attrs = {"session.id": "s", "tool_name": "Write", "decision": "accept"}
    assert (
        run_logs(log(attrs, event_name="claude_code.tool_decision"))
        .rejected[0]
        .endswith("no user: send user.email or enduser.id, or give the API key an owner")
    )
    owned = run_logs(log(attrs, event_name="claude_code.tool_decision"), settings=KeySettings("o@x.com", True))
    assert owned.items[0].item["user"] == "o@x.com"


# ---------------------------------------------------------------- Codex and Gemini CLI (§12.3.5)

CODEX = {"user.email": "dev@x.com", "conversation.id": "conv-1", "model": "gpt-5-codex"}


def test_a_codex_completed_response_is_a_usage_record_priced_from_the_table():
    attrs = {
        **CODEX,
        "event.name": "codex.sse_event",
        "event.kind": "response.completed",
        "input_token_count": "1000",
        "cached_token_count": "800",
        "output_token_count": 50,
        "reasoning_token_count": 20,
        "duration_ms": 700,
    }
    [derived] = run_logs(log(attrs), service="codex_exec", scope="codex_otel").items
    item = derived.item
    assert (derived.session, derived.role) == (None, None)
    assert item["request_id"].startswith("otlp:l:") and "cost" not in item
    assert (item["agent"], item["session_id"], item["conversation_id"]) == ("codex", "conv-1", "conv-1")
    assert (item["input_tokens"], item["cached_input_tokens"], item["output_tokens"], item["reasoning_tokens"]) == (
        1000,
        800,
        50,
        20,
    )
    assert item["request_count"] == 1 and item["duration_ms"] == 700


def test_other_codex_stream_events_are_ignored():
    mapped = run_logs(log({**CODEX, "event.kind": "response.output_item.done"}, event_name="codex.sse_event"))
    assert mapped.items == [] and mapped.ignored == 1


def test_a_codex_user_prompt_is_an_agent_run():
    [derived] = run_logs(log({**CODEX, "prompt_length": 3}, event_name="codex.user_prompt"), service="codex-cli").items
    assert (derived.item["kind"], derived.item["agent"], derived.item["session_id"]) == ("agent_run", "codex", "conv-1")


def test_a_gemini_api_response_counts_thoughts_as_reasoning_within_output():
    attrs = {
        "user.email": "g@x.com",
        "session.id": "gs",
        "model": "gemini-2.5-pro",
        "input_token_count": 500,
        "cached_content_token_count": 100,
        "output_token_count": 30,
        "thoughts_token_count": 70,
        "tool_token_count": 5,
        "duration_ms": 900,
    }
    [derived] = run_logs(
        log(attrs, event_name="gemini_cli.api_response"), service="gemini-cli", scope="gemini-cli"
    ).items
    item = derived.item
    assert (item["input_tokens"], item["cached_input_tokens"], item["output_tokens"], item["reasoning_tokens"]) == (
        500,
        100,
        100,
        70,
    )
    assert (item["agent"], item["session_id"], item["status"]) == ("gemini-cli", "gs", "success")
    assert item["metadata"] == {"tool_token_count": 5}


def test_a_gemini_api_error_is_an_error_record():
    attrs = {"user.email": "g@x.com", "model": "gemini-2.5-pro", "error": "quota", "duration_ms": 10}
    [derived] = run_logs(log(attrs, event_name="gemini_cli.api_error"), service="gemini-cli").items
    assert (derived.item["status"], derived.item["request_count"]) == ("error", 1)
    assert "input_tokens" not in derived.item


# ---------------------------------------------------------------- GenAI spans (§12.3.4)

TRACE, SPAN = bytes.fromhex("0af7651916cd43dd8448eb211c80319c"), bytes.fromhex("b7ad6b7169203331")


def span(attrs=None, name="chat gpt-4o", error=False, **fields):
    out = trace_pb2.Span(
        trace_id=fields.pop("trace_id", TRACE),
        span_id=fields.pop("span_id", SPAN),
        name=name,
        start_time_unix_nano=fields.pop("start", T),
        end_time_unix_nano=fields.pop("end", T + 1_500_000_000),
        attributes=kvs(attrs),
    )
    if error:
        out.status.code = trace_pb2.Status.STATUS_CODE_ERROR
    return out


APP_KEY = KeySettings(owner="app@x.com", use_client_cost=True)


def run_traces(*spans, service="support-bot", resource=None, settings=APP_KEY):
    request = ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=Resource(attributes=kvs({"service.name": service, **(resource or {})})),
                scope_spans=[trace_pb2.ScopeSpans(scope=InstrumentationScope(name="openai"), spans=spans)],
            )
        ]
    )
    return map_traces(request, settings)


CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.provider.name": "openai",
    "gen_ai.usage.input_tokens": 1000,
    "gen_ai.usage.cache_read.input_tokens": 600,
    "gen_ai.usage.output_tokens": 200,
    "gen_ai.usage.reasoning.output_tokens": 50,
    "gen_ai.conversation.id": "conv-9",
    "session.id": "sess-9",
    "gen_ai.request.temperature": 0.2,
}


def test_a_chat_span_becomes_a_usage_record():
    mapped = run_traces(span(CHAT))
    [derived] = mapped.items
    assert (derived.kind, derived.source, derived.session, derived.role) == ("usage", "otlp_traces", None, None)
    assert derived.item == {
        "request_id": "otlp:span:0af7651916cd43dd8448eb211c80319cb7ad6b7169203331",
        "timestamp": STAMP,
        "user": "app@x.com",
        "agent": "support-bot",
        "session_id": "sess-9",
        "model": "gpt-4o-2024-08-06",
        "provider": "openai",
        "service_type": "text_generation",
        "status": "success",
        "input_tokens": 1000,
        "cached_input_tokens": 600,
        "cache_write_tokens": 0,
        "output_tokens": 200,
        "reasoning_tokens": 50,
        "duration_ms": 1500,
        "conversation_id": "conv-9",
        "request_count": 1,
        "metadata": {"gen_ai.request.model": "gpt-4o", "gen_ai.request.temperature": 0.2},
    }


def test_anthropic_style_cache_counts_are_added_to_the_input():
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.system": "anthropic",
        "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.cache_read.input_tokens": 500,
        "gen_ai.usage.cache_creation.input_tokens": 40,
        "gen_ai.agent.name": "triage",
    }
    [derived] = run_traces(span(attrs)).items
    item = derived.item
    assert (item["input_tokens"], item["cached_input_tokens"], item["cache_write_tokens"]) == (550, 500, 40)
    assert (item["provider"], item["model"], item["agent"]) == ("anthropic", "claude-sonnet-4-5", "triage")


def test_embeddings_spans_are_embedding_records_and_errors_are_errors():
    attrs = {"gen_ai.operation.name": "embeddings", "gen_ai.request.model": "text-embedding-3-small"}
    [derived] = run_traces(span(attrs, error=True)).items
    assert (derived.item["service_type"], derived.item["status"]) == ("embedding", "error")


def test_a_span_without_operation_but_with_model_and_usage_is_a_usage_record():
    attrs = {"gen_ai.request.model": "m", "gen_ai.usage.output_tokens": 3}
    [derived] = run_traces(span(attrs, name="llm")).items
    assert derived.item["output_tokens"] == 3


def test_an_invoke_agent_span_is_an_agent_run_whose_usage_is_not_counted():
    attrs = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner", "gen_ai.usage.input_tokens": 9}
    [derived] = run_traces(span(attrs, name="invoke_agent planner")).items
    assert derived.kind == "activity"
    assert derived.item["event_id"] == "otlp:span:0af7651916cd43dd8448eb211c80319cb7ad6b7169203331"
    assert (derived.item["kind"], derived.item["agent"], derived.item["quantity"]) == ("agent_run", "planner", 1)
    assert "input_tokens" not in derived.item


def test_other_operations_plain_spans_and_claude_codes_own_spans_are_ignored():
    mapped = run_traces(
        span({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"}),
        span({"http.method": "GET"}, name="GET /"),
        span({"gen_ai.request.model": "m"}),
        span(CHAT, name="claude_code.llm_request"),
    )
    assert mapped.items == [] and mapped.ignored == 4
    assert run_traces(span(CHAT), service="claude-code").ignored == 1


def test_a_usage_span_without_a_model_is_rejected():
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 3}
    mapped = run_traces(span(attrs))
    assert mapped.rejected == [
        "span 'chat gpt-4o' 0af7651916cd43dd8448eb211c80319c/b7ad6b7169203331: "
        "no gen_ai.response.model or gen_ai.request.model attribute"
    ]


def test_a_span_without_a_user_is_rejected():
    mapped = run_traces(span(CHAT), settings=KeySettings(None, True))
    assert mapped.rejected[0].endswith("no user: send user.email or enduser.id, or give the API key an owner")


def test_a_span_user_comes_from_enduser_id_on_the_resource():
    [derived] = run_traces(span(CHAT), resource={"enduser.id": "Eve@X.com"}).items
    assert derived.item["user"] == "eve@x.com"


# ---------------------------------------------------------------- the items are §5 items


@time_machine.travel(datetime(2026, 12, 7, 10, 1, tzinfo=UTC), tick=False)
def test_every_kind_of_derived_item_passes_ingest_validation():
    derived = [
        *run_metrics(*one_request()).items,
        *run_metrics(
            counter("claude_code.session.count", point(1, STANDARD)),
            counter("claude_code.code_edit_tool.decision", point(1, {**STANDARD, "decision": "accept"})),
            counter("claude_code.lines_of_code.count", point(5, {**STANDARD, "type": "removed"})),
        ).items,
        *run_logs(
            log(API_REQUEST, event_name="claude_code.api_request"),
            log({**STANDARD, "model": "m", "request_id": "r"}, event_name="claude_code.api_error"),
            log({**STANDARD, "tool_name": "Edit", "decision": "accept"}, event_name="claude_code.tool_decision"),
            log({**STANDARD, "prompt.id": "p"}, event_name="claude_code.user_prompt"),
            log({**CODEX, "event.kind": "response.completed", "input_token_count": 5}, event_name="codex.sse_event"),
            log({"user.email": "g@x.com", "model": "g", "output_token_count": 1}, event_name="gemini_cli.api_response"),
        ).items,
        *run_traces(span(CHAT), span({"gen_ai.operation.name": "invoke_agent"}, span_id=b"\x01" * 8)).items,
    ]
    assert len(derived) == 12
    for d in derived:
        item, errors = parse_item(d.kind, d.item, allow_reserved_ids=True)
        assert errors == {}, (d.item, errors)
