"""The query layer (metering.selectors) agrees with a brute-force count over the raw rows.

Hypothesis builds an org in a zone with daylight saving time (or a half-hour offset), its
people, and records and events clustered around the days the zone's clocks change; rolls
up some days, sends some data late so that rolled-up days are dirty again; then asks
random ranges (whole days and partial edges), filters and scopes. The expected answers
are computed here in plain Python over the rows loaded with .values() and bucketed with
zoneinfo, never with the selectors' helpers. DESIGN sections 3, 6 and 8 say what counts.
"""

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection, transaction
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from accounts.access import scope_for_membership
from accounts.models import ApiKey, Membership, Organization, Role, Tag, Team
from accounts.services import api_key_create
from metering import selectors
from metering.models import (
    ActivityEvent,
    ActivityEventTag,
    Agent,
    DirtyDay,
    LLMModel,
    Project,
    Repository,
    ServiceType,
    UsageRecord,
    UsageRecordTag,
)
from metering.pricing import quantize_money
from metering.rollups import dirty_days_rebuild, rollup_day_rebuild, rollups_rebuild_days
from metering.services import ingest_batch
from tests.conftest import make_user

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

# Zones and days their clocks change in 2026; Kolkata (+05:30) and UTC never change.
ZONES = {
    "Europe/Berlin": (date(2026, 3, 29), date(2026, 10, 25)),
    "America/New_York": (date(2026, 3, 8), date(2026, 11, 1)),
    "Australia/Lord_Howe": (date(2026, 4, 5), date(2026, 10, 4)),  # a 30-minute shift
    "Asia/Kolkata": (date(2026, 6, 15),),
    "UTC": (date(2026, 10, 25),),
}

# handle, role, teams (indices into TEAMS). Ingestion adds "ext-7", a member named by an external id.
PEOPLE = (
    ("ada", Role.ADMIN, ()),
    ("max", Role.MANAGER, (0, 1)),
    ("mia", Role.MEMBER, (0,)),
    ("dan", Role.MEMBER, (2,)),
    ("sol", Role.MEMBER, ()),
)
USERS = tuple(f"{handle}@prop.test" for handle, _, _ in PEOPLE) + ("ext-7",)
TEAMS = ("Platform", "Web", "Data", "Ops")  # Ops has no members: ingestion creates it on first sight
PROJECTS = ("Atlas", "Borealis", "Cygnus")
REPOSITORIES = ("atlas-api", "atlas-web", "tools")
AGENTS = ("Claude Code", "Codex", "QA bot")
MODELS = ("claude-sonnet-4-5", "gpt-5", "gpt-5-mini", "prop-unpriced-model")  # the last has no price
TAGS = ("prod", "ci", "eval", "batch")
KINDS = ("agent_run", "diff_accepted", "task_completed", "diff_rejected", "session_start", "commit", "lines_changed")
INTERVALS = ("5m", "1h", "6h", "day", "week")
METRICS = ("cost", "tokens", "requests", "sessions")
DIMENSIONS = ("team", "user", "project", "repository", "agent", "model", "api_key", "tag", "service_type")
EVENT_DIMENSIONS = {"team", "user", "project", "repository", "agent", "tag"}  # no model, api_key, service_type

