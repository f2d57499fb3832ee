"""`manage.py seed_demo`: a believable, deterministic demo org, fast enough for `make run`."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db.models import Count, Max, Min, Q, Sum

from accounts.models import Membership, Organization, Role, Team, User
from metering.models import (
    ActivityEvent,
    ActivityKind,
    Agent,
    LLMModel,
    ModelPrice,
    Project,
    Repository,
    ResourceUsage,
    Session,
    Status,
    UsageRecord,
)
from tests.conftest import make_user

# A Wednesday afternoon in Berlin (15:30 local): "today" is half over.
NOW = datetime(2026, 11, 18, 14, 30, tzinfo=timezone.utc)
SMALL = {"days": 7, "users": 12}


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def seed(**options) -> str:
    out = StringIO()
    call_command("seed_demo", **{**SMALL, **options}, stdout=out, stderr=StringIO())
    return out.getvalue()


def demo_org() -> Organization:
    return Organization.objects.get(slug="demo")


def snapshot() -> dict[str, list[tuple]]:
    """The demo's rows by natural key: primary keys differ between runs, these must not."""
    org = demo_org()
    return {
        "records": list(
            UsageRecord.objects.filter(org=org)
            .order_by("request_id")
            .values_list(
                "request_id",
                "timestamp",
                "user__email",
                "team__name",
                "project__name",
                "repository__name",
                "agent__name",
                "session__session_id",
                "model__name",
                "service_type",
                "status",
                "input_tokens",
                "cached_input_tokens",
                "cache_write_tokens",
                "output_tokens",
                "reasoning_tokens",
                "cost",
                "api_key__name",
                "conversation_id",
            )
        ),
        "record tags": sorted(
            UsageRecord.objects.filter(org=org).exclude(tags=None).values_list("request_id", "tags__name")
        ),
        "events": list(
            ActivityEvent.objects.filter(org=org)
            .order_by("event_id")
            .values_list(
                "event_id",
                "timestamp",
                "kind",
                "user__email",
                "session__session_id",
                "lines_added",
                "lines_removed",
            )
        ),
        "sessions": list(
            Session.objects.filter(org=org)
            .order_by("session_id")
            .values_list(
                "session_id",
                "user__email",
                "agent__name",
                "project__name",
                "first_seen",
                "last_seen",
            )
        ),
        "resources": list(
            ResourceUsage.objects.filter(org=org)
            .order_by("resource_id")
            .values_list(
                "resource_id",
                "start",
                "end",
                "user__email",
                "agent__name",
                "cpu_cores",
                "ram_gb",
                "storage_gb",
            )
        ),
        "people": sorted(
            Membership.objects.filter(org=org).values_list(
                "user__email",
                "user__name",
                "role",
                "external_id",
                "teams__name",
            )
        ),
    }


def test_the_same_seed_on_the_same_day_gives_the_same_data(db, frozen):
    seed(seed=7)
    first = snapshot()
    seed(seed=7)
    assert snapshot() == first
    assert len(first["records"]) > 1000


def test_another_seed_gives_other_data(db, frozen):
    seed(seed=1)
    first = snapshot()
    seed(seed=2)
    second = snapshot()
    assert second["records"] != first["records"]
    assert second["people"] != first["people"]


def test_it_creates_the_three_logins_with_working_passwords_and_prints_them(db, frozen, client):
    out = seed()

    for email, password in (
        ("admin@example.com", "admin"),
        ("manager@example.com", "manager"),
        ("member@example.com", "member"),
    ):
        assert f"{email}" in out and f"password {password}" in out
        signed_in = client.post("/login/", {"username": email, "password": password})
        assert signed_in.status_code == 302, email
        client.post("/logout/")
    assert "admin: sees the whole org" in out and "member: sees their own usage" in out
    assert "usage records" in out


def test_the_logins_have_their_roles_and_the_member_is_in_one_of_the_managers_teams(db, frozen):
    seed()
    org = demo_org()
    admin, manager, member = (
        Membership.objects.get(org=org, user__email=f"{role}@example.com") for role in ("admin", "manager", "member")
    )
    assert (admin.role, manager.role, member.role) == (Role.ADMIN, Role.MANAGER, Role.MEMBER)
    assert admin.user.is_staff and not admin.user.is_superuser
    assert not manager.user.is_staff and not member.user.is_staff
    assert manager.teams.count() == 2
    assert member.teams.count() == 1
    assert member.teams.get() in manager.teams.all()


def test_the_other_people_appear_in_the_data_but_cannot_log_in(db, frozen):
    seed()
    others = User.objects.filter(memberships__org=demo_org()).exclude(email__endswith="@example.com")
    assert others.count() == SMALL["users"] - 3
    assert all(u.email.endswith("@demo.example") and u.name and not u.has_usable_password() for u in others)
    assert set(UsageRecord.objects.filter(org=demo_org()).values_list("user__email", flat=True)) > {
        "member@example.com",
        "manager@example.com",
    }


