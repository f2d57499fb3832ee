"""Live Mode in a real browser against a real daphne: records posted to the ingest API appear on
open pages within a second, only for those who may see them, and not at all with Live Mode off.

The server runs on the real clock, so the records are timestamped now and the pages show the
last 24 hours. Records go through HTTP to daphne, which announces them on its channel layer
(Redis in CI's first run, the in-memory layer in its second).
"""

import json
import uuid

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from accounts.services import api_key_create
from metering.services import ingest_batch
from tests.browser.test_overview_usage import kpis, sign_in

pytestmark = pytest.mark.browser

USAGE = "/acme/usage/?range=24h"
WITHIN = 1000  # ms: DESIGN §9 and issue 6 ask for new records within a second


def item(user: str, request_id: str | None = None, **fields) -> dict:
    return {
        "request_id": request_id or f"live-{uuid.uuid4()}",
        "timestamp": timezone.now().isoformat(),
        "user": user,
        "model": "gpt-5",
        "input_tokens": 2000,
        "output_tokens": 250,
        "cost": "0.0300",
        **fields,
    }


@pytest.fixture
def acme(org, admin, manager, member, web_member):
    """Acme with one request of each person in the last hour, and an ingest key."""
    assert not ingest_batch(org=org, usage=[item(u.email) for u in (admin, manager, member, web_member)]).rejected
    return api_key_create(org=org, name="gateway", scopes={"ingest"})[1]


@pytest.fixture
def ingest(page, live_url, acme):
    def send(*items):
        response = page.request.post(
            f"{live_url}/api/v1/ingest",
            data=json.dumps({"usage": list(items)}),
            headers={"Authorization": f"Bearer {acme}", "Content-Type": "application/json"},
        )
        assert response.status == 200, response.text()
        assert response.json()["accepted"] == len(items)

    return send


def open_live(page, live_url, email, path=f"{USAGE}&live=1"):
    sign_in(page, live_url, email)
    page.goto(f"{live_url}{path}")
    expect(page.locator("#dashboard")).to_have_attribute("data-live-state", "on")


def feed(page) -> list[str]:
    return page.eval_on_selector_all(
        "[data-live-rows] tr[data-request-id]", "rows => rows.map(r => r.dataset.requestId)"
    )


def test_a_manager_sees_their_teams_new_requests_and_numbers_within_a_second(live_url, page, ingest, manager):
    open_live(page, live_url, manager.email)
    before = kpis(page)

    ingest(item("web@acme.test", "r-web"), item("member@acme.test", "r-mia", cost="0.0450"))

    row = page.locator('[data-live-rows] tr[data-request-id="r-mia"]')
    expect(row).to_be_visible(timeout=WITHIN)
    expect(row).to_contain_text("Mia Member")
    expect(row).to_contain_text("gpt-5")
    expect(row.locator('[data-field="cost"]')).to_have_attribute("data-value", "0.045")
    requests = page.locator('[data-kpi="requests"]')
    expect(requests).to_have_attribute("data-value", str(int(before["requests"]) + 1), timeout=WITHIN)
    expect(page.locator('[data-kpi="total_tokens"]')).to_have_attribute(
        "data-value", str(int(before["total_tokens"]) + 2250)
    )
    assert "r-web" not in feed(page)
    # The breakdown row of the person who made the request follows too.
    expect(page.locator('tr[data-row="member@acme.test"] td.num').first).to_have_attribute("data-value", "2")


def test_a_member_sees_only_their_own_new_requests(live_url, page, ingest, member):
    open_live(page, live_url, member.email)

    ingest(item("manager@acme.test", "r-max"), item("web@acme.test", "r-wes"))
    ingest(item("member@acme.test", "r-mia"))

    expect(page.locator('tr[data-request-id="r-mia"]')).to_be_visible(timeout=WITHIN)
    assert [rid for rid in feed(page) if rid.startswith("r-")] == ["r-mia"]
    expect(page.locator('[data-kpi="requests"]')).to_have_attribute("data-value", "2", timeout=WITHIN)


def test_a_page_filtered_to_one_team_ignores_the_others(live_url, page, ingest, admin):
    open_live(page, live_url, admin.email, f"{USAGE}&team=Web&live=1")

    ingest(item("member@acme.test", "r-platform"), item("web@acme.test", "r-web"))

    expect(page.locator('tr[data-request-id="r-web"]')).to_be_visible(timeout=WITHIN)
    assert "r-platform" not in feed(page)


def test_with_live_mode_off_the_page_is_a_stable_snapshot(live_url, page, ingest, admin):
    sign_in(page, live_url, admin.email)
    page.goto(f"{live_url}{USAGE}")
    root = page.locator("#dashboard")
    expect(root).to_have_attribute("data-live-state", "off")
    expect(page.locator("[data-live-feed]")).to_be_hidden()
    before = kpis(page)

    ingest(item("member@acme.test", "r-quiet"))
    page.wait_for_timeout(2 * WITHIN)  # what must not happen is given twice the time it would take

    assert kpis(page) == before
    assert page.locator('tr[data-request-id="r-quiet"]').count() == 0
    expect(root).to_have_attribute("data-live-state", "off")


def test_the_toggle_switches_live_mode_and_remembers_the_choice(live_url, page, ingest, manager):
    sign_in(page, live_url, manager.email)
    page.goto(f"{live_url}{USAGE}")
    root, toggle = page.locator("#dashboard"), page.locator("[data-live-toggle]")

    toggle.click()
    expect(root).to_have_attribute("data-live-state", "on")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    ingest(item("member@acme.test", "r-on"))
    expect(page.locator('tr[data-request-id="r-on"]')).to_be_visible(timeout=WITHIN)

    page.goto(f"{live_url}/acme/overview/?range=24h")  # remembered: on, on the Overview too
    expect(root).to_have_attribute("data-live-state", "on")
    before = kpis(page)
    ingest(item("manager@acme.test", "r-overview"))
    expect(page.locator('tr[data-request-id="r-overview"]')).to_be_visible(timeout=WITHIN)
    expect(page.locator('[data-kpi="total_tokens"]')).to_have_attribute(
        "data-value", str(int(before["total_tokens"]) + 2250), timeout=WITHIN
    )

    toggle.click()
    expect(root).to_have_attribute("data-live-state", "off")
    expect(page.locator("[data-live-feed]")).to_be_hidden()
    page.wait_for_timeout(300)  # the choice is posted in the background
    page.reload()
    expect(root).to_have_attribute("data-live-state", "off")
    page.evaluate("window.scrollTo(0, 0)")
