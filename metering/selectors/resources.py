"""Compute and storage allocations: CPU, RAM and storage over a range, prorated per bucket."""

import bisect
from decimal import Decimal

from django.db.models import Q, Sum

from metering.models import (
    ResourceDaily,
    ResourceUsage,
)
from metering.selectors.buckets import Buckets, _bucket_lookup
from metering.selectors.plan import Plan, plan
from metering.selectors.query import Query
from metering.selectors.sums import _fetched, _grouped
from metering.selectors.tables import RESOURCE_DAY, RESOURCE_DIMS, RESOURCE_RAW, _restrict

RESOURCE_MEASURES = ("cpu_core_seconds", "ram_gb_seconds", "storage_gb_seconds")


def resource_sums(
    query: Query, *, by: tuple[str, ...] = (), buckets: Buckets | None = None
) -> dict[tuple, dict[str, Decimal]]:
    """CPU core-seconds, RAM GB-seconds and storage GB-seconds by (bucket index or None, *by).

    Allocations are counted for the time they spend inside the range (and each bucket), as
    ResourceDaily counts them per day: whole clean days come from that rollup, the rest (partial
    and dirty days, and every day when buckets are shorter than a day) from the raw allocations,
    prorated here the way metering.rollups._resources does. Allocations carry a user, team,
    project and agent only, so a filter on any other dimension selects none of them.
    """
    unknown = set(by) - RESOURCE_DIMS
    if unknown:
        raise ValueError(f"Resources have no {sorted(unknown)}")
    result: dict[tuple, dict[str, Decimal]] = {}

    def add(key, values):
        target = result.setdefault(key, dict.fromkeys(RESOURCE_MEASURES, Decimal(0)))
        for name, value in values:
            target[name] += value or 0

    if query.filters.select_nothing:
        return result
    sub_day = buckets is not None and buckets.interval not in ("day", "week")
    parts = Plan(raw=[(query.start, query.end)]) if sub_day else plan(query.org, query.start, query.end)
    if parts.days:
        days = _restrict(ResourceDaily.objects.filter(day__in=parts.days), query, RESOURCE_DAY, RESOURCE_DIMS)
        groups = (["day"] if buckets is not None else []) + list(by)
        sums = {f"r_{name}": Sum(name) for name in RESOURCE_MEASURES}
        bucket_of = _bucket_lookup(buckets, query.org, "day") if buckets is not None else None
        for row in _grouped(days, groups, sums):
            bucket, key = (bucket_of(row[0]), row[1 : len(groups)]) if bucket_of else (None, row[: len(groups)])
            add((bucket, *key), zip(RESOURCE_MEASURES, row[len(groups) :], strict=True))
    if parts.raw:
        overlapping = Q(pk__in=[])
        for a, b in parts.raw:
            overlapping |= Q(start__lt=b, end__gt=a)
        allocations = _restrict(ResourceUsage.objects.filter(overlapping), query, RESOURCE_RAW, RESOURCE_DIMS)
        rows = _fetched(allocations.values_list("start", "end", "cpu_cores", "ram_gb", "storage_gb", *by).order_by())
        # Datetimes compare fast when they share a tzinfo object (no UTC offsets to work out):
        # the bounds are put in the rows' zone. Thousands of allocations a month, split per bucket.
        zone = None
        for start, end, *sizes_and_key in rows:
            if zone is not start.tzinfo:
                zone = start.tzinfo
                intervals = [(a.astimezone(zone), b.astimezone(zone)) for a, b in parts.raw]
                starts = [s.astimezone(zone) for s in buckets.starts] if buckets is not None else []
            sizes, key = sizes_and_key[:3], tuple(sizes_and_key[3:])
            for a, b in intervals:
                lo, hi = max(start, a), min(end, b)
                if lo >= hi:
                    continue
                if buckets is None:
                    pieces = [(None, lo, hi)]
                else:
                    pieces, i = [], bisect.bisect_right(starts, lo) - 1
                    while i < len(starts) - 1 and starts[i] < hi:
                        pieces.append((i, max(lo, starts[i]), min(hi, starts[i + 1])))
                        i += 1
                for bucket, x, y in pieces:
                    seconds = Decimal((y - x).total_seconds())  # as the rollup computes it
                    add(
                        (bucket, *key),
                        [(name, size * seconds) for name, size in zip(RESOURCE_MEASURES, sizes, strict=True)],
                    )
    return result
