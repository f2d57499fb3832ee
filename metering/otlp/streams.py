"""Cumulative metric streams turned into deltas, with their state in the database (DESIGN §12.5).

The state is read and written inside the ingest transaction, under row locks taken in hash
order, so every daphne process (and a restarted one) converts a stream's points once: two
requests carrying points of the same stream serialize on its row. A stream seen for the
first time gets a row with no state (`last_time_ns` 0) before it is locked, so two first
points racing each other cannot both count from zero.
"""

from datetime import timedelta

from django.utils import timezone

from accounts.models import Organization
from metering.models import OtlpStream
from metering.otlp.mapping import StreamPoint
from metering.otlp.temporality import StreamState, next_delta

# A stream idle this long is forgotten; its next point then counts as a baseline (§12.5).
IDLE = timedelta(days=35)


def deltas(org: Organization, points: list[StreamPoint]) -> list:
    """Each cumulative point's increase over the one before it in its stream, in order."""
    if not points:
        return []
    hashes = sorted({point.stream_hash for point in points})
    OtlpStream.objects.bulk_create(
        [OtlpStream(org=org, stream_hash=h, start_time_ns=0, last_time_ns=0, last_value=0) for h in hashes],
        ignore_conflicts=True,
    )
    rows = {
        row.stream_hash: row
        for row in OtlpStream.objects.select_for_update()
        .filter(org=org, stream_hash__in=hashes)
        .order_by("stream_hash")
    }
    states = {h: _state(row) for h, row in rows.items()}
    now_ns = int(timezone.now().timestamp() * 1e9)
    out = []
    for point in points:
        delta, states[point.stream_hash] = next_delta(
            states[point.stream_hash], point.start_ns, point.time_ns, point.value, now_ns
        )
        out.append(delta)
    changed, now = [], timezone.now()
    for h, row in rows.items():
        state = states[h]
        if state is not None and state != _state(row):
            row.start_time_ns, row.last_time_ns = state.start_time_ns, state.last_time_ns
            row.last_value, row.updated_at = state.last_value, now
            changed.append(row)
    if changed:
        OtlpStream.objects.bulk_update(changed, ["start_time_ns", "last_time_ns", "last_value", "updated_at"])
    return out


def _state(row: OtlpStream) -> StreamState | None:
    if row.last_time_ns == 0:
        return None
    return StreamState(start_time_ns=row.start_time_ns, last_time_ns=row.last_time_ns, last_value=row.last_value)


def forget_idle_streams() -> int:
    """Delete the state of streams idle for IDLE (the beat task); returns how many went."""
    deleted, _ = OtlpStream.objects.filter(updated_at__lt=timezone.now() - IDLE).delete()
    return deleted
