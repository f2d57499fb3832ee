"""The Usage page: by user / by team, KPIs that match the API, the breakdown table, its scope."""

from decimal import Decimal

import pytest

from accounts.models import ApiKey
from tests.conftest import logged_in, make_user
from tests.dashboards.data import (
    HTMX,
    WEEK,
    count_queries,
    hooks,
    htmx_to,
    json_script,
    more_people,
)
from tests.dashboards.data import frozen as frozen
from tests.dashboards.data import week as week

pytestmark = pytest.mark.usefixtures("week")

URL = "/acme/usage/"


def page(user, query=WEEK, **headers):
    response = logged_in(user).get(f"{URL}?{query}", **headers)
    assert response.status_code == 200, response.content.decode()[:2000]
    return response


def html(response) -> str:
    return response.content.decode()


# --- Access and scope ------------------------------------------------------------------------


def test_it_requires_a_login(client):
    assert client.get(URL).url == f"/login/?next={URL}"


def test_another_orgs_admin_gets_a_404(outsider):
    assert logged_in(outsider).get(URL).status_code == 404


def test_an_admin_sees_every_user(admin):
    rows = hooks(page(admin)).rows

    assert rows == ["manager@acme.test", "admin@acme.test", "member@acme.test", "web@acme.test"]  # by cost


def test_a_manager_sees_their_teams_people_and_themselves(manager):
    rows = hooks(page(manager)).rows

    assert rows == ["manager@acme.test", "member@acme.test"]


def test_a_member_sees_only_themselves(member):
    assert hooks(page(member)).rows == ["member@acme.test"]


def test_a_member_asking_for_someone_else_gets_zeros_not_their_data(member):
    found = hooks(page(member, f"{WEEK}&user=web@acme.test"))

    assert found.rows == []
    assert found.kpis["requests"] == "0"
    assert found.kpis["cost"] == "0.00"


def test_a_manager_asking_for_another_team_gets_nothing(manager):
    found = hooks(page(manager, f"{WEEK}&team=Web&by=team"))

    assert found.rows == []
    assert found.kpis["requests"] == "0"


# --- KPIs agree with the API -------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "manager", "member"])
@pytest.mark.parametrize("query", [WEEK, f"{WEEK}&model=gpt-5", f"{WEEK}&team=Platform&project=Borealis", "range=24h"])
def test_the_kpis_are_the_apis_numbers_for_the_same_query_string(request, role, query):
    client = logged_in(request.getfixturevalue(role))
    api = client.get(f"/api/v1/acme/sessions/analytics/summary?{query}").json()

    kpis = hooks(client.get(f"{URL}?{query}")).kpis

    for name in ("unique_users", "requests", "total_tokens", "cost"):
        assert kpis[name] == str(api[name]), name
    expected_avg = round(api["requests"] / api["unique_users"], 1) if api["unique_users"] else 0
    assert Decimal(kpis["avg_requests_per_user"]) == Decimal(str(expected_avg))


def test_the_kpis_count_the_week(admin):
    kpis = hooks(page(admin)).kpis

    assert kpis == {
        "unique_users": "4",
        "avg_requests_per_user": "3.8",
        "requests": "15",
        "total_tokens": str(3000 + 6000 + 25000 + 10000 + 300 + 600 + 2500 + 1000),
        "cost": "5.35",
    }


def test_the_table_adds_up_to_the_kpis(admin):
    response = page(admin)
    body = html(response)

    assert 'data-total="requests">15<' in body
    assert 'data-total="cost">$5.35<' in body


# --- The table ---------------------------------------------------------------------------------


def test_a_row_shows_name_email_team_badge_sparkline_and_numbers(manager):
    body = html(page(manager))
    start = body.index('data-row="member@acme.test"')
    row = body[start : body.index("</tr>", start)]

    assert "Mia Member" in row and "member@acme.test" in row
    assert 'style="--team-colour: #2563eb" data-team="Platform"' in row
    assert '<svg class="sparkline"' in row
    assert 'data-value="6">6<' in row  # requests
    assert 'title="25,000 tokens">25K<' in row  # input, compact with the exact number beside
    assert 'data-value="0.5500000000">$0.55<' in row or ">$0.55<" in row


