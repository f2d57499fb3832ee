"""The Overview page: KPIs that match the API, tokens by project, the usage leaderboard, scope."""

from decimal import Decimal

import pytest

from metering.models import Project
from tests.conftest import logged_in
from tests.dashboards.data import HTMX, WEEK, count_queries, hooks, htmx_to, json_script, more_people
from tests.dashboards.data import frozen as frozen
from tests.dashboards.data import week as week

pytestmark = pytest.mark.usefixtures("week")

URL = "/acme/overview/"


def page(user, query=WEEK, **headers):
    response = logged_in(user).get(f"{URL}?{query}", **headers)
    assert response.status_code == 200, response.content.decode()[:2000]
    return response


def html(response) -> str:
    return response.content.decode()


def row_html(response, key: str) -> str:
    body = html(response)
    start = body.index(f'data-row="{key}"')
    return body[start : body.index("</tr>", start)]


def test_it_requires_a_login(client):
    assert client.get(URL).url == f"/login/?next={URL}"


def test_another_orgs_admin_gets_a_404(outsider):
    assert logged_in(outsider).get(URL).status_code == 404


def test_it_refuses_post(admin):
    assert logged_in(admin).post(URL).status_code == 405


# --- KPIs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "manager", "member"])
@pytest.mark.parametrize(
    "query",
    [WEEK, f"{WEEK}&project=Atlas", f"{WEEK}&user=web@acme.test", "range=month", "start=2026-11-18&end=2026-11-18"],
)
def test_the_kpis_are_the_apis_numbers_for_the_same_query_string(request, role, query):
    client = logged_in(request.getfixturevalue(role))
    api = client.get(f"/api/v1/acme/sessions/analytics/summary?{query}").json()

    kpis = hooks(client.get(f"{URL}?{query}")).kpis

    assert kpis == {name: str(api[name]) for name in ("agent_runs", "sessions", "total_tokens", "cost")}


def test_the_kpis_count_the_week(admin):
    assert hooks(page(admin)).kpis == {
        "agent_runs": "2",
        "sessions": "4",
        "total_tokens": "48400",
        "cost": "5.35",
    }


def test_the_kpis_show_readable_numbers(admin):
    body = html(page(admin))

    assert 'title="48,400 tokens">48.4K<' in body
    assert ">$5.35<" in body


def test_a_member_sees_their_own_numbers_even_when_asking_for_someone_else(member):
    assert hooks(page(member)).kpis["cost"] == "0.55"
    assert hooks(page(member, f"{WEEK}&user=admin@acme.test")).kpis == {
        "agent_runs": "0",
        "sessions": "0",
        "total_tokens": "0",
        "cost": "0.00",
    }


# --- Tokens by project -------------------------------------------------------------------------


def test_the_chart_stacks_each_projects_tokens_per_day_in_its_colour(admin, org):
    Project.objects.filter(org=org, name="Atlas").update(colour="#ff5500")

    chart = json_script(page(admin), "tokens-by-project-data")

    assert chart["kind"] == "stacked-bar" and chart["unit"] == "day"
    series = {d["label"]: d for d in chart["datasets"]}
    assert series["Atlas"]["colour"] == "#ff5500"
    day = chart["labels"].index("2026-11-18")
    assert series["Atlas"]["data"][day] == 6600  # the manager's three requests
    assert series["No project"]["data"][day] == 11000  # the web member's four
    assert sum(sum(d["data"]) for d in chart["datasets"]) == 48400


def test_the_chart_agrees_with_the_apis_timeseries_bucket_by_bucket(manager):
    client = logged_in(manager)
    api = client.get(f"/api/v1/acme/sessions/analytics/timeseries?{WEEK}&metric=tokens&interval=day").json()

    chart = json_script(client.get(f"{URL}?{WEEK}"), "tokens-by-project-data")

    per_bucket = [sum(d["data"][i] for d in chart["datasets"]) for i in range(len(chart["labels"]))]
    assert per_bucket == [point["value"] for point in api["points"]]
    assert chart["labels"] == [point["start"][:10] for point in api["points"]]


def test_the_interval_can_be_hours(admin):
    chart = json_script(page(admin, f"{WEEK}&interval=6h"), "tokens-by-project-data")

    assert chart["unit"] == "hour"
    assert "2026-11-18T06:00" in chart["labels"]
    assert sum(sum(d["data"]) for d in chart["datasets"]) == 48400


def test_a_day_is_drawn_per_hour_by_default(admin):
    chart = json_script(page(admin, "range=24h"), "tokens-by-project-data")

    assert chart["unit"] == "hour"
    assert 24 <= len(chart["labels"]) <= 25


def test_past_eight_projects_the_rest_are_one_grey_series(admin, org):
    from metering.services import ingest_batch
    from tests.dashboards.data import usage

    ingest_batch(org=org, usage=[usage(i, "admin@acme.test", "gpt-5", "0.01", project=f"P{i:02d}") for i in range(10)])

    chart = json_script(page(admin), "tokens-by-project-data")

    labels = [d["label"] for d in chart["datasets"]]
    assert len(labels) == 9 and labels[-1] == "Other projects"
    assert chart["datasets"][-1]["colour"] == "#98a2b3"


# --- The leaderboard ---------------------------------------------------------------------------


def test_the_leaderboard_has_a_row_per_person_with_their_work(admin):
    response = page(admin)

    assert hooks(response).rows == ["manager@acme.test", "admin@acme.test", "member@acme.test", "web@acme.test"]
    mia = row_html(response, "member@acme.test")
    assert "Mia Member" in mia
    for value in ('data-value="2">2<', 'data-value="0">0<', 'data-value="27500" title="27,500 tokens">27.5K<'):
        assert value in mia  # 2 accepted diffs, no tasks, 27.5K tokens
    assert "$0.55" in mia


