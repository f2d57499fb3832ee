"""GET /api/v1/<org>/sessions/analytics/{summary,timeseries,by-agent,cost-breakdown}, through HTTP,
against DESIGN §3 (who sees what) and §8 (parameters and the shape of the answers)."""

from datetime import datetime, timezone
from decimal import Decimal

import pytest
import time_machine
from django.test import Client
from django.utils import timezone as djtz

from accounts.models import Membership, Role
from accounts.services import api_key_create
from metering.models import UsageRecord
from metering.rollups import dirty_days_rebuild
from metering.services import ingest_batch
from tests.conftest import logged_in

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
BASE = "/api/v1/{org}/sessions/analytics/{endpoint}"
ENDPOINTS = ("summary", "timeseries", "by-agent", "cost-breakdown")

SUMMARY_FIELDS = {
    "start",
    "end",
    "requests",
    "failed_requests",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "total_tokens",
    "cost",
    "sessions",
    "avg_session_duration_seconds",
    "avg_cost_per_session",
    "unique_users",
    "agent_runs",
    "accepted_diffs",
    "tasks_completed",
    "lines_of_code",
    "unique_models",
    "active_projects",
    "total_projects",
    "conversations",
}
AGENT_FIELDS = {
    "agent",
    "sessions",
    "requests",
    "total_tokens",
    "cost",
    "avg_cost_per_session",
    "avg_duration_seconds",
}
BREAKDOWN_LISTS = ("by_model", "by_project", "by_user", "by_team", "by_service_type")
BREAKDOWN_FIELDS = {"name", "cost", "requests", "total_tokens"}


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def record(request_id, user, cost, timestamp="2026-11-19T10:00:00+01:00", **fields):
    return {
        "request_id": request_id,
        "timestamp": timestamp,
        "user": user,
        "model": "gpt-5",
        "input_tokens": 1000,
        "output_tokens": 100,
        "cost": cost,
        **fields,
    }


@pytest.fixture
def usage(org, other_org, admin, manager, member, web_member, outsider, platform_team, web_team):
    """One record per person (costs told apart by their digits), and two whose team is not their owner's:
    the member's request made while they were still in Web, and a Web member's made for Platform."""
    ingest_batch(
        org=org,
        usage=[
            record("r-admin", "admin@acme.test", "1000", agent="Codex", project="Atlas", tags=["infra", "eval"]),
            record("r-manager", "manager@acme.test", "200", agent="Codex", session_id="s-manager", tags=["infra"]),
            record("r-member", "member@acme.test", "30", agent="Claude Code", session_id="s-member", project="Atlas"),
            record("r-member-in-web", "member@acme.test", "4", team="Web", agent="Claude Code"),
            record("r-web", "web@acme.test", "0.5", agent="QA bot", service_type="embedding"),
            record("r-web-for-platform", "web@acme.test", "0.06", team="Platform", agent="QA bot", status="error"),
            record("r-external", "ext-42", "0.0000000007", project="Borealis"),  # a member known by an external id
        ],
        activity=[
            {
                "event_id": "e-1",
                "timestamp": "2026-11-19T10:30:00+01:00",
                "kind": "diff_accepted",
                "user": "member@acme.test",
                "session_id": "s-member",
                "lines_added": 10,
                "lines_removed": 2,
            },
            {"event_id": "e-2", "timestamp": "2026-11-19T11:00:00+01:00", "kind": "agent_run", "user": "web@acme.test"},
        ],
    )
    ingest_batch(org=other_org, usage=[record("r-globex", "outsider@globex.test", "7000", agent="Codex")])
    dirty_days_rebuild()
    # Sent late: its day is dirty again, and the answers must include it all the same.
    late = record("r-late", "member@acme.test", "0.008", timestamp="2026-11-19T12:00:00+01:00", agent="Claude Code")
    ingest_batch(org=org, usage=[late])