def test_models_past_three_fold_into_a_plus_n(member):
    body = html(page(member))
    row = body[body.index('data-row="member@acme.test"') :]
    row = row[: row.index("</tr>")]

    assert row.count('<span class="chip">') == 3
    assert row.index(">gpt-5<") < row.index('<span class="chip chip--more"')  # the most requested first
    assert 'data-more="2">+2</span>' in row


@pytest.mark.parametrize(
    "sort, direction, expected",
    [
        ("requests", "asc", ["admin", "manager", "web", "member"]),
        ("requests", "desc", ["member", "web", "manager", "admin"]),
        ("input_tokens", "desc", ["member", "web", "manager", "admin"]),
        ("output_tokens", "asc", ["admin", "manager", "web", "member"]),
        ("cost", "asc", ["web", "member", "admin", "manager"]),
        ("label", "asc", ["admin", "manager", "member", "web"]),  # Ada, Max, Mia, Wes
    ],
)
def test_it_sorts_by_every_numeric_column_and_the_name(admin, sort, direction, expected):
    rows = hooks(page(admin, f"{WEEK}&sort={sort}&dir={direction}")).rows

    assert [row.split("@")[0] for row in rows] == expected


def test_the_sorted_column_carries_aria_sort_and_its_link_flips_it(admin):
    body = html(page(admin, f"{WEEK}&sort=requests&dir=asc"))

    header = body[body.index('aria-sort="ascending"') :]
    assert header.index('data-column="requests"') < 40
    assert "sort=requests&amp;dir=desc" in header[: header.index("</th>")]
    assert body.count("aria-sort=") == 1
    assert 'hx-get="/acme/usage/?range=7d&amp;sort=requests&amp;dir=desc"' in body


def test_an_unknown_sort_falls_back_to_cost(admin):
    assert hooks(page(admin, f"{WEEK}&sort=password&dir=sideways")).rows[0] == "manager@acme.test"


@pytest.mark.parametrize(
    "q, expected",
    [
        ("wes", ["web@acme.test"]),
        ("PLATFORM", ["manager@acme.test", "member@acme.test"]),
        ("acme.test max", ["manager@acme.test"]),
        ("nobody", []),
    ],
)
def test_it_searches_names_emails_and_teams(admin, q, expected):
    response = page(admin, f"{WEEK}&q={q}")

    assert hooks(response).rows == expected
    if not expected:
        assert "No user matches “nobody”" in html(response)


def test_the_search_keeps_the_sort_and_the_filters(admin):
    body = html(page(admin, f"{WEEK}&team=Platform&sort=requests&dir=asc"))
    form = body[body.index('<form class="search"') : body.index("</form>", body.index('<form class="search"'))]

    assert '<input type="hidden" name="range" value="7d">' in form
    assert '<input type="hidden" name="team" value="Platform">' in form
    assert 'form="usage-search" name="sort" value="requests"' in body
    assert 'form="usage-search" name="dir" value="asc"' in body


def test_it_pages_on_the_server(admin, platform_team):
    more_people(admin.memberships.get().org, platform_team, 30)

    first, second = hooks(page(admin)), hooks(page(admin, f"{WEEK}&page=2"))

    assert len(first.rows) == 25
    assert len(second.rows) == 34 - 25
    assert not set(first.rows) & set(second.rows)
    body = html(page(admin, f"{WEEK}&page=2"))
    assert "26–34 of 34 users" in body
    assert 'rel="prev"' in body and 'rel="next"' not in body


def test_a_page_past_the_end_shows_the_last(admin):
    assert hooks(page(admin, f"{WEEK}&page=99")).rows == hooks(page(admin)).rows


# --- By team -----------------------------------------------------------------------------------


def test_by_team_shows_one_row_per_team_with_its_colour(admin):
    response = page(admin, f"{WEEK}&by=team")
    body = html(response)

    assert hooks(response).rows == ["Platform", "No team", "Web"]
    assert 'style="--team-colour: #db2777" data-team="Web"' in body
    assert 'data-total="requests">15<' in body


