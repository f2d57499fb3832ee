"""The Agents page: per agent sessions, average cost and duration, tokens and accept rate, agreeing
with the by-agent API; the metric over time by day or week; scope."""

import re
from decimal import Decimal

import pytest

from metering.services import ingest_batch
from tests.conftest import logged_in
from tests.dashboards.data import WEEK, count_queries, event, hooks, htmx_to, json_script, usage
from tests.dashboards.data import frozen as frozen
from tests.dashboards.data import week as week
from tests.dashboards.pages_data import busy_week as busy_week

pytestmark = pytest.mark.usefixtures("busy_week")

URL = "/acme/agents/"
API = "/api/v1/acme/sessions/analytics"


def page(user, query=WEEK, **headers):
    response = logged_in(user).get(f"{URL}?{query}", **headers)
    assert response.status_code == 200, response.content.decode()[:3000]
    return response


def html(response) -> str:
    return response.content.decode()


def rows_of(response) -> dict[str, dict[str, str]]:
    """{data-row: {column key: data-value}} of the agents table, in the table's column order."""
    body = html(response)
    columns = re.findall(r'data-column="([^"]+)"', body)
    rows = {}
    for key, cells in re.findall(r'<tr data-row="([^"]*)">(.*?)</tr>', body, re.S):
        values = re.findall(r'<td class="num" data-value="([^"]*)"', cells)
        rows[key] = dict(zip(columns[1:], values, strict=True))
    return rows


def test_it_requires_a_login(client):
    assert client.get(URL).url == f"/login/?next={URL}"


def test_another_orgs_admin_gets_a_404(outsider):
    assert logged_in(outsider).get(URL).status_code == 404


# --- The table -----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "manager", "member"])
@pytest.mark.parametrize("query", [WEEK, f"{WEEK}&project=Atlas", "range=month", "range=24h"])
def test_each_row_is_the_by_agent_apis_row(request, role, query):
    client = logged_in(request.getfixturevalue(role))
    api = client.get(f"{API}/by-agent?{query}").json()["agents"]

    rows = rows_of(client.get(f"{URL}?{query}&sort=cost&dir=desc"))

    assert list(rows) == [row["agent"] or "" for row in api]
    for row in api:
        shown = rows[row["agent"] or ""]
        assert int(shown["sessions"]) == row["sessions"]
        assert int(shown["requests"]) == row["requests"]
        assert int(shown["total_tokens"]) == row["total_tokens"]
        assert Decimal(shown["cost"]) == Decimal(row["cost"])
        assert Decimal(shown["avg_cost_per_session"]) == Decimal(row["avg_cost_per_session"])
        assert float(shown["avg_duration_seconds"]) == row["avg_duration_seconds"]


def test_the_accept_rate_is_accepted_over_reviewed_diffs(admin):
    response = page(admin)
    rows = rows_of(response)

    assert rows["Reviewer"]["accept_rate"] == "0.75"  # 3 accepted, 1 rejected
    assert rows["Coder"]["accept_rate"] == "1.0"
    assert rows[""]["accept_rate"] == "1.0"  # the week's two diffs, without an agent
    reviewer = re.search(r'<tr data-row="Reviewer">(.*?)</tr>', html(response), re.S).group(1)
    assert "75%" in reviewer and 'title="3 accepted, 1 rejected"' in reviewer


def test_a_member_sees_only_their_own_agents(member):
    response = page(member)

    assert list(rows_of(response)) == ["Reviewer", ""]
    assert rows_of(response)["Reviewer"]["requests"] == "2"
    assert "web@acme.test" not in html(response) and "admin@acme.test" not in html(response)


def test_a_member_asking_for_someone_else_sees_no_agents(member):
    response = page(member, f"{WEEK}&user=web@acme.test")

    assert rows_of(response) == {}
    assert "No agent activity in this period." in html(response)


def test_a_manager_sees_their_teams_agents(manager):
    rows = rows_of(page(manager))

    assert rows["Coder"]["requests"] == "1"  # their embedding request, not the admin's two
    assert rows["Reviewer"]["requests"] == "2"  # the member's, not the web member's


def test_the_agent_filter_shows_one_agent(admin):
    assert list(rows_of(page(admin, f"{WEEK}&agent=Coder"))) == ["Coder"]


@pytest.mark.parametrize(
    "sort, direction, order",
    [
        ("sessions", "desc", ["", "Coder", "Reviewer"]),  # 4, 1, 1: ties by name
        ("cost", "desc", ["", "Reviewer", "Coder"]),
        ("avg_cost_per_session", "asc", ["Coder", "Reviewer", ""]),
        ("accept_rate", "asc", ["Reviewer", "Coder", ""]),
        ("label", "asc", ["Coder", "", "Reviewer"]),  # "No agent" sorts by its label
    ],
)
def test_the_table_sorts_by_each_column(admin, sort, direction, order):
    assert list(rows_of(page(admin, f"{WEEK}&sort={sort}&dir={direction}"))) == order