def visible(org, user=None) -> list[dict]:
    """The org's records a viewer may see, by DESIGN §3: an admin (or no user: an unbound key)
    all; a manager the records of their teams and their own; a member their own."""
    rows = list(UsageRecord.objects.filter(org=org).values("user_id", "user__email", "team_id", "cost", "agent__name"))
    if user is None:
        return rows
    membership = Membership.objects.get(org=org, user=user)
    teams = set(membership.teams.values_list("id", flat=True))
    if membership.role == Role.ADMIN:
        return rows
    if membership.role == Role.MANAGER:
        return [r for r in rows if r["user_id"] == user.pk or r["team_id"] in teams]
    return [r for r in rows if r["user_id"] == user.pk]


def total(rows) -> Decimal:
    return sum((r["cost"] for r in rows), Decimal(0))


def get(client, endpoint, org="acme", key=None, **params):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    return client.get(BASE.format(org=org, endpoint=endpoint), params, **headers)


# --- The shape of the answers --------------------------------------------------------------------


def test_the_summary_has_exactly_the_documented_fields(usage, admin):
    body = get(logged_in(admin), "summary").json()
    assert set(body) == SUMMARY_FIELDS
    assert body["requests"] == 8 and body["failed_requests"] == 1
    assert (body["input_tokens"], body["output_tokens"], body["total_tokens"]) == (8000, 800, 8800)
    assert body["cost"] == "1234.5680000007"  # a decimal string, to the last digit
    assert (body["sessions"], body["avg_cost_per_session"]) == (2, "115.00")  # (200 + 30) / 2
    assert (body["accepted_diffs"], body["lines_of_code"], body["agent_runs"]) == (1, 12, 1)
    assert (body["unique_users"], body["unique_models"], body["active_projects"], body["total_projects"]) == (
        5,
        1,
        2,
        2,
    )
    # By default the last 30 days: today and the 29 days before it in the org's zone, up to now.
    assert (body["start"], body["end"]) == ("2026-10-22T00:00:00+02:00", "2026-11-20T13:00:00+01:00")


def test_the_timeseries_has_every_bucket_and_the_documented_fields(usage, admin):
    body = get(
        logged_in(admin), "timeseries", start="2026-11-18", end="2026-11-19", metric="requests", interval="day"
    ).json()
    assert body == {
        "metric": "requests",
        "interval": "day",
        "points": [
            {"start": "2026-11-18T00:00:00+01:00", "value": 0},
            {"start": "2026-11-19T00:00:00+01:00", "value": 8},
        ],
    }


def test_the_timeseries_defaults_to_cost_and_picks_its_interval_from_the_range(usage, admin):
    body = get(logged_in(admin), "timeseries", start="2026-11-18", end="2026-11-19").json()
    assert (body["metric"], body["interval"], len(body["points"])) == ("cost", "1h", 48)
    assert body["points"][0] == {"start": "2026-11-18T00:00:00+01:00", "value": "0.00"}
    assert sum(Decimal(p["value"]) for p in body["points"]) == Decimal("1234.5680000007")


def test_by_agent_and_cost_breakdown_have_the_documented_fields_sorted_by_cost(usage, admin):
    client = logged_in(admin)
    agents = get(client, "by-agent").json()
    assert set(agents) == {"agents"}
    assert all(set(row) == AGENT_FIELDS for row in agents["agents"])
    assert [(r["agent"], r["cost"], r["sessions"]) for r in agents["agents"]] == [
        ("Codex", "1200.00", 1),
        ("Claude Code", "34.008", 1),
        ("QA bot", "0.56", 0),
        (None, "0.0000000007", 0),
    ]
    breakdown = get(client, "cost-breakdown").json()
    assert set(breakdown) == {"total", *BREAKDOWN_LISTS, "by_tag", "by_tag_note"}
    assert breakdown["total"] == "1234.5680000007"
    for name in BREAKDOWN_LISTS:
        rows = breakdown[name]
        assert all(set(row) == BREAKDOWN_FIELDS for row in rows), name
        costs = [Decimal(r["cost"]) for r in rows]
        assert costs == sorted(costs, reverse=True), name
        assert sum(costs) == Decimal(breakdown["total"]), name
    assert [r["name"] for r in breakdown["by_user"]] == [
        "admin@acme.test",
        "manager@acme.test",
        "member@acme.test",
        "web@acme.test",
        "ext-42",
    ]
    assert {r["name"]: r["cost"] for r in breakdown["by_team"]} == {
        None: "1000.0000000007",  # the admin and ext-42 are in no team
        "Platform": "230.068",  # the manager's, the member's two and the Web member's made for Platform
        "Web": "4.50",  # the member's made while in Web, and the Web member's own
    }
    assert {r["name"]: r["requests"] for r in breakdown["by_service_type"]} == {"text_generation": 7, "embedding": 1}