PROPERTY_SETTINGS = settings(
    deadline=None,
    # A failing example takes minutes to shrink here (each one builds an org and rolls it up);
    # the failure notes say what the data and the question were instead.
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


@pytest.fixture(autouse=True)
def frozen():
    # Ingestion refuses items over 400 days old or in the future: the data is of 2026.
    with time_machine.travel(NOW, tick=False):
        yield


# --- Time, in plain zoneinfo -----------------------------------------------------------------------


def midnight(tz, day: date) -> datetime:
    """The instant local `day` starts, in UTC."""
    return datetime.combine(day, time(), tz).astimezone(UTC)


def clock_change(tz, day: date) -> datetime | None:
    """The instant the zone's offset changes on local `day` (changes fall on 15-minute marks)."""
    t, end = midnight(tz, day), midnight(tz, day + timedelta(days=1))
    while t < end:
        nxt = t + timedelta(minutes=15)
        if t.astimezone(tz).utcoffset() != nxt.astimezone(tz).utcoffset():
            return nxt
        t = nxt
    return None


def expected_starts(tz, start: datetime, end: datetime, interval: str) -> list[datetime]:
    """Bucket starts covering [start, end) plus the end of the last, in UTC: the last boundary at
    or before start, every boundary inside the range, and the first one at or after end.

    Days, weeks (from Monday) and 6-hour buckets begin at local 0:00 (0, 6, 12, 18 h); 5-minute
    and hourly ones step real time from the latest instant at or before start whose local clock
    reads a whole 5 minutes / a whole hour."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if interval in ("5m", "1h"):
        minutes = 5 if interval == "5m" else 60
        first = start.replace(second=0, microsecond=0)
        while first.astimezone(tz).minute % minutes:
            first -= timedelta(minutes=1)
        candidates = []
        t = first
        while not candidates or candidates[-1] < end:
            candidates.append(t)
            t += timedelta(minutes=minutes)
    else:
        day = start.astimezone(tz).date() - timedelta(days=8)
        candidates = []
        while not candidates or candidates[-1] < end:
            if interval != "week" or day.weekday() == 0:
                for hour in (0, 6, 12, 18) if interval == "6h" else (0,):
                    candidates.append(datetime.combine(day, time(hour), tz).astimezone(UTC))
            day += timedelta(days=1)
    first_index = max(i for i, c in enumerate(candidates) if c <= start)
    last_index = min(i for i, c in enumerate(candidates) if c >= end)
    return candidates[first_index : last_index + 1]


# --- Money ------------------------------------------------------------------------------------------


def exact() -> bool:
    """PostgreSQL sums numerics exactly; SQLite sums costs as floats (differences below 1e-9)."""
    return connection.vendor == "postgresql"


def money(value: Decimal) -> Decimal:
    """An answer's money: a Decimal quantised to the money quantum (the API writes it out)."""
    assert isinstance(value, Decimal) and value == quantize_money(value), f"{value!r} is not quantised money"
    return value


def assert_money(got: Decimal, expected, what: str, slack: Decimal = Decimal(0)) -> None:
    value = money(got)
    tolerance = slack if exact() else slack + Decimal("1e-9")
    assert abs(value - Decimal(expected)) <= tolerance, f"{what}: got {got}, expected {expected}"


def ratio(numerator, denominator) -> Fraction:
    return Fraction(numerator) / denominator if denominator else Fraction(0)


# --- Generated data -------------------------------------------------------------------------------


@st.composite
def moments(draw, tz, anchor: date) -> datetime:
    """Instants over the three local days around `anchor`, crowded at its clock change,
    local midnights and quarter days, and a second or a microsecond either side of them."""
    first, last = midnight(tz, anchor - timedelta(days=1)), midnight(tz, anchor + timedelta(days=2))
    change = clock_change(tz, anchor) or midnight(tz, anchor) + timedelta(hours=12)
    edges = [midnight(tz, anchor + timedelta(days=k)) for k in (-1, 0, 1, 2)] + [change]
    edges += [datetime.combine(anchor, time(h), tz).astimezone(UTC) for h in (6, 12, 18)]
    nudges = [timedelta(0), timedelta(seconds=-1), timedelta(microseconds=-1), timedelta(seconds=1)]
    nudges += [timedelta(minutes=-30), timedelta(minutes=30), timedelta(minutes=-5), timedelta(minutes=59)]
    return draw(
        st.one_of(
            st.integers(0, int((last - first).total_seconds()) - 1).map(lambda s: first + timedelta(seconds=s)),
            st.integers(-3 * 3600, 3 * 3600).map(lambda s: change + timedelta(seconds=s)),
            st.builds(lambda e, n: e + n, st.sampled_from(edges), st.sampled_from(nudges)),
        )
    )


def maybe(strategy):
    return st.one_of(st.none(), strategy)


@st.composite
def usage_items(draw, when, sessions, late_rate):
    session = draw(maybe(st.integers(0, len(sessions) - 1)))
    if session is None:  # a session belongs to one person and one agent; other records vary freely
        user, agent = draw(st.integers(0, len(USERS) - 1)), draw(maybe(st.sampled_from(AGENTS)))
    else:
        user, agent = sessions[session]
    input_tokens = draw(st.integers(0, 2_000_000))
    return {
        "late": draw(st.integers(0, 9)) < late_rate,  # sent after the first rollup: its day is dirty again
        "key": draw(maybe(st.integers(0, 1))),
        "timestamp": draw(when),
        "user": user,
        "agent": agent,
        "session": session,
        "team": draw(maybe(st.integers(0, len(TEAMS) - 1))),
        "project": draw(maybe(st.sampled_from(PROJECTS))),
        "repository": draw(maybe(st.sampled_from(REPOSITORIES))),
        "model": draw(st.sampled_from(MODELS)),
        "service_type": draw(st.sampled_from(ServiceType.values)),
        "status": draw(st.sampled_from(["success", "success", "error"])),
        # The requests a record stands for: mostly one, as the JSON API's default; an OTLP
        # metric point joins several, or none (DESIGN §12.8).
        "request_count": draw(st.sampled_from([1, 1, 1, 0, 2, 7])),
        "input_tokens": input_tokens,
        "cached_input_tokens": draw(st.integers(0, input_tokens)),
        "output_tokens": draw(st.integers(0, 200_000)),
        # Up to 10 decimal places, as the money columns hold; None: priced from the price table.
        "cost": draw(maybe(st.integers(0, 10**12).map(lambda n: Decimal(n).scaleb(-10)))),
        "tags": draw(st.lists(st.sampled_from(TAGS), unique=True, max_size=3)),
        "conversation": draw(maybe(st.sampled_from(["c-1", "c-2", "c-3"]))),
    }


@st.composite
def activity_items(draw, when, sessions, late_rate):
    session = draw(maybe(st.integers(0, len(sessions) - 1)))
    if session is None:
        user, agent = draw(st.integers(0, len(USERS) - 1)), draw(maybe(st.sampled_from(AGENTS)))
    else:
        user, agent = sessions[session]
    kind = draw(st.sampled_from(KINDS))
    return {
        "late": draw(st.integers(0, 9)) < late_rate,  # sent after the first rollup: its day is dirty again
        "timestamp": draw(when),
        "kind": kind,
        "user": user,
        "agent": agent,
        "session": session,
        "team": draw(maybe(st.integers(0, len(TEAMS) - 1))),
        "project": draw(maybe(st.sampled_from(PROJECTS))),
        "repository": draw(maybe(st.sampled_from(REPOSITORIES))),
        "quantity": 0 if kind == "lines_changed" else draw(st.integers(0, 5)),  # lines only
        "lines_added": draw(st.integers(0, 500)),
        "lines_removed": draw(st.integers(0, 500)),
        "tags": draw(st.lists(st.sampled_from(TAGS), unique=True, max_size=3)),
    }


@dataclass
class Dataset:
    zone: str
    anchor: date
    sessions: list
    records: list
    events: list
    first_rebuild: object  # "all" (the beat task) or a set of days
    second_rebuild: set  # days rebuilt (and cleared) after the late data
    stale_rebuild: set  # days rebuilt after the late data without clearing their marks


@st.composite
def datasets(draw, max_records=25, max_events=12):
    zone = draw(st.sampled_from(sorted(ZONES)))
    tz = ZoneInfo(zone)
    anchor = draw(st.sampled_from(ZONES[zone]))
    when = moments(tz, anchor)
    person = st.integers(0, len(USERS) - 1)
    sessions = draw(st.lists(st.tuples(person, maybe(st.sampled_from(AGENTS))), min_size=1, max_size=4))
    days = [anchor + timedelta(days=k) for k in (-2, -1, 0, 1, 2)]
    late_rate = draw(st.sampled_from([0, 1, 5]))  # in 10 items: a day with any late item is dirty again
    return Dataset(
        zone=zone,
        anchor=anchor,
        sessions=sessions,
        records=draw(st.lists(usage_items(when, sessions, late_rate), max_size=max_records)),
        events=draw(st.lists(activity_items(when, sessions, late_rate), max_size=max_events)),
        first_rebuild=draw(
            st.sampled_from(["all", "all", "some"]).flatmap(
                lambda how: st.just(how) if how == "all" else st.sets(st.sampled_from(days))
            )
        ),
        second_rebuild=draw(st.sets(st.sampled_from(days), max_size=3)),
        stale_rebuild=draw(st.sets(st.sampled_from(days), max_size=2)),
    )


def wire_usage(n: int, item: dict, tz) -> dict:
    body = {
        "request_id": f"r-{n}",
        "timestamp": item["timestamp"].astimezone(tz).isoformat(),
        "user": USERS[item["user"]],
        "model": item["model"],
        "service_type": item["service_type"],
        "status": item["status"],
        "input_tokens": item["input_tokens"],
        "cached_input_tokens": item["cached_input_tokens"],
        "output_tokens": item["output_tokens"],
        "tags": item["tags"],
    }
    if item["cost"] is not None:
        body["cost"] = f"{item['cost']:f}"
    if item["conversation"]:
        body["conversation_id"] = item["conversation"]
    if item["request_count"] != 1:  # else the default
        body["request_count"] = item["request_count"]
    return {**body, **_attribution(item)}


def wire_activity(n: int, item: dict, tz) -> dict:
    body = {
        "event_id": f"e-{n}",
        "timestamp": item["timestamp"].astimezone(tz).isoformat(),
        "kind": item["kind"],
        "user": USERS[item["user"]],
        "quantity": item["quantity"],
        "lines_added": item["lines_added"],
        "lines_removed": item["lines_removed"],
        "tags": item["tags"],
    }
    return {**body, **_attribution(item)}


def _attribution(item: dict) -> dict:
    optional = {
        "team": TEAMS[item["team"]] if item["team"] is not None else None,
        "project": item["project"],
        "repository": item["repository"],
        "agent": item["agent"],
        "session_id": f"s-{item['session']}" if item["session"] is not None else None,
    }
    return {k: v for k, v in optional.items() if v is not None}


# --- The world as stored, and the brute force over it ---------------------------------------------


@dataclass(repr=False)  # (its rows are rolled back by the time a failure is reported)
class World:
    org: Organization
    tz: ZoneInfo
    anchor: date
    memberships: dict  # handle -> Membership
    records: list[dict]
    events: list[dict]
    names: dict  # dimension -> {id: display name}
    options: dict  # dimension -> the values a filter may pick from
    session_span: dict = field(default_factory=dict)  # session id -> (first, last) over all its rows
    session_agent: dict = field(default_factory=dict)


def build(ds: Dataset) -> World:
    org = Organization.objects.create(name="Prop", slug="prop", timezone=ds.zone)
    tz = org.tzinfo
    teams = [Team.objects.create(org=org, name=name) for name in TEAMS[:3]]
    for (_, role, team_indices), email in zip(PEOPLE, USERS, strict=False):
        make_user(email, org, role, [teams[i] for i in team_indices])
    keys = [api_key_create(org=org, name=f"key-{i}", scopes={"ingest", "read"})[0] for i in range(2)]
    for late in (False, True):
        batches = defaultdict(lambda: {"usage": [], "activity": []})
        for n, item in enumerate(ds.records):
            if item["late"] == late:
                batches[item["key"]]["usage"].append(wire_usage(n, item, tz))
        for n, item in enumerate(ds.events):
            if item["late"] == late:
                batches[None]["activity"].append(wire_activity(n, item, tz))
        for key, items in batches.items():
            result = ingest_batch(org=org, api_key=keys[key] if key is not None else None, **items)
            assert (result.rejected, result.accepted) == ([], len(items["usage"]) + len(items["activity"]))
        if not late and ds.first_rebuild == "all":
            dirty_days_rebuild()
        elif not late:
            rollups_rebuild_days(org=org, days=ds.first_rebuild)
    # After the late data: some days rebuilt and clean, some rebuilt but still marked, the rest
    # marked dirty again over rollups that miss the late rows.
    rollups_rebuild_days(org=org, days=ds.second_rebuild)
    for day in ds.stale_rebuild:
        rollup_day_rebuild(org=org, day=day)
    return load(org, ds.anchor)


def load(org: Organization, anchor: date) -> World:
    common = ("id", "timestamp", "user_id", "team_id", "project_id", "repository_id", "agent_id", "session_id")
    records = list(
        UsageRecord.objects.filter(org=org).values(
            *common,
            "model_id",
            "api_key_id",
            "service_type",
            "status",
            "request_count",
            "input_tokens",
            "cached_input_tokens",
            "output_tokens",
            "cost",
            "conversation_id",
        )
    )
    events = list(
        ActivityEvent.objects.filter(org=org).values(*common, "kind", "quantity", "lines_added", "lines_removed")
    )
    for rows, links, owner in (
        (records, UsageRecordTag.objects.filter(record__org=org), "record_id"),
        (events, ActivityEventTag.objects.filter(event__org=org), "event_id"),
    ):
        tags = defaultdict(set)
        for row_id, tag_id in links.values_list(owner, "tag_id"):
            tags[row_id].add(tag_id)
        for row in rows:
            row["tags"] = frozenset(tags[row["id"]])
            row["timestamp"] = row["timestamp"].astimezone(UTC)
    members = Membership.objects.filter(org=org).select_related("user")
    names = {
        "user": {m.user_id: m.user.email or m.external_id for m in members},
        "team": dict(Team.objects.filter(org=org).values_list("id", "name")),
        "project": dict(Project.objects.filter(org=org).values_list("id", "name")),
        "agent": dict(Agent.objects.filter(org=org).values_list("id", "name")),
        "model": dict(LLMModel.objects.filter(name__in=MODELS).values_list("id", "name")),
        "tag": dict(Tag.objects.filter(org=org).values_list("id", "name")),
    }
    options = {
        **{dimension: sorted(ids) for dimension, ids in names.items()},
        "repository": sorted(Repository.objects.filter(org=org).values_list("id", flat=True)),
        "api_key": sorted(ApiKey.objects.filter(org=org).values_list("id", flat=True)),
        "service_type": list(ServiceType.values),
    }
    world = World(
        org=org,
        tz=org.tzinfo,
        anchor=anchor,
        memberships={m.user.email.split("@")[0]: m for m in members if m.user.email},
        records=records,
        events=events,
        names=names,
        options=options,
    )
    for row in records + events:
        sid = row["session_id"]
        if sid is not None:
            first, last = world.session_span.get(sid, (row["timestamp"], row["timestamp"]))
            world.session_span[sid] = (min(first, row["timestamp"]), max(last, row["timestamp"]))
            assert world.session_agent.setdefault(sid, row["agent_id"]) == row["agent_id"]
    return world


@dataclass
class Asked:
    """A question as the brute force sees it: scope, range and filters by dimension."""

    role: str
    user_id: int | None
    team_ids: frozenset
    start: datetime
    end: datetime
    filters: dict  # dimension -> set of values


def visible(asked: Asked, row: dict) -> bool:
    if asked.role == Role.ADMIN:
        return True
    if asked.role == Role.MANAGER:
        return row["user_id"] == asked.user_id or row["team_id"] in asked.team_ids
    return row["user_id"] == asked.user_id


def selects(asked: Asked, row: dict, event: bool) -> bool:
    if not (asked.start <= row["timestamp"] < asked.end) or not visible(asked, row):
        return False
    for dimension, values in asked.filters.items():
        if event and dimension not in EVENT_DIMENSIONS:
            return False  # events carry no model, API key or service type
        if dimension == "tag":
            if not row["tags"] & values:
                return False
        elif dimension == "service_type":
            if row["service_type"] not in values:
                return False
        elif row[f"{dimension}_id"] not in values:
            return False
    return True


def chosen(world: World, asked: Asked) -> tuple[list[dict], list[dict]]:
    return (
        [r for r in world.records if selects(asked, r, event=False)],
        [e for e in world.events if selects(asked, e, event=True)],
    )


def seconds(span) -> Fraction:
    first, last = span
    return Fraction((last - first) // timedelta(microseconds=1), 10**6)


def expected_summary(world: World, asked: Asked) -> dict:
    records, events = chosen(world, asked)
    sessions = {row["session_id"] for row in records + events if row["session_id"] is not None}
    quantity = defaultdict(int)
    for e in events:
        quantity[e["kind"]] += e["quantity"]
    return {
        "requests": sum(r["request_count"] for r in records),
        "failed_requests": sum(r["request_count"] for r in records if r["status"] == "error"),
        "input_tokens": sum(r["input_tokens"] for r in records),
        "cached_input_tokens": sum(r["cached_input_tokens"] for r in records),
        "output_tokens": sum(r["output_tokens"] for r in records),
        "total_tokens": sum(r["input_tokens"] + r["output_tokens"] for r in records),
        "cost": sum((r["cost"] for r in records), Decimal(0)),
        "sessions": len(sessions),
        "avg_session_duration_seconds": ratio(sum(seconds(world.session_span[s]) for s in sessions), len(sessions)),
        "avg_cost_per_session": ratio(
            sum((r["cost"] for r in records if r["session_id"] is not None), Decimal(0)), len(sessions)
        ),
        "unique_users": len({row["user_id"] for row in records + events}),
        "agent_runs": quantity["agent_run"],
        "accepted_diffs": quantity["diff_accepted"],
        "tasks_completed": quantity["task_completed"],
        "lines_of_code": sum(
            e["lines_added"] + e["lines_removed"] for e in events if e["kind"] in ("diff_accepted", "lines_changed")
        ),
        "unique_models": len({r["model_id"] for r in records}),
        "active_projects": len({r["project_id"] for r in records} - {None}),
        "total_projects": len(world.names["project"]),
        "conversations": len({r["conversation_id"] for r in records} - {""}),
    }


def expected_breakdown(world: World, asked: Asked, dimension: str) -> dict:
    records, _ = chosen(world, asked)
    rows = defaultdict(lambda: {"cost": Decimal(0), "requests": 0, "total_tokens": 0})
    for r in records:
        if dimension == "tag":  # under each of its tags (those filtered on, if any); untagged: nowhere
            names = [world.names["tag"][t] for t in r["tags"] if t in asked.filters.get("tag", r["tags"])]
        elif dimension == "service_type":
            names = [r["service_type"]]
        else:
            value = r[f"{dimension}_id"]
            names = [world.names[dimension][value] if value is not None else None]
        for name in names:
            rows[name]["cost"] += r["cost"]
            rows[name]["requests"] += r["request_count"]
            rows[name]["total_tokens"] += r["input_tokens"] + r["output_tokens"]
    return dict(rows)


def expected_by_agent(world: World, asked: Asked) -> dict:
    records, events = chosen(world, asked)
    sessions = {row["session_id"] for row in records + events if row["session_id"] is not None}
    agents = {world.session_agent[s] for s in sessions} | {r["agent_id"] for r in records}
    out = {}
    for agent in agents:
        mine = [s for s in sessions if world.session_agent[s] == agent]
        rows = [r for r in records if r["agent_id"] == agent]
        session_cost = sum((r["cost"] for r in rows if r["session_id"] is not None), Decimal(0))
        out[world.names["agent"][agent] if agent is not None else None] = {
            "sessions": len(mine),
            "requests": sum(r["request_count"] for r in rows),
            "total_tokens": sum(r["input_tokens"] + r["output_tokens"] for r in rows),
            "cost": sum((r["cost"] for r in rows), Decimal(0)),
            "avg_cost_per_session": ratio(session_cost, len(mine)),
            "avg_duration_seconds": ratio(sum(seconds(world.session_span[s]) for s in mine), len(mine)),
        }
    return out


def expected_series(world: World, asked: Asked, interval: str, metric: str) -> tuple[list[datetime], list]:
    starts = expected_starts(world.tz, asked.start, asked.end, interval)
    values = [set() if metric == "sessions" else Decimal(0) if metric == "cost" else 0 for _ in starts[:-1]]
    records, events = chosen(world, asked)
    for row in records if metric != "sessions" else records + events:
        i = bisect.bisect_right(starts, row["timestamp"]) - 1
        assert 0 <= i < len(values), f"{row['timestamp']} falls in no bucket of {starts[0]}..{starts[-1]}"
        if metric == "sessions":
            if row["session_id"] is not None:
                values[i].add(row["session_id"])
        elif metric == "cost":
            values[i] += row["cost"]
        elif metric == "tokens":
            values[i] += row["input_tokens"] + row["output_tokens"]
        else:
            values[i] += row["request_count"]
    return starts, [len(v) for v in values] if metric == "sessions" else values


# --- Random questions ------------------------------------------------------------------------------


def draw_question(data, world: World, *, plain: bool = False) -> tuple[selectors.Query, Asked]:
    """A random viewer, range and filters; or, `plain`, an admin's question about the data's
    three whole days without filters, which the most rollups (daily, hourly, by one dimension) answer."""
    tz = world.tz
    # Half the questions are an admin's: only they may read the one-dimension and hourly rollups.
    who = "ada" if plain else data.draw(st.sampled_from(["ada", "ada", "ada", "max", "mia", "dan"]), label="viewer")
    scope = scope_for_membership(world.memberships[who])
    if plain:
        start, end = midnight(tz, world.anchor - timedelta(days=1)), midnight(tz, world.anchor + timedelta(days=2))
    else:
        start_day = world.anchor + timedelta(days=data.draw(st.integers(-2, 1), label="start day"))
        start = midnight(tz, start_day) + timedelta(
            seconds=data.draw(st.one_of(st.just(0), st.integers(1, 86_399)), label="start offset")
        )
        if data.draw(st.booleans(), label="end at a midnight"):
            end = midnight(tz, start_day + timedelta(days=data.draw(st.integers(1, 4), label="days")))
        else:
            end = start + timedelta(seconds=data.draw(st.integers(1, 4 * 86_400), label="length"))
    # The API hands the selectors times in the org's zone (dates), a fixed offset or UTC.
    zone = data.draw(st.sampled_from([tz, UTC, timezone(timedelta(hours=-3, minutes=-30))]), label="tzinfo")
    start, end = start.astimezone(zone), end.astimezone(zone)
    filters = {}
    dimensions = st.one_of(st.just([]), st.lists(st.sampled_from(DIMENSIONS), unique=True, min_size=1, max_size=3))
    for dimension in [] if plain else data.draw(dimensions, label="filters"):
        options = world.options[dimension]
        if not options or data.draw(st.integers(0, 9), label="nothing matched") == 0:
            filters[dimension] = set()  # asked for, but no such name: selects nothing
        else:
            filters[dimension] = data.draw(st.sets(st.sampled_from(options), min_size=1, max_size=2))
    query = selectors.Query(scope, start, end, selectors.Filters.of(**filters))
    asked = Asked(scope.role, scope.user_id, scope.team_ids, start.astimezone(UTC), end.astimezone(UTC), filters)
    return query, asked


def describe(ds: Dataset) -> str:
    """The dataset, one item a line, for the report of a failing example."""
    lines = [
        f"{ds.zone}, around {ds.anchor}; sessions (user, agent): {ds.sessions}",
        f"rolled up first: {ds.first_rebuild}; after the late items: {sorted(ds.second_rebuild)} "
        f"(and {sorted(ds.stale_rebuild)} left marked)",
    ]
    for n, item in enumerate(ds.records):
        lines.append(f"r-{n}: {wire_usage(n, item, ZoneInfo(ds.zone))}" + (" (late)" if item["late"] else ""))
    for n, item in enumerate(ds.events):
        lines.append(f"e-{n}: {wire_activity(n, item, ZoneInfo(ds.zone))}" + (" (late)" if item["late"] else ""))
    return "\n".join(lines)


def in_a_world(ds: Dataset, check) -> None:
    """Build `ds` in a transaction of its own, check it, and roll it back for the next example."""
    note(describe(ds))
    with transaction.atomic():
        check(build(ds))
        transaction.set_rollback(True)


# --- Properties ------------------------------------------------------------------------------------


@settings(PROPERTY_SETTINGS, max_examples=40)
@given(ds=datasets(), data=st.data())
def test_summary_breakdowns_and_agents_agree_with_the_raw_rows(db, ds, data):
    def check(world: World):
        for plain in (True, False, False):
            query, asked = draw_question(data, world, plain=plain)
            check_summary(world, query, asked)

    in_a_world(ds, check)


def check_summary(world: World, query, asked: Asked) -> None:
    summary = selectors.summary(query)
    expected = expected_summary(world, asked)
    total = expected["cost"]
    assert (summary["start"].isoformat(), summary["end"].isoformat()) == (
        query.start.astimezone(world.tz).isoformat(),
        query.end.astimezone(world.tz).isoformat(),
    )
    for name in ("cost", "avg_cost_per_session", "avg_session_duration_seconds"):
        want = expected.pop(name)
        if name == "cost":
            assert_money(summary[name], want, name)
        elif name == "avg_cost_per_session":  # rounded to the money quantum
            assert_money(summary[name], Decimal(want.numerator) / want.denominator, name, Decimal("1e-10"))
        else:  # rounded to milliseconds
            assert summary[name] == pytest.approx(float(want), abs=1e-3), name
    assert {k: summary[k] for k in expected} == expected

    breakdown = selectors.cost_breakdown(query)
    assert_money(breakdown["total"], total, "breakdown total")
    for dimension in ("model", "project", "user", "team", "service_type", "tag"):
        rows = breakdown[f"by_{dimension}"]
        assert_sorted_by_cost(rows)
        got = {r["name"]: r for r in rows}
        assert len(got) == len(rows), f"by_{dimension} names a value twice: {rows}"
        want = expected_breakdown(world, asked, dimension)
        assert set(got) == set(want), f"by_{dimension}"
        for name, row in got.items():
            assert_money(row["cost"], want[name]["cost"], f"by_{dimension} {name}")
            assert (row["requests"], row["total_tokens"]) == (want[name]["requests"], want[name]["total_tokens"])
        if dimension == "tag":  # overlaps the total, and says so
            assert "more than the total" in breakdown["by_tag_note"]
            continue
        # KPI total = the sum of each breakdown list, to the cent (exactly on PostgreSQL).
        assert_money(breakdown["total"], sum((money(r["cost"]) for r in rows), Decimal(0)), f"sum of by_{dimension}")
    assert_money(summary["cost"], money(breakdown["total"]), "summary vs breakdown")

    agents = selectors.by_agent(query)["agents"]
    assert_sorted_by_cost(agents)
    got = {r["agent"]: r for r in agents}
    want = expected_by_agent(world, asked)
    assert set(got) == set(want) and len(got) == len(agents)
    for name, row in got.items():
        w = want[name]
        assert (row["sessions"], row["requests"], row["total_tokens"]) == (
            w["sessions"],
            w["requests"],
            w["total_tokens"],
        ), name
        assert_money(row["cost"], w["cost"], f"agent {name} cost")
        average = w["avg_cost_per_session"]
        assert_money(
            row["avg_cost_per_session"], Decimal(average.numerator) / average.denominator, name, Decimal("1e-10")
        )
        assert row["avg_duration_seconds"] == pytest.approx(float(w["avg_duration_seconds"]), abs=1e-3), name
    assert_money(summary["cost"], sum((money(r["cost"]) for r in agents), Decimal(0)), "sum of by_agent")


def assert_sorted_by_cost(rows) -> None:
    costs = [money(r["cost"]) for r in rows]
    assert costs == sorted(costs, reverse=True), f"not sorted by cost, highest first: {rows}"


@settings(PROPERTY_SETTINGS, max_examples=40)
@given(ds=datasets(), data=st.data())
def test_every_timeseries_agrees_with_the_raw_rows_bucketed_in_the_org_zone(db, ds, data):
    def check(world: World):
        for plain in (True, False):
            query, asked = draw_question(data, world, plain=plain)
            total = selectors.summary(query)
            for interval in INTERVALS:
                for metric in METRICS:
                    check_series(world, query, asked, interval, metric, total)

    in_a_world(ds, check)


def check_series(world: World, query, asked: Asked, interval: str, metric: str, total: dict) -> None:
    series = selectors.timeseries(query, metric=metric, interval=interval)
    assert (series["metric"], series["interval"]) == (metric, interval)
    starts, values = expected_series(world, asked, interval, metric)
    points = series["points"]
    # Every bucket present, each starting at its local boundary, written in the org's zone.
    assert [p["start"].isoformat() for p in points] == [s.astimezone(world.tz).isoformat() for s in starts[:-1]], (
        interval
    )
    if metric == "cost":
        for point, want in zip(points, values, strict=True):
            assert_money(point["value"], want, f"{interval} cost at {point['start']}")
        # KPI total = sum of the chart's points, to the cent (exactly on PostgreSQL).
        assert_money(total["cost"], sum((money(p["value"]) for p in points), Decimal(0)), f"{interval} sum")
    else:
        assert [p["value"] for p in points] == values, f"{interval} {metric}"
    if metric == "tokens":
        assert sum(values) == total["total_tokens"]
    if metric == "requests":
        assert sum(values) == total["requests"]


@settings(PROPERTY_SETTINGS, max_examples=30)
@given(ds=datasets(), data=st.data())
def test_the_pages_groupings_agree_with_the_raw_rows(db, ds, data):
    """What the Analytics and Resources pages group by beyond the API: usage by pairs of
    dimensions, conversations per agent and activity per bucket (whole-org questions read them
    from rollups of their own)."""

    def check(world: World):
        for plain in (True, False):
            query, asked = draw_question(data, world, plain=plain)
            records, events = chosen(world, asked)
            for pair in (("agent", "project"), ("service_type", "project"), ("user", "model"), ("team", "model")):
                want = defaultdict(lambda: [0, Decimal(0)])
                for r in records:
                    key = tuple(r["service_type"] if d == "service_type" else r[f"{d}_id"] for d in pair)
                    want[key][0] += r["request_count"]
                    want[key][1] += r["cost"]
                got = selectors.usage_sums(query, by=pair, measures=("requests", "cost")).sums
                assert {k[1:]: v["requests"] for k, v in got.items()} == {k: v[0] for k, v in want.items()}, pair
                for key, values in got.items():
                    assert_money(quantize_money(Decimal(values["cost"])), want[key[1:]][1], f"{pair} {key}")
                # As the Usage table asks for the models of the people (teams) on its page.
                some = {k[0] for k in sorted(want, key=str)[::2] if k[0] is not None and pair[0] != "service_type"}
                if some and plain:
                    narrowed = selectors.Query(
                        query.scope, query.start, query.end, selectors.Filters.of(**{pair[0]: some})
                    )
                    got = selectors.usage_sums(narrowed, by=pair, measures=("requests",)).sums
                    assert {k[1:]: v["requests"] for k, v in got.items()} == {
                        k: v[0] for k, v in want.items() if k[0] in some
                    }, pair
            per_agent = defaultdict(set)
            for r in records:
                if r["conversation_id"]:
                    per_agent[r["agent_id"]].add(r["conversation_id"])
            assert selectors.conversation_counts(query, "agent") == {a: len(c) for a, c in per_agent.items()}
            for interval in ("1h", "6h", "day"):
                starts = expected_starts(world.tz, asked.start, asked.end, interval)
                want = defaultdict(lambda: [0, 0])
                for e in events:
                    bucket = bisect.bisect_right(starts, e["timestamp"]) - 1
                    want[(bucket, e["kind"])][0] += 1
                    want[(bucket, e["kind"])][1] += e["quantity"]
                buckets = selectors.Buckets.of(world.org, query.start, query.end, interval)
                got = selectors.activity_series(query, buckets)
                assert {k: [v["events"], v["quantity"]] for k, v in got.items()} == dict(want), interval
            for interval in INTERVALS:  # the Usage table: each person's or team's totals and trend
                starts = expected_starts(world.tz, asked.start, asked.end, interval)
                buckets = selectors.Buckets.of(world.org, query.start, query.end, interval)
                for by in ("user", "team"):
                    want_totals = defaultdict(lambda: [0, 0, Decimal(0)])
                    n = len(starts) - 1
                    want_trends = defaultdict(lambda n=n: [0] * n)
                    for r in records:
                        want_totals[r[f"{by}_id"]][0] += r["request_count"]
                        want_totals[r[f"{by}_id"]][1] += r["output_tokens"]
                        want_totals[r[f"{by}_id"]][2] += r["cost"]
                        want_trends[r[f"{by}_id"]][bisect.bisect_right(starts, r["timestamp"]) - 1] += r[
                            "request_count"
                        ]
                    totals, trends = selectors.usage_trends(
                        query, buckets, by=by, measures=("requests", "output_tokens", "cost")
                    )
                    assert {k: [v["requests"], v["output_tokens"]] for k, v in totals.items()} == {
                        k: v[:2] for k, v in want_totals.items()
                    }, (interval, by)
                    for key, values in totals.items():
                        assert_money(quantize_money(Decimal(values["cost"])), want_totals[key][2], f"{by} {key}")
                    assert dict(trends) == dict(want_trends), (interval, by)
                # The charts by project, agent, service type or model, or a pair (hourly rollups of their own).
                for by in [("project",), ("agent",), ("service_type",), ("model",), ("project", "service_type")]:
                    want = defaultdict(lambda: [0, Decimal(0)])
                    for r in records:
                        bucket = bisect.bisect_right(starts, r["timestamp"]) - 1
                        key = (bucket, *(r["service_type"] if d == "service_type" else r[f"{d}_id"] for d in by))
                        want[key][0] += r["request_count"]
                        want[key][1] += r["cost"]
                    got = selectors.usage_sums(query, by=by, buckets=buckets, measures=("requests", "cost")).sums
                    assert {k: v["requests"] for k, v in got.items()} == {k: v[0] for k, v in want.items()}, by
                    for key, values in got.items():
                        assert_money(quantize_money(Decimal(values["cost"])), want[key][1], f"{interval} {by} {key}")

    in_a_world(ds, check)


# --- The same data, read whichever way the rollups stand ------------------------------------------


@settings(PROPERTY_SETTINGS, max_examples=8)
@given(ds=datasets(max_records=15, max_events=6), data=st.data())
def test_answers_do_not_change_when_the_dirty_days_are_rolled_up(db, ds, data):
    """The rollups are an optimisation: rebuilding every dirty day changes no answer."""

    def check(world: World):
        questions = [draw_question(data, world, plain=plain) for plain in (True, False, False)]

        def answers():
            return [
                (
                    selectors.summary(q),
                    selectors.cost_breakdown(q),
                    selectors.by_agent(q),
                    selectors.timeseries(q, metric="cost", interval="1h"),
                    selectors.timeseries(q, metric="sessions", interval="day"),
                )
                for q, _ in questions
            ]

        before = answers()
        dirty_days_rebuild()
        assert not DirtyDay.objects.filter(org=world.org).exists()
        after = answers()
        if exact():
            assert after == before

    in_a_world(ds, check)


# --- Examples --------------------------------------------------------------------------------------


def org_in(zone: str) -> Organization:
    return Organization(name=zone, slug="x", timezone=zone)


def local(zone: str, *args, fold=0) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone), fold=fold)


