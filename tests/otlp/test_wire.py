"""POST /v1/metrics, /v1/logs and /v1/traces on the wire: encodings, limits, auth and answers
(DESIGN §12.1, §12.2)."""

import base64
import gzip
import io
import json
import tracemalloc
import zlib

import pytest
import time_machine
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.urls import resolve
from django.utils import timezone
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from accounts.services import api_key_create
from metering.otlp import views, wire
from metering.otlp.intake import Outcome
from tests.otlp.encoding import otlp_json

PROTOBUF, JSON = "application/x-protobuf", "application/json"
SIGNALS = ["metrics", "logs", "traces"]
TRACE_ID = "5b8efff798038103d269b633813fc60c"
SPAN_ID = "eee19b7ec3c1b174"
PARENT_ID = "eee19b7ec3c1b173"
OLD_NANOS = 1_000_000_000 * 1_000_000_000  # 2001: far too old to be stored, so items are cheap


@pytest.fixture
def ingest_key(org):
    return api_key_create(org=org, name="otel", scopes={"ingest"})[1]


@pytest.fixture
def csrf_client():
    return Client(enforce_csrf_checks=True)


def export_request(signal: str, n: int = 1):
    """A request of the signal with n items, in a resource and scope of their own."""
    if signal == "metrics":
        message = ExportMetricsServiceRequest()
        metric = message.resource_metrics.add().scope_metrics.add().metrics.add(name="unmapped.metric")
        for i in range(n):
            metric.sum.data_points.add(time_unix_nano=OLD_NANOS + i, as_int=i)
    elif signal == "logs":
        message = ExportLogsServiceRequest()
        scope = message.resource_logs.add().scope_logs.add()
        for i in range(n):
            scope.log_records.add(time_unix_nano=OLD_NANOS + i).body.string_value = "unmapped"
    else:
        message = ExportTraceServiceRequest()
        scope = message.resource_spans.add().scope_spans.add()
        for i in range(n):
            scope.spans.add(trace_id=bytes.fromhex(TRACE_ID), span_id=i.to_bytes(8, "big"), name="unmapped", kind=1)
    return message


def post(client, signal, body: bytes, *, key=None, content_type=PROTOBUF, **headers):
    if key:
        headers.setdefault("HTTP_AUTHORIZATION", f"Bearer {key}")
    # Django's client drops the Content-Type and Content-Length of an empty body; exporters send both.
    headers.setdefault("CONTENT_LENGTH", str(len(body)))
    return client.post(f"/v1/{signal}", body, content_type=content_type, CONTENT_TYPE=content_type, **headers)


def status_of(response) -> Status:
    if response["Content-Type"] == JSON:
        return wire.json_format.ParseDict(response.json(), Status())
    status = Status()
    status.ParseFromString(response.content)
    return status


def response_of(signal, response):
    message = wire.SIGNALS[signal].response()
    if response["Content-Type"] == JSON:
        return wire.json_format.ParseDict(response.json(), message)
    message.ParseFromString(response.content)
    return message


class ChunkedInput(io.RawIOBase):
    """wsgi.input of a chunked request as a WSGI server hands it over: de-chunked, no length."""

    def __init__(self, chunks):
        self.chunks = iter(chunks)
        self.pending = b""

    def readable(self):
        return True

    def read(self, size=-1):
        while size < 0 or len(self.pending) < size:
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            self.pending += chunk
        if size < 0:
            size = len(self.pending)
        data, self.pending = self.pending[:size], self.pending[size:]
        return data


def post_chunked(client, signal, chunks, *, key, content_type=PROTOBUF, **headers):
    return client.request(
        REQUEST_METHOD="POST",
        PATH_INFO=f"/v1/{signal}",
        CONTENT_TYPE=content_type,
        HTTP_AUTHORIZATION=f"Bearer {key}",
        HTTP_TRANSFER_ENCODING="chunked",
        **{"wsgi.input": ChunkedInput(chunks)},
        **headers,
    )


# --- Paths and methods ---------------------------------------------------------------------------


@pytest.mark.parametrize("signal", SIGNALS)
def test_the_paths_are_the_otlp_defaults_at_the_site_root_without_a_trailing_slash(signal):
    assert resolve(f"/v1/{signal}").func.__name__ == signal
    assert resolve(f"/v1/{signal}").func.__module__ == "metering.otlp.views"


