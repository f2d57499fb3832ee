"""Cutting a range into parts: clean whole days for daily rollups, whole hours, and raw intervals."""

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from django.db.models import Q

from metering.models import (
    DirtyDay,
)
from metering.rollups import day_bounds
from metering.selectors.buckets import HOUR
from metering.selectors.query import Query
from metering.selectors.tables import Table


@dataclass
class Plan:
    days: list[date] = field(default_factory=list)  # whole, clean: read from a daily rollup
    hours: list[tuple[date, datetime, datetime]] = field(default_factory=list)  # whole UTC hours of clean days
    raw: list[tuple[datetime, datetime]] = field(default_factory=list)  # read from the raw rows


_raw_only = ContextVar("raw_only", default=False)


@contextlib.contextmanager
def raw_only() -> Iterator[None]:
    """Answer from the raw rows alone, ignoring every rollup: the benchmark's baseline."""
    token = _raw_only.set(True)
    try:
        yield
    finally:
        _raw_only.reset(token)


def plan(org, start: datetime, end: datetime, *, hours: bool = False) -> Plan:
    """Cut [start, end) into rollup days, (optionally) rollup hours and raw intervals."""
    if _raw_only.get():
        return Plan(raw=[(start, end)])
    tz = org.tzinfo
    first, last = start.astimezone(tz).date(), (end - timedelta(microseconds=1)).astimezone(tz).date()
    dirty = set(DirtyDay.objects.filter(org=org, day__gte=first, day__lte=last).values_list("day", flat=True))
    result = Plan()
    day = first
    while day <= last:
        day_start, day_end = day_bounds(org, day)
        a, b = max(day_start, start), min(day_end, end)
        if day in dirty:
            _add_raw(result, a, b)
        elif (a, b) == (day_start, day_end):
            result.days.append(day)
        elif hours:
            whole_from = a.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
            whole_from += HOUR if whole_from < a else timedelta(0)
            whole_to = b.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
            if whole_from < whole_to:
                _add_raw(result, a, whole_from)
                result.hours.append((day, whole_from, whole_to))
                _add_raw(result, whole_to, b)
            else:
                _add_raw(result, a, b)
        else:
            _add_raw(result, a, b)
        day += timedelta(days=1)
    return result


def _add_raw(result: Plan, a: datetime, b: datetime) -> None:
    if a >= b:
        return
    if result.raw and result.raw[-1][1] == a:
        result.raw[-1] = (result.raw[-1][0], b)
    else:
        result.raw.append((a, b))


def _time_q(intervals: list[tuple[datetime, datetime]], column: str = "timestamp") -> Q:
    q = Q(pk__in=[])
    for a, b in intervals:
        q |= Q(**{f"{column}__gte": a, f"{column}__lt": b})
    return q


def _hours_q(hours: list[tuple[date, datetime, datetime]]) -> Q:
    """The hourly rows of Plan.hours. (A whole day's are simply its day's: those its rebuild
    wrote, from the UTC hour holding its start to the one holding its end.)"""
    q = Q(pk__in=[])
    for day, a, b in hours:
        q |= Q(day=day, hour__gte=a, hour__lt=b)
    return q


def _merge(intervals):
    merged: list[tuple[datetime, datetime]] = []
    for a, b in sorted(intervals):
        if merged and merged[-1][1] >= a:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def _split(query: Query, parts: Plan, table: Table | None) -> tuple[list[date], list[tuple[datetime, datetime]]]:
    """The days `table` answers and the raw intervals left (all of them when there is no table)."""
    if table is None:
        return [], _merge(parts.raw + [day_bounds(query.org, d) for d in parts.days])
    return parts.days, parts.raw
