"""How the web server's Python runs: what usage_site.asgi applies at start (bench/pages.py too)."""

import gc

# A collection of the oldest generation walks every object the process holds (~150,000 once the
# pages have been served): 60-90 ms in the middle of a request. With the default threshold of
# 700 allocations, a dashboard request (tens of thousands of short-lived objects) promoted enough
# of them to trigger one every ~9 requests (bench/pages.py: usage-activity p50 60 ms, every ninth
# 140-160 ms). 50,000 lets a request's garbage die young: no full collection in 30 requests.
GC_THRESHOLD = (50_000, 10, 10)


def tune_gc() -> None:
    """Set GC_THRESHOLD, and move the objects loaded so far (Django, the apps) to the permanent
    generation that collections skip: they live as long as the process."""
    gc.set_threshold(*GC_THRESHOLD)
    gc.collect()
    gc.freeze()