def test_the_by_tag_breakdown_counts_a_record_under_each_tag_and_says_it_overlaps_the_total(usage, admin, manager):
    breakdown = get(logged_in(admin), "cost-breakdown").json()
    assert all(set(row) == BREAKDOWN_FIELDS for row in breakdown["by_tag"])
    assert [(r["name"], r["cost"], r["requests"]) for r in breakdown["by_tag"]] == [
        ("infra", "1200.00", 2),  # the admin's record and the manager's
        ("eval", "1000.00", 1),  # the admin's again
    ]
    assert "more than the total" in breakdown["by_tag_note"]
    assert sum(Decimal(r["cost"]) for r in breakdown["by_tag"]) > Decimal(breakdown["total"])
    # Filtered on one tag, the record is under that tag alone; a manager sees only their teams' tags.
    only = get(logged_in(admin), "cost-breakdown", tag="eval").json()
    assert [(r["name"], r["cost"]) for r in only["by_tag"]] == [("eval", "1000.00")]
    assert only["total"] == "1000.00"
    managed = get(logged_in(manager), "cost-breakdown").json()
    assert [(r["name"], r["cost"]) for r in managed["by_tag"]] == [("infra", "200.00")]


# --- Who sees what -------------------------------------------------------------------------------


@pytest.fixture
def as_viewer(org, admin, manager, member, superuser):
    """(client, bearer key or None, the user whose visibility applies or None for the whole org)."""

    def key_for(owner):
        return api_key_create(org=org, name="reader", scopes={"read"}, owner=owner)[1]

    def make(viewer):
        return {
            "admin": lambda: (logged_in(admin), None, admin),
            "manager": lambda: (logged_in(manager), None, manager),
            "member": lambda: (logged_in(member), None, member),
            "superuser": lambda: (logged_in(superuser), None, None),
            "unbound read key": lambda: (Client(), key_for(None), None),
            "admin's read key": lambda: (Client(), key_for(admin), admin),
            "manager's read key": lambda: (Client(), key_for(manager), manager),
            "member's read key": lambda: (Client(), key_for(member), member),
        }[viewer]()

    return make


VIEWERS = [
    "admin",
    "manager",
    "member",
    "superuser",
    "unbound read key",
    "admin's read key",
    "manager's read key",
    "member's read key",
]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("viewer", VIEWERS)
def test_each_viewer_gets_exactly_what_their_scope_allows(usage, org, as_viewer, viewer, endpoint):
    client, key, user = as_viewer(viewer)
    response = get(client, endpoint, key=key, start="2026-11-01", end="2026-11-20")
    assert response.status_code == 200, response.content
    body = response.json()
    rows = visible(org, user)
    assert rows, "every viewer here sees something"
    if endpoint == "summary":
        assert (body["requests"], Decimal(body["cost"])) == (len(rows), total(rows))
    elif endpoint == "timeseries":
        assert sum(Decimal(p["value"]) for p in body["points"]) == total(rows)
    elif endpoint == "by-agent":
        assert {r["agent"] for r in body["agents"] if r["requests"]} == {r["agent__name"] for r in rows}
        assert sum(Decimal(r["cost"]) for r in body["agents"]) == total(rows)
    else:
        assert {r["name"] for r in body["by_user"]} == {r["user__email"] or "ext-42" for r in rows}
        assert Decimal(body["total"]) == total(rows)


