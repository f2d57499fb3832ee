"""Time buckets: their starts in the org's zone, and the SQL that puts rows in them."""

import bisect
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import BigIntegerField, Func, IntegerField

HOUR = timedelta(hours=1)
INTERVALS = ("5m", "1h", "6h", "day", "week")
MAX_POINTS = 300


def _local_midnight(day: date, tz) -> datetime:
    return datetime.combine(day, time(), tz)


def bucket_starts(org, start: datetime, end: datetime, interval: str) -> list[datetime]:
    """The starts of the buckets covering [start, end), in the org's zone, plus the end of the
    last one. Days and weeks (from Monday) start at local midnight, so a DST day is a 23- or
    25-hour bucket; 6-hour buckets start at local 0, 6, 12 and 18 h; 5-minute and hourly
    buckets are steps of real time from the first local boundary, so they follow the local
    clock across whole-hour DST changes (after Lord Howe's 30-minute one they fall on :30)."""
    tz = org.tzinfo
    local = start.astimezone(tz)
    if interval in ("5m", "1h"):
        step = timedelta(minutes=5) if interval == "5m" else HOUR
        floor = local.replace(
            minute=local.minute - local.minute % 5 if interval == "5m" else 0, second=0, microsecond=0
        )
        first = floor.astimezone(UTC)
        while first + step <= start:  # an ambiguous local time (DST fold) floors too far back
            first += step
        count = -(-(end - first) // step)
        return [(first + i * step).astimezone(tz) for i in range(count + 1)]
    day = local.date() - timedelta(days=local.weekday() if interval == "week" else 0)
    starts = []
    while True:
        if interval == "6h":
            candidates = [datetime.combine(day, time(h), tz) for h in (0, 6, 12, 18)]
        else:
            candidates = [_local_midnight(day, tz)]
        for moment in candidates:
            if moment >= end:
                starts.append(moment)
                return [s for i, s in enumerate(starts) if i + 1 == len(starts) or starts[i + 1] > start]
            starts.append(moment)
        day += timedelta(days=7 if interval == "week" else 1)


INTERVAL_LENGTHS = {"5m": timedelta(minutes=5), "1h": HOUR, "6h": 6 * HOUR, "day": 24 * HOUR, "week": 168 * HOUR}


def interval_for(start: datetime, end: datetime) -> str:
    """DESIGN section 6: 24 h -> 5 min, 7 days -> 1 h, 30 days -> 6 h; otherwise the finest
    interval that keeps a chart within about MAX_POINTS points."""
    for interval in INTERVALS:
        if (end - start) / INTERVAL_LENGTHS[interval] <= MAX_POINTS:
            return interval
    return "week"


@dataclass(frozen=True)
class Buckets:
    starts: tuple[datetime, ...]  # the bucket starts and, last, the end of the last bucket
    interval: str

    @classmethod
    def of(cls, org, start, end, interval) -> "Buckets":
        return cls(tuple(bucket_starts(org, start, end, interval)), interval)

    def index(self, moment: datetime) -> int:
        return bisect.bisect_right(self.starts, moment) - 1

    @property
    def raw_slot_seconds(self) -> int:
        # Every zone's offset is a multiple of 15 minutes, so a 15-minute UTC slot never
        # straddles a local hour, day or week boundary.
        return 300 if self.interval == "5m" else 900

    @property
    def whole_utc_hours(self) -> bool:
        return self.interval != "5m" and all(
            (s := start.astimezone(UTC)).minute == 0 and s.second == 0 and s.microsecond == 0 for start in self.starts
        )


class EpochSlot(Func):
    """floor(seconds since the epoch / `seconds`): a time-zone-free bucket of raw timestamps."""

    output_field = BigIntegerField()

    def __init__(self, expression, seconds: int):
        super().__init__(expression)
        self.seconds = int(seconds)

    def as_sql(self, compiler, connection, **extra):
        # date_part() is a double, EXTRACT() a numeric: half the time over 180k rows (bench/queries.py).
        # A double holds epoch seconds to ~0.1 us, so a microsecond before a boundary stays before it.
        template = f"CAST(FLOOR(date_part('epoch', %(expressions)s) / {self.seconds}) AS BIGINT)"
        return super().as_sql(compiler, connection, template=template, **extra)

    def as_sqlite(self, compiler, connection, **extra):
        # Whole seconds first: unixepoch() rounds fractions, so 23:59:59.9999 would become midnight.
        template = f"(CAST(unixepoch(substr(%(expressions)s, 1, 19)) AS INTEGER) / {self.seconds})"
        return super().as_sql(compiler, connection, template=template, **extra)


class WidthBucket(Func):
    """The index of the bucket a value is in, as Buckets.index finds it: width_bucket() over the
    buckets' starts as `kind` (PostgreSQL only)."""

    output_field = IntegerField()

    def __init__(self, expression, thresholds: list, kind: str):
        super().__init__(expression)
        self.thresholds, self.kind = thresholds, kind

    def as_sql(self, compiler, connection, **extra):
        sql, params = compiler.compile(self.source_expressions[0])
        return f"width_bucket({sql}, CAST(%s AS {self.kind}[])) - 1", [*params, self.thresholds]


def _slot_start(slot: int, seconds: int) -> datetime:
    return datetime.fromtimestamp(slot * seconds, UTC)


def _thresholds(buckets: Buckets, org, column: str) -> tuple[str, list]:
    """The bucket starts as the values of a part's bucket column, and their SQL type."""
    if column == "day":
        return "DATE", [start.astimezone(org.tzinfo).date() for start in buckets.starts]
    if column == "hour":
        return "TIMESTAMPTZ", list(buckets.starts)
    seconds = buckets.raw_slot_seconds  # raw rows: epoch slots, and every start is on one
    return "BIGINT", [int(start.timestamp()) // seconds for start in buckets.starts]


def _bucket_of(buckets: Buckets | None, org, column: str, value) -> int | None:
    if buckets is None:
        return None
    if column == "day":
        return buckets.index(_local_midnight(value, org.tzinfo))
    if column == "hour":
        return buckets.index(value)
    return buckets.index(_slot_start(value, buckets.raw_slot_seconds))


def _bucket_lookup(buckets: Buckets, org, column: str):
    """_bucket_of, remembered: thousands of rows share a few dozen days, hours or slots."""
    known: dict = {}

    def lookup(value) -> int:
        if value not in known:
            known[value] = _bucket_of(buckets, org, column, value)
        return known[value]

    return lookup
