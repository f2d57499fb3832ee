"""The Resources page: LLM tokens and requests, top consumers and models, compute and storage
from allocations (checked against a plain computation over the raw allocations), threads and
messages; bucket sizes by range; scope."""

import re
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from accounts.access import scope_for_user
from dashboards.templatetags.tally import compact
from metering import selectors
from metering.models import DirtyDay
from metering.rollups import dirty_days_rebuild
from metering.services import ingest_batch
from tests.conftest import logged_in
from tests.dashboards.data import NOW, WEEK, count_queries, hooks, htmx_to, json_script, usage
from tests.dashboards.data import frozen as frozen
from tests.dashboards.data import week as week
from tests.dashboards.pages_data import allocated_hours, allocation, close
from tests.dashboards.pages_data import busy_week as busy_week

pytestmark = pytest.mark.usefixtures("busy_week")

URL = "/acme/resources/"
API = "/api/v1/acme/sessions/analytics"


def page(user, query=WEEK, **headers):
    response = logged_in(user).get(f"{URL}?{query}", **headers)
    assert response.status_code == 200, response.content.decode()[:3000]
    return response


def html(response) -> str:
    return response.content.decode()


def local(org, *args) -> datetime:
    return datetime(*args, tzinfo=org.tzinfo)


def week_range(org):
    return local(org, 2026, 11, 14), NOW


def bars(response, section: str) -> dict[str, str]:
    """{data-row: data-value} of the bar list in the card with the given title id."""
    body = html(response)
    start = body.index(f'id="{section}"')
    end = body.index("</section>", start)
    return dict(re.findall(r'<li class="bars__item" data-row="([^"]*)" data-value="([^"]*)"', body[start:end]))


def test_it_requires_a_login(client):
    assert client.get(URL).url == f"/login/?next={URL}"


def test_another_orgs_admin_gets_a_404(outsider):
    assert logged_in(outsider).get(URL).status_code == 404


# --- LLM -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "manager", "member"])
@pytest.mark.parametrize("query", [WEEK, f"{WEEK}&project=Atlas", "range=24h", "range=month"])
def test_the_llm_cards_are_the_summarys_numbers(request, role, query):
    client = logged_in(request.getfixturevalue(role))
    api = client.get(f"{API}/summary?{query}").json()

    kpis = hooks(client.get(f"{URL}?{query}")).kpis

    for name in ("input_tokens", "cached_input_tokens", "output_tokens", "failed_requests", "requests"):
        assert kpis[name] == str(api[name]), name
    assert kpis["successful_requests"] == str(api["requests"] - api["failed_requests"])


def test_cached_tokens_read_as_a_part_of_input(admin):
    api = logged_in(admin).get(f"{API}/summary?{WEEK}").json()

    body = html(page(admin))

    assert api["cached_input_tokens"] == 1300  # 500 + 800
    assert f"1.3K <small>of {compact(api['input_tokens'])}</small>" in body
    assert f"{round(1300 * 100 / api['input_tokens'], 1)}% of input from the prompt cache" in body


def test_tokens_over_time_stack_cached_and_fresh_input_and_output(manager):
    client = logged_in(manager)
    api = client.get(f"{API}/summary?{WEEK}").json()

    chart = json_script(client.get(f"{URL}?{WEEK}"), "resources-tokens-data")

    totals = {d["label"]: sum(d["data"]) for d in chart["datasets"]}
    assert totals == {
        "Cached input": api["cached_input_tokens"],
        "Fresh input": api["input_tokens"] - api["cached_input_tokens"],
        "Output": api["output_tokens"],
    }
    assert chart["kind"] == "stacked-bar"


@pytest.mark.parametrize("role", ["admin", "manager", "member"])
def test_top_consumers_and_models_are_the_apis_breakdowns_by_tokens(request, role):
    client = logged_in(request.getfixturevalue(role))
    breakdown = client.get(f"{API}/cost-breakdown?{WEEK}").json()
    people = {"admin@acme.test": "Ada Admin", "manager@acme.test": "Max Manager", "member@acme.test": "Mia Member",
              "web@acme.test": "Wes Web"}  # fmt: skip

    response = client.get(f"{URL}?{WEEK}")

    by_user = {people[row["name"]]: str(row["total_tokens"]) for row in breakdown["by_user"]}
    assert bars(response, "resources-consumers") == by_user
    assert bars(response, "resources-models-title") == {
        row["name"]: str(row["total_tokens"]) for row in breakdown["by_model"]
    }