def hours_between(a: datetime, b: datetime) -> float:
    return (b.astimezone(UTC) - a.astimezone(UTC)) / timedelta(hours=1)


def test_a_dst_day_is_one_day_bucket_of_23_or_25_hours():
    berlin = org_in("Europe/Berlin")
    spring = selectors.bucket_starts(
        berlin, local("Europe/Berlin", 2026, 3, 29), local("Europe/Berlin", 2026, 3, 30), "day"
    )
    autumn = selectors.bucket_starts(
        berlin, local("Europe/Berlin", 2026, 10, 25), local("Europe/Berlin", 2026, 10, 26), "day"
    )
    assert [s.isoformat() for s in spring] == ["2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"]
    assert [s.isoformat() for s in autumn] == ["2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00"]
    assert (hours_between(*spring), hours_between(*autumn)) == (23, 25)


def test_six_hour_buckets_start_at_local_0_6_12_and_18_hours_through_a_change():
    ny = org_in("America/New_York")
    starts = selectors.bucket_starts(
        ny, local("America/New_York", 2026, 11, 1), local("America/New_York", 2026, 11, 2), "6h"
    )
    assert [s.isoformat() for s in starts] == [
        "2026-11-01T00:00:00-04:00",
        "2026-11-01T06:00:00-05:00",  # seven real hours after midnight: the repeated 1 am
        "2026-11-01T12:00:00-05:00",
        "2026-11-01T18:00:00-05:00",
        "2026-11-02T00:00:00-05:00",
    ]


