"""The Overview and Usage pages in a real browser, against a real daphne.

The data is tests/dashboards/data.py's week at Acme (18 and 19 November 2026), ingested with
the clock frozen; the server runs on the real clock, so the pages are opened with an explicit
period. Each test leaves a full-page screenshot in artifacts/<test name>.png.
"""

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from playwright.sync_api import expect

from metering.services import ingest_batch
from tests.browser.conftest import ARTIFACTS, wait_for_chart
from tests.conftest import PASSWORD
from tests.dashboards.data import NOW, week_items

pytestmark = pytest.mark.browser

PERIOD = "start=2026-11-18&end=2026-11-19"
SUMMARY_API = "/api/v1/acme/sessions/analytics/summary"


@pytest.fixture
def week(org, admin, manager, member, web_member):
    with time_machine.travel(NOW, tick=False):  # ingestion refuses items far from "now"
        assert not ingest_batch(org=org, **week_items()).rejected
    return org


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


def rows(page) -> list[str]:
    return page.eval_on_selector_all("tbody tr[data-row]", "rows => rows.map(r => r.dataset.row)")


def api_summary(page, live_url, query: str) -> dict:
    """The analytics API's answer, asked with the page's own session cookie."""
    response = page.request.get(f"{live_url}{SUMMARY_API}?{query}")
    assert response.ok, response.text()
    return response.json()


