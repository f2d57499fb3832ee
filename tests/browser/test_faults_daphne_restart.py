"""daphne restarted under an open Live Mode page (issue 17): the page shows it is reconnecting,
comes back on by itself, and catches up on what arrived while it was away.

Two daphne processes serve the test database with a Redis channel layer of the test's own
(tests/faults/services.py), as two web processes behind a load balancer: the page is on A, a
gateway posts to B. A is stopped (SIGTERM, SIGKILL if it hangs) while the page is open; records
posted to B meanwhile are announced to nobody on A, so the page can only learn of them from its
reconnect: the socket's catch-up (`since`, dashboards/consumers.py) for the feed and the
refresh of its partials (static/js/live.js) for the numbers. A is started again on the same
port, as a supervisor restarts it.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from playwright.sync_api import expect

from accounts.services import api_key_create
from metering.services import ingest_batch
from tests.browser.conftest import ARTIFACTS, ROOT, database_url_for_subprocess, free_port, wait_for_port
from tests.browser.test_live import USAGE, WITHIN, feed, item, open_live
from tests.browser.test_overview_usage import kpis
from tests.faults.services import Redis
from tests.faults.services import wait_for_port as wait_for_port_closed

pytestmark = [pytest.mark.browser, pytest.mark.faults]

# The page retries with backoff (0.5, 1, 2, 4, 8, 15 s, jittered ±20 %): after a restart on a
# busy machine the next attempt may be 15 s away.
RECONNECT_MS = 30_000


class Daphne:
    """`daphne usage_site.asgi:application` on a fixed port, so that it can be started again
    where clients left it. stderr goes to `log`."""

    def __init__(self, env: dict, log: Path):
        self.env, self.log, self.port = env, log, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Daphne":
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "daphne",
                    "-b",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "usage_site.asgi:application",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, self.proc, self.log)
        return self

    def stop(self) -> None:
        """SIGTERM, as a supervisor stops it; SIGKILL if it has not exited in 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        wait_for_port_closed(self.port, up=False)


@pytest.fixture
def redis():
    server = Redis().start()
    yield server
    server.stop()


@pytest.fixture
def daphnes(transactional_db, redis):
    """Two daphne processes, A and B, on the test database and the test's Redis (stopped after
    the test, before the database is flushed)."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "usage_site.settings",
        "DATABASE_URL": database_url_for_subprocess(connection.settings_dict),
        "REDIS_URL": redis.url,
        "DB_POOL": "0",
        "DB_CONN_MAX_AGE": "0",
        "DEBUG": "1",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    ARTIFACTS.mkdir(exist_ok=True)
    servers = [Daphne(env, ARTIFACTS / f"daphne-restart-{name}.log") for name in "ab"]
    for server in servers:
        server.log.write_text("")
        server.start()
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def key(org, admin, manager, member, web_member):
    """Acme with one request of each person in the last hour, and an ingest key."""
    assert not ingest_batch(org=org, usage=[item(u.email) for u in (admin, manager, member, web_member)]).rejected
    return api_key_create(org=org, name="gateway", scopes={"ingest"})[1]


def post(page, server: Daphne, key: str, *items) -> None:
    response = page.request.post(
        f"{server.url}/api/v1/ingest",
        data=json.dumps({"usage": list(items)}),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert response.status == 200, response.text()
    assert response.json()["accepted"] == len(items)


def test_a_live_page_reconnects_after_a_daphne_restart_and_catches_up(daphnes, key, make_page, admin):
    a, b = daphnes
    page = make_page()
    open_live(page, a.url, admin.email, f"{USAGE}&live=1")
    root = page.locator("#dashboard")
    # Through B to the page on A: the channel layer is the shared Redis.
    post(page, b, key, item("member@acme.test", "r-before"))
    expect(page.locator('tr[data-request-id="r-before"]')).to_be_visible(timeout=WITHIN)
    requests = page.locator('[data-kpi="requests"]')
    expect(requests).to_have_attribute("data-value", "5", timeout=2 * WITHIN)  # the fixture's four and r-before
    before = kpis(page)

    a.stop()
    expect(root).to_have_attribute("data-live-state", "reconnecting")
    post(page, b, key, item("member@acme.test", "r-away-1", output_tokens=400), item("web@acme.test", "r-away-2"))
    post(page, b, key, item("manager@acme.test", "r-away-3", cost="0.5000"))
    page.wait_for_timeout(2 * WITHIN)  # the page must not have them before it is back
    assert not {"r-away-1", "r-away-2", "r-away-3"} & set(feed(page))
    assert kpis(page) == before

    a.start()
    expect(root).to_have_attribute("data-live-state", "on", timeout=RECONNECT_MS)
    for request_id in ("r-away-1", "r-away-2", "r-away-3"):
        expect(page.locator(f'[data-live-rows] tr[data-request-id="{request_id}"]')).to_be_visible(timeout=WITHIN)
    expect(requests).to_have_attribute("data-value", str(int(before["requests"]) + 3), timeout=2 * WITHIN)
    # 2,250 tokens each (tests.browser.test_live.item), r-away-1 with 150 more output tokens.
    tokens = str(int(before["total_tokens"]) + 3 * 2250 + 150)
    expect(page.locator('[data-kpi="total_tokens"]')).to_have_attribute("data-value", tokens)

    # The restarted process's socket is in the groups again: what B takes now reaches it live.
    post(page, b, key, item("member@acme.test", "r-after"))
    expect(page.locator('tr[data-request-id="r-after"]')).to_be_visible(timeout=WITHIN)
    assert feed(page).count("r-away-1") == 1