def test_the_otlp_paths_are_not_in_the_json_api_schema(client):
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    assert not [path for path in paths if "/v1/metrics" in path or "/v1/logs" in path or "/v1/traces" in path]


@pytest.mark.parametrize("signal", SIGNALS)
@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_only_post_is_allowed(csrf_client, signal, method):
    response = getattr(csrf_client, method)(f"/v1/{signal}")
    assert response.status_code == 405
    assert response["Allow"] == "POST"


@pytest.mark.parametrize("signal", SIGNALS)
def test_a_post_needs_no_csrf_token(csrf_client, ingest_key, signal):
    response = post(csrf_client, signal, export_request(signal).SerializeToString(), key=ingest_key)
    assert response.status_code == 200


# --- 200 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("signal", SIGNALS)
def test_a_protobuf_export_answers_a_protobuf_response_without_partial_success(csrf_client, ingest_key, signal):
    response = post(csrf_client, signal, export_request(signal, 3).SerializeToString(), key=ingest_key)
    assert response.status_code == 200
    assert response["Content-Type"] == PROTOBUF
    assert not response_of(signal, response).HasField("partial_success")


@pytest.mark.parametrize("signal", SIGNALS)
def test_a_json_export_answers_a_json_response_without_partial_success(csrf_client, ingest_key, signal):
    body = otlp_json(export_request(signal, 2))
    response = post(csrf_client, signal, body, key=ingest_key, content_type=JSON)
    assert response.status_code == 200
    assert response["Content-Type"] == JSON
    assert response.json() == {}


@pytest.mark.parametrize(
    "content_type", [f"{PROTOBUF}; charset=utf-8", "Application/X-Protobuf", f"{PROTOBUF};proto=x"]
)
def test_content_type_parameters_and_case_are_allowed(csrf_client, ingest_key, content_type):
    body = export_request("metrics").SerializeToString()
    response = post(csrf_client, "metrics", body, key=ingest_key, content_type=content_type)
    assert response.status_code == 200
    assert response["Content-Type"] == PROTOBUF


def test_json_with_a_charset_answers_json(csrf_client, ingest_key):
    response = post(csrf_client, "logs", b'{"resourceLogs": []}', key=ingest_key, content_type=f"{JSON}; charset=utf-8")
    assert response.status_code == 200
    assert response["Content-Type"] == JSON


@pytest.mark.parametrize("signal", SIGNALS)
@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
def test_an_empty_request_answers_200(csrf_client, ingest_key, signal, content_type):
    for body in (b"", wire.SIGNALS[signal].request().SerializeToString(), b"{}"):
        if body == b"{}" and content_type == PROTOBUF:
            continue
        response = post(csrf_client, signal, body, key=ingest_key, content_type=content_type)
        assert response.status_code == 200
        assert not response_of(signal, response).HasField("partial_success")


@pytest.mark.parametrize(
    ("signal", "field", "json_field"),
    [
        ("metrics", "rejected_data_points", "rejectedDataPoints"),
        ("logs", "rejected_log_records", "rejectedLogRecords"),
        ("traces", "rejected_spans", "rejectedSpans"),
    ],
)
def test_rejected_items_are_a_partial_success(csrf_client, ingest_key, monkeypatch, signal, field, json_field):
    monkeypatch.setattr(views, "accept", lambda *args: Outcome(2, "2 rejected: a: bad; b: worse."))
    response = post(csrf_client, signal, export_request(signal, 3).SerializeToString(), key=ingest_key)
    assert response.status_code == 200
    partial = response_of(signal, response).partial_success
    assert getattr(partial, field) == 2
    assert partial.error_message == "2 rejected: a: bad; b: worse."

    response = post(csrf_client, signal, b"{}", key=ingest_key, content_type=JSON)
    assert response.status_code == 200
    assert response.json() == {"partialSuccess": {json_field: "2", "errorMessage": "2 rejected: a: bad; b: worse."}}


# --- Compression and chunked bodies -------------------------------------------------------------


@pytest.mark.parametrize(
    ("coding", "compress"),
    [
        ("gzip", gzip.compress),
        ("GZIP", gzip.compress),
        ("deflate", zlib.compress),
        ("identity", lambda data: data),
    ],
)
@pytest.mark.parametrize("signal", SIGNALS)
def test_gzip_deflate_and_identity_bodies_are_accepted(csrf_client, ingest_key, signal, coding, compress):
    body = compress(export_request(signal, 5).SerializeToString())
    response = post(csrf_client, signal, body, key=ingest_key, HTTP_CONTENT_ENCODING=coding)
    assert response.status_code == 200