def test_by_team_the_chart_stacks_requests_in_team_colours(admin):
    chart = json_script(page(admin, f"{WEEK}&by=team"), "usage-activity-data")

    assert chart["kind"] == "stacked-bar"
    colours = {d["label"]: d["colour"] for d in chart["datasets"]}
    assert colours["Platform"] == "#2563eb" and colours["Web"] == "#db2777"
    assert sum(sum(d["data"]) for d in chart["datasets"]) == 15


def test_by_user_the_chart_counts_active_users_per_day(admin):
    chart = json_script(page(admin), "usage-activity-data")

    days = dict(zip(chart["labels"], chart["datasets"][0]["data"], strict=True))
    assert days["2026-11-18"] == 2  # manager, web
    assert days["2026-11-19"] == 2  # admin, member
    assert chart["unit"] == "day"


def test_the_toggle_links_keep_the_filters_but_not_the_table_state(admin):
    body = html(page(admin, f"{WEEK}&team=Platform&sort=requests&q=mia&page=1"))

    assert 'href="/acme/usage/?range=7d&amp;team=Platform&amp;by=team" data-by="team"' in body
    assert 'href="/acme/usage/?range=7d&amp;team=Platform" data-by="user" aria-current="true"' in body


# --- htmx --------------------------------------------------------------------------------------


def test_an_htmx_request_for_the_table_gets_only_the_table(admin):
    response = page(admin, f"{WEEK}&sort=requests", **htmx_to("usage-table"))
    body = html(response)

    assert body.lstrip().startswith('<div id="usage-table"')
    assert "<html" not in body and 'data-kpi="' not in body
    assert len(hooks(response).rows) == 4
    assert "HX-Request" in response["Vary"]


@pytest.mark.parametrize("section, element", [("kpis", "usage-kpis"), ("activity", "usage-activity")])
def test_a_section_can_be_asked_for_by_name(admin, section, element):
    response = page(admin, f"{WEEK}&section={section}", **HTMX)

    assert hooks(response).ids >= {element}
    assert "<html" not in html(response)


def test_boosted_navigation_and_history_restores_get_the_whole_page(admin):
    boosted = page(admin, WEEK, **htmx_to("usage-table"), HTTP_HX_BOOSTED="true")
    restore = page(admin, WEEK, **HTMX, HTTP_HX_HISTORY_RESTORE_REQUEST="true")

    assert "<html" in html(boosted) and "<html" in html(restore)


def test_without_htmx_the_section_parameter_is_ignored(admin):
    assert "<html" in html(page(admin, f"{WEEK}&section=table"))


# --- The filter bar ----------------------------------------------------------------------------


def test_the_filter_bar_offers_a_member_only_themselves(member):
    body = html(page(member))

    assert 'name="user" value="member@acme.test"' in body
    assert 'name="user" value="manager@acme.test"' not in body
    assert 'name="team" value="Platform"' in body and 'name="team" value="Web"' not in body


def test_the_filter_bar_offers_a_manager_their_teams_people(manager):
    body = html(page(manager))

    assert 'name="user" value="member@acme.test"' in body
    assert 'name="user" value="manager@acme.test"' in body
    assert 'name="user" value="web@acme.test"' not in body
    assert 'name="user" value="admin@acme.test"' not in body


def test_the_filter_bar_offers_an_admin_everyone_and_the_models_seen(admin):
    body = html(page(admin))

    for email in ("admin", "manager", "member", "web"):
        assert f'name="user" value="{email}@acme.test"' in body
    assert 'name="model" value="gemini-2.5-pro"' in body
    assert 'name="service_type" value="embedding"' in body


def test_api_keys_are_offered_to_whom_they_concern(org, admin, manager, member, web_member):
    from accounts.services import api_key_create

    api_key_create(org=org, name="mia-laptop", scopes={"ingest"}, owner=member)
    api_key_create(org=org, name="web-ci", scopes={"ingest"}, owner=web_member)

    assert 'name="api_key" value="web-ci"' in html(page(admin))
    assert 'name="api_key" value="mia-laptop"' in html(page(manager))
    assert 'name="api_key" value="web-ci"' not in html(page(manager))
    assert 'name="api_key" value="web-ci"' not in html(page(member))
    assert ApiKey.objects.count() == 2