def current_query(page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


@pytest.fixture
def page(make_page):
    """A page that is scrolled back to the top before make_page screenshots it: a full-page
    screenshot draws the sticky top bar wherever the page was scrolled to."""
    page = make_page()
    yield page
    page.evaluate("window.scrollTo(0, 0)")


# --- KPIs equal the API ------------------------------------------------------------------------


def test_the_admin_overview_shows_the_apis_numbers(live_url, page, week, admin):
    sign_in(page, live_url, admin.email)
    page.goto(f"{live_url}/acme/overview/?{PERIOD}")

    api = api_summary(page, live_url, PERIOD)
    assert kpis(page) == {name: str(api[name]) for name in ("agent_runs", "sessions", "total_tokens", "cost")}
    expect(page.locator('[data-kpi="cost"] .kpi__value')).to_have_text("$5.30")
    expect(page.locator('[data-kpi="total_tokens"] .kpi__value')).to_have_text("37.4K")
    expect(page.locator("#overview-leaderboard tbody tr")).to_have_count(4)
    wait_for_chart(page, "tokens-by-project")
    expect(page.locator("#overview-chart .legend button[data-series=Atlas]")).to_be_visible()


def test_the_manager_usage_page_shows_the_apis_numbers_for_their_teams(live_url, page, week, manager):
    sign_in(page, live_url, manager.email)
    page.goto(f"{live_url}/acme/usage/?{PERIOD}")

    api = api_summary(page, live_url, PERIOD)
    shown = kpis(page)
    for name in ("unique_users", "requests", "total_tokens", "cost"):
        assert shown[name] == str(api[name]), name
    assert rows(page) == ["manager@acme.test", "member@acme.test"]
    expect(page.locator('[data-row="member@acme.test"] [data-team=Platform]')).to_be_visible()
    expect(page.locator('[data-row="member@acme.test"] .chip--more')).to_have_text("+2")
    expect(page.locator('[data-row="member@acme.test"] svg.sparkline')).to_be_visible()


def test_a_filter_chosen_in_the_bar_is_in_the_url_and_the_numbers_follow_it(live_url, page, week, admin):
    sign_in(page, live_url, admin.email)
    page.goto(f"{live_url}/acme/usage/?{PERIOD}")

    page.locator("[data-filter=team] summary").click()
    page.get_by_role("checkbox", name="Web").check()
    page.get_by_role("button", name="Apply").click()

    expect(page.locator(".filter-chip")).to_contain_text("Web")
    assert current_query(page)["team"] == ["Web"]
    api = api_summary(page, live_url, f"{PERIOD}&team=Web")
    assert kpis(page)["cost"] == api["cost"] == "0.05"
    assert rows(page) == ["web@acme.test"]

    page.reload()  # the URL alone gives the same view
    assert rows(page) == ["web@acme.test"]
    page.go_back()
    expect(page.locator(".filter-chip")).to_have_count(0)
    assert len(rows(page)) == 4


def test_the_custom_period_form_sets_start_and_end(live_url, page, week, admin):
    sign_in(page, live_url, admin.email)
    page.goto(f"{live_url}/acme/overview/?{PERIOD}")

    page.locator("[data-range-menu=custom] summary").click()
    page.get_by_label("From").fill("2026-11-19")
    page.get_by_label("To (included)").fill("2026-11-19")
    page.get_by_role("button", name="Show period").click()

    expect(page).to_have_url(re.compile(r"start=2026-11-19&end=2026-11-19$"))
    expect(page.locator("[data-period]")).to_contain_text("19 Nov 2026")
    api = api_summary(page, live_url, "start=2026-11-19&end=2026-11-19")
    assert kpis(page)["cost"] == api["cost"] == "1.50"


# --- The table -----------------------------------------------------------------------------------


def test_sorting_and_searching_the_usage_table(live_url, page, week, admin):
    sign_in(page, live_url, admin.email)
    page.goto(f"{live_url}/acme/usage/?{PERIOD}")
    assert rows(page)[0] == "manager@acme.test"  # by cost, highest first

    requests = page.locator("th[data-column=requests] a")
    requests.click()
    expect(page.locator("th[data-column=requests]")).to_have_attribute("aria-sort", "descending")
    assert rows(page) == ["member@acme.test", "web@acme.test", "manager@acme.test", "admin@acme.test"]
    assert current_query(page)["sort"] == ["requests"]

    page.locator("th[data-column=requests] a").focus()  # the keyboard sorts too
    page.keyboard.press("Enter")
    expect(page.locator("th[data-column=requests]")).to_have_attribute("aria-sort", "ascending")
    assert rows(page) == ["admin@acme.test", "manager@acme.test", "web@acme.test", "member@acme.test"]

    page.get_by_role("searchbox").fill("platform")
    expect(page.locator("tbody tr[data-row]")).to_have_count(2)
    assert rows(page) == ["manager@acme.test", "member@acme.test"]  # still by requests, lowest first
    assert current_query(page) == {
        "start": ["2026-11-18"],
        "end": ["2026-11-19"],
        "q": ["platform"],
        "sort": ["requests"],
        "dir": ["asc"],
    }

    page.get_by_role("searchbox").fill("nobody here")
    expect(page.locator(".table__empty")).to_contain_text("No user matches")


def test_the_overview_leaderboard_sorts_in_place(live_url, page, week, admin):
    sign_in(page, live_url, admin.email)
    page.goto(f"{live_url}/acme/overview/?{PERIOD}")

    page.locator("th[data-column=lines_of_code] a").click()

    expect(page.locator("th[data-column=lines_of_code]")).to_have_attribute("aria-sort", "descending")
    assert rows(page)[0] == "member@acme.test"
    expect(page.locator('[data-row="member@acme.test"] td').nth(6)).to_have_text("45")
    assert page.evaluate("document.querySelectorAll('[data-kpi]').length") == 4  # the KPIs were not swapped away


def test_toggling_by_team_and_a_legend_item(live_url, page, week, admin):
    sign_in(page, live_url, admin.email)
    page.goto(f"{live_url}/acme/usage/?{PERIOD}")

    page.get_by_role("link", name="By team").click()

    expect(page.locator("[data-by=team]")).to_have_attribute("aria-current", "true")
    assert rows(page) == ["Platform", "No team", "Web"]
    assert current_query(page)["by"] == ["team"]
    expect(page.get_by_role("heading", name="Requests by team")).to_be_visible()
    wait_for_chart(page, "usage-activity-chart")
    web = page.locator("#usage-activity .legend button[data-series=Web]")
    web.click()
    expect(web).to_have_attribute("aria-pressed", "false")
    hidden = page.evaluate(
        """() => { const chart = Chart.getChart(document.getElementById('usage-activity-chart'));
                   const i = chart.data.datasets.findIndex(d => d.label === 'Web');
                   return !chart.isDatasetVisible(i); }"""
    )
    assert hidden

    page.get_by_role("link", name="By user").click()
    expect(page.get_by_role("heading", name="Active users")).to_be_visible()
    assert len(rows(page)) == 4


# --- Scope ---------------------------------------------------------------------------------------


def test_a_member_cannot_see_another_user_on_either_page(live_url, page, week, member):
    sign_in(page, live_url, member.email)
    for path in ("overview", "usage"):
        page.goto(f"{live_url}/acme/{path}/?{PERIOD}")
        assert rows(page) == ["member@acme.test"]
        page.goto(f"{live_url}/acme/{path}/?{PERIOD}&user=web@acme.test&user=manager@acme.test")
        assert rows(page) == []
        assert kpis(page)["cost"] == "0.00"
        assert "Wes Web" not in page.content() and "Max Manager" not in page.content()
        assert api_summary(page, live_url, f"{PERIOD}&user=web@acme.test")["cost"] == "0.00"

    page.goto(f"{live_url}/acme/usage/?{PERIOD}")  # the people a member may filter on: themselves
    page.locator("[data-filter=user] summary").click()
    options = page.locator("[data-filter=user] input[type=checkbox]")
    values = options.evaluate_all("inputs => inputs.map(i => i.value)")
    assert values == ["member@acme.test"]


# --- Look ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["overview", "usage"])
def test_the_pages_fit_a_700px_window_in_dark_mode(live_url, make_page, week, manager, path):
    page = make_page(color_scheme="dark", width=700, height=900)
    sign_in(page, live_url, manager.email)
    page.goto(f"{live_url}/acme/{path}/?{PERIOD}")

    expect(page.locator("[data-kpi]").first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(12, 14, 19)"


def test_an_empty_period_says_so(live_url, page, week, admin):
    sign_in(page, live_url, admin.email)
    page.goto(f"{live_url}/acme/usage/?start=2026-01-01&end=2026-01-07")

    expect(page.locator(".table__empty")).to_contain_text("No requests in this period.")
    assert kpis(page)["requests"] == "0"
    spec = json.loads(page.locator("#usage-activity-data").text_content())
    assert spec["empty_text"] == "No requests in this period"


def test_without_javascript_the_cards_and_tables_show_and_sort(live_url, browser, week, admin):
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        sign_in(page, live_url, admin.email)
        page.goto(f"{live_url}/acme/usage/?{PERIOD}")
        assert kpis(page)["requests"] == "14"
        assert len(rows(page)) == 4

        page.locator("th[data-column=requests] a").click()  # a plain link: the whole page
        expect(page.locator("th[data-column=requests]")).to_have_attribute("aria-sort", "descending")
        assert rows(page)[0] == "member@acme.test"

        page.get_by_role("searchbox").fill("web")
        page.get_by_role("searchbox").press("Enter")  # a plain GET form
        expect(page.locator("tbody tr[data-row]")).to_have_count(1)
        assert current_query(page)["sort"] == ["requests"]

        page.locator("[data-filter=team] summary").click()  # <details> opens without script
        page.get_by_role("checkbox", name="Platform").check()
        page.get_by_role("button", name="Apply").click()
        expect(page.locator(".filter-chip")).to_contain_text("Platform")
        assert rows(page) == ["manager@acme.test", "member@acme.test"]  # new filters: the table starts afresh
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(
            path=ARTIFACTS / "test_without_javascript_the_cards_and_tables_show_and_sort.png", full_page=True
        )
        context.close()