def test_hourly_buckets_step_real_hours_through_the_repeated_and_the_missing_hour():
    berlin = org_in("Europe/Berlin")
    autumn = selectors.bucket_starts(
        berlin, local("Europe/Berlin", 2026, 10, 25), local("Europe/Berlin", 2026, 10, 26), "1h"
    )
    assert len(autumn) == 26  # 25 buckets and the end of the last
    assert [s.isoformat() for s in autumn[2:4]] == ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00"]
    assert {hours_between(a, b) for a, b in zip(autumn, autumn[1:], strict=False)} == {1}
    ny = org_in("America/New_York")
    spring = selectors.bucket_starts(
        ny, local("America/New_York", 2026, 3, 8), local("America/New_York", 2026, 3, 9), "1h"
    )
    assert [s.hour for s in spring[:-1]] == [0, 1, *range(3, 24)]  # no 2 am that day


def test_hourly_buckets_start_at_local_hours_in_a_half_hour_zone():
    kolkata = org_in("Asia/Kolkata")
    start = local("Asia/Kolkata", 2026, 6, 15, 9, 40)
    starts = selectors.bucket_starts(kolkata, start, start + timedelta(hours=3), "1h")
    assert [s.isoformat() for s in starts] == [f"2026-06-15T{h:02d}:00:00+05:30" for h in (9, 10, 11, 12, 13)]
    assert starts[0].astimezone(UTC).minute == 30


