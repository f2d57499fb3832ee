"""Reads of the Resources page: LLM tokens, top consumers and models, compute, storage and platform activity."""

from dataclasses import dataclass
from decimal import Decimal

from dashboards.charts import Series, Slice, token_kinds, with_shares
from dashboards.selectors.common import people, tokens
from metering import selectors as metering
from metering.models import ActivityKind

TOP_BARS = 10
HOUR_SECONDS = Decimal(3600)
HOURS_PLACES = Decimal("0.0001")
CONSUMERS = (("user", "Users"), ("agent", "Agents"))
PLATFORM_KINDS = (ActivityKind.THREAD_CREATED, ActivityKind.MESSAGE_SENT)


def usage_totals(query: metering.Query) -> dict:
    """The period's usage measures (the summary's requests, failed_requests, input_tokens,
    cached_input_tokens and output_tokens, without the rest of the summary), plus derived ones."""
    totals = metering.usage_sums(query).sums.get((None,)) or {name: 0 for name in metering.MEASURES}
    return {
        **totals,
        "successful_requests": totals["requests"] - totals["failed_requests"],
        "total_tokens": tokens(totals),
        "cached_share": round(totals["cached_input_tokens"] * 100 / totals["input_tokens"], 1)
        if totals["input_tokens"]
        else 0,
    }


def token_series(query: metering.Query, buckets: metering.Buckets) -> list[Series]:
    """Cached input, fresh input and output tokens per bucket (input = cached + fresh)."""
    n = len(buckets.starts) - 1
    cached, fresh, output = [0] * n, [0] * n, [0] * n
    for (bucket,), sums in metering.usage_sums(query, buckets=buckets).sums.items():
        cached[bucket] += sums["cached_input_tokens"]
        fresh[bucket] += sums["input_tokens"] - sums["cached_input_tokens"]
        output[bucket] += sums["output_tokens"]
    return token_kinds(cached, fresh, output)


def _ranked_bars(totals: dict, labels: dict, details: dict | None = None, limit: int = TOP_BARS) -> list[Slice]:
    """The `limit` biggest of `totals` as bars, each's share relative to the biggest."""
    order = sorted(totals, key=lambda k: (-totals[k], str(labels.get(k))))
    bars = [
        Slice(str(labels.get(k, k)), "", totals[k], detail=(details or {}).get(k), key=str(labels.get(k, k)))
        for k in order[:limit]
    ]
    return with_shares(bars, max(totals.values(), default=0))


def _token_bars(sums: dict, labels: dict, limit: int) -> list[Slice]:
    """Bars of the tokens (input + output) of each key of `sums`, each with its (input, output) split."""
    totals = {key: tokens(values) for (_, key), values in sums.items() if tokens(values)}
    split = {key: (values["input_tokens"], values["output_tokens"]) for (_, key), values in sums.items()}
    return _ranked_bars(totals, labels(totals), split, limit)


def top_consumers(query: metering.Query, by: str = "user", limit: int = TOP_BARS) -> list[Slice]:
    """Who drove the tokens (input + output): the top users or agents, biggest first."""

    def labels(totals: dict) -> dict:
        if by == "user":
            return {key: person.label for key, person in people(query.scope, totals).items()}
        return {**metering.dimension_names(by, totals, query.org), None: "No agent"}

    return _token_bars(metering.usage_sums(query, by=(by,)).sums, labels, limit)


def tokens_by_model(query: metering.Query, limit: int = TOP_BARS) -> list[Slice]:
    return _token_bars(
        metering.usage_sums(query, by=("model",)).sums,
        lambda totals: metering.dimension_names("model", totals, query.org),
        limit,
    )


def hours(seconds) -> Decimal:
    """Core- or GB-seconds as core- or GB-hours, to 1/10,000 of an hour."""
    return (Decimal(seconds) / HOUR_SECONDS).quantize(HOURS_PLACES)


@dataclass
class ResourceOverview:
    cpu_core_hours: Decimal
    ram_gb_hours: Decimal
    storage_gb_hours: Decimal
    compute: list[Series]  # CPU core-hours and RAM GB-hours per bucket
    storage: list[Series]  # storage GB-hours per bucket
    compute_agents: list[Slice]  # top agents by core-hours (RAM in the detail)
    storage_agents: list[Slice]


def resource_overview(query: metering.Query, buckets: metering.Buckets) -> ResourceOverview:
    """Compute and storage of the period: totals, per bucket, and by agent. Three reads."""
    totals = metering.resource_sums(query).get((None,), dict.fromkeys(metering.RESOURCE_MEASURES, Decimal(0)))
    n = len(buckets.starts) - 1
    per_bucket = {name: [Decimal(0)] * n for name in metering.RESOURCE_MEASURES}
    for (bucket,), values in metering.resource_sums(query, buckets=buckets).items():
        for name in metering.RESOURCE_MEASURES:
            per_bucket[name][bucket] += values[name]
    series = {name: [hours(v) for v in values] for name, values in per_bucket.items()}
    by_agent = {agent: values for (_, agent), values in metering.resource_sums(query, by=("agent",)).items()}
    labels = metering.dimension_names("agent", by_agent, query.org)
    labels[None] = "No agent"
    cpu = {a: hours(v["cpu_core_seconds"]) for a, v in by_agent.items() if v["cpu_core_seconds"]}
    storage = {a: hours(v["storage_gb_seconds"]) for a, v in by_agent.items() if v["storage_gb_seconds"]}
    return ResourceOverview(
        cpu_core_hours=hours(totals["cpu_core_seconds"]),
        ram_gb_hours=hours(totals["ram_gb_seconds"]),
        storage_gb_hours=hours(totals["storage_gb_seconds"]),
        compute=[
            Series("CPU core-hours", "#4f46e5", series["cpu_core_seconds"]),
            Series("RAM GB-hours", "#0d9488", series["ram_gb_seconds"]),
        ],
        storage=[Series("Storage GB-hours", "#0284c7", series["storage_gb_seconds"])],
        compute_agents=_ranked_bars(cpu, labels, {a: hours(v["ram_gb_seconds"]) for a, v in by_agent.items()}, 8),
        storage_agents=_ranked_bars(storage, labels, limit=8),
    )


@dataclass
class PlatformActivity:
    threads_created: int
    messages_sent: int
    series: list[Series]


def platform_activity(query: metering.Query, buckets: metering.Buckets) -> PlatformActivity:
    """Threads created and messages sent (their quantities), in total and per bucket."""
    n = len(buckets.starts) - 1
    per_kind = {kind: [0] * n for kind in PLATFORM_KINDS}
    for (bucket, kind), values in metering.activity_series(query, buckets, kinds=PLATFORM_KINDS).items():
        per_kind[kind][bucket] += values["quantity"]
    threads, messages = per_kind[ActivityKind.THREAD_CREATED], per_kind[ActivityKind.MESSAGE_SENT]
    return PlatformActivity(
        threads_created=sum(threads),
        messages_sent=sum(messages),
        series=[Series("Threads created", "#7c3aed", threads), Series("Messages sent", "#0284c7", messages)],
    )
