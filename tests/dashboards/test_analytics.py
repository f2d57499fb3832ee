"""The Analytics page: month navigation, KPIs that match the API, cost by service type and by
project, project trends, top agents, service-type cards, the requests table and its CSV export."""

import csv
import io
import re
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync

from dashboards.exports import csv_cell as _csv_cell
from metering.models import Project
from metering.services import ingest_batch
from tests.conftest import logged_in
from tests.dashboards.data import WEEK, count_queries, hooks, htmx_to, json_script, usage
from tests.dashboards.data import frozen as frozen
from tests.dashboards.data import week as week
from tests.dashboards.pages_data import FORMULA_PROJECT
from tests.dashboards.pages_data import busy_week as busy_week

pytestmark = pytest.mark.usefixtures("busy_week")

URL = "/acme/analytics/"
API = "/api/v1/acme/sessions/analytics"
KPIS = ("requests", "total_tokens", "unique_models", "active_projects", "total_projects", "conversations")
# Requests of the busy week each role may see: 15 in data.py's week, 7 more in pages_data.py.
VISIBLE_REQUESTS = {
    "admin": 22,
    "manager": 4 + 9,  # their own 3 + 1, and the member's (Platform)
    "member": 6 + 2 + 1,  # the week's 6, 2 with Reviewer, 1 late
}


def page(user, query=WEEK, **headers):
    response = logged_in(user).get(f"{URL}?{query}", **headers)
    assert response.status_code == 200, response.content.decode()[:3000]
    return response


def html(response) -> str:
    return response.content.decode()


def table_rows(response, section: str = "analytics-requests") -> list[str]:
    """The data-row values of the table rows inside one section."""
    body = html(response)
    start = body.index(f'id="{section}"')
    end = body.index("</table>", start)
    return re.findall(r'<tr data-row="([^"]*)"', body[start:end])


def request_ids(rows: list[dict]) -> set[str]:
    """The exported request ids as stored: without the apostrophe that neutralises a formula."""
    return {r["request_id"][1:] if r["request_id"][:2] in ("'=", "'+", "'-", "'@") else r["request_id"] for r in rows}


def read_csv(response) -> list[dict]:
    """The streamed export, read the way daphne reads it: as an asynchronous iterator."""
    assert response.streaming and response.is_async

    async def read():
        return b"".join([part async for part in response.streaming_content])

    return list(csv.DictReader(io.StringIO(async_to_sync(read)().decode())))