def test_the_search_and_sort_swap_only_the_table(admin):
    response = page(admin, f"{WEEK}&q=rev", **htmx_to("agents-table"))

    assert "<html" not in html(response) and 'id="agents-table"' in html(response)
    assert list(rows_of(response)) == ["Reviewer"]
    assert "HX-Request" in response["Vary"]


# --- KPIs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "manager", "member"])
@pytest.mark.parametrize("query", [WEEK, f"{WEEK}&project=Atlas&model=gpt-5", f"{WEEK}&tag=none", "range=24h"])
def test_the_kpis_are_the_summarys(request, role, query):
    client = logged_in(request.getfixturevalue(role))
    api = client.get(f"{API}/summary?{query}").json()

    kpis = hooks(client.get(f"{URL}?{query}")).kpis

    for name in ("sessions", "avg_cost_per_session", "avg_session_duration_seconds", "total_tokens", "accepted_diffs"):
        assert kpis[name] == str(api[name]), name


def test_the_accept_rate_kpi_counts_every_reviewed_diff(admin, member):
    # Admin: the week's 2 accepted diffs + 3 + 1 accepted, 1 rejected.
    assert hooks(page(admin)).kpis["accept_rate"] == str(round(6 / 7, 4))
    assert hooks(page(member, f"{WEEK}&user=web@acme.test")).kpis["accept_rate"] == ""


def test_the_average_duration_reads_as_minutes_and_seconds(admin):
    summary = logged_in(admin).get(f"{API}/summary?{WEEK}").json()
    minutes, seconds = divmod(round(summary["avg_session_duration_seconds"]), 60)

    assert f"{minutes}m {seconds}s" in html(page(admin))


# --- Over time -----------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["cost", "tokens", "requests"])
@pytest.mark.parametrize("interval", ["day", "week"])
def test_the_chart_adds_up_to_the_apis_timeseries_per_bucket(manager, metric, interval):
    client = logged_in(manager)
    api = client.get(f"{API}/timeseries?{WEEK}&metric={metric}&interval={interval}").json()["points"]

    chart = json_script(client.get(f"{URL}?{WEEK}&metric={metric}&interval={interval}"), "agents-chart-data")

    per_bucket = [sum(Decimal(str(d["data"][i])) for d in chart["datasets"]) for i in range(len(chart["labels"]))]
    assert per_bucket == [Decimal(str(point["value"])) for point in api]
    assert chart["unit"] == interval and chart["money"] is (metric == "cost")


def test_the_sessions_chart_counts_each_agents_sessions(admin):
    chart = json_script(page(admin, f"{WEEK}&metric=sessions&interval=day"), "agents-chart-data")

    series = {d["label"]: d["data"] for d in chart["datasets"]}
    day = chart["labels"].index("2026-11-19")
    assert series["Coder"][day] == 1 and series["Reviewer"][day] == 1
    assert sum(series["No agent"]) == 4  # the week's sessions, none of them an agent's


def test_the_toggles_are_whole_page_links_that_keep_the_filters(admin):
    body = html(page(admin, f"{WEEK}&project=Atlas&sort=cost&metric=tokens"))

    assert 'href="/acme/agents/?range=7d&amp;project=Atlas&amp;metric=tokens&amp;interval=week"' in body
    assert 'href="/acme/agents/?range=7d&amp;project=Atlas&amp;metric=sessions"' in body
    assert 'data-metric="tokens" aria-current="true"' in body
    assert 'hx-select="#dashboard"' in body


def test_a_week_is_drawn_per_week_from_monday(admin):
    chart = json_script(page(admin, f"{WEEK}&interval=week"), "agents-chart-data")

    assert chart["labels"] == ["2026-11-09", "2026-11-16"]


def test_past_eight_agents_the_rest_are_one_series(admin, org):
    ingest_batch(
        org=org,
        usage=[usage(i, "admin@acme.test", "gpt-5", "0.01", request_id=f"ag-{i}", agent=f"A{i}") for i in range(9)],
    )

    chart = json_script(page(admin), "agents-chart-data")

    assert len(chart["datasets"]) == 9 and chart["datasets"][-1]["label"] == "Other agents"


# --- Queries -------------------------------------------------------------------------------------


def test_the_query_count_does_not_grow_with_the_agents_shown(admin, org):
    client = logged_in(admin)
    before = count_queries(client, f"{URL}?{WEEK}")
    ingest_batch(
        org=org,
        usage=[
            usage(
                i % 50, "admin@acme.test", "gpt-5", "0.01", request_id=f"q-{i}", agent=f"Agent {i}", session_id=f"q{i}"
            )
            for i in range(30)
        ],
        activity=[event(40 + i, "admin@acme.test", "diff_rejected", agent=f"Agent {i}") for i in range(10)],
    )

    assert count_queries(client, f"{URL}?{WEEK}") == before


def test_each_section_is_a_bounded_number_of_queries(admin, django_assert_max_num_queries):
    client = logged_in(admin)
    for target, most in (("agents-kpis", 30), ("agents-chart", 14), ("agents-table", 24)):
        with django_assert_max_num_queries(most):
            response = client.get(f"{URL}?{WEEK}", **htmx_to(target))
        assert f'id="{target}"' in html(response) and "<html" not in html(response)