def test_decompression_gives_back_the_body_for_each_coding():
    data = export_request("logs", 50).SerializeToString()
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    raw_deflate = raw.compress(data) + raw.flush()
    assert wire.decompress(gzip.compress(data), "gzip") == data
    assert wire.decompress(gzip.compress(data[:10]) + gzip.compress(data[10:]), "gzip") == data  # two members
    assert wire.decompress(zlib.compress(data), "deflate") == data
    assert wire.decompress(raw_deflate, "deflate") == data
    assert wire.decompress(data, "identity") == data


@pytest.mark.parametrize("signal", SIGNALS)
def test_a_chunked_body_without_content_length_is_read(csrf_client, ingest_key, signal):
    body = gzip.compress(export_request(signal, 20).SerializeToString())
    chunks = [body[i : i + 7] for i in range(0, len(body), 7)]
    response = post_chunked(csrf_client, signal, chunks, key=ingest_key, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 200
    assert not response_of(signal, response).HasField("partial_success")


def test_a_chunked_body_is_decoded_not_skipped(csrf_client, ingest_key):
    # Were the body skipped (Django reads nothing without Content-Length), this would be an empty 200.
    response = post_chunked(csrf_client, "metrics", [b"\xff\xff", b"\xff\xff"], key=ingest_key)
    assert response.status_code == 400


def test_a_chunked_body_over_5_mib_is_413(csrf_client, ingest_key):
    chunks = (b"\0" * 1024 * 1024 for _ in range(6))
    response = post_chunked(csrf_client, "metrics", chunks, key=ingest_key)
    assert response.status_code == 413
    assert "5 MiB" in status_of(response).message


def test_a_chunked_body_under_asgi_is_read_whole():
    from django.core.handlers.asgi import ASGIRequest

    body = export_request("logs", 3).SerializeToString()
    scope = {"type": "http", "method": "POST", "path": "/v1/logs", "headers": [(b"transfer-encoding", b"chunked")]}
    request = ASGIRequest(scope, io.BytesIO(body))
    assert "CONTENT_LENGTH" not in request.META
    assert wire.read_body(request) == body


# --- OTLP/JSON ----------------------------------------------------------------------------------


def test_json_trace_and_span_ids_are_hex():
    body = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": TRACE_ID,
                                "spanId": SPAN_ID,
                                "parentSpanId": PARENT_ID,
                                "name": "chat",
                                "kind": 3,
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": 1544712661000000000,
                                "links": [{"traceId": TRACE_ID, "spanId": PARENT_ID}],
                                "status": {"code": 2},
                            }
                        ]
                    }
                ]
            }
        ]
    }
    span = wire.parse_request("traces", json.dumps(body).encode(), JSON).resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id == bytes.fromhex(TRACE_ID)
    assert span.span_id == bytes.fromhex(SPAN_ID)
    assert span.parent_span_id == bytes.fromhex(PARENT_ID)
    assert span.links[0].trace_id == bytes.fromhex(TRACE_ID)
    assert span.links[0].span_id == bytes.fromhex(PARENT_ID)
    assert span.kind == 3
    assert span.status.code == 2
    assert span.start_time_unix_nano == 1544712660000000000
    assert span.end_time_unix_nano == 1544712661000000000


def test_json_log_record_and_exemplar_ids_are_hex():
    logs = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": TRACE_ID, "spanId": SPAN_ID}]}]}]}
    record = wire.parse_request("logs", json.dumps(logs).encode(), JSON).resource_logs[0].scope_logs[0].log_records[0]
    assert (record.trace_id, record.span_id) == (bytes.fromhex(TRACE_ID), bytes.fromhex(SPAN_ID))

    point = {"asInt": "7", "exemplars": [{"traceId": TRACE_ID, "spanId": SPAN_ID, "asDouble": 1.5}]}
    metrics = {"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "m", "sum": {"dataPoints": [point]}}]}]}]}
    message = wire.parse_request("metrics", json.dumps(metrics).encode(), JSON)
    exemplar = message.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0].exemplars[0]
    assert (exemplar.trace_id, exemplar.span_id) == (bytes.fromhex(TRACE_ID), bytes.fromhex(SPAN_ID))