def test_week_buckets_start_on_monday_at_local_midnight():
    berlin = org_in("Europe/Berlin")
    starts = selectors.bucket_starts(
        berlin, local("Europe/Berlin", 2026, 10, 21, 15), local("Europe/Berlin", 2026, 10, 28), "week"
    )
    # Two weeks overlap the range; the second (with the 25-hour Sunday before it) ends on 2 November.
    assert [s.isoformat() for s in starts] == [
        "2026-10-19T00:00:00+02:00",
        "2026-10-26T00:00:00+01:00",
        "2026-11-02T00:00:00+01:00",
    ]


def test_the_first_hourly_bucket_holds_the_start_on_lord_howes_half_hour_change():
    # Lord Howe goes back from +11:00 to +10:30 at 2 am on 5 April 2026: 1:30 to 2:00 comes twice.
    lord_howe = org_in("Australia/Lord_Howe")
    start = local("Australia/Lord_Howe", 2026, 4, 5, 1, 45, fold=1)  # the second 1:45, 15:15 UTC
    starts = [s.astimezone(UTC) for s in selectors.bucket_starts(lord_howe, start, start + timedelta(hours=2), "1h")]
    # (In UTC: datetimes sharing a tzinfo compare by wall clock, which the repeated half hour defeats.)
    assert starts[0] <= start.astimezone(UTC) < starts[1], [s.isoformat() for s in starts]