def test_top_consumers_by_agent(admin):
    consumers = bars(page(admin, f"{WEEK}&consumers=agent"), "resources-consumers")

    assert consumers == {"No agent": "49500", "Reviewer": "3300", "Coder": "3300"}


def test_a_member_sees_only_themselves_among_consumers(member):
    response = page(member)

    assert list(bars(response, "resources-consumers")) == ["Mia Member"]
    for other in ("Ada Admin", "Max Manager", "Wes Web", "web@acme.test"):
        assert other not in html(response)


# --- Compute and storage -------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "manager", "member"])
@pytest.mark.parametrize("query", [WEEK, "range=24h", "range=30d", "start=2026-11-18&end=2026-11-18"])
def test_compute_and_storage_are_the_allocations_prorated_over_the_period(request, role, query, org):
    user = request.getfixturevalue(role)
    response = page(user, query)
    kpis = hooks(response).kpis
    start, end = {
        WEEK: week_range(org),
        "range=24h": (NOW - timedelta(hours=24), NOW),
        "range=30d": (local(org, 2026, 10, 22), NOW),
        "start=2026-11-18&end=2026-11-18": (local(org, 2026, 11, 18), local(org, 2026, 11, 19)),
    }[query]

    expected = allocated_hours(scope_for_user(user, org), start, end)

    assert close(kpis["cpu_core_hours"], expected["cpu"])
    assert close(kpis["ram_gb_hours"], expected["ram"])
    assert close(kpis["storage_gb_hours"], expected["storage"])


def test_the_week_of_compute_by_hand(admin, member, org):
    # member 28 h x 2 cores; web 12 h x 1; nobody 16 h x 4; manager 10 h x 0.5; admin 1.5 h x 1
    assert hooks(page(admin)).kpis["cpu_core_hours"] == "138.5000"
    assert hooks(page(member)).kpis["cpu_core_hours"] == "56.0000"  # nobody's allocation is no member's
    assert hooks(page(member)).kpis["storage_gb_hours"] == "280.0000"


@pytest.mark.parametrize("role", ["admin", "manager", "member"])
@pytest.mark.parametrize("interval", ["5m", "1h", "6h", "day", "week"])
def test_resource_sums_per_bucket_agree_with_the_raw_allocations(request, role, interval, org):
    user = request.getfixturevalue(role)
    scope = scope_for_user(user, org)
    start, end = (NOW - timedelta(hours=30), NOW) if interval == "5m" else week_range(org)
    buckets = selectors.Buckets.of(org, start, end, interval)

    sums = selectors.resource_sums(selectors.Query(scope, start, end), buckets=buckets)

    for i, (a, b) in enumerate(zip(buckets.starts, buckets.starts[1:], strict=False)):
        expected = allocated_hours(scope, max(a, start), min(b, end))
        got = sums.get((i,), dict.fromkeys(selectors.RESOURCE_MEASURES, Decimal(0)))
        assert close(Fraction(got["cpu_core_seconds"]) / 3600, expected["cpu"]), (i, a)
        assert close(Fraction(got["storage_gb_seconds"]) / 3600, expected["storage"]), (i, a)


def test_resource_sums_are_the_same_from_rollups_and_from_raw_rows(admin, org):
    scope = scope_for_user(admin, org)
    query = selectors.Query(scope, local(org, 2026, 11, 13, 7, 30), local(org, 2026, 11, 20, 12, 30))
    raw = selectors.resource_sums(query, by=("agent", "user"))

    dirty_days_rebuild()
    assert not DirtyDay.objects.exists()
    rolled_up = selectors.resource_sums(query, by=("agent", "user"))

    assert rolled_up.keys() == raw.keys()
    for key, values in raw.items():
        for name, value in values.items():
            assert abs(rolled_up[key][name] - value) < Decimal("0.01"), (key, name)


def test_a_filter_on_a_dimension_allocations_lack_selects_none(admin):
    kpis = hooks(page(admin, f"{WEEK}&model=gpt-5")).kpis

    assert kpis["cpu_core_hours"] == "0.0000" and kpis["input_tokens"] != "0"


def test_filters_on_agents_and_users_select_allocations(admin):
    assert hooks(page(admin, f"{WEEK}&agent=Coder")).kpis["cpu_core_hours"] == "120.0000"  # 56 + 64
    assert hooks(page(admin, f"{WEEK}&user=web@acme.test")).kpis["ram_gb_hours"] == "24.0000"


