"""Cumulative points turned into deltas: the pure rule of DESIGN §12.5 (the state's storage is streams.py)."""

from dataclasses import dataclass
from decimal import Decimal

Number = int | float | Decimal

# A start this recent is a known start: the stream began there at zero. State idle this long
# is deleted, so a stream seen "for the first time" with an older start may have been counted
# already, and its point is only a baseline.
KNOWN_START_NS = 35 * 24 * 3600 * 10**9


@dataclass(frozen=True)
class StreamState:
    start_time_ns: int
    last_time_ns: int
    last_value: Number


def next_delta(
    state: StreamState | None, start_ns: int, time_ns: int, value: Number, now_ns: int
) -> tuple[Number, StreamState]:
    """The increase a cumulative point adds over the stream's last point, and the stream's new state.

    Points must be fed in time order per stream. A resent or late point (time ≤ the last
    time) adds nothing and leaves the state as it was.
    """
    if state is None:
        if start_ns < time_ns and start_ns >= now_ns - KNOWN_START_NS:
            return value, StreamState(start_ns, time_ns, value)  # a reset at a known start: zero implied
        return 0, StreamState(start_ns, time_ns, value)  # unknown start: a baseline only
    if time_ns <= state.last_time_ns:
        return 0, state
    if start_ns == state.start_time_ns and value >= state.last_value:
        return value - state.last_value, StreamState(start_ns, time_ns, value)
    # A new start, or a value that went down: the stream was reset and counts from zero again.
    return (value if start_ns < time_ns else 0), StreamState(start_ns, time_ns, value)