@pytest.mark.parametrize(
    ("zone", "first", "last"),
    [
        ("Asia/Kolkata", date(2026, 6, 15), date(2026, 6, 15)),  # +05:30 all year
        ("Australia/Lord_Howe", date(2026, 4, 6), date(2026, 4, 6)),  # +10:30 after 5 April
        ("Australia/Lord_Howe", date(2026, 4, 5), date(2026, 4, 6)),  # +11:00, then +10:30 from 2 am on the 5th
        ("Europe/Berlin", date(2026, 10, 25), date(2026, 10, 26)),
        ("America/New_York", date(2026, 3, 8), date(2026, 3, 8)),
    ],
)
def test_sub_day_series_of_rolled_up_days_put_each_record_in_the_bucket_of_its_time(db, zone, first, last):
    """Whole days that are rolled up and clean, asked by an admin: the hourly rollup may answer,
    but its rows are UTC hours, which are not the buckets' hours in a half-hour zone."""
    org = Organization.objects.create(name=zone, slug="tz", timezone=zone)
    tz = org.tzinfo
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    moments = [datetime.combine(d, time(h, m), tz) for d in days for h in (0, 5, 12, 23) for m in (10, 40)]
    usage = [
        {"request_id": f"r-{i}", "timestamp": m.isoformat(), "user": "ana@x.test", "model": "gpt-5", "cost": "1"}
        for i, m in enumerate(moments)
    ]
    assert ingest_batch(org=org, usage=usage).accepted == len(moments)
    dirty_days_rebuild()
    start, end = midnight(tz, first), midnight(tz, last + timedelta(days=1))
    query = selectors.Query(scope_for_membership(make_admin(org)), start, end)
    for interval in ("1h", "6h"):
        starts = expected_starts(tz, start, end, interval)
        expected = [0] * (len(starts) - 1)
        for m in moments:
            expected[bisect.bisect_right(starts, m.astimezone(UTC)) - 1] += 1
        points = selectors.timeseries(query, metric="requests", interval=interval)["points"]
        got = {p["start"].isoformat(): p["value"] for p in points if p["value"]}
        want = {s.astimezone(tz).isoformat(): n for s, n in zip(starts, expected, strict=False) if n}
        assert got == want, interval


