"""The cumulative-to-delta rule of DESIGN §12.5, row by row of its table."""

from decimal import Decimal

from metering.otlp.temporality import KNOWN_START_NS, StreamState, next_delta

SECOND = 10**9
NOW = 1_800_000_000 * SECOND


def test_a_first_point_with_a_recent_known_start_counts_its_whole_value():
    delta, state = next_delta(None, NOW - 60 * SECOND, NOW, 42, NOW)
    assert delta == 42
    assert state == StreamState(start_time_ns=NOW - 60 * SECOND, last_time_ns=NOW, last_value=42)


def test_a_first_point_whose_start_equals_its_time_is_only_a_baseline():
    delta, state = next_delta(None, NOW, NOW, 42, NOW)
    assert delta == 0
    assert state == StreamState(NOW, NOW, 42)


def test_a_first_point_started_over_35_days_ago_is_only_a_baseline():
    start = NOW - KNOWN_START_NS - SECOND
    delta, state = next_delta(None, start, NOW, 42, NOW)
    assert delta == 0
    assert state == StreamState(start, NOW, 42)


def test_a_first_point_started_exactly_35_days_ago_still_counts():
    assert next_delta(None, NOW - KNOWN_START_NS, NOW, 5, NOW)[0] == 5


def test_a_first_point_with_no_start_is_a_baseline():
    assert next_delta(None, 0, NOW, 42, NOW) == (0, StreamState(0, NOW, 42))


def test_a_later_point_of_the_same_start_counts_the_increase():
    state = StreamState(NOW - 120 * SECOND, NOW - 60 * SECOND, 10)
    delta, new = next_delta(state, NOW - 120 * SECOND, NOW, 25, NOW)
    assert delta == 15
    assert new == StreamState(NOW - 120 * SECOND, NOW, 25)


def test_an_unchanged_value_counts_zero_and_moves_the_last_time():
    state = StreamState(NOW - 120 * SECOND, NOW - 60 * SECOND, 10)
    assert next_delta(state, NOW - 120 * SECOND, NOW, 10, NOW) == (0, StreamState(NOW - 120 * SECOND, NOW, 10))


def test_a_resent_point_counts_zero_and_leaves_the_state_alone():
    state = StreamState(NOW - 120 * SECOND, NOW, 25)
    delta, new = next_delta(state, NOW - 120 * SECOND, NOW, 25, NOW)
    assert delta == 0
    assert new is state


def test_a_late_point_counts_zero_and_leaves_the_state_alone():
    state = StreamState(NOW - 120 * SECOND, NOW, 25)
    delta, new = next_delta(state, NOW - 120 * SECOND, NOW - 30 * SECOND, 20, NOW)
    assert delta == 0
    assert new is state


def test_a_new_start_is_a_reset_that_counts_the_new_value():
    state = StreamState(NOW - 120 * SECOND, NOW - 60 * SECOND, 100)
    delta, new = next_delta(state, NOW - 10 * SECOND, NOW, 7, NOW)
    assert delta == 7
    assert new == StreamState(NOW - 10 * SECOND, NOW, 7)


def test_a_value_that_went_down_is_a_reset_even_with_the_same_start():
    state = StreamState(NOW - 120 * SECOND, NOW - 60 * SECOND, 100)
    assert next_delta(state, NOW - 120 * SECOND, NOW, 3, NOW) == (3, StreamState(NOW - 120 * SECOND, NOW, 3))


def test_a_reset_whose_start_equals_its_time_counts_zero():
    state = StreamState(NOW - 120 * SECOND, NOW - 60 * SECOND, 100)
    assert next_delta(state, NOW, NOW, 3, NOW) == (0, StreamState(NOW, NOW, 3))


def test_decimal_values_keep_their_digits():
    state = StreamState(NOW - 120 * SECOND, NOW - 60 * SECOND, Decimal("0.1"))
    delta, _ = next_delta(state, NOW - 120 * SECOND, NOW, Decimal("0.3"), NOW)
    assert delta == Decimal("0.2")


def test_a_stream_fed_in_order_sums_to_its_last_value_since_a_known_start():
    start = NOW - 300 * SECOND
    state, total = None, 0
    for i, value in enumerate([4, 9, 9, 15]):
        delta, state = next_delta(state, start, start + (i + 1) * SECOND, value, NOW)
        total += delta
    assert total == 15
