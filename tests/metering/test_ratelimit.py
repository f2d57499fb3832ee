"""The per-key limit holds under concurrency: Redis' INCR with REDIS_URL set, the local cache otherwise."""

from concurrent.futures import ThreadPoolExecutor

import time_machine
from django.core.cache import cache

from metering.ratelimit import WINDOW_SECONDS, seconds_until_allowed


def test_exactly_the_limit_passes_when_many_requests_race(settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 50
    cache.clear()
    with time_machine.travel(1_800_000_000, tick=False):  # the start of a window
        with ThreadPoolExecutor(max_workers=8) as pool:
            waits = list(pool.map(lambda _: seconds_until_allowed(42), range(120)))
    assert waits.count(0) == 50
    assert all(1 <= wait <= WINDOW_SECONDS for wait in waits if wait)


def test_each_key_has_its_own_budget_and_a_new_window_starts_afresh(settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 1
    cache.clear()
    with time_machine.travel(1_800_000_010, tick=False) as clock:
        assert seconds_until_allowed(1) == 0
        assert seconds_until_allowed(2) == 0
        assert seconds_until_allowed(1) == 50  # 10 s into the window
        clock.shift(WINDOW_SECONDS)
        assert seconds_until_allowed(1) == 0


def test_a_limit_of_zero_switches_limiting_off(settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 0
    assert all(seconds_until_allowed(7) == 0 for _ in range(100))