@pytest.mark.parametrize("interval", ["5m", "1h", "6h", "day"])
def test_a_record_a_microsecond_before_a_boundary_stays_in_the_bucket_before_it(org, admin, interval):
    ingest_batch(
        org=org,
        usage=[
            {
                "request_id": "r-1",
                "timestamp": "2026-11-19T23:59:59.999999+01:00",
                "user": "admin@acme.test",
                "model": "gpt-5",
                "cost": "1",
            }
        ],
    )  # its day stays dirty: read from the raw row
    scope = scope_for_membership(Membership.objects.get(user=admin, org=org))
    start, end = local("Europe/Berlin", 2026, 11, 19), local("Europe/Berlin", 2026, 11, 20, 1)
    points = selectors.timeseries(selectors.Query(scope, start, end), metric="requests", interval=interval)["points"]
    last = {"5m": "23:55", "1h": "23:00", "6h": "18:00", "day": "00:00"}[interval]
    assert [p["start"].isoformat() for p in points if p["value"]] == [f"2026-11-19T{last}:00+01:00"]


def make_admin(org) -> Membership:
    return make_user("admin@tz.test", org, Role.ADMIN).memberships.get()


@pytest.mark.parametrize(
    ("length", "interval"),
    [
        (timedelta(hours=24), "5m"),
        (timedelta(days=7), "1h"),
        (timedelta(days=30), "6h"),
        (timedelta(days=90), "day"),
        (timedelta(days=400), "week"),
    ],
)
def test_interval_for_picks_the_finest_bucket_within_about_300_points(length, interval):
    start = datetime(2026, 10, 1, tzinfo=UTC)
    assert selectors.interval_for(start, start + length) == interval