def test_the_scopes_differ_as_designed(usage, org, admin, manager, member):
    """A guard on the fixture: the matrix above would pass vacuously if everyone saw the same."""
    assert total(visible(org, admin)) == Decimal("1234.5680000007")
    assert total(visible(org, manager)) == Decimal("230.068")  # own, and Platform's (the Web member's for it too)
    assert total(visible(org, member)) == Decimal("34.008")  # own, in either team


@pytest.fixture
def refused(org, other_org, outsider):
    def make(caller):
        if caller == "another org's user":
            return logged_in(outsider), None
        if caller == "anonymous":
            return Client(), None
        if caller == "an ingest-only key":
            return Client(), api_key_create(org=org, name="ingest", scopes={"ingest"})[1]
        if caller == "a revoked read key":
            key, secret = api_key_create(org=org, name="old", scopes={"read"})
            key.revoked_at = djtz.now()
            key.save()
            return Client(), secret
        if caller == "a read key of another org":
            return Client(), api_key_create(org=other_org, name="theirs", scopes={"read"})[1]
        if caller == "an unknown key":
            return Client(), "tly_000000000000_not-a-secret"
        raise AssertionError(caller)

    return make


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    ("caller", "status"),
    [
        ("another org's user", 404),
        ("anonymous", 401),
        ("an ingest-only key", 403),
        ("a revoked read key", 401),
        ("a read key of another org", 404),
        ("an unknown key", 401),
    ],
)
def test_callers_without_read_access_to_the_org_are_refused(usage, refused, caller, status, endpoint):
    client, key = refused(caller)
    response = get(client, endpoint, key=key)
    assert response.status_code == status, response.content
    assert response.json()["detail"]
    assert "1000" not in response.content.decode()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_an_unknown_org_is_404_even_for_a_superuser(usage, superuser, endpoint):
    assert get(logged_in(superuser), endpoint, org="nope").status_code == 404


# --- Filters and scope intersect -----------------------------------------------------------------


@pytest.mark.parametrize("someone", ["web@acme.test", "admin@acme.test", "nobody@acme.test", "ext-42"])
@pytest.mark.parametrize("viewer", ["member", "member's read key"])
def test_a_member_asking_for_someone_else_gets_zeros(usage, as_viewer, viewer, someone):
    client, key, _ = as_viewer(viewer)
    summary = get(client, "summary", key=key, user=someone).json()
    assert (summary["requests"], summary["cost"], summary["sessions"], summary["unique_users"]) == (0, "0.00", 0, 0)
    assert (summary["agent_runs"], summary["lines_of_code"]) == (0, 0)
    breakdown = get(client, "cost-breakdown", key=key, user=someone).json()
    assert breakdown["total"] == "0.00" and all(breakdown[name] == [] for name in BREAKDOWN_LISTS)
    assert get(client, "by-agent", key=key, user=someone).json() == {"agents": []}
    points = get(client, "timeseries", key=key, user=someone, interval="day").json()["points"]
    assert points and {p["value"] for p in points} == {"0.00"}


def test_a_member_asking_for_themselves_gets_their_own(usage, member):
    summary = get(logged_in(member), "summary", user="MEMBER@acme.test").json()  # emails match in any case
    assert (summary["requests"], summary["cost"]) == (3, "34.008")


def test_a_manager_filtering_on_a_team_gets_only_what_they_may_see_of_it(usage, manager):
    # Web is not the manager's team: of its records they see none (the member's one in Web included).
    web = get(logged_in(manager), "summary", team="Web").json()
    assert (web["requests"], web["cost"]) == (0, "0.00")
    platform = get(logged_in(manager), "summary", team="Platform").json()
    assert (platform["requests"], platform["cost"]) == (4, "230.068")
    # Of a team member's records, those made for the manager's team: not the one made in Web.
    member = get(logged_in(manager), "summary", user="member@acme.test").json()
    assert (member["requests"], member["cost"]) == (2, "30.008")


