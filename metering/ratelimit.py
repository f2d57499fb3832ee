"""Per-API-key request limits: a fixed one-minute window counted in the cache.

With REDIS_URL set the cache is Redis, whose INCR is atomic across every web
process; otherwise it is the process-local cache, atomic within the process.
"""

import logging
import time

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60


def seconds_until_allowed(key_id: int) -> int:
    """0 if this request of `key_id` may proceed, else how long to wait (for Retry-After)."""
    limit = settings.API_RATE_LIMIT_PER_MINUTE
    if limit <= 0:
        return 0
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    counter = f"ratelimit:{key_id}:{window}"
    try:
        cache.add(counter, 0, timeout=WINDOW_SECONDS * 2)
        count = cache.incr(counter)
    except Exception:
        # The cache (Redis) is down: let the request through rather than refuse data that the
        # database can still take. Logged, so an outage is seen.
        logger.warning("ratelimit: the cache is unavailable; key %s not limited", key_id, exc_info=True)
        return 0
    if count <= limit:
        return 0
    return max(1, int((window + 1) * WINDOW_SECONDS - now + 0.999))