def test_a_filter_on_a_dimension_events_lack_selects_no_events(org, admin):
    """A model filter selects records of that model and no events: no agent runs, and only the
    sessions that have such records."""
    ingest_batch(
        org=org,
        usage=[
            {
                "request_id": "r-1",
                "timestamp": "2026-11-19T10:00:00+01:00",
                "user": "admin@acme.test",
                "model": "gpt-5",
                "cost": "0.25",
                "session_id": "s-1",
            }
        ],
        activity=[
            {"event_id": "e-1", "timestamp": "2026-11-19T11:00:00+01:00", "kind": "agent_run", "user": "ana@x.test"},
            {
                "event_id": "e-2",
                "timestamp": "2026-11-19T11:00:00+01:00",
                "kind": "agent_run",
                "user": "ana@x.test",
                "session_id": "s-2",
            },
        ],
    )
    scope = scope_for_membership(Membership.objects.get(user=admin, org=org))
    start, end = local("Europe/Berlin", 2026, 11, 19), local("Europe/Berlin", 2026, 11, 20)
    everything = selectors.summary(selectors.Query(scope, start, end))
    assert (everything["agent_runs"], everything["sessions"], everything["unique_users"]) == (2, 2, 2)
    gpt5 = LLMModel.objects.get(name="gpt-5").pk
    by_model = selectors.summary(selectors.Query(scope, start, end, selectors.Filters.of(model={gpt5})))
    assert (by_model["agent_runs"], by_model["sessions"], by_model["unique_users"], by_model["cost"]) == (
        0,
        1,
        1,
        Decimal("0.25"),
    )


@pytest.mark.parametrize("role", ["admin", "manager", "member"])
def test_a_record_with_two_tags_counts_once_in_every_total_of_a_rolled_up_day(org, admin, manager, member, role):
    """The by-tag rollup has a row per tag: it may answer questions about tags only."""
    ingest_batch(
        org=org,
        usage=[
            {
                "request_id": "r-1",
                "timestamp": "2026-11-19T10:00:00+01:00",
                "user": "member@acme.test",
                "model": "gpt-5",
                "cost": "0.25",
                "tags": ["ci", "prod"],
            }
        ],
    )
    dirty_days_rebuild()
    viewer = {"admin": admin, "manager": manager, "member": member}[role]
    scope = scope_for_membership(Membership.objects.get(user=viewer, org=org))
    query = selectors.Query(scope, local("Europe/Berlin", 2026, 11, 19), local("Europe/Berlin", 2026, 11, 20))
    assert selectors.plan(org, query.start, query.end).days == [date(2026, 11, 19)]  # read from rollups
    summary = selectors.summary(query)
    assert (summary["requests"], summary["cost"]) == (1, Decimal("0.25"))
    breakdown = selectors.cost_breakdown(query)
    assert [(r["name"], r["requests"]) for r in breakdown["by_user"]] == [("member@acme.test", 1)]
    assert sorted((r["name"], r["requests"]) for r in breakdown["by_tag"]) == [("ci", 1), ("prod", 1)]
