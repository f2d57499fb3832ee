"""PostgreSQL stopped (an immediate shutdown: connections cut, as in a crash or failover) in the
middle of a stream of ingest batches (DESIGN §14): the APIs answer 503 with Retry-After, pages a
plain error page, /readyz 503 naming the database; once it is back the same daphne process
serves again, and the gateway's resends are stored exactly once, nothing half-written.
"""

import random
from concurrent.futures import ThreadPoolExecutor

import pytest
from otlp import log_batches  # bench/otlp.py (on the path through tests/faults/conftest.py)

from tests.faults.conftest import Browserless, IngestStream, http_request, sql, stored_usage, usage_batches

pytestmark = pytest.mark.faults

PAGE = "/acme/usage/?range=24h"


def test_without_postgresql_tally_answers_503_and_serves_again_when_it_is_back(pg, tally_db, tenant, tally_server):
    server = tally_server()
    visitor = Browserless(server.url)
    visitor.sign_in(tenant.admin)
    otlp_body = log_batches(1, 3, random.Random(1), "pg-down-otlp", 1)[0].body
    otlp_headers = {"Authorization": f"Bearer {tenant.key}", "Content-Type": "application/x-protobuf"}
    prefix = "pg-down"
    stream = IngestStream(server.url, tenant.key, usage_batches(20, 20, prefix))
    stream.wait_for(5)

    pg.stop()
    assert stream.unavailable.wait(60), "no batch was answered 503"
    # At once: a request that needs the database waits up to the pool's timeout (10 s) for one.
    with ThreadPoolExecutor() as pool:
        otlp = pool.submit(http_request, server.url, "POST", "/v1/logs", otlp_body, otlp_headers)
        page = pool.submit(visitor.get, PAGE)
        ready = pool.submit(http_request, server.url, "GET", "/readyz")
        alive = pool.submit(http_request, server.url, "GET", "/healthz")
        otlp, page, ready, alive = otlp.result(), page.result(), ready.result(), alive.result()
    pg.start()
    sent = stream.finish()

    refused = [answer for s in sent for answer in s.answers if answer.status == 503]
    assert refused and all(answer.headers["retry-after"] == "5" for answer in refused)
    assert all("nothing was stored" in answer.json()["detail"] for answer in refused)
    assert (otlp.status, otlp.headers.get("retry-after")) == (503, "5")
    # A plain error page, not Django's debug page or a traceback.
    assert page.status == 500 and b"Something went wrong" in page.body
    assert b"Traceback" not in page.body and b"OperationalError" not in page.body
    assert (ready.status, ready.json()["failed"]) == (503, ["database"])
    assert alive.status == 200

    # The same process serves again, with no restart.
    assert server.proc.poll() is None
    assert http_request(server.url, "GET", "/readyz").status == 200
    assert visitor.get(PAGE).status == 200
    assert http_request(server.url, "POST", "/v1/logs", otlp_body, otlp_headers).status == 200
    # Each batch was finally accepted; an item counts as a duplicate only in a batch whose 503
    # came after its commit (the answer lost, not the data), and is stored once either way.
    assert [s.answers[-1].status for s in sent] == [200] * len(sent)
    for s in sent:
        answer = s.answers[-1].json()
        assert answer["accepted"] + answer["duplicates"] == len(s.items)
        assert answer["duplicates"] in (0, len(s.items) if len(s.answers) > 1 else 0)
    # Stored once each, with all of their tags, and their days marked for the rollups: the
    # batches cut off by the shutdown left nothing half-written.
    expected = {item["request_id"]: (1, set(item["tags"])) for s in sent for item in s.items}
    assert stored_usage(tally_db, prefix) == expected
    days = sql(tally_db, "SELECT DISTINCT (timestamp AT TIME ZONE 'Europe/Berlin')::date FROM metering_usagerecord")
    assert set(days) <= set(sql(tally_db, "SELECT day FROM metering_dirtyday"))
    otlp_rows = sql(tally_db, "SELECT count(*) FROM metering_usagerecord WHERE request_id LIKE %s", ("%pg-down-otlp%",))
    assert otlp_rows == [(3,)]
