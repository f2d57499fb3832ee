"""Decoded OTLP requests turned into §5 ingest items (DESIGN §12.3–§12.6). Pure: no database.

Every OTLP item (data point, log record, span) ends as mapped (zero or more derived items),
ignored (data §12.3 does not map, or a zero-valued point that makes nothing) or rejected
(with one English reason naming it). The derived items are JSON-shaped dicts, validated
afterwards by the ingest layer as any §5 item is.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from metering.otlp import ids
from metering.otlp.attributes import (
    SESSION_KEY,
    Lookup,
    attributes,
    decimal,
    dimensions,
    metadata,
    number,
    resource_tags,
    text,
    typed_attributes,
    user_of,
    whole,
)

METRICS, LOGS, TRACES = "otlp_metrics", "otlp_logs", "otlp_traces"
METRICS_USAGE, LOGS_USAGE = "metrics_usage", "logs_usage"  # §12.3.3 roles

CLAUDE_CODE, CODEX, GEMINI_CLI = "claude-code", "codex", "gemini-cli"
MAX_EVENTS = 1000  # a count point above this is rejected (§12.3.1)
COST_QUANTUM = Decimal(1).scaleb(-10)  # schemas.UsageItem.cost: 10 decimal places
MAX_COUNT = 10**15  # schemas.Count; also keeps int() of a string like "1e999999999" from eating memory
MAX_COST = Decimal(10**12)  # schemas.UsageItem.cost: 12 digits before the point
NO_USER = "no user: send user.email or enduser.id, or give the API key an owner"

# Metric temporality and flags, as numbered in opentelemetry/proto/metrics/v1/metrics.proto.
DELTA, CUMULATIVE = 1, 2
FLAG_NO_RECORDED_VALUE = 1
STATUS_CODE_ERROR = 2  # trace.v1.Status.StatusCode

TOKEN_METRIC, COST_METRIC = "claude_code.token.usage", "claude_code.cost.usage"
LINES_METRIC, DECISION_METRIC = "claude_code.lines_of_code.count", "claude_code.code_edit_tool.decision"
COUNT_METRICS = {
    "claude_code.session.count": "session_start",
    DECISION_METRIC: None,  # by its `decision` attribute
    "claude_code.commit.count": "commit",
    "claude_code.pull_request.count": "pull_request",
}
MAPPED_METRICS = {TOKEN_METRIC, COST_METRIC, LINES_METRIC, *COUNT_METRICS}
TOKEN_TYPES = {"input", "output", "cacheRead", "cacheCreation"}
DECISIONS = {"accept": "diff_accepted", "reject": "diff_rejected"}
EDIT_TOOLS = {"Edit", "Write", "NotebookEdit"}  # the tools of the decision metric (§12.3.2)
GENAI_USAGE_OPERATIONS = {"chat", "text_completion", "generate_content", "embeddings"}


@dataclass(frozen=True)
class KeySettings:
    owner: str | None  # the API key owner's email: the user fallback of §12.4
    use_client_cost: bool  # ApiKey.otlp_use_client_cost


@dataclass
class Derived:
    kind: str  # "usage" or "activity"
    item: dict  # a §5 ingest item
    source: str  # METRICS, LOGS or TRACES
    session: str | None = None  # the Claude Code session.id
    role: str | None = None  # METRICS_USAGE / LOGS_USAGE (§12.3.3), else None


@dataclass
class Mapped:
    items: list[Derived] = field(default_factory=list)
    ignored: int = 0
    rejected: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StreamPoint:
    stream_hash: str
    start_ns: int
    time_ns: int
    value: int | float | Decimal


class _Rejected(Exception):
    """An OTLP item is invalid; the message says why (the caller names the item)."""


# ---------------------------------------------------------------- shared helpers

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _datetime(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1000)


def _timestamp(ns: int) -> str:
    return _datetime(ns).isoformat()


def _when(ns: int) -> str:
    return _datetime(ns).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ns(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # an ISO stamp without offset: UTC, as toISOString writes
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def _shown(value) -> str:
    return repr(value[:50]) if isinstance(value, str) else str(value)


def _cost_text(value: Decimal) -> str:
    if value >= MAX_COST:
        raise _Rejected(f"cost {value} is too large")
    try:
        return format(value.quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN).normalize(), "f")
    except InvalidOperation:
        raise _Rejected(f"cost {value} is not a valid amount") from None


def _count(lookup: Lookup, *keys: str) -> int:
    """A token or count attribute as a non-negative int; absent is 0."""
    raw = lookup.raw(*keys)
    if raw is None:
        return 0
    value = number(raw)
    if value is None:
        raise _Rejected(f"{keys[0]} {_shown(raw)} is not a number")
    if value > MAX_COUNT:
        raise _Rejected(f"{keys[0]} {_shown(value)} is too large")
    count = whole(value)
    if count is None:
        raise _Rejected(f"{keys[0]} {_shown(value)} is not a whole number")
    if count < 0:
        raise _Rejected(f"{keys[0]} {count} is negative")
    return count


def _duration(lookup: Lookup, key: str = "duration_ms") -> int | None:
    value = lookup.number(key)
    if value is None or not 0 <= value <= MAX_COUNT:
        return None
    return int(round(value))


class _Resource:
    def __init__(self, resource):
        self.attrs = attributes(resource.attributes)
        self.typed = typed_attributes(resource.attributes)  # the ids' canonical form
        self.tags, self.overflow = resource_tags(self.attrs)
        self.service = text(self.attrs.get("service.name")) or ""


def _who(lookup: Lookup, res: _Resource, settings: KeySettings, time_ns: int, agent: str | None) -> dict:
    user = user_of(lookup, settings.owner)
    if user is None:
        raise _Rejected(NO_USER)
    item = {"timestamp": _timestamp(time_ns), "user": user, **dimensions(lookup)}
    if agent:
        item["agent"] = agent
    return item


def _finish(item: dict, lookup: Lookup, res: _Resource) -> dict:
    """Tags and metadata go last: metadata leaves out every attribute read before."""
    if res.tags:
        item["tags"] = list(res.tags)
    if extra := metadata(lookup.item, res.attrs, lookup.read, res.overflow):
        item["metadata"] = extra
    return {key: value for key, value in item.items() if value is not None}


# ---------------------------------------------------------------- metrics (§12.3.1)


def _data_points(metric) -> list:
    which = metric.WhichOneof("data")
    return list(getattr(metric, which).data_points) if which else []


@dataclass
class _Point:
    metric: str
    res: _Resource
    scope: object
    pb: object  # NumberDataPoint
    attrs: dict
    value: int | Decimal

    @property
    def name(self) -> str:
        return f"data point of {self.metric} at {_when(self.pb.time_unix_nano)}"


def _point_value(metric: str, point) -> int | Decimal:
    which = point.WhichOneof("value")
    if which is None:
        raise _Rejected("no value")
    raw = getattr(point, which)
    value = number(raw)
    if value is None:
        raise _Rejected(f"value {raw} is not a number")
    if value < 0:
        raise _Rejected(f"value {_shown(value)} is negative")
    if value > (MAX_COST if metric == COST_METRIC else MAX_COUNT):
        raise _Rejected(f"value {_shown(value)} is too large")
    if metric == COST_METRIC:
        return decimal(value)
    count = whole(value)
    if count is None:
        raise _Rejected(f"value {_shown(value)} is not a whole number")
    return count


def map_metrics(request, settings: KeySettings, deltas: Callable[[list[StreamPoint]], list]) -> Mapped:
    """Claude Code's metrics as usage records and activity events.

    `deltas` is called once, with every cumulative point of the request in time order per
    stream, and returns their increases in the same order (the caller keeps the §12.5
    state); delta points are used as sent.
    """
    out = Mapped()
    points: list[_Point] = []
    cumulative: list[tuple[_Point, StreamPoint]] = []
    for resource_metrics in request.resource_metrics:
        res = _Resource(resource_metrics.resource)
        for scope_metrics in resource_metrics.scope_metrics:
            scope = scope_metrics.scope
            for metric in scope_metrics.metrics:
                data_points = _data_points(metric)
                if metric.name not in MAPPED_METRICS:
                    out.ignored += len(data_points)
                    continue
                is_sum = metric.WhichOneof("data") == "sum"
                temporality = metric.sum.aggregation_temporality if is_sum else None
                if not (is_sum and metric.sum.is_monotonic and temporality in (DELTA, CUMULATIVE)):
                    out.rejected += [
                        f"data point of {metric.name} at {_when(p.time_unix_nano)}: {metric.name} is not a "
                        "monotonic Sum with delta or cumulative temporality"
                        for p in data_points
                    ]
                    continue
                for pb in data_points:
                    if pb.flags & FLAG_NO_RECORDED_VALUE:
                        out.ignored += 1
                        continue
                    point = _Point(metric.name, res, scope, pb, attributes(pb.attributes), 0)
                    try:
                        point.value = _point_value(metric.name, pb)
                    except _Rejected as exc:
                        out.rejected.append(f"{point.name}: {exc}")
                        continue
                    points.append(point)
                    if temporality == CUMULATIVE:
                        stream = ids.stream_hash(res.typed, scope, metric.name, pb.attributes)
                        cumulative.append(
                            (point, StreamPoint(stream, pb.start_time_unix_nano, pb.time_unix_nano, point.value))
                        )

    cumulative.sort(key=lambda pair: pair[1].time_ns)  # stable: a stream's points keep their order
    increases = deltas([stream_point for _, stream_point in cumulative])
    if len(increases) != len(cumulative):
        raise ValueError(f"deltas returned {len(increases)} values for {len(cumulative)} points")
    for (point, _), increase in zip(cumulative, increases, strict=True):
        point.value = decimal(increase) if point.metric == COST_METRIC else int(increase)

    _map_usage_points([p for p in points if p.metric in (TOKEN_METRIC, COST_METRIC)], settings, out)
    for point in points:
        if point.metric in (TOKEN_METRIC, COST_METRIC):
            continue
        try:
            derived = _map_count_point(point, settings)
        except _Rejected as exc:
            out.rejected.append(f"{point.name}: {exc}")
            continue
        if derived:
            out.items += derived
        else:
            out.ignored += 1
    return out


def _map_usage_points(points: list[_Point], settings: KeySettings, out: Mapped) -> None:
    """The join: token and cost points of one collection (same resource, scope, attributes
    other than `type`, end time) make one usage record."""
    groups: dict[str, list[_Point]] = {}
    for point in points:
        if point.metric == TOKEN_METRIC and point.attrs.get("type") not in TOKEN_TYPES:
            out.rejected.append(
                f"{point.name}: type {point.attrs.get('type')!r} is not one of {', '.join(sorted(TOKEN_TYPES))}"
            )
            continue
        key = ids.metric_usage_id(point.res.typed, point.scope, point.pb.attributes, point.pb.time_unix_nano)
        groups.setdefault(key, []).append(point)
    for request_id, group in groups.items():
        tokens = dict.fromkeys(TOKEN_TYPES, 0)
        cost = None
        for point in group:
            if point.metric == TOKEN_METRIC:
                tokens[point.attrs["type"]] += point.value
            else:
                cost = (cost or Decimal(0)) + point.value
        has_tokens = any(p.metric == TOKEN_METRIC for p in group)
        if not any(tokens.values()) and not cost:
            out.ignored += len(group)  # zero-valued points make nothing
            continue
        if not has_tokens and not settings.use_client_cost:
            out.ignored += len(group)  # a cost-only record when client costs are off: nothing to price
            continue
        try:
            item = _usage_record(request_id, group[0], tokens, cost, settings)
        except _Rejected as exc:
            out.rejected += [f"{point.name}: {exc}" for point in group]
            continue
        out.items.append(
            Derived("usage", item, METRICS, session=item.get("session_id"), role=METRICS_USAGE),
        )


def _usage_record(request_id: str, point: _Point, tokens: dict, cost: Decimal | None, settings: KeySettings) -> dict:
    attrs = {key: value for key, value in point.attrs.items() if key != "type"}
    lookup = Lookup(attrs, point.res.attrs)
    item = {"request_id": request_id, **_who(lookup, point.res, settings, point.pb.time_unix_nano, CLAUDE_CODE)}
    model = lookup.text("model")
    if model is None:
        raise _Rejected("no model attribute")
    item |= {
        "model": model,
        "provider": "anthropic",
        "service_type": "text_generation",
        # Claude Code's input excludes the cache, as the Anthropic API reports it: §4 counts it in.
        "input_tokens": tokens["input"] + tokens["cacheRead"] + tokens["cacheCreation"],
        "cached_input_tokens": tokens["cacheRead"],
        "cache_write_tokens": tokens["cacheCreation"],
        "output_tokens": tokens["output"],
        "request_count": 0,
        "session_id": lookup.text(SESSION_KEY),
    }
    if settings.use_client_cost:
        # 0 without a cost point, never the price table: a cost point sent in another
        # request makes its own cost-only record, so pricing this one would count twice.
        item["cost"] = _cost_text(cost or Decimal(0))
    return _finish(item, lookup, point.res)


def _map_count_point(point: _Point, settings: KeySettings) -> list[Derived]:
    """Count points as n events of quantity 1; lines of code as one `lines_changed` event."""
    n = point.value
    if n == 0:
        return []
    lookup = Lookup(point.attrs, point.res.attrs)
    role = None
    lines = {}
    if point.metric == LINES_METRIC:
        kind = "lines_changed"
        which = {"added": "lines_added", "removed": "lines_removed"}.get(lookup.text("type"))
        if which is None:
            raise _Rejected(f"type {lookup.text('type')!r} is not added or removed")
        lines = {which: n}
    elif point.metric == DECISION_METRIC:
        kind = DECISIONS.get(lookup.text("decision"))
        if kind is None:
            raise _Rejected(f"decision {lookup.text('decision')!r} is not accept or reject")
        role = METRICS_USAGE
    else:
        kind = COUNT_METRICS[point.metric]
    if kind != "lines_changed" and n > MAX_EVENTS:
        raise _Rejected(f"value {n} is over {MAX_EVENTS:,} events")
    base = _who(lookup, point.res, settings, point.pb.time_unix_nano, CLAUDE_CODE)
    base |= {"kind": kind, "session_id": lookup.text(SESSION_KEY)}
    base = _finish(base, lookup, point.res)
    event_id = ids.metric_event_id(
        point.res.typed, point.scope, point.metric, point.pb.attributes, point.pb.time_unix_nano
    )
    session = base.get("session_id")
    if kind == "lines_changed":
        item = {"event_id": event_id, **base, **lines, "quantity": 0}
        return [Derived("activity", item, METRICS, session=session, role=role)]
    return [
        Derived("activity", {"event_id": f"{event_id}:{i}", **base, "quantity": 1}, METRICS, session, role)
        for i in range(1, n + 1)
    ]


# ---------------------------------------------------------------- logs (§12.3.2, §12.3.5)


@dataclass
class _Record:
    res: _Resource
    scope: object
    pb: object  # LogRecord
    lookup: Lookup
    event: str
    time_ns: int

    def hashed_id(self) -> str:
        return ids.record_id(self.res.typed, self.scope, self.pb, self.event)


def _event_name(record, attrs: dict, res: _Resource, scope) -> str:
    body = record.body.string_value if record.body.WhichOneof("value") == "string_value" else ""
    name = record.event_name or body or text(attrs.get("event.name")) or ""
    from_claude_code = res.service.startswith("claude-code") or scope.name.startswith("com.anthropic.claude_code")
    if name and "." not in name and from_claude_code:
        name = "claude_code." + name
    return name


def _record_time(record, lookup: Lookup) -> int | None:
    if record.time_unix_nano:
        return record.time_unix_nano
    if stamp := lookup.text("event.timestamp"):
        try:
            return _ns(datetime.fromisoformat(stamp))
        except ValueError:
            pass
    return record.observed_time_unix_nano or None


def map_logs(request, settings: KeySettings) -> Mapped:
    """Claude Code, Codex CLI and Gemini CLI events as usage records and activity events."""
    out = Mapped()
    for resource_logs in request.resource_logs:
        res = _Resource(resource_logs.resource)
        for scope_logs in resource_logs.scope_logs:
            scope = scope_logs.scope
            for pb in scope_logs.log_records:
                attrs = attributes(pb.attributes)
                event = _event_name(pb, attrs, res, scope)
                handler = EVENT_HANDLERS.get(event)
                if handler is None:
                    out.ignored += 1
                    continue
                lookup = Lookup(attrs, res.attrs)
                lookup.read |= {"event.name", "event.timestamp"}
                time_ns = _record_time(pb, lookup)
                stamp = _when(time_ns) if time_ns else "an unknown time"
                try:
                    if time_ns is None:
                        raise _Rejected("no time_unix_nano, event.timestamp or observed_time_unix_nano")
                    derived = handler(_Record(res, scope, pb, lookup, event, time_ns), settings)
                except _Rejected as exc:
                    out.rejected.append(f"log record {event} at {stamp}: {exc}")
                    continue
                if derived is None:
                    out.ignored += 1
                else:
                    out.items.append(derived)
    return out


def _cc_request_id(rec: _Record, prefix: str) -> str:
    lookup = rec.lookup
    return (
        ids.client_id(f"otlp:{prefix}:", lookup.text("request_id"))
        or ids.client_id(f"otlp:{prefix}-client:", lookup.text("client_request_id"))
        or rec.hashed_id()
    )


def _model(lookup: Lookup, *keys: str) -> str:
    model = lookup.text(*keys)
    if model is None:
        raise _Rejected(f"no {' or '.join(keys)} attribute")
    return model


def _cc_usage(rec: _Record, settings: KeySettings, *, error: bool) -> Derived:
    lookup = rec.lookup
    item = {
        "request_id": _cc_request_id(rec, "cc-err" if error else "cc-req"),
        **_who(lookup, rec.res, settings, rec.time_ns, CLAUDE_CODE),
        "model": _model(lookup, "model"),
        "provider": "anthropic",
        "service_type": "text_generation",
        "status": "error" if error else "success",
        "duration_ms": _duration(lookup),
        "request_count": 1,
        "session_id": lookup.text(SESSION_KEY),
    }
    if error:
        item["cost"] = "0"
    else:
        cache_read, cache_write = _count(lookup, "cache_read_tokens"), _count(lookup, "cache_creation_tokens")
        item |= {
            "input_tokens": _count(lookup, "input_tokens") + cache_read + cache_write,
            "cached_input_tokens": cache_read,
            "cache_write_tokens": cache_write,
            "output_tokens": _count(lookup, "output_tokens"),
        }
        micros, usd = lookup.number("cost_usd_micros"), lookup.number("cost_usd")
        cost = decimal(micros) / 10**6 if micros is not None else decimal(usd) if usd is not None else None
        if cost is not None and cost < 0:
            raise _Rejected(f"cost {_shown(cost)} is negative")
        if cost is not None and settings.use_client_cost:
            item["cost"] = _cost_text(cost)
    item = _finish(item, lookup, rec.res)
    return Derived("usage", item, LOGS, session=item.get("session_id"), role=LOGS_USAGE)


def _cc_api_request(rec: _Record, settings: KeySettings) -> Derived:
    return _cc_usage(rec, settings, error=False)


def _cc_api_error(rec: _Record, settings: KeySettings) -> Derived:
    return _cc_usage(rec, settings, error=True)


def _activity(rec: _Record, settings: KeySettings, event_id: str, kind: str, agent: str, session_key: str) -> dict:
    lookup = rec.lookup
    item = {
        "event_id": event_id,
        **_who(lookup, rec.res, settings, rec.time_ns, agent),
        "kind": kind,
        "session_id": lookup.text(session_key),
        "quantity": 1,
    }
    return _finish(item, lookup, rec.res)


def _cc_tool_decision(rec: _Record, settings: KeySettings) -> Derived | None:
    lookup = rec.lookup
    decision = lookup.text("decision")
    if lookup.text("tool_name") not in EDIT_TOOLS or decision not in DECISIONS:
        return None
    tool_use = lookup.text("tool_use_id")
    event_id = (tool_use and ids.client_id("otlp:cc-tool:", f"{tool_use}:{decision}")) or rec.hashed_id()
    item = _activity(rec, settings, event_id, DECISIONS[decision], CLAUDE_CODE, SESSION_KEY)
    return Derived("activity", item, LOGS, session=item.get("session_id"), role=LOGS_USAGE)


def _cc_user_prompt(rec: _Record, settings: KeySettings) -> Derived:
    event_id = ids.client_id("otlp:cc-prompt:", rec.lookup.text("prompt.id")) or rec.hashed_id()
    item = _activity(rec, settings, event_id, "agent_run", CLAUDE_CODE, SESSION_KEY)
    return Derived("activity", item, LOGS, session=item.get("session_id"))


def _codex_sse_event(rec: _Record, settings: KeySettings) -> Derived | None:
    lookup = rec.lookup
    if lookup.text("event.kind") != "response.completed":
        return None
    conversation = lookup.text("conversation.id")
    item = {
        "request_id": rec.hashed_id(),
        **_who(lookup, rec.res, settings, rec.time_ns, CODEX),
        "model": _model(lookup, "model"),
        "service_type": "text_generation",
        # Assumed to include the cached tokens, OpenAI style (§12.3.5, unconfirmed).
        "input_tokens": _count(lookup, "input_token_count"),
        "cached_input_tokens": _count(lookup, "cached_token_count"),
        "output_tokens": _count(lookup, "output_token_count"),
        "reasoning_tokens": _count(lookup, "reasoning_token_count"),
        "duration_ms": _duration(lookup),
        "request_count": 1,
        "session_id": conversation,
        "conversation_id": conversation,
    }
    return Derived("usage", _finish(item, lookup, rec.res), LOGS)


def _codex_user_prompt(rec: _Record, settings: KeySettings) -> Derived:
    return Derived("activity", _activity(rec, settings, rec.hashed_id(), "agent_run", CODEX, "conversation.id"), LOGS)


def _gemini_usage(rec: _Record, settings: KeySettings, *, error: bool) -> Derived:
    lookup = rec.lookup
    item = {
        "request_id": rec.hashed_id(),
        **_who(lookup, rec.res, settings, rec.time_ns, GEMINI_CLI),
        "model": _model(lookup, "model"),
        "service_type": "text_generation",
        "status": "error" if error else "success",
        "duration_ms": _duration(lookup),
        "request_count": 1,
        "session_id": lookup.text(SESSION_KEY),
    }
    if not error:
        thoughts = _count(lookup, "thoughts_token_count")
        item |= {
            "input_tokens": _count(lookup, "input_token_count"),
            "cached_input_tokens": _count(lookup, "cached_content_token_count"),
            "output_tokens": _count(lookup, "output_token_count") + thoughts,
            "reasoning_tokens": thoughts,
        }
    return Derived("usage", _finish(item, lookup, rec.res), LOGS)


def _gemini_api_response(rec: _Record, settings: KeySettings) -> Derived:
    return _gemini_usage(rec, settings, error=False)


def _gemini_api_error(rec: _Record, settings: KeySettings) -> Derived:
    return _gemini_usage(rec, settings, error=True)


EVENT_HANDLERS = {
    "claude_code.api_request": _cc_api_request,
    "claude_code.api_error": _cc_api_error,
    "claude_code.tool_decision": _cc_tool_decision,
    "claude_code.user_prompt": _cc_user_prompt,
    "codex.sse_event": _codex_sse_event,
    "codex.user_prompt": _codex_user_prompt,
    "gemini_cli.api_response": _gemini_api_response,
    "gemini_cli.api_error": _gemini_api_error,
}


# ---------------------------------------------------------------- traces (§12.3.4)


def map_traces(request, settings: KeySettings) -> Mapped:
    """GenAI spans as usage records (inference, embeddings) and agent runs (invoke_agent)."""
    out = Mapped()
    for resource_spans in request.resource_spans:
        res = _Resource(resource_spans.resource)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                # Claude Code's own spans repeat its api_request events.
                if res.service.startswith("claude-code") or span.name.startswith("claude_code."):
                    out.ignored += 1
                    continue
                try:
                    derived = _map_span(span, res, settings)
                except _Rejected as exc:
                    out.rejected.append(f"span {span.name!r} {span.trace_id.hex()}/{span.span_id.hex()}: {exc}")
                    continue
                if derived is None:
                    out.ignored += 1
                else:
                    out.items.append(derived)
    return out


def _map_span(span, res: _Resource, settings: KeySettings) -> Derived | None:
    attrs = attributes(span.attributes)
    lookup = Lookup(attrs, res.attrs)
    operation = lookup.text("gen_ai.operation.name")
    if operation == "invoke_agent":
        kind = "activity"
    elif operation in GENAI_USAGE_OPERATIONS or (
        operation is None
        and lookup.raw("gen_ai.request.model") is not None
        and any(key.startswith("gen_ai.usage.") for key in attrs)
    ):
        kind = "usage"
    else:
        return None
    if not span.trace_id or not span.span_id:
        raise _Rejected("no trace_id or span_id")
    if not span.start_time_unix_nano:
        raise _Rejected("no start_time_unix_nano")
    agent = lookup.text("gen_ai.agent.name") or res.service or None
    base = {**_who(lookup, res, settings, span.start_time_unix_nano, agent), "session_id": lookup.text(SESSION_KEY)}
    if kind == "activity":
        # Its gen_ai.usage.* repeat its children's (§12.3.4): never counted.
        item = {"event_id": ids.span_item_id(span), **base, "kind": "agent_run", "quantity": 1}
        return Derived("activity", _finish(item, lookup, res), TRACES)
    cached = _count(lookup, "gen_ai.usage.cache_read.input_tokens")
    written = _count(lookup, "gen_ai.usage.cache_creation.input_tokens")
    input_tokens = _count(lookup, "gen_ai.usage.input_tokens")
    if cached + written > input_tokens:
        input_tokens += cached + written  # reported apart, Anthropic style
    duration = span.end_time_unix_nano - span.start_time_unix_nano
    item = {
        "request_id": ids.span_item_id(span),
        **base,
        "model": _model(lookup, "gen_ai.response.model", "gen_ai.request.model"),
        "provider": lookup.text("gen_ai.provider.name", "gen_ai.system"),
        "service_type": "embedding" if operation == "embeddings" else "text_generation",
        "status": "error" if span.status.code == STATUS_CODE_ERROR else "success",
        "input_tokens": input_tokens,
        "cached_input_tokens": cached,
        "cache_write_tokens": written,
        "output_tokens": _count(lookup, "gen_ai.usage.output_tokens"),
        "reasoning_tokens": _count(lookup, "gen_ai.usage.reasoning.output_tokens"),
        "duration_ms": duration // 10**6 if span.end_time_unix_nano and duration >= 0 else None,
        "conversation_id": lookup.text("gen_ai.conversation.id"),
        "request_count": 1,
    }
    return Derived("usage", _finish(item, lookup, res), TRACES)
