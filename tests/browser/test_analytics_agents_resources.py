"""The Analytics, Agents and Resources pages in a real browser, against a real daphne.

The data is tests/dashboards/pages_data.py's busy week at Acme (on top of data.py's week, 14-20
November 2026), ingested with the clock frozen; the server runs on the real clock, so pages are
opened with an explicit period. Each test leaves a full-page screenshot in artifacts/.
"""

import csv
import io
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from playwright.sync_api import expect

from metering.services import ingest_batch
from tests.browser.conftest import ARTIFACTS, wait_for_chart
from tests.conftest import PASSWORD
from tests.dashboards.data import NOW, usage, week_items
from tests.dashboards.pages_data import pages_items

pytestmark = pytest.mark.browser

PERIOD = "start=2026-11-14&end=2026-11-20"
NOVEMBER = "range=month&month=2026-11"
API = "/api/v1/acme/sessions/analytics"
OTHERS_OF_MEMBER = ("admin@acme.test", "manager@acme.test", "web@acme.test", "Ada Admin", "Max Manager", "Wes Web")


@pytest.fixture
def busy_week(org, admin, manager, member, web_member):
    with time_machine.travel(NOW, tick=False):  # ingestion refuses items far from "now"
        assert not ingest_batch(org=org, **week_items()).rejected
        assert not ingest_batch(org=org, **pages_items()).rejected
        october = {**usage(0, "admin@acme.test", "gpt-5", "2.50"), "request_id": "october",
                   "timestamp": "2026-10-05T10:00:00+02:00", "project": "Atlas"}  # fmt: skip
        assert not ingest_batch(org=org, usage=[october]).rejected
    return org


@pytest.fixture
def page(make_page):
    """Scrolled back to the top before make_page screenshots it (the top bar is sticky)."""
    page = make_page()
    yield page
    page.evaluate("window.scrollTo(0, 0)")


def sign_in(page, live_url, email):
    page.goto(f"{live_url}/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_url}/")


def kpis(page) -> dict[str, str]:
    return page.eval_on_selector_all(
        "[data-kpi]", "cards => Object.fromEntries(cards.map(c => [c.dataset.kpi, c.dataset.value]))"
    )


def api(page, live_url, endpoint: str, query: str) -> dict:
    """The analytics API's answer, asked with the page's own session cookie."""
    response = page.request.get(f"{live_url}{API}/{endpoint}?{query}")
    assert response.ok, response.text()
    return response.json()


def download_csv(page) -> list[dict]:
    with page.expect_download() as info:
        page.locator("[data-export=csv]").click()
    download = info.value
    assert download.suggested_filename.endswith(".csv")
    return list(csv.DictReader(io.StringIO(open(download.path(), encoding="utf-8").read())))


# --- Analytics -----------------------------------------------------------------------------------


def test_analytics_shows_the_apis_numbers_toggles_a_legend_and_moves_a_month_back(live_url, page, busy_week, admin):
    sign_in(page, live_url, admin.email)
    page.goto(f"{live_url}/acme/analytics/?{NOVEMBER}")

    summary = api(page, live_url, "summary", NOVEMBER)
    shown = kpis(page)
    for name in ("requests", "total_tokens", "unique_models", "active_projects", "total_projects", "conversations"):
        assert shown[name] == str(summary[name]), name
    expect(page.locator('[data-kpi="active_projects"] .kpi__value')).to_have_text("3 / 3")
    expect(page.locator("[data-month-shown]")).to_have_text("November 2026")

    # One legend for the bars and the doughnut: pressing "Agent" hides it in both.
    wait_for_chart(page, "cost-by-day")
    wait_for_chart(page, "cost-by-type")
    agent = page.locator('#analytics-cost .legend button[data-series="Agent"]')
    expect(agent).to_have_attribute("aria-pressed", "true")
    agent.click()
    expect(agent).to_have_attribute("aria-pressed", "false")
    hidden = page.evaluate(
        """() => {
          const bars = Chart.getChart(document.getElementById('cost-by-day'));
          const pie = Chart.getChart(document.getElementById('cost-by-type'));
          const d = bars.data.datasets.findIndex(s => s.label === 'Agent');
          const s = pie.data.labels.indexOf('Agent');
          return [bars.isDatasetVisible(d), pie.getDataVisibility(s)];
        }"""
    )
    assert hidden == [False, False]

    # A service-type card's second view: its chart is drawn when its panel shows.
    card = page.locator('[data-service-type="agent"]')
    card.get_by_text("Requests", exact=True).click()
    expect(card.locator(".views__panel--requests canvas")).to_be_visible()
    assert card.locator(".views__panel--requests canvas").bounding_box()["height"] > 100

    # Top agents link to the Agents page filtered to the agent.
    expect(page.locator('#analytics-agents tr[data-row="Coder"] a')).to_have_attribute(
        "href", "/acme/agents/?range=month&month=2026-11&agent=Coder"
    )

    page.get_by_role("link", name="Previous month, October 2026").click()
    expect(page.locator("[data-month-shown]")).to_have_text("October 2026")
    assert parse_qs(urlsplit(page.url).query) == {"range": ["month"], "month": ["2026-10"]}
    october = api(page, live_url, "summary", "range=month&month=2026-10")
    assert kpis(page)["requests"] == str(october["requests"]) == "1"
    assert kpis(page)["total_tokens"] == str(october["total_tokens"])
    expect(page.locator("#analytics-requests tbody tr[data-row]")).to_have_count(1)
    page.go_back()
    expect(page.locator("[data-month-shown]")).to_have_text("November 2026")


