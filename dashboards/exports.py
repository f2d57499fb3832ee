"""The Analytics page's requests CSV export, streamed a batch at a time from a server-side cursor."""

import csv
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import islice

from asgiref.sync import sync_to_async
from django.http import StreamingHttpResponse

from dashboards.selectors import REQUEST_CSV_COLUMNS, request_export_rows


def csv_cell(value, tz) -> str:
    """One CSV cell. Text that a spreadsheet would run as a formula (=, +, -, @, or a leading tab
    or carriage return, OWASP's list) gets a leading apostrophe, so it is shown, never evaluated."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(tz).isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


class _Line:
    """A file-like object whose write() returns what it is given: csv.writer then hands back each line."""

    def write(self, value):
        return value


CSV_BATCH = 1000  # rows per chunk sent to the client


async def _batches(queryset, size: int):
    """Lists of up to `size` rows of `queryset`, read through one server-side cursor
    (.iterator()) in the request's database thread. QuerySet.aiterator() would do, but for
    values_list() Django 5.2 runs the query in the event loop and fails."""
    rows = None

    def next_batch():
        nonlocal rows
        if rows is None:
            rows = queryset.iterator(chunk_size=size)
        return list(islice(rows, size))

    try:
        while True:
            batch = await sync_to_async(next_batch)()
            if batch:
                yield batch
            if len(batch) < size:
                return
    finally:
        if rows is not None:  # a client that went away: close the cursor now, not with the connection
            await sync_to_async(rows.close)()


def requests_csv(query) -> StreamingHttpResponse:
    """Every request of the query as CSV, streamed: rows come from a server-side cursor
    (.aiterator()) a batch at a time, so a million rows are never held at once. The iterator
    is asynchronous because daphne serves a synchronous one by reading it all first."""
    rows = request_export_rows(query)
    tz = query.org.tzinfo
    writer = csv.writer(_Line())

    async def stream():
        yield writer.writerow([header for header, _ in REQUEST_CSV_COLUMNS]).encode()
        async for batch in _batches(rows, CSV_BATCH):
            yield "".join(writer.writerow([csv_cell(value, tz) for value in values]) for values in batch).encode()

    first = query.start.astimezone(tz).date()
    last = (query.end - timedelta(microseconds=1)).astimezone(tz).date()
    response = StreamingHttpResponse(stream(), content_type="text/csv; charset=utf-8")
    filename = f"{query.org.slug}-requests-{first:%Y-%m-%d}-to-{last:%Y-%m-%d}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