def test_every_record_costs_its_tokens_at_the_price_in_force_at_its_time(db, frozen):
    seed()
    prices = {}
    for price in ModelPrice.objects.order_by("effective_from"):
        prices.setdefault(price.model_id, []).append(price)
    records = UsageRecord.objects.filter(org=demo_org())
    assert records.exists()
    for record in records:
        in_force = [p for p in prices[record.model_id] if p.effective_from <= record.timestamp.date()][-1]
        assert record.price_id == in_force.pk
        assert record.cost_source == "priced"
        fresh = record.input_tokens - record.cached_input_tokens - record.cache_write_tokens
        expected = (
            fresh * in_force.input
            + record.cached_input_tokens * in_force.cached_input
            + record.cache_write_tokens * in_force.cache_write
            + record.output_tokens * in_force.output
        ) / Decimal(1_000_000)
        assert record.cost == expected.quantize(Decimal("0.0000000001")), record.request_id


def test_the_tokens_keep_the_convention_and_prompt_caching_shows(db, frozen):
    seed()
    records = UsageRecord.objects.filter(org=demo_org())
    # Anthropic bills cache writes; OpenAI and Google cache implicitly, with no writes.
    assert records.filter(provider="anthropic", cache_write_tokens__gt=0).exists()
    assert not records.filter(provider__in=["openai", "google"], cache_write_tokens__gt=0).exists()
    totals = records.aggregate(
        input=Sum("input_tokens"),
        cached=Sum("cached_input_tokens"),
        written=Sum("cache_write_tokens"),
        output=Sum("output_tokens"),
        reasoning=Sum("reasoning_tokens"),
    )
    assert 0.5 < totals["cached"] / totals["input"] < 0.95
    assert totals["written"] > 0 and 0 < totals["reasoning"] < totals["output"]


def test_about_two_percent_of_requests_fail(db, frozen):
    seed()
    counts = UsageRecord.objects.filter(org=demo_org()).aggregate(
        all=Count("id"),
        failed=Count("id", filter=Q(status=Status.ERROR)),
    )
    assert 0.01 <= counts["failed"] / counts["all"] <= 0.03


def test_nothing_is_in_the_future_and_the_last_day_is_today(db, frozen):
    seed()
    org = demo_org()
    records = UsageRecord.objects.filter(org=org)
    assert records.aggregate(last=Max("timestamp"))["last"] <= NOW
    assert ActivityEvent.objects.filter(org=org).aggregate(last=Max("timestamp"))["last"] <= NOW
    assert Session.objects.filter(org=org).aggregate(last=Max("last_seen"))["last"] <= NOW
    assert ResourceUsage.objects.filter(org=org).aggregate(last=Max("end"))["last"] <= NOW
    today = NOW.astimezone(org.tzinfo).date()
    local_days = {ts.astimezone(org.tzinfo).date() for ts in records.values_list("timestamp", flat=True)}
    assert max(local_days) == today
    assert min(local_days) == today - timedelta(days=SMALL["days"] - 1)


def test_sessions_span_their_records_and_events(db, frozen):
    seed()
    org = demo_org()
    sessions = Session.objects.filter(org=org)
    assert sessions.exists()
    spans = {}
    for model in (UsageRecord, ActivityEvent):
        for row in (
            model.objects.filter(org=org, session__isnull=False)
            .values("session_id")
            .annotate(
                first=Min("timestamp"),
                last=Max("timestamp"),
            )
        ):
            first, last = spans.get(row["session_id"], (row["first"], row["last"]))
            spans[row["session_id"]] = (min(first, row["first"]), max(last, row["last"]))
    for session in sessions:
        assert spans[session.pk] == (session.first_seen, session.last_seen), session.session_id
    starts = ActivityEvent.objects.filter(org=org, kind=ActivityKind.SESSION_START)
    assert starts.count() == sessions.count()
    assert ActivityEvent.objects.filter(org=org, kind=ActivityKind.AGENT_RUN, session__isnull=False).exists()


def test_records_carry_the_users_team_and_their_projects_repository(db, frozen):
    seed()
    org = demo_org()
    team_of = {m.user_id: set(m.teams.values_list("pk", flat=True)) for m in Membership.objects.filter(org=org)}
    for user_id, team_id, project_id, repo_project_id in UsageRecord.objects.filter(org=org).values_list(
        "user_id",
        "team_id",
        "project_id",
        "repository__project_id",
    ):
        assert team_id in team_of[user_id]
        assert repo_project_id in (None, project_id)