def test_the_chosen_filters_are_checked_and_shown_as_removable_chips(admin):
    body = html(page(admin, f"{WEEK}&team=Platform&user=member@acme.test&by=team"))

    assert 'name="team" value="Platform" checked' in body
    assert (
        'href="/acme/usage/?range=7d&amp;user=member%40acme.test&amp;by=team" aria-label="Remove filter Teams: Platform"'
        in body
    )
    assert "Clear all" in body


def test_the_presets_keep_the_view_and_the_filters_and_mark_the_current_one(admin):
    body = html(page(admin, f"{WEEK}&team=Web&by=team&sort=cost&interval=1h"))

    assert 'href="/acme/usage/?team=Web&amp;by=team&amp;range=30d" data-range="30d"' in body
    assert 'data-range="7d" aria-current="true"' in body


def test_a_month_shows_its_name_and_links_to_the_months_around_it(admin):
    body = html(page(admin, "range=month&month=2026-10"))

    assert "October 2026" in body
    assert 'data-month="2026-09"' in body and 'data-month="2026-11"' in body
    assert "1 Oct – 31 Oct 2026" in body


def test_bad_parameters_answer_400_and_say_why(admin):
    response = logged_in(admin).get(f"{URL}?start=yesterday")

    assert response.status_code == 400
    assert 'data-testid="filter-error"' in html(response)
    assert "RFC 3339" in html(response)


# --- Queries -----------------------------------------------------------------------------------


@pytest.mark.parametrize("query", [WEEK, f"{WEEK}&by=team"])
def test_the_number_of_queries_does_not_grow_with_the_rows(admin, platform_team, django_assert_max_num_queries, query):
    client = logged_in(admin)
    few = count_queries(client, f"{URL}?{query}")
    more_people(admin.memberships.get().org, platform_team, 40)

    with django_assert_max_num_queries(few):
        response = client.get(f"{URL}?{query}")
    assert len(hooks(response).rows) >= 1


def test_a_table_partial_reads_a_fixed_number_of_times(manager, platform_team, django_assert_max_num_queries):
    client = logged_in(manager)
    few = count_queries(client, f"{URL}?{WEEK}&sort=requests", **htmx_to("usage-table"))
    more_people(manager.memberships.get().org, platform_team, 40)

    with django_assert_max_num_queries(few):
        client.get(f"{URL}?{WEEK}&sort=requests", **htmx_to("usage-table"))
    assert few <= 16


def test_someone_with_usage_but_no_membership_any_more_is_still_counted(admin, org):
    ghost = make_user("ghost@acme.test", org)
    from metering.services import ingest_batch
    from tests.dashboards.data import usage

    ingest_batch(org=org, usage=[usage(0, "ghost@acme.test", "gpt-5", "1.00")])
    ghost.memberships.all().delete()

    response = page(admin)
    assert f"user {ghost.pk}" in hooks(response).rows
    assert hooks(response).kpis["cost"] == "6.35"


def test_the_models_of_each_team_including_no_team(admin):
    body = html(page(admin, f"{WEEK}&by=team"))

    def models(key):
        row = body[body.index(f'data-row="{key}"') :]
        return row[: row.index("</tr>")]

    assert '<span class="chip">gpt-5</span>' in models("No team")
    assert '<span class="chip">gpt-5-mini</span>' in models("Web")
    assert 'data-more="2">+2</span>' in models("Platform")  # sonnet first (4 requests), then 5 more


def test_the_models_are_those_of_the_rows_shown_whatever_the_filters(admin, org, platform_team):
    more_people(org, platform_team, 30)  # two pages
    filtered = html(page(admin, f"{WEEK}&user=member@acme.test&user=manager@acme.test"))

    assert 'data-more="2">+2</span>' in filtered  # the member's five models
    second = page(admin, f"{WEEK}&sort=label&dir=asc&page=2")  # Dev 024-029, Max, Mia, Wes
    assert hooks(second).rows[0] == "dev024@acme.test"
    assert html(second).count('<span class="chip">gpt-5</span>') == 6 + 1  # the devs' and Mia's
    assert html(second).count('<span class="chip">gpt-5-mini</span>') == 1  # Wes's (Mia's is behind +2)