def test_the_leaderboard_counts_lines_of_accepted_diffs(admin):
    mia = row_html(page(admin), "member@acme.test")

    assert 'data-value="45">45<' in mia  # (30 + 10) + (5 + 0)


def test_the_leaderboard_includes_people_with_activity_alone(admin, org):
    from metering.services import ingest_batch
    from tests.dashboards.data import event

    ingest_batch(org=org, activity=[event(5, "quiet@acme.test", "diff_accepted", lines_added=3)])

    row = row_html(page(admin), "quiet@acme.test")
    assert 'data-value="3">3<' in row and "$0.00" in row


@pytest.mark.parametrize(
    "role, expected",
    [
        ("admin", {"admin@acme.test", "manager@acme.test", "member@acme.test", "web@acme.test"}),
        ("manager", {"manager@acme.test", "member@acme.test"}),
        ("member", {"member@acme.test"}),
    ],
)
def test_each_role_sees_only_whom_they_may(request, role, expected):
    assert set(hooks(page(request.getfixturevalue(role))).rows) == expected


def test_a_member_cannot_see_another_user_anywhere_on_the_page(member):
    body = html(page(member, f"{WEEK}&user=web@acme.test&user=manager@acme.test"))

    assert "Wes Web" not in body and "Max Manager" not in body
    assert 'data-row="' not in body


@pytest.mark.parametrize(
    "sort, expected",
    [
        ("accepted_diffs", "member"),
        ("tasks_completed", "manager"),
        ("tokens", "member"),
        ("cost", "manager"),
        ("lines_of_code", "member"),
    ],
)
def test_the_leaderboard_sorts_by_each_number(admin, sort, expected):
    assert hooks(page(admin, f"{WEEK}&sort={sort}&dir=desc")).rows[0] == f"{expected}@acme.test"


def test_the_leaderboard_pages_ten_at_a_time(admin, org, platform_team):
    more_people(org, platform_team, 12)

    first, second = page(admin), page(admin, f"{WEEK}&page=2")

    assert len(hooks(first).rows) == 10 and len(hooks(second).rows) == 6
    assert "11–16 of 16 people" in html(second)
    assert "All 16 people" in html(second)


def test_the_leaderboard_says_so_when_there_is_nothing(admin):
    body = html(page(admin, "start=2026-01-01&end=2026-01-31"))

    assert "No usage or activity in this period." in body


# --- htmx --------------------------------------------------------------------------------------


def test_sorting_the_leaderboard_with_htmx_gets_only_the_leaderboard(admin):
    response = page(admin, f"{WEEK}&sort=tokens", **htmx_to("overview-leaderboard"))
    body = html(response)

    assert body.lstrip().startswith('<section class="card" id="overview-leaderboard"')
    assert "data-kpi" not in body and "tokens-by-project-data" not in body
    assert hooks(response).rows[0] == "member@acme.test"
    assert "HX-Request" in response["Vary"]


@pytest.mark.parametrize(
    "target, present, absent",
    [
        ("overview-kpis", 'data-kpi="cost"', "data-row"),
        ("overview-chart", "tokens-by-project-data", "data-kpi"),
    ],
)
def test_each_section_renders_alone_for_htmx(admin, target, present, absent):
    body = html(page(admin, WEEK, **htmx_to(target)))

    assert present in body and absent not in body and "<html" not in body


def test_an_unknown_target_gets_the_whole_page(admin):
    assert "<html" in html(page(admin, WEEK, **htmx_to("somewhere-else")))


def test_the_sort_links_have_hx_get_beside_a_real_href(admin):
    body = html(page(admin))

    assert (
        'href="/acme/overview/?range=7d&amp;sort=tokens&amp;dir=desc" '
        'hx-get="/acme/overview/?range=7d&amp;sort=tokens&amp;dir=desc" hx-target="#overview-leaderboard"'
    ) in body
    assert 'hx-push-url="true"' in body


# --- Queries -----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "manager"])
def test_the_number_of_queries_does_not_grow_with_the_people(
    request, org, platform_team, role, django_assert_max_num_queries
):
    client = logged_in(request.getfixturevalue(role))
    few = count_queries(client, f"{URL}?{WEEK}")
    more_people(org, platform_team, 40)

    with django_assert_max_num_queries(few):
        response = client.get(f"{URL}?{WEEK}")
    assert len(hooks(response).rows) == 10


def test_the_leaderboard_partial_reads_a_fixed_number_of_times(
    admin, org, platform_team, django_assert_max_num_queries
):
    client = logged_in(admin)
    few = count_queries(client, f"{URL}?{WEEK}", **htmx_to("overview-leaderboard"))
    more_people(org, platform_team, 40)

    with django_assert_max_num_queries(few):
        client.get(f"{URL}?{WEEK}", **htmx_to("overview-leaderboard"))
    assert few <= 16


def test_the_page_works_without_any_usage(admin, org):
    body = html(page(admin, "start=2025-01-01&end=2025-01-07"))

    assert hooks(page(admin, "start=2025-01-01&end=2025-01-07")).kpis["cost"] == "0.00"
    assert "No tokens in this period" in body
    assert Decimal("0") == Decimal(hooks(page(admin, "start=2025-01-01&end=2025-01-07")).kpis["total_tokens"])


def test_htmx_partial_for_bad_parameters_is_a_400(admin):
    response = logged_in(admin).get(f"{URL}?range=forever", **HTMX)

    assert response.status_code == 400