def test_rebuilding_replaces_the_demo_org_and_its_people_but_not_other_orgs(db, frozen, org, admin):
    seed()
    first_org_id = demo_org().pk
    out = seed()
    assert "Deleted the existing demo org" in out
    assert Organization.objects.filter(slug="demo").get().pk != first_org_id
    assert Organization.objects.filter(pk=org.pk).exists() and User.objects.filter(pk=admin.pk).exists()
    assert User.objects.filter(memberships__isnull=True).count() == 0
    assert User.objects.count() == SMALL["users"] + 1


def test_prices_change_in_the_demo_only_where_no_other_org_would_be_repriced(db, frozen, org):
    from metering.models import ModelPrice

    before = set(ModelPrice.objects.values_list("model__name", "effective_from"))
    seed()
    assert set(ModelPrice.objects.values_list("model__name", "effective_from")) == before


def test_alone_the_demo_shows_a_price_change_in_its_period(db, frozen):
    from metering.models import ModelPrice

    seed()
    changes = ModelPrice.objects.filter(model__name="gemini-2.5-pro", effective_from__gt="2025-01-01")
    assert changes.count() == 1


def test_if_empty_leaves_a_database_that_has_an_org_alone(db, frozen, org):
    out = seed(if_empty=True)
    assert not Organization.objects.filter(slug="demo").exists()
    assert "not loaded" in out


def test_if_empty_keeps_a_loaded_demo_and_prints_its_logins(db, frozen):
    seed()
    records = UsageRecord.objects.count()
    out = seed(if_empty=True, seed=2)
    assert UsageRecord.objects.count() == records
    assert "already loaded" in out and "member@example.com" in out


def test_it_will_not_take_over_a_login_that_belongs_to_another_org(db, frozen, org):
    make_user("admin@example.com", org, Role.ADMIN)
    with pytest.raises(CommandError, match="admin@example.com"):
        seed()
    assert not Organization.objects.filter(slug="demo").exists()


def test_the_default_demo_has_the_promised_volume_and_rhythm(db, frozen):
    seed(days=90, users=60)
    org = demo_org()
    records = UsageRecord.objects.filter(org=org)
    assert records.count() >= 200_000
    assert Membership.objects.filter(org=org).count() == 60
    assert Team.objects.filter(org=org).count() == 6
    assert len(set(Team.objects.filter(org=org).values_list("colour", flat=True))) == 6
    assert Project.objects.filter(org=org).count() == 8
    assert len(set(Project.objects.filter(org=org).values_list("colour", flat=True))) == 8
    assert not Project.objects.filter(org=org, repositories=None).exists()
    assert Repository.objects.filter(org=org).count() >= 8
    assert Agent.objects.filter(org=org).count() == 6
    assert records.values("model").distinct().count() == 6
    assert LLMModel.objects.filter(name__in=["claude-sonnet-4-5", "gpt-5", "text-embedding-3-small"]).count() == 3
    assert Membership.objects.filter(org=org).exclude(external_id="").exists()

    tz = org.tzinfo
    by_hour, by_weekday, by_day = [0] * 24, [0] * 7, {}
    for ts in records.values_list("timestamp", flat=True).iterator(chunk_size=20_000):
        local = ts.astimezone(tz)
        by_hour[local.hour] += 1
        by_weekday[local.weekday()] += 1
        by_day[local.date()] = by_day.get(local.date(), 0) + 1
    assert len(by_day) == 90
    assert sum(by_hour[9:18]) / sum(by_hour) > 0.7  # office hours
    assert min(by_weekday[:5]) > 3 * max(by_weekday[5:])  # weekdays, not weekends
    weekdays = sorted(n for day, n in by_day.items() if day.weekday() < 5)
    assert weekdays[-1] > 2 * weekdays[len(weekdays) // 2]  # the refactor spike

    per_user = sorted(records.values("user").annotate(n=Count("id")).values_list("n", flat=True))
    assert per_user[-1] > 3 * per_user[len(per_user) // 2]  # a few heavy users
    assert ActivityEvent.objects.filter(org=org).count() > 50_000
    assert ResourceUsage.objects.filter(org=org).exists()


def test_the_demo_comes_with_its_rollups_built(db, frozen):
    from metering.models import DirtyDay, UsageDaily, UsageRecord

    seed()

    def totals(table, count):
        got = table.objects.aggregate(n=count, cost=Sum("cost"))
        # SQLite sums decimals as floats (PostgreSQL exactly): compare to a millionth of a dollar.
        return got["n"], got["cost"].quantize(Decimal("0.000001"))

    raw = totals(UsageRecord, Count("id"))
    assert totals(UsageDaily, Sum("requests")) == raw
    assert not DirtyDay.objects.exists()