def test_top_agents_rank_core_hours_with_ram_beside(admin):
    response = page(admin)

    assert bars(response, "resources-compute-agents-title") == {
        "Coder": "120.0000",  # 56 + 64
        "Reviewer": "17.0000",  # 12 + 5
        "No agent": "1.5000",
    }
    assert "240.0 GB-h RAM" in html(response)  # Coder: 4 GB x 28 h + 8 GB x 16 h
    assert list(bars(response, "resources-storage-agents-title")) == ["Coder", "Reviewer"]


def test_compute_over_time_adds_up_to_the_cards(admin):
    response = page(admin, f"{WEEK}&interval=day")
    chart = json_script(response, "resources-compute-data")

    cpu, ram = ({d["label"]: sum(Decimal(v) for v in d["data"]) for d in chart["datasets"]}[k] for k in (
        "CPU core-hours", "RAM GB-hours"))  # fmt: skip
    kpis = hooks(response).kpis
    assert abs(cpu - Decimal(kpis["cpu_core_hours"])) < Decimal("0.001")
    assert abs(ram - Decimal(kpis["ram_gb_hours"])) < Decimal("0.001")


def test_nothing_allocated_says_so(admin):
    body = html(page(admin, "start=2026-01-01&end=2026-01-31"))

    assert "No compute allocated in this period" in body and "No storage allocated in this period" in body


# --- Platform activity ---------------------------------------------------------------------------


@pytest.mark.parametrize("role, threads, messages", [("admin", 3, 10), ("manager", 2, 5), ("member", 2, 5)])
def test_threads_and_messages_count_the_events_quantities(request, role, threads, messages):
    response = page(request.getfixturevalue(role))

    kpis = hooks(response).kpis
    assert (kpis["threads_created"], kpis["messages_sent"]) == (str(threads), str(messages))
    chart = json_script(response, "resources-platform-data")
    assert [sum(d["data"]) for d in chart["datasets"]] == [threads, messages]


def test_threads_and_messages_per_five_minutes_in_a_day(admin):
    chart = json_script(page(admin, "start=2026-11-19&end=2026-11-19"), "resources-platform-data")

    assert chart["unit"] == "minute" and len(chart["labels"]) == 288
    assert [sum(d["data"]) for d in chart["datasets"]] == [1, 7]  # the 19th's: the member's thread; 5 + 2 messages


# --- Buckets -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, interval",
    [("range=24h", "5m"), (WEEK, "1h"), ("range=30d", "6h"), ("start=2026-06-01&end=2026-11-20", "day")],
)
def test_bucket_sizes_follow_the_range(admin, query, interval):
    body = html(page(admin, query))

    assert f'data-interval="{interval}" aria-current="true"' in body


def test_another_bucket_size_is_a_whole_page_link(admin):
    body = html(page(admin, f"{WEEK}&consumers=agent"))

    assert 'href="/acme/resources/?range=7d&amp;consumers=agent&amp;interval=day"' in body
    assert json_script(page(admin, f"{WEEK}&interval=day"), "resources-tokens-data")["unit"] == "day"


# --- htmx and queries ----------------------------------------------------------------------------


def test_each_section_is_a_partial_of_the_page(admin, django_assert_max_num_queries):
    client = logged_in(admin)
    for target, most in (
        ("resources-llm", 24),
        ("resources-consumers", 12),
        ("resources-compute", 14),
        ("resources-storage", 14),
        ("resources-platform", 8),
    ):
        with django_assert_max_num_queries(most):
            response = client.get(f"{URL}?{WEEK}", **htmx_to(target))
        assert f'id="{target}"' in html(response) and "<html" not in html(response)
        assert "HX-Request" in response["Vary"]


def test_the_query_count_does_not_grow_with_the_rows_shown(admin, org):
    client = logged_in(admin)
    before = count_queries(client, f"{URL}?{WEEK}")
    ingest_batch(
        org=org,
        usage=[usage(i % 50, f"dev{i}@acme.test", f"model-{i}", "0.01", request_id=f"q-{i}") for i in range(20)],
        resources=[
            allocation(
                f"q-{i}", f"dev{i}@acme.test", f"Agent {i}", "1", "1", "1", "2026-11-19T08:00", "2026-11-19T09:00"
            )
            for i in range(20)
        ],  # fmt: skip
    )

    assert count_queries(client, f"{URL}?{WEEK}") == before