def test_repeated_parameters_select_any_of_their_values(usage, admin):
    client = logged_in(admin)
    both = get(client, "summary", team=["Platform", "Web"]).json()
    assert (both["requests"], both["cost"]) == (6, "234.568")
    people = get(client, "cost-breakdown", user=["web@acme.test", "ext-42"]).json()
    assert {r["name"]: r["cost"] for r in people["by_user"]} == {"web@acme.test": "0.56", "ext-42": "0.0000000007"}
    agents = get(client, "by-agent", agent=["QA bot", "Codex"], service_type=["text_generation"]).json()
    assert {r["agent"]: r["requests"] for r in agents["agents"]} == {"Codex": 2, "QA bot": 1}


def test_an_unknown_name_selects_nothing(usage, admin):
    summary = get(logged_in(admin), "summary", project="No such project").json()
    assert (summary["requests"], summary["cost"], summary["agent_runs"]) == (0, "0.00", 0)


# --- Dates and bad parameters --------------------------------------------------------------------


@pytest.fixture
def around_midnight(org, admin):
    """Records either side of the org's (Berlin's) midnights, which UTC dates would misplace."""
    ingest_batch(
        org=org,
        usage=[
            record("before", "admin@acme.test", "1", timestamp="2026-11-17T22:59:59Z"),  # 23:59:59 on the 17th
            record("first", "admin@acme.test", "20", timestamp="2026-11-17T23:00:00Z"),  # 00:00 on the 18th
            record("last", "admin@acme.test", "300", timestamp="2026-11-19T22:59:59Z"),  # 23:59:59 on the 19th
            record("after", "admin@acme.test", "4000", timestamp="2026-11-19T23:00:00Z"),  # 00:00 on the 20th
        ],
    )


def test_dates_are_days_in_the_orgs_zone_and_the_end_date_is_included(around_midnight, admin):
    body = get(logged_in(admin), "summary", start="2026-11-18", end="2026-11-19").json()
    assert (body["start"], body["end"]) == ("2026-11-18T00:00:00+01:00", "2026-11-20T00:00:00+01:00")
    assert (body["requests"], body["cost"]) == (2, "320.00")


def test_rfc3339_times_with_any_offset_are_instants(around_midnight, admin):
    body = get(logged_in(admin), "summary", start="2026-11-17T23:00:00Z", end="2026-11-20T00:00:00+01:00").json()
    assert (body["start"], body["end"]) == ("2026-11-18T00:00:00+01:00", "2026-11-20T00:00:00+01:00")
    assert (body["requests"], body["cost"]) == (2, "320.00")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "yesterday"}, "start: Give an RFC 3339 time"),
        ({"end": "2026-13-01"}, "end: Give an RFC 3339 time"),
        ({"start": "2026-11-01T09:00:00"}, "has no offset"),
        ({"start": "2026-11-19", "end": "2026-11-18"}, "'start' must be before 'end'"),
        ({"start": "2026-11-19T12:00:00Z", "end": "2026-11-19T12:00:00Z"}, "'start' must be before 'end'"),
        ({"service_type": "telepathy"}, "Unknown service type telepathy"),
    ],
)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_bad_parameters_are_400_with_a_message_that_names_the_problem(usage, admin, endpoint, params, message):
    response = get(logged_in(admin), endpoint, **params)
    assert response.status_code == 400, response.content
    assert message in response.json()["detail"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "2025-11-20", "end": "2026-11-19", "interval": "5m"}, "more than 5000 points"),
        ({"interval": "2h"}, "interval: Select a valid choice"),
        ({"metric": "vibes"}, "metric: Select a valid choice"),
    ],
)
def test_a_bad_metric_or_interval_is_400(usage, admin, params, message):
    response = get(logged_in(admin), "timeseries", **params)
    assert response.status_code == 400, response.content
    assert message in response.json()["detail"]