def test_json_takes_int64_as_strings_or_numbers_enums_as_integers_and_ignores_unknown_fields():
    metrics = {
        "resourceMetrics": [
            {
                "resource": {"attributes": [{"key": "traceId", "value": {"stringValue": "not an id"}}]},
                "scopeMetrics": [
                    {
                        "scope": {"name": "com.anthropic.claude_code", "futureField": 1},
                        "metrics": [
                            {
                                "name": "claude_code.token.usage",
                                "unit": "tokens",
                                "sum": {
                                    "aggregationTemporality": 1,
                                    "isMonotonic": True,
                                    "dataPoints": [
                                        {"asInt": "1200", "timeUnixNano": "1700000000000000000"},
                                        {"asInt": 300, "timeUnixNano": 1700000000000000000, "unknown": {"x": [1]}},
                                    ],
                                },
                                "somethingNew": "ignored",
                            }
                        ],
                    }
                ],
            }
        ],
        "notInTheSchema": True,
    }
    message = wire.parse_request("metrics", json.dumps(metrics).encode(), JSON)
    resource = message.resource_metrics[0]
    assert resource.resource.attributes[0].value.string_value == "not an id"  # attribute keys are not fields
    metric = resource.scope_metrics[0].metrics[0]
    assert metric.sum.aggregation_temporality == 1
    assert [p.as_int for p in metric.sum.data_points] == [1200, 300]
    assert {p.time_unix_nano for p in metric.sum.data_points} == {1700000000000000000}


@pytest.mark.parametrize("signal", SIGNALS)
def test_json_and_protobuf_of_the_same_request_decode_alike(signal):
    message = export_request(signal, 3)
    assert wire.parse_request(signal, otlp_json(message), JSON) == message
    assert wire.parse_request(signal, message.SerializeToString(), PROTOBUF) == message


def test_json_ids_that_are_not_hex_are_400(csrf_client, ingest_key):
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": base64.b64encode(b"x" * 16).decode()}]}]}]}
    response = post(csrf_client, "traces", json.dumps(body).encode(), key=ingest_key, content_type=JSON)
    assert response.status_code == 400
    assert response["Content-Type"] == JSON
    assert "traceId" in status_of(response).message


def test_a_json_request_over_http_with_hex_ids_is_accepted(csrf_client, ingest_key):
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": TRACE_ID, "spanId": SPAN_ID, "name": "x"}]}]}]}
    response = post(
        csrf_client,
        "traces",
        gzip.compress(json.dumps(body).encode()),
        key=ingest_key,
        content_type=JSON,
        HTTP_CONTENT_ENCODING="gzip",
    )
    assert response.status_code == 200
    assert response.json() == {}


# --- 400 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body", "headers"),
    [
        (PROTOBUF, b"\xff\xff\xff\xff", {}),
        (PROTOBUF, b"\x0a\x05ab", {}),  # a field longer than the body
        (JSON, b"{not json", {}),
        (JSON, b"[1, 2]", {}),
        (JSON, b'{"resourceMetrics": 7}', {}),
        (JSON, b"\xff\xfe{}", {}),
        (PROTOBUF, b"not gzip at all", {"HTTP_CONTENT_ENCODING": "gzip"}),
        (PROTOBUF, gzip.compress(b"\x0a\x00" * 1000)[:-30], {"HTTP_CONTENT_ENCODING": "gzip"}),  # truncated
        (PROTOBUF, b"not deflate", {"HTTP_CONTENT_ENCODING": "deflate"}),
    ],
)
def test_a_body_that_cannot_be_decompressed_or_decoded_is_400(csrf_client, ingest_key, content_type, body, headers):
    response = post(csrf_client, "metrics", body, key=ingest_key, content_type=content_type, **headers)
    assert response.status_code == 400
    assert response["Content-Type"] == content_type
    assert status_of(response).message
    assert status_of(response).code == 3


def test_a_logs_body_that_is_a_metrics_json_shape_is_still_a_request_with_unknown_fields(csrf_client, ingest_key):
    # Unknown fields are ignored [S2], so another signal's JSON decodes as an empty request.
    response = post(csrf_client, "logs", b'{"resourceMetrics": []}', key=ingest_key, content_type=JSON)
    assert response.status_code == 200


# --- 401 and 403 --------------------------------------------------------------------------------


def test_a_missing_key_is_401_with_a_status(csrf_client, db):
    response = post(csrf_client, "metrics", export_request("metrics").SerializeToString())
    assert response.status_code == 401
    assert response["Content-Type"] == PROTOBUF
    assert response["WWW-Authenticate"] == 'Bearer realm="tally"'
    assert status_of(response).code == 16
    assert "Bearer" in status_of(response).message