def export(user, query=WEEK) -> list[dict]:
    response = logged_in(user).get(f"{URL}?{query}&export=csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return read_csv(response)


def test_it_requires_a_login(client):
    assert client.get(URL).url == f"/login/?next={URL}"


def test_another_orgs_admin_gets_a_404(outsider):
    assert logged_in(outsider).get(URL).status_code == 404
    assert logged_in(outsider).get(f"{URL}?export=csv").status_code == 404


def test_bad_parameters_give_a_400_page_saying_why(admin):
    response = logged_in(admin).get(f"{URL}?start=2026-11-19&end=2026-11-01")

    assert response.status_code == 400
    assert "must be before" in html(response)
    assert logged_in(admin).get(f"{URL}?month=13-2026&export=csv").status_code == 400


# --- KPIs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "manager", "member"])
@pytest.mark.parametrize(
    "query",
    [WEEK, f"{WEEK}&project=Atlas", f"{WEEK}&agent=Reviewer", "range=month", "range=month&month=2026-10", "range=24h"],
)
def test_the_kpis_are_the_apis_numbers_for_the_same_query_string(request, role, query):
    client = logged_in(request.getfixturevalue(role))
    api = client.get(f"{API}/summary?{query}").json()

    kpis = hooks(client.get(f"{URL}?{query}")).kpis

    assert kpis == {name: str(api[name]) for name in KPIS}


def test_the_kpis_count_the_week(admin):
    assert hooks(page(admin)).kpis == {
        "requests": "22",
        "total_tokens": str(48400 + 7 * 1100),
        "unique_models": "7",
        "active_projects": "3",
        "total_projects": "3",
        "conversations": "4",
    }


def test_active_projects_read_x_of_y(admin):
    assert '3 <small data-kpi="total_projects" data-value="3">/ 3</small>' in html(page(admin))


def test_a_member_asking_for_someone_else_gets_zeros(member):
    kpis = hooks(page(member, f"{WEEK}&user=web@acme.test")).kpis

    assert kpis["requests"] == "0" and kpis["conversations"] == "0" and kpis["active_projects"] == "0"


# --- Month navigation ----------------------------------------------------------------------------


def test_a_month_view_links_the_month_before_keeping_the_filters(admin):
    body = html(page(admin, "range=month&month=2026-11&project=Atlas"))

    assert 'data-month-shown="2026-11"' in body
    assert 'href="/acme/analytics/?project=Atlas&amp;range=month&amp;month=2026-10"' in body
    assert 'aria-label="Next month' not in body  # November is the current month: nothing after it yet


def test_an_earlier_month_links_the_month_after(admin):
    body = html(page(admin, "range=month&month=2026-10"))

    assert 'aria-label="Previous month, September 2026"' in body
    assert 'href="/acme/analytics/?range=month&amp;month=2026-11"' in body
    assert 'aria-label="Next month, November 2026"' in body


def test_outside_a_month_view_the_month_the_period_ends_in_is_a_link(admin):
    body = html(page(admin, f"{WEEK}&sort=cost&page=2"))

    assert 'data-month="2026-11"' in body and "data-month-shown" not in body
    assert 'href="/acme/analytics/?range=month&amp;month=2026-10"' in body  # the table's state dropped


def test_a_previous_month_shows_that_months_numbers(admin, org):
    ingest_batch(org=org, usage=[usage(0, "admin@acme.test", "gpt-5", "2.00", request_id="oct", day=19)])
    ingest_batch(org=org, usage=[{**usage(0, "admin@acme.test", "gpt-5", "2.00"), "request_id": "oct-2",
                                  "timestamp": "2026-10-05T10:00:00+02:00"}])  # fmt: skip

    kpis = hooks(page(admin, "range=month&month=2026-10")).kpis

    assert kpis["requests"] == "1"


def test_refresh_reloads_every_section_without_the_frame(admin):
    response = page(admin, WEEK, **htmx_to("analytics-body"))
    body = html(response)

    assert "<html" not in body and 'id="analytics-body"' in body
    assert 'id="analytics-requests"' in body and 'data-kpi="requests"' in body
    assert "HX-Request" in response["Vary"]


# --- Cost by service type ------------------------------------------------------------------------


def test_cost_by_service_type_stacks_per_day_and_its_doughnut_shares_the_legend(admin):
    client = logged_in(admin)
    response = client.get(f"{URL}?{WEEK}")
    api = {
        row["name"]: Decimal(row["cost"])
        for row in client.get(f"{API}/cost-breakdown?{WEEK}").json()["by_service_type"]
    }

    bars, doughnut = json_script(response, "cost-by-day-data"), json_script(response, "cost-by-type-data")

    labels = {"Text generation": "text_generation", "Agent": "agent", "Embedding": "embedding",
              "Speech to text": "speech_to_text"}  # fmt: skip
    assert {labels[d["label"]]: sum(Decimal(v) for v in d["data"]) for d in bars["datasets"]} == api
    assert dict(zip(doughnut["labels"], map(Decimal, doughnut["datasets"][0]["data"]), strict=True)) == {
        label: api[key] for label, key in labels.items()
    }
    assert [d["colour"] for d in bars["datasets"]] == doughnut["datasets"][0]["colours"]
    assert 'data-legend-for="cost-by-day cost-by-type"' in html(response)
    assert bars["kind"] == "stacked-bar" and bars["unit"] == "day" and bars["money"] is True


@pytest.mark.parametrize("role", ["admin", "manager", "member"])
def test_the_cost_overview_total_is_the_summarys_cost(request, role):
    client = logged_in(request.getfixturevalue(role))
    cost = client.get(f"{API}/summary?{WEEK}").json()["cost"]

    assert f'id="analytics-cost" aria-labelledby="analytics-cost-title" data-total="{cost}"' in html(
        client.get(f"{URL}?{WEEK}")
    )


# --- Cost by project and trends ------------------------------------------------------------------


def test_cost_by_project_is_the_top_six_then_others_in_project_colours(admin, org):
    ingest_batch(org=org, usage=[usage(i, "admin@acme.test", "gpt-5", f"0.0{i + 1}", request_id=f"p-{i}",
                                       project=f"P{i}") for i in range(6)])  # fmt: skip
    Project.objects.filter(org=org, name="Atlas").update(colour="#123456")

    doughnut = json_script(page(admin), "cost-by-project-data")

    assert len(doughnut["labels"]) == 7 and doughnut["labels"][-1] == "Others"
    assert doughnut["labels"][:3] == ["Atlas", FORMULA_PROJECT, "Borealis"]
    assert doughnut["datasets"][0]["colours"][0] == "#123456"
    assert sum(Decimal(v) for v in doughnut["datasets"][0]["data"]) == Decimal(
        logged_in(admin).get(f"{API}/summary?{WEEK}").json()["cost"]
    )


def test_project_trends_draw_a_line_per_project_in_its_colour(admin, org):
    Project.objects.filter(org=org, name="Borealis").update(colour="#00aa00")

    trends = json_script(page(admin), "project-trends-data")

    assert trends["kind"] == "line"
    lines = {d["label"]: d for d in trends["datasets"]}
    assert set(lines) == {"Atlas", "Borealis", FORMULA_PROJECT, "No project"}
    assert lines["Borealis"]["colour"] == "#00aa00"


def test_project_trends_filter_by_service_type_and_keep_the_other_filters(admin):
    response = page(admin, f"{WEEK}&trend_service=embedding&project=Borealis&project=Atlas")

    trends = json_script(response, "project-trends-data")
    assert [d["label"] for d in trends["datasets"]] == ["Borealis"]
    assert sum(Decimal(v) for v in trends["datasets"][0]["data"]) == Decimal("0.01")
    assert '<option value="embedding" selected>' in html(response)
    # The other charts still show every service type.
    assert len(json_script(response, "cost-by-day-data")["datasets"]) > 1


# --- Top agents ----------------------------------------------------------------------------------


def test_top_agents_rank_by_cost_with_project_conversations_and_a_link(admin):
    response = page(admin, f"{WEEK}&project=Atlas&project=Borealis&project={FORMULA_PROJECT}")
    body = html(response)

    assert table_rows(response, "analytics-agents") == ["Reviewer", "Coder"]
    reviewer = body[body.index('<tr data-row="Reviewer"') :]
    reviewer = reviewer[: reviewer.index("</tr>")]
    assert FORMULA_PROJECT.replace('"', "&quot;") in reviewer  # its main project, escaped
    assert 'data-value="2">2<' in reviewer  # conversations conv-r and conv-w
    assert 'data-value="1.05">$1.05<' in reviewer
    assert "/acme/agents/?range=7d&amp;project=Atlas" in reviewer and "agent=Reviewer" in reviewer


def test_top_agents_agree_with_the_by_agent_api(manager):
    client = logged_in(manager)
    api = {row["agent"]: row for row in client.get(f"{API}/by-agent?{WEEK}").json()["agents"] if row["agent"]}

    body = html(client.get(f"{URL}?{WEEK}"))

    for name, row in api.items():
        agent = body[body.index(f'<tr data-row="{name}"') :]
        agent = agent[: agent.index("</tr>")]
        assert f'data-value="{row["requests"]}"' in agent and f'data-value="{row["cost"]}"' in agent


def test_top_agents_say_so_when_there_are_none(admin):
    assert "No agent usage in this period" in html(page(admin, "start=2026-01-01&end=2026-01-31"))


# --- Service-type cards --------------------------------------------------------------------------


def test_each_service_type_used_gets_a_card_with_three_views(admin):
    client = logged_in(admin)
    response = client.get(f"{URL}?{WEEK}")
    body = html(response)
    api = client.get(f"{API}/cost-breakdown?{WEEK}").json()["by_service_type"]

    for row in api:
        key = row["name"]
        assert f'data-service-type="{key}"' in body
        assert f'<span class="service-card__total" data-value="{row["cost"]}">' in body
        for view in ("costs", "requests", "usage"):
            assert f'id="service-{key}-{view}"' in body
        requests = json_script(response, f"service-{key}-requests-data")
        assert sum(requests["datasets"][0]["data"]) == row["requests"]
    assert 'data-service-type="image"' not in body


def test_the_usage_view_splits_input_into_cached_and_fresh(admin):
    usage_view = json_script(page(admin), "service-agent-usage-data")

    totals = {d["label"]: sum(d["data"]) for d in usage_view["datasets"]}
    assert totals == {"Cached input": 500, "Fresh input": 2000 - 500, "Output": 200}


# --- The requests table --------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "manager", "member"])
def test_the_table_shows_the_requests_the_viewer_may_see_newest_first(request, role):
    user = request.getfixturevalue(role)
    response = page(user)

    rows = table_rows(response)
    visible = request_ids(export(user))
    assert len(visible) == VISIBLE_REQUESTS[role]
    assert set(rows) <= visible and len(rows) == min(25, len(visible))
    assert f'data-count="{len(visible)}"' in html(response)


def test_a_member_sees_only_their_own_rows_everywhere(member):
    response = page(member)
    body = html(response)

    for other in ("web@acme.test", "admin@acme.test", "manager@acme.test", "Wes Web", "Max Manager"):
        assert other not in body
    assert table_rows(response)[:3] == ["late-19", "@evil", "=1+2"]
    assert table_rows(response, "analytics-agents") == ["Reviewer"]
    assert json_script(response, "cost-by-project-data")["labels"] == [FORMULA_PROJECT, "Borealis"]


def test_a_member_asking_for_others_gets_empty_sections(member):
    response = page(member, f"{WEEK}&user=web@acme.test&user=manager@acme.test")

    assert table_rows(response) == [] and "No agent usage in this period" in html(response)
    assert json_script(response, "cost-by-day-data")["datasets"] == []


def test_a_manager_sees_their_teams_rows_but_not_others(manager):
    body = html(page(manager))

    assert "member@acme.test" in body and "manager@acme.test" in body
    assert "web@acme.test" not in body and "a-1" not in body


def test_the_table_pages_on_the_server(admin, org):
    ingest_batch(org=org, usage=[usage(i % 50, "admin@acme.test", "gpt-5", "0.01", request_id=f"bulk-{i}",
                                       hour=9) for i in range(30)])  # fmt: skip

    first, second = page(admin), page(admin, f"{WEEK}&page=2", **htmx_to("analytics-requests"))

    assert len(table_rows(first)) == 25 and len(table_rows(second)) == 25
    assert "26–50 of" in html(second) and "<html" not in html(second)
    assert set(table_rows(first)).isdisjoint(table_rows(second))
    assert 'rel="next"' in html(second) and 'rel="prev"' in html(second)


def test_a_page_past_the_end_shows_the_last_page(admin):
    assert "1–22 of" in html(page(admin, f"{WEEK}&page=99"))


def test_the_table_says_so_when_there_is_nothing(admin):
    assert "No requests in this period" in html(page(admin, "start=2026-01-01&end=2026-01-31"))


def test_the_export_link_carries_the_filters(admin):
    body = html(page(admin, f"{WEEK}&project=Atlas&page=2"))

    assert 'href="/acme/analytics/?range=7d&amp;project=Atlas&amp;export=csv"' in body


# --- CSV export ----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "manager", "member"])
@pytest.mark.parametrize("query", [WEEK, f"{WEEK}&project=Atlas", f"{WEEK}&service_type=agent", "range=month"])
def test_the_csvs_totals_are_the_summarys(request, role, query):
    user = request.getfixturevalue(role)
    api = logged_in(user).get(f"{API}/summary?{query}").json()

    rows = export(user, query)

    assert len(rows) == api["requests"]
    assert sum(int(r["input_tokens"]) for r in rows) == api["input_tokens"]
    assert sum(int(r["cached_input_tokens"]) for r in rows) == api["cached_input_tokens"]
    assert sum(int(r["output_tokens"]) for r in rows) == api["output_tokens"]
    assert sum(r["status"] == "error" for r in rows) == api["failed_requests"]
    assert sum(Decimal(r["cost"]) for r in rows) == Decimal(api["cost"])


def test_a_member_exports_only_their_own_rows_even_when_asking_for_others(member):
    rows = export(member, f"{WEEK}&user=web@acme.test&user=member@acme.test")

    assert {r["user"] for r in rows} == {"member@acme.test"}
    assert export(member, f"{WEEK}&user=web@acme.test") == []


def test_a_manager_exports_their_teams_rows(manager):
    assert {r["user"] for r in export(manager)} == {"manager@acme.test", "member@acme.test"}


def test_the_csv_has_a_header_names_and_local_times(admin):
    response = logged_in(admin).get(f"{URL}?{WEEK}&export=csv")
    rows = read_csv(response)

    assert response["Content-Disposition"] == 'attachment; filename="acme-requests-2026-11-14-to-2026-11-20.csv"'
    assert list(rows[0]) == ["timestamp", "request_id", "user", "team", "project", "repository", "agent", "model",
                             "provider", "service_type", "status", "api_key", "input_tokens", "cached_input_tokens",
                             "cache_write_tokens", "output_tokens", "reasoning_tokens", "cost", "duration_ms",
                             "session_id", "conversation_id"]  # fmt: skip
    coder = next(r for r in rows if r["request_id"] == "a-1")
    assert coder["timestamp"] == "2026-11-19T14:00:00+01:00"
    assert (coder["agent"], coder["project"], coder["conversation_id"]) == ("Coder", "Atlas", "conv-a")
    assert [r["timestamp"] for r in rows] == sorted((r["timestamp"] for r in rows), reverse=True)


def test_the_csv_neutralises_spreadsheet_formulas(admin):
    rows = {r["request_id"]: r for r in export(admin)}

    assert rows["'=1+2"]["project"] == "'" + FORMULA_PROJECT
    assert "'@evil" in rows and "'-3+4" in rows
    assert rows["'-3+4"]["status"] == "error"


@pytest.mark.parametrize(
    "value, cell",
    [
        ("=SUM(A1:A9)", "'=SUM(A1:A9)"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@cmd", "'@cmd"),
        ("\tTAB", "'\tTAB"),
        ("\rCR", "'\rCR"),
        ("a=b", "a=b"),
        ("", ""),
        (None, ""),
        (1234, "1234"),
        (Decimal("0.0012500000"), "0.0012500000"),
    ],
)
def test_a_cell_that_would_run_as_a_formula_gets_an_apostrophe(value, cell, org):
    assert _csv_cell(value, org.tzinfo) == cell


def test_the_export_streams_from_one_query_however_many_rows(admin, org, django_assert_max_num_queries):
    ingest_batch(org=org, usage=[usage(i % 50, "admin@acme.test", "gpt-5", "0.01", request_id=f"bulk-{i}",
                                       hour=9) for i in range(2500)])  # fmt: skip
    client = logged_in(admin)

    with django_assert_max_num_queries(12):
        response = client.get(f"{URL}?{WEEK}&export=csv")
        rows = read_csv(response)

    assert len(rows) == 22 + 2500


# --- Queries -------------------------------------------------------------------------------------


def test_the_query_count_does_not_grow_with_the_rows_shown(admin, org):
    client = logged_in(admin)
    before = count_queries(client, f"{URL}?{WEEK}")
    ingest_batch(org=org, usage=[usage(i % 50, f"dev{i}@acme.test", "gpt-5", "0.01", request_id=f"q-{i}",
                                       agent=f"Agent {i}", project=f"Project {i}", conversation_id=f"c-{i}",
                                       service_type=["agent", "embedding", "image"][i % 3]) for i in range(40)])  # fmt: skip

    after = count_queries(client, f"{URL}?{WEEK}")

    assert after == before


def test_each_section_is_a_bounded_number_of_queries(admin, django_assert_max_num_queries):
    client = logged_in(admin)
    for target, most in (
        ("analytics-kpis", 30),
        ("analytics-cost", 12),
        ("analytics-projects", 16),
        ("analytics-agents", 16),
        ("analytics-services", 12),
        ("analytics-requests", 14),
    ):
        with django_assert_max_num_queries(most):
            response = client.get(f"{URL}?{WEEK}", **htmx_to(target))
        assert f'id="{target}"' in html(response) and "<html" not in html(response)
