"""OTLP/HTTP on the wire (DESIGN §12.1, §12.2): reading, decompressing and decoding an export
request, and encoding the answer or a `google.rpc.Status` in the request's own encoding.

Nothing here touches the database; metering.otlp.views puts it together with auth and intake.
"""

import base64
import json
import zlib
from dataclasses import dataclass, field

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

MAX_SENT_BYTES = 5 * 1024 * 1024
MAX_DECOMPRESSED_BYTES = 20 * 1024 * 1024
MAX_ITEMS = 10_000
READ_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class Signal:
    request: type[Message]
    response: type[Message]
    rejected_field: str  # the field of partial_success that counts this signal's rejected items
    items: str  # what the items are called in messages


SIGNALS = {
    "metrics": Signal(ExportMetricsServiceRequest, ExportMetricsServiceResponse, "rejected_data_points", "data points"),
    "logs": Signal(ExportLogsServiceRequest, ExportLogsServiceResponse, "rejected_log_records", "log records"),
    "traces": Signal(ExportTraceServiceRequest, ExportTraceServiceResponse, "rejected_spans", "spans"),
}

# google.rpc.Code for each HTTP status we answer with (the code is optional in OTLP; it helps logs).
RPC_CODES = {400: 3, 401: 16, 403: 7, 413: 8, 415: 3, 429: 8, 503: 14}

# The bytes fields OTLP/JSON writes as hex, not as proto3 JSON's base64 (trace/span ids of spans,
# span links, log records and exemplars). Every JSON object key in OTLP is a field name
# (attribute keys are values of "key"), so matching on the key alone is safe.
_HEX_ID_FIELDS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})


@dataclass
class WireError(Exception):
    """A request that cannot be taken: `status` (400, 413, 415) and an English `message`."""

    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self):
        return self.message


