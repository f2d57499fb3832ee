"""Redis stopped in the middle of a stream of ingest batches (DESIGN §14): ingestion and pages
carry on, the rate limiter lets requests through and says so in the log, /readyz names Redis,
and the days ingestion touched stay marked in PostgreSQL, so a rollup run sent through the
Celery broker once Redis is back (as beat would send it) makes the rollups equal the raw rows.

Live Mode's pages going to `reconnecting` and back to `on` is the browser's part:
tests/browser/test_faults_redis.py.
"""

import pytest
import redis as redis_client
from celery import Celery

from tests.faults.conftest import (
    Browserless,
    IngestStream,
    http_request,
    sql,
    stored_usage,
    usage_batches,
    wait_until,
)

pytestmark = pytest.mark.faults

BAD_ITEM = {"request_id": "no-offset", "timestamp": "2026-11-20T09:12:00", "user": "x@acme.test", "model": "gpt-5"}
FAIL_OPEN = "ratelimit: the cache is unavailable; key"


def daily_totals(database: str, table: str, day: str) -> dict:
    """Per org-local day: requests, tokens and cost, from the raw rows or a rollup."""
    measures = "count(*), sum(input_tokens), sum(output_tokens), sum(cost)"
    if table != "metering_usagerecord":
        measures = "sum(requests), sum(input_tokens), sum(output_tokens), sum(cost)"
    rows = sql(
        database,
        f"SELECT {day}, {measures} FROM {table} WHERE org_id = (SELECT id FROM accounts_organization WHERE slug = 'acme') GROUP BY 1",
    )
    return {row[0]: row[1:] for row in rows}


def test_ingest_carries_on_without_redis_and_the_dirty_days_are_rebuilt_when_it_returns(
    redis, tally_db, tenant, tally_server, tally_worker
):
    server = tally_server()
    worker = tally_worker()  # running throughout, as in production: it must find the broker again
    visitor = Browserless(server.url)
    visitor.sign_in(tenant.admin)
    prefix = "redis-down"
    batches = usage_batches(30, 20, prefix)
    for batch in batches[::5]:
        batch.append(BAD_ITEM)  # refused alone: those batches answer 207

    stream = IngestStream(server.url, tenant.key, batches)
    stream.wait_for(5)
    redis.stop()
    down_at = stream.done
    stream.wait_for(down_at + 10)
    page = visitor.get("/acme/usage/?range=24h")
    ready = http_request(server.url, "GET", "/readyz")
    redis.start()
    sent = stream.finish()

    # Every batch was answered at once, 200 or 207, and each of its items accounted for.
    assert [len(s.answers) for s in sent] == [1] * len(sent)
    assert [s.answers[0].status for s in sent] == [207 if BAD_ITEM in s.items else 200 for s in sent]
    for s in sent:
        answer = s.answers[0].json()
        assert (answer["accepted"], answer["duplicates"]) == (len(s.items) - (BAD_ITEM in s.items), 0)
    # Stored once each, with all of their tags: nothing half-written.
    expected = {item["request_id"]: (1, set(item["tags"])) for s in sent for item in s.items if item is not BAD_ITEM}
    assert stored_usage(tally_db, prefix) == expected
    assert page.status == 200 and b'data-kpi="requests"' in page.body
    assert (ready.status, ready.json()["failed"]) == (503, ["redis"])
    # The limiter let the requests through and said so, once for each request it could not count;
    # with Redis back, it counts again.
    assert server.log().count(FAIL_OPEN) >= 10
    assert "live: an announcement could not be sent; skipped" in server.log()
    assert redis_client.Redis.from_url(redis.url).keys("*ratelimit:*")
    assert http_request(server.url, "GET", "/readyz").status == 200

    # The days stayed marked in the database; a run sent through the broker (as beat sends it)
    # reaches the worker and rebuilds them.
    local_day = "(timestamp AT TIME ZONE 'Europe/Berlin')::date"
    raw = daily_totals(tally_db, "metering_usagerecord", local_day)
    assert set(raw) <= {day for (day,) in sql(tally_db, "SELECT day FROM metering_dirtyday")}
    beat = Celery(broker=redis.url)
    beat.send_task("metering.tasks.rebuild_dirty_days")
    beat.close()
    wait_until(lambda: not sql(tally_db, "SELECT 1 FROM metering_dirtyday"), what="the dirty days rebuilt")
    assert daily_totals(tally_db, "metering_usagedaily", "day") == raw
    assert "metering.tasks.rebuild_dirty_days" in worker.log.read_text()