@pytest.mark.parametrize(
    "authorization",
    ["Bearer tly_0123456789ab_unknown", "Bearer not-a-key", "Bearer ", "Basic dXNlcjpwYXNz", "tly_x_y"],
)
def test_an_unknown_key_or_another_scheme_is_401(csrf_client, db, authorization):
    response = post(csrf_client, "logs", b"{}", content_type=JSON, HTTP_AUTHORIZATION=authorization)
    assert response.status_code == 401
    assert response["Content-Type"] == JSON
    assert status_of(response).message


def test_a_revoked_key_is_401(csrf_client, org):
    key, secret = api_key_create(org=org, name="old", scopes={"ingest"})
    key.revoked_at = timezone.now()
    key.save()
    response = post(csrf_client, "traces", b"", key=secret)
    assert response.status_code == 401


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
def test_the_bearer_scheme_is_case_insensitive(csrf_client, ingest_key, scheme):
    response = post(csrf_client, "metrics", b"", HTTP_AUTHORIZATION=f"{scheme} {ingest_key}")
    assert response.status_code == 200


def test_a_key_without_the_ingest_scope_is_403(csrf_client, org):
    secret = api_key_create(org=org, name="reader", scopes={"read"})[1]
    response = post(csrf_client, "metrics", b"", key=secret)
    assert response.status_code == 403
    assert status_of(response).code == 7
    assert "ingest" in status_of(response).message


# --- 413 ----------------------------------------------------------------------------------------


def test_a_body_over_5_mib_as_sent_is_413(csrf_client, ingest_key):
    response = post(csrf_client, "metrics", b"\0" * (wire.MAX_SENT_BYTES + 1), key=ingest_key)
    assert response.status_code == 413
    assert status_of(response).message == "The body is larger than 5 MiB as sent; send fewer items per request."


