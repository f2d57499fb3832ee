"""Live Mode's feed: the newest usage records a page shows, and what a reconnecting page missed."""

from collections import defaultdict
from datetime import datetime, timedelta

from metering import selectors as metering
from metering.models import UsageRecord

# A reconnecting page catches up on what arrived while it was away by reading records received
# since, among those timestamped at most this long before: that keeps the read on the
# (org, timestamp) index. A late record (timestamped earlier) that arrived in the gap reaches
# the page's numbers, which it refreshes on reconnecting, but not its feed.
CATCH_UP_WINDOW = timedelta(minutes=10)


def recent_usage(query: metering.Query, *, received_after: datetime | None = None, limit: int = 20) -> list[tuple]:
    """The newest usage records of the query (those received after `received_after` when
    given, as a reconnecting page asks), each with its tag ids."""
    records = metering.usage_records(query)
    if received_after is not None:
        records = records.filter(received_at__gt=received_after, timestamp__gte=received_after - CATCH_UP_WINDOW)
    records = list(records[:limit])
    tags = defaultdict(list)
    links = UsageRecord.tags.through.objects.filter(record__in=[r.pk for r in records]).values_list("record", "tag")
    for record, tag in links:
        tags[record].append(tag)
    return [(record, tags[record.pk]) for record in records]