def test_the_csv_download_has_the_summarys_totals(live_url, page, busy_week, manager):
    sign_in(page, live_url, manager.email)
    page.goto(f"{live_url}/acme/analytics/?{PERIOD}")

    rows = download_csv(page)

    summary = api(page, live_url, "summary", PERIOD)
    assert len(rows) == summary["requests"] == 11  # their own 3 + 1, the member's 5 + 2
    assert sum(int(r["input_tokens"]) + int(r["output_tokens"]) for r in rows) == summary["total_tokens"]
    assert sum(Decimal(r["cost"]) for r in rows) == Decimal(summary["cost"])
    assert {r["user"] for r in rows} == {"manager@acme.test", "member@acme.test"}
    assert {r["request_id"] for r in rows} >= {"'=1+2", "'@evil"}  # formulas neutralised


def test_the_requests_table_pages_without_reloading_the_page(live_url, page, busy_week, org, admin):
    with time_machine.travel(NOW, tick=False):
        ingest_batch(org=org, usage=[usage(i % 50, "admin@acme.test", "gpt-5", "0.01", request_id=f"bulk-{i}",
                                           hour=8) for i in range(10)])  # fmt: skip
    sign_in(page, live_url, admin.email)
    page.goto(f"{live_url}/acme/analytics/?{PERIOD}")
    page.evaluate("window.marker = 'same page'")
    first = page.locator("#analytics-requests tbody tr[data-row]").first.get_attribute("data-row")

    page.locator("#analytics-requests a[rel=next]").click()

    expect(page.locator("#analytics-requests .pager__status")).to_contain_text("26–30 of 30")
    assert page.evaluate("window.marker") == "same page"
    assert "page=2" in page.url
    assert first not in page.eval_on_selector_all(
        "#analytics-requests tr[data-row]", "rs => rs.map(r => r.dataset.row)"
    )


# --- Agents --------------------------------------------------------------------------------------


def test_agents_show_the_by_agent_apis_rows_and_toggle_to_weeks(live_url, page, busy_week, admin):
    sign_in(page, live_url, admin.email)
    page.goto(f"{live_url}/acme/agents/?{PERIOD}")

    summary = api(page, live_url, "summary", PERIOD)
    shown = kpis(page)
    for name in ("sessions", "avg_cost_per_session", "avg_session_duration_seconds", "total_tokens"):
        assert shown[name] == str(summary[name]), name
    by_agent = api(page, live_url, "by-agent", PERIOD)["agents"]
    names = page.eval_on_selector_all("#agents-table tbody tr[data-row]", "rs => rs.map(r => r.dataset.row)")
    assert names == [row["agent"] or "" for row in by_agent]
    expect(page.locator('#agents-table tr[data-row="Reviewer"] .rate')).to_have_text("75%")

    wait_for_chart(page, "agents-series")
    page.get_by_role("link", name="Week", exact=True).click()
    expect(page.locator('[data-interval="week"]')).to_have_attribute("aria-current", "true")
    assert parse_qs(urlsplit(page.url).query)["interval"] == ["week"]
    wait_for_chart(page, "agents-series")
    labels = page.evaluate("Chart.getChart(document.getElementById('agents-series')).data.labels")
    assert labels == ["2026-11-09", "2026-11-16"]


# --- Resources -----------------------------------------------------------------------------------


def test_resources_show_the_apis_tokens_compute_and_consumers_by_agent(live_url, page, busy_week, admin):
    sign_in(page, live_url, admin.email)
    page.goto(f"{live_url}/acme/resources/?{PERIOD}")

    summary = api(page, live_url, "summary", PERIOD)
    shown = kpis(page)
    for name in ("input_tokens", "cached_input_tokens", "output_tokens", "failed_requests"):
        assert shown[name] == str(summary[name]), name
    assert shown["cpu_core_hours"] == "138.5000" and shown["threads_created"] == "3"
    wait_for_chart(page, "resources-tokens")
    expect(page.locator("#resources-llm .legend button")).to_have_count(3)

    page.locator("[data-consumers=agent]").click()
    expect(page.locator("[data-consumers=agent]")).to_have_attribute("aria-current", "true")
    expect(page.locator('#resources-consumers [data-row="Coder"]')).to_be_visible()
    assert parse_qs(urlsplit(page.url).query)["consumers"] == ["agent"]


# --- Scope ---------------------------------------------------------------------------------------


def test_a_member_cannot_see_another_user_on_any_of_the_three_pages(live_url, page, busy_week, member):
    sign_in(page, live_url, member.email)
    for path in ("analytics", "agents", "resources"):
        for query in (PERIOD, f"{PERIOD}&user=web@acme.test&user=admin@acme.test"):
            page.goto(f"{live_url}/acme/{path}/?{query}")
            text = page.locator("#dashboard-body").inner_text()
            for other in OTHERS_OF_MEMBER:
                assert other not in text, (path, query, other)

    page.goto(f"{live_url}/acme/analytics/?{PERIOD}")
    rows = download_csv(page)
    assert {r["user"] for r in rows} == {"member@acme.test"}
    assert len(rows) == int(kpis(page)["requests"]) == 7


# --- Look ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme, width", [("dark", 1280), ("light", 700)])
def test_the_three_pages_in_dark_mode_and_at_half_a_laptop(live_url, make_page, busy_week, admin, scheme, width):
    page = make_page(color_scheme=scheme, width=width)
    sign_in(page, live_url, admin.email)
    for path in ("resources", "agents", "analytics"):  # analytics last: make_page screenshots it
        page.goto(f"{live_url}/acme/{path}/?{PERIOD}")
        page.wait_for_load_state("networkidle")
        # Nothing sticks out sideways: wide tables scroll inside their card.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
        page.screenshot(path=ARTIFACTS / f"{path}-{scheme}-{width}.png", full_page=True)