def test_a_body_over_20_mib_decompressed_is_413(csrf_client, ingest_key):
    body = gzip.compress(b"\0" * (wire.MAX_DECOMPRESSED_BYTES + 1))
    assert len(body) < wire.MAX_SENT_BYTES
    response = post(csrf_client, "metrics", body, key=ingest_key, content_type=JSON, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 413
    assert response["Content-Type"] == JSON
    assert "20 MiB decompressed" in status_of(response).message


def test_a_body_of_exactly_20_mib_decompressed_is_not_413():
    data = b"\0" * wire.MAX_DECOMPRESSED_BYTES
    assert len(wire.decompress(zlib.compress(data), "deflate")) == wire.MAX_DECOMPRESSED_BYTES


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_a_bomb_is_never_inflated_beyond_the_cap(coding):
    compressor = zlib.compressobj(wbits=16 + zlib.MAX_WBITS if coding == "gzip" else zlib.MAX_WBITS)
    megabyte = b"\0" * (1024 * 1024)
    bomb = b"".join(compressor.compress(megabyte) for _ in range(200)) + compressor.flush()  # 200 MiB
    tracemalloc.start()
    try:
        with pytest.raises(wire.WireError) as raised:
            wire.decompress(bomb, coding)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert raised.value.status == 413
    assert peak < 3 * wire.MAX_DECOMPRESSED_BYTES


@pytest.mark.parametrize("signal", SIGNALS)
def test_more_than_10000_items_is_413_and_10000_is_not(csrf_client, ingest_key, signal):
    response = post(csrf_client, signal, export_request(signal, 10_001).SerializeToString(), key=ingest_key)
    assert response.status_code == 413
    assert "10001" in status_of(response).message
    assert wire.item_count(signal, export_request(signal, 10_000)) == 10_000


def test_data_points_of_every_metric_kind_are_counted():
    message = ExportMetricsServiceRequest()
    metrics = message.resource_metrics.add().scope_metrics.add().metrics
    metrics.add(name="g").gauge.data_points.add()
    metrics.add(name="s").sum.data_points.add()
    metrics.add(name="h").histogram.data_points.add()
    metrics.add(name="e").exponential_histogram.data_points.add()
    metrics.add(name="q").summary.data_points.add()
    metrics.add(name="none")
    message.resource_metrics.add().scope_metrics.add().metrics.add(name="s2").sum.data_points.add()
    assert wire.item_count("metrics", message) == 6


def test_items_across_resources_and_scopes_are_counted():
    logs = ExportLogsServiceRequest()
    for _ in range(2):
        for _ in range(3):
            logs.resource_logs.add().scope_logs.add().log_records.add()
    assert wire.item_count("logs", logs) == 6
    traces = export_request("traces", 4)
    traces.resource_spans.add().scope_spans.add().spans.add()
    assert wire.item_count("traces", traces) == 5


# --- 415 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/grpc", "application/protobuf", ""])
def test_another_content_type_is_415_in_plain_text(csrf_client, ingest_key, content_type):
    response = post(csrf_client, "metrics", b"x", key=ingest_key, content_type=content_type)
    assert response.status_code == 415
    assert response["Content-Type"].startswith("text/plain")
    assert b"application/x-protobuf" in response.content


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
@pytest.mark.parametrize("coding", ["br", "zstd", "gzip, br"])
def test_another_content_encoding_is_415_with_a_status(csrf_client, ingest_key, content_type, coding):
    response = post(csrf_client, "logs", b"x", key=ingest_key, content_type=content_type, HTTP_CONTENT_ENCODING=coding)
    assert response.status_code == 415
    assert response["Content-Type"] == content_type
    assert "Content-Encoding" in status_of(response).message


# --- 429 and 503 --------------------------------------------------------------------------------


def test_a_key_over_its_rate_is_429_with_retry_after(csrf_client, ingest_key, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 2
    cache.clear()
    body = export_request("metrics").SerializeToString()
    with time_machine.travel(1_800_000_010, tick=False):  # 10 s into a window
        assert post(csrf_client, "metrics", body, key=ingest_key).status_code == 200
        assert post(csrf_client, "logs", b"{}", key=ingest_key, content_type=JSON).status_code == 200
        response = post(csrf_client, "traces", b"", key=ingest_key)
    assert response.status_code == 429
    assert response["Retry-After"] == "50"
    assert status_of(response).code == 8
    assert "Too many requests" in status_of(response).message


def test_an_undecodable_request_still_counts_against_the_rate(csrf_client, ingest_key, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 1
    cache.clear()
    with time_machine.travel(1_800_000_000, tick=False):
        assert post(csrf_client, "metrics", b"\xff", key=ingest_key).status_code == 400
        assert post(csrf_client, "metrics", b"", key=ingest_key).status_code == 429


@pytest.mark.skipif(connection.vendor != "postgresql", reason="kills a PostgreSQL backend")
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
def test_a_lost_database_is_503_with_retry_after(ingest_key, content_type):
    import psycopg

    client = Client(enforce_csrf_checks=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    params = connection.get_connection_params()
    with psycopg.connect(
        **{k: v for k, v in params.items() if k in ("host", "port", "user", "dbname", "password")}, autocommit=True
    ) as admin_connection:
        admin_connection.execute("SELECT pg_terminate_backend(%s)", [pid])
    response = post(client, "metrics", b"", key=ingest_key, content_type=content_type)
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response["Content-Type"] == content_type
    assert status_of(response).code == 14
    assert "nothing was stored" in status_of(response).message
    connection.close()  # as Django does at the end of a real request
    assert post(client, "metrics", b"", key=ingest_key, content_type=content_type).status_code == 200


# --- The real OpenTelemetry exporters -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("compression", ["none", "gzip", "deflate"])
def test_the_opentelemetry_python_metric_exporter_gets_success(live_server, ingest_key, compression):
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    provider.get_meter("tests.otlp").create_counter("unmapped.requests").add(3, {"route": "/x"})
    data = reader.get_metrics_data()
    provider.shutdown()
    exporter = OTLPMetricExporter(
        endpoint=f"{live_server.url}/v1/metrics",
        headers={"Authorization": f"Bearer {ingest_key}"},
        compression=Compression(compression),
        timeout=5,
    )
    try:
        assert exporter.export(data) == MetricExportResult.SUCCESS
    finally:
        exporter.shutdown()


@pytest.mark.django_db(transaction=True)
def test_the_opentelemetry_python_span_exporter_gets_success(live_server, ingest_key):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("tests.otlp").start_as_current_span("unmapped"):
        pass
    exporter = OTLPSpanExporter(
        endpoint=f"{live_server.url}/v1/traces", headers={"Authorization": f"Bearer {ingest_key}"}, timeout=5
    )
    try:
        assert exporter.export(memory.get_finished_spans()) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
