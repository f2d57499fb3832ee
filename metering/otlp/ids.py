"""Deterministic ids of derived items (DESIGN §12.6): a resend gets the same id and is dropped as a duplicate.

h() hashes canonical JSON of decoded values (attributes as sorted [key, typed value] pairs,
see attributes.typed_attributes), so the protobuf and the JSON encoding of the same data
give the same id.
"""

import hashlib
import json

from metering.otlp.attributes import typed_attributes

MAX_ID_LENGTH = 200  # schemas.Identifier


def h(*parts) -> str:
    """The first 32 hex digits of SHA-256 over the canonical JSON of parts."""
    canonical = json.dumps(list(parts), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def scope_of(scope) -> list:
    return [scope.name, scope.version]


# `resource` below is the resource's typed_attributes, made once for all its items.


def stream_hash(resource: list, scope, metric_name: str, point_attributes) -> str:
    """A metric stream (§12.5): resource attributes, scope name and version, metric name, point attributes."""
    return h(resource, scope_of(scope), metric_name, typed_attributes(point_attributes))


def metric_usage_id(resource: list, scope, point_attributes, time_ns: int) -> str:
    """The joined token/cost record of one collection: the point attributes without `type`."""
    attrs = [kv for kv in typed_attributes(point_attributes) if kv[0] != "type"]
    return "otlp:m:" + h(resource, scope_of(scope), "usage", attrs, time_ns)


def metric_event_id(resource: list, scope, metric_name: str, point_attributes, time_ns: int) -> str:
    """The base of a count point's events; the caller appends `:1` … `:n` (lines_changed: nothing)."""
    return "otlp:m:" + h(resource, scope_of(scope), metric_name, typed_attributes(point_attributes), time_ns)


def record_id(resource: list, scope, record, event_name: str) -> str:
    """`otlp:l:` + h(record): resource, scope name and version, time_unix_nano, event name, attributes."""
    return "otlp:l:" + h(
        resource,
        scope_of(scope),
        record.time_unix_nano,
        event_name,
        typed_attributes(record.attributes),
    )


def client_id(prefix: str, value: str | None) -> str | None:
    """`prefix` + a client-given id, or None when absent or too long for an item id."""
    if not value:
        return None
    out = prefix + value
    return out if len(out) <= MAX_ID_LENGTH else None


def span_item_id(span) -> str:
    return f"otlp:span:{span.trace_id.hex()}{span.span_id.hex()}"