def media_type(content_type: str) -> str:
    """PROTOBUF or JSON for a Content-Type header (parameters such as charset allowed); else 415."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in (PROTOBUF, JSON):
        raise WireError(415, f"Content-Type {media or '(none)'} is not served: send {PROTOBUF} or {JSON}.")
    return media


def content_coding(content_encoding: str) -> str:
    """ "gzip", "deflate" or "identity" for a Content-Encoding header (absent is identity); else 415."""
    coding = content_encoding.strip().lower() or "identity"
    if coding not in ("gzip", "deflate", "identity"):
        raise WireError(415, f"Content-Encoding {coding} is not served: send gzip, deflate or none.")
    return coding


def read_body(request) -> bytes:
    """The body as sent, at most MAX_SENT_BYTES (else 413), with or without Content-Length."""
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared:
        if not declared.isdigit():
            raise WireError(400, f"Content-Length {declared!r} is not a number.")
        if int(declared) > MAX_SENT_BYTES:
            raise WireError(413, _too_large_sent())
        stream = request
    else:
        # A chunked body has no Content-Length. Under WSGI, Django then reads nothing (it limits the
        # stream to Content-Length, 0), so read the server's de-chunked input; under ASGI the request
        # streams the whole body itself.
        stream = request.META.get("wsgi.input", request)
    chunks, size = [], 0
    try:
        while chunk := stream.read(READ_CHUNK_BYTES):
            size += len(chunk)
            if size > MAX_SENT_BYTES:
                raise WireError(413, _too_large_sent())
            chunks.append(chunk)
    except OSError as exc:  # the client went away mid-body (Django's UnreadablePostError is an OSError)
        raise WireError(400, f"The body could not be read: {exc}") from None
    return b"".join(chunks)


def decompress(body: bytes, coding: str) -> bytes:
    """`body` decoded from `coding`, at most MAX_DECOMPRESSED_BYTES (else 413; else 400 if corrupt).

    Inflates with an output cap, so a small bomb costs at most the cap in memory and time.
    """
    if coding == "identity":
        return body
    if coding == "gzip":
        return _inflate(body, 16 + zlib.MAX_WBITS, members=True)
    try:
        return _inflate(body, zlib.MAX_WBITS, members=False)
    except WireError as exc:
        if exc.status != 400:
            raise
        # HTTP's "deflate" is zlib, but some clients send a raw deflate stream.
        return _inflate(body, -zlib.MAX_WBITS, members=False)


def _inflate(data: bytes, wbits: int, *, members: bool) -> bytes:
    out = bytearray()
    if not data:
        return bytes(out)
    try:
        while True:
            inflater = zlib.decompressobj(wbits)
            # max_length is never 0 here (0 would mean "no limit"): len(out) <= cap on every call.
            out += inflater.decompress(data, MAX_DECOMPRESSED_BYTES + 1 - len(out))
            while inflater.unconsumed_tail and len(out) <= MAX_DECOMPRESSED_BYTES:
                out += inflater.decompress(inflater.unconsumed_tail, MAX_DECOMPRESSED_BYTES + 1 - len(out))
            if len(out) > MAX_DECOMPRESSED_BYTES:
                raise WireError(413, "The body is larger than 20 MiB decompressed; send fewer items per request.")
            if not inflater.eof:
                raise WireError(400, "The compressed body is truncated.")
            data = inflater.unused_data
            # gzip allows several members one after another; trailing bytes after zlib are ignored.
            if not members or not data:
                return bytes(out)
    except zlib.error as exc:
        raise WireError(400, f"The body cannot be decompressed: {exc}.") from None


def parse_request(signal: str, data: bytes, media: str) -> Message:
    """The signal's Export…ServiceRequest decoded from protobuf or OTLP/JSON bytes; else 400."""
    message = SIGNALS[signal].request()
    if media == PROTOBUF:
        try:
            message.ParseFromString(data)
        except (DecodeError, RecursionError) as exc:
            raise WireError(400, f"The body is not an OTLP {signal} request in protobuf: {exc}") from None
        return message
    if not data.strip():
        return message  # an empty body is an empty request (DESIGN §12.2)
    try:
        tree = json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise WireError(400, f"The body is not valid JSON: {exc}") from None
    if not isinstance(tree, dict):
        raise WireError(400, f"The body must be a JSON object: an OTLP {signal} request.")
    _hex_ids_to_base64(tree)
    try:
        json_format.ParseDict(tree, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise WireError(400, f"The body is not an OTLP {signal} request in JSON: {exc}") from None
    return message


def _hex_ids_to_base64(tree: dict) -> None:
    """Rewrite OTLP/JSON's hex ids in place as the base64 that proto3 JSON parsing expects."""
    stack: list = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            if key in _HEX_ID_FIELDS and isinstance(value, str):
                try:
                    raw = bytes.fromhex(value)
                except ValueError:
                    raise WireError(400, f"{key} {value[:64]!r} is not hexadecimal.") from None
                node[key] = base64.b64encode(raw).decode("ascii")
            elif isinstance(value, (dict, list)):
                stack.append(value)


def item_count(signal: str, message: Message) -> int:
    """How many data points, log records or spans `message` carries."""
    if signal == "metrics":
        count = 0
        for resource in message.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    kind = metric.WhichOneof("data")
                    if kind is not None:
                        count += len(getattr(metric, kind).data_points)
        return count
    if signal == "logs":
        return sum(len(s.log_records) for r in message.resource_logs for s in r.scope_logs)
    return sum(len(s.spans) for r in message.resource_spans for s in r.scope_spans)


def decode_request(signal: str, body: bytes, *, media: str, coding: str) -> Message:
    """The request in `body` as sent: decompressed, decoded and within MAX_ITEMS (else 400/413)."""
    message = parse_request(signal, decompress(body, coding), media)
    count = item_count(signal, message)
    if count > MAX_ITEMS:
        items = SIGNALS[signal].items
        raise WireError(413, f"{count} {items} in one request; at most {MAX_ITEMS} are accepted.")
    return message


def encode_response(signal: str, media: str, *, rejected: int = 0, error_message: str = "") -> bytes:
    """The Export…ServiceResponse; partial_success is set only when items were rejected."""
    response = SIGNALS[signal].response()
    if rejected:
        setattr(response.partial_success, SIGNALS[signal].rejected_field, rejected)
        response.partial_success.error_message = error_message
    return _encode(response, media)


def encode_status(media: str, status: int, message: str) -> bytes:
    """A google.rpc.Status error body for an HTTP `status`."""
    return _encode(Status(code=RPC_CODES.get(status, 0), message=message), media)


def _encode(message: Message, media: str) -> bytes:
    if media == PROTOBUF:
        return message.SerializeToString()
    return json.dumps(json_format.MessageToDict(message)).encode()


def _too_large_sent() -> str:
    return "The body is larger than 5 MiB as sent; send fewer items per request."
