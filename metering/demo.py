"""The demo organisation: a believable org with a few months of AI usage.

`manage.py seed_demo` is a thin wrapper around `demo_org_rebuild`. The org is
"Demo Robotics": teams, projects with repositories, agents, and people who
work office hours in Berlin, more on weekdays than at weekends, a few of them
far more than the rest. They open agent sessions (turns of model calls that
end in diffs, commits and pull requests), run CI reviews, embedding jobs and
experiments, and one service runs in production around the clock.

Everything random comes from one `random.Random(seed)` and "now" is read
once, so the same seed on the same day gives the same rows (compare natural
keys: primary keys differ between runs). Rows are planned a day at a time
and written in large batches (COPY on PostgreSQL, executemany on SQLite)
inside one transaction; the default demo takes well under a minute.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as clock
from datetime import timezone as dt_timezone
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone
from tqdm import tqdm

from accounts.models import ApiKey, Membership, Organization, Role, Tag, Team, User
from metering.bulk import insert_rows, reserve_ids
from metering.models import (
    ActivityEvent,
    ActivityEventTag,
    ActivityKind,
    Agent,
    CostSource,
    LLMModel,
    ModelPrice,
    Project,
    Repository,
    ResourceUsage,
    ServiceType,
    Session,
    Status,
    UsageRecord,
    UsageRecordTag,
)
from metering.pricing import PriceBook, Tokens, cost_of
from metering.rollups import rollups_rebuild_days

UTC = dt_timezone.utc
DEMO_SLUG = "demo"
DEMO_NAME = "Demo Robotics"
DEMO_TIMEZONE = "Europe/Berlin"
DEMO_CURRENCY = "USD"
DEMO_EMAIL_DOMAIN = "demo.example"
# Rows are written in batches this large: big enough that round trips do not
# matter, small enough that a batch's objects stay a few MB.
BATCH_SIZE = 5_000
# Sessions a day for a user of weight 1 on an ordinary weekday; with the
# weights below, 60 people over 90 days make about 230,000 usage records.
SESSIONS_PER_DAY = 3.1


class DemoError(Exception):
    """The demo cannot be built without touching an account that is not the demo's."""


# --- The catalogue: who and what the demo org is made of -------------------


@dataclass(frozen=True)
class LoginSpec:
    email: str
    password: str
    role: str
    name: str
    teams: tuple[str, ...]
    is_staff: bool = False


LOGINS = (
    LoginSpec("admin@example.com", "admin", Role.ADMIN, "Alex Morgan", ("Platform",), is_staff=True),
    LoginSpec("manager@example.com", "manager", Role.MANAGER, "Maria Schneider", ("Platform", "Web")),
    LoginSpec("member@example.com", "member", Role.MEMBER, "Tom Becker", ("Web",)),
)


@dataclass(frozen=True)
class TeamSpec:
    name: str
    colour: str
    headcount: int  # relative size
    projects: dict[str, int]  # where its people work, weighted
    agents: dict[str, int]  # which agents they use, weighted
    batch_jobs: bool = False  # runs embedding jobs


TEAMS = (
    TeamSpec(
        "Platform",
        "#2563eb",
        12,
        {"Fleet Manager": 4, "Infrastructure": 4, "Data Platform": 1, "Navigation Stack": 1},
        {"Code Assistant": 6, "QA": 2, "Scan & Review": 2, "SecOps": 1, "Docs": 1},
    ),
    TeamSpec(
        "Web",
        "#db2777",
        12,
        {"Customer Portal": 5, "Fleet Manager": 3, "Developer Portal": 1},
        {"Code Assistant": 6, "QA": 3, "Scan & Review": 2, "Docs": 1},
    ),
    TeamSpec(
        "Mobile",
        "#f59e0b",
        9,
        {"Operator App": 6, "Customer Portal": 1},
        {"Code Assistant": 6, "QA": 4, "Scan & Review": 1, "Docs": 1},
    ),
    TeamSpec(
        "Data & ML",
        "#10b981",
        11,
        {"Perception": 4, "Data Platform": 4, "Navigation Stack": 3},
        {"Data Analyst": 5, "Code Assistant": 4, "QA": 1, "Docs": 1},
        batch_jobs=True,
    ),
    TeamSpec(
        "Security",
        "#dc2626",
        6,
        {"Infrastructure": 3, "Fleet Manager": 2, "Customer Portal": 1, "Operator App": 1},
        {"SecOps": 6, "Scan & Review": 4, "Code Assistant": 1},
    ),
    TeamSpec(
        "Developer Experience",
        "#7c3aed",
        7,
        {"Developer Portal": 5, "Infrastructure": 2},
        {"Docs": 5, "Code Assistant": 3, "Scan & Review": 1, "QA": 1},
        batch_jobs=True,
    ),
)

PROJECTS = (
    ("Fleet Manager", "#0ea5e9", ("fleet-api", "fleet-console")),
    ("Navigation Stack", "#22c55e", ("nav-planner", "nav-sim")),
    ("Perception", "#a855f7", ("perception-models", "labeling-tools")),
    ("Customer Portal", "#f97316", ("portal-web", "portal-bff")),
    ("Operator App", "#eab308", ("operator-ios", "operator-android")),
    ("Data Platform", "#14b8a6", ("pipelines", "warehouse")),
    ("Infrastructure", "#64748b", ("infra-terraform", "k8s-platform")),
    ("Developer Portal", "#ec4899", ("dev-portal", "docs-site")),
)
# The refactor spike lands on two of these: big codebases where a rename fans out.
SPIKE_CANDIDATES = ("Fleet Manager", "Customer Portal", "Navigation Stack", "Operator App")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    provider: str
    # List prices, USD per million tokens: input, cached input, cache write, output.
    prices: tuple[str, str, str, str]
    source: str
    caching: str  # "explicit" (cache writes billed), "implicit" (automatic), "" (none)
    ms_per_token: float  # output speed, for durations
    reasoning: tuple[float, float] = (0.0, 0.0)  # share of output spent reasoning, when it reasons


ANTHROPIC_PRICING = "https://docs.claude.com/en/docs/about-claude/pricing"
OPENAI_PRICING = "https://openai.com/api/pricing/"
GOOGLE_PRICING = "https://ai.google.dev/gemini-api/docs/pricing"

MODELS = (
    ModelSpec("claude-sonnet-4-5", "anthropic", ("3", "0.30", "3.75", "15"), ANTHROPIC_PRICING, "explicit", 16),
    ModelSpec("claude-haiku-4-5", "anthropic", ("1", "0.10", "1.25", "5"), ANTHROPIC_PRICING, "explicit", 6),
    ModelSpec("gpt-5", "openai", ("1.25", "0.125", "0", "10"), OPENAI_PRICING, "implicit", 18, (0.4, 0.8)),
    ModelSpec("gpt-5-mini", "openai", ("0.25", "0.025", "0", "2"), OPENAI_PRICING, "implicit", 8, (0.3, 0.7)),
    ModelSpec("gemini-2.5-pro", "google", ("1.25", "0.125", "0", "10"), GOOGLE_PRICING, "implicit", 12, (0.3, 0.6)),
    ModelSpec("text-embedding-3-small", "openai", ("0.02", "0", "0", "0"), OPENAI_PRICING, "", 0),
)
EMBEDDING_MODEL = "text-embedding-3-small"
# Base prices are in force from well before any demo period.
BASE_PRICE_DATE = date(2025, 1, 1)
# One price change inside the period, so the demo shows history priced at the
# old rate: Gemini 2.5 Pro's cached input was $0.31/M before Google cut it to
# $0.125/M. The date of the cut is moved into the demo period.
PRICE_CHANGE_MODEL = "gemini-2.5-pro"
PRICE_BEFORE_CHANGE = ("1.25", "0.31", "0", "10")
PRICE_CHANGE_SOURCE = f"{GOOGLE_PRICING} (cached input cut from $0.31/M; date moved into the demo period)"


@dataclass(frozen=True)
class AgentSpec:
    name: str
    models: dict[str, int]  # weighted
    turns: float  # mean turns per session after the first
    calls: float  # mean model calls per turn after the first
    context: int  # tokens of system prompt and repository context at the start
    step: int  # mean tokens a message or tool result adds to the context
    output: int  # median visible output tokens of a call
    diff: float  # chance a turn ends in a diff
    lines: int  # median lines added by a diff
    accept: float  # chance a diff is accepted
    chat: bool  # a chat assistant: every call is a chat completion, none is an agent step
    retrieves: bool  # embeds the question each turn to search the codebase or docs
    # The sandbox each session runs in (allocation, not utilisation).
    cpu: int
    ram: int
    storage: int


AGENTS = (
    AgentSpec(
        "Code Assistant",
        {"claude-sonnet-4-5": 6, "gpt-5": 2, "claude-haiku-4-5": 1, "gemini-2.5-pro": 1},
        turns=2.5,
        calls=4,
        context=18_000,
        step=3_500,
        output=600,
        diff=0.6,
        lines=45,
        accept=0.75,
        chat=False,
        retrieves=False,
        cpu=4,
        ram=8,
        storage=20,
    ),
    AgentSpec(
        "QA",
        {"claude-sonnet-4-5": 3, "gpt-5-mini": 3, "claude-haiku-4-5": 2},
        turns=1.5,
        calls=5,
        context=12_000,
        step=3_500,
        output=500,
        diff=0.45,
        lines=70,
        accept=0.8,
        chat=False,
        retrieves=False,
        cpu=4,
        ram=8,
        storage=10,
    ),
    AgentSpec(
        "SecOps",
        {"gpt-5": 3, "claude-sonnet-4-5": 2, "gemini-2.5-pro": 1},
        turns=1.5,
        calls=4,
        context=18_000,
        step=4_500,
        output=600,
        diff=0.25,
        lines=12,
        accept=0.6,
        chat=False,
        retrieves=False,
        cpu=2,
        ram=4,
        storage=10,
    ),
    AgentSpec(
        "Scan & Review",
        {"claude-haiku-4-5": 4, "gpt-5-mini": 3, "claude-sonnet-4-5": 2},
        turns=1,
        calls=5,
        context=25_000,
        step=4_000,
        output=400,
        diff=0.15,
        lines=8,
        accept=0.5,
        chat=False,
        retrieves=True,
        cpu=2,
        ram=4,
        storage=30,
    ),
    AgentSpec(
        "Docs",
        {"claude-sonnet-4-5": 3, "gemini-2.5-pro": 3, "gpt-5-mini": 2},
        turns=2,
        calls=2,
        context=10_000,
        step=2_500,
        output=1_100,
        diff=0.5,
        lines=80,
        accept=0.85,
        chat=True,
        retrieves=True,
        cpu=1,
        ram=2,
        storage=20,
    ),
    AgentSpec(
        "Data Analyst",
        {"gemini-2.5-pro": 4, "gpt-5": 3, "claude-sonnet-4-5": 2},
        turns=2.5,
        calls=2.5,
        context=12_000,
        step=3_500,
        output=800,
        diff=0.2,
        lines=35,
        accept=0.7,
        chat=True,
        retrieves=False,
        cpu=8,
        ram=32,
        storage=100,
    ),
)

TAGS = ("prod", "ci", "experiment", "refactor", "batch")

API_KEYS = (
    # name, owner's team (the first person of that team owns it), default project
    ("Agent gateway", None, None),
    ("CI", "Platform", None),
    ("Data jobs", "Data & ML", "Data Platform"),
    ("Fleet production", "Platform", "Fleet Manager"),
    ("Sandbox", None, None),
)

FIRST_NAMES = (
    "Anna",
    "Ben",
    "Carla",
    "David",
    "Elif",
    "Felix",
    "Greta",
    "Hannah",
    "Ilya",
    "Jana",
    "Kai",
    "Lena",
    "Malte",
    "Nora",
    "Oskar",
    "Paula",
    "Rosa",
    "Samir",
    "Tara",
    "Ugo",
    "Vera",
    "Wim",
    "Yara",
    "Zoe",
    "Aisha",
    "Bruno",
    "Chiara",
    "Dmitri",
    "Emma",
    "Farid",
    "Gabriel",
    "Hiro",
    "Ines",
    "Jakob",
    "Kofi",
    "Lina",
    "Mateo",
    "Nadia",
    "Omar",
    "Priya",
    "Rahul",
    "Sofia",
    "Tobias",
    "Valentina",
    "Wei",
    "Yusuf",
    "Zofia",
    "Lukas",
    "Mia",
    "Noah",
    "Leonie",
    "Finn",
    "Sara",
    "Jonas",
    "Amelie",
    "Leon",
    "Clara",
    "Max",
    "Julia",
    "Erik",
    "Mara",
    "Timo",
    "Selin",
    "Pedro",
    "Ana",
    "Marek",
    "Eva",
    "Liam",
    "Ida",
    "Arjun",
)
LAST_NAMES = (
    "Schmidt",
    "Fischer",
    "Wagner",
    "Becker",
    "Hoffmann",
    "Schulz",
    "Koch",
    "Richter",
    "Klein",
    "Wolf",
    "Neumann",
    "Schwarz",
    "Zimmermann",
    "Braun",
    "Hartmann",
    "Lange",
    "Rossi",
    "Kowalski",
    "Novak",
    "Yilmaz",
    "Kaya",
    "Nguyen",
    "Chen",
    "Tanaka",
    "Silva",
    "Santos",
    "Garcia",
    "Martin",
    "Dubois",
    "Jensen",
    "Nielsen",
    "Andersson",
    "Okafor",
    "Mensah",
    "Haddad",
    "Patel",
    "Singh",
    "Ivanova",
    "Petrov",
    "Costa",
    "Moreau",
    "Larsen",
    "Horvat",
    "Kim",
    "Park",
    "Ahmed",
    "Lopez",
    "Weber",
    "Vogel",
    "Berger",
)

# Relative chance that a session starts in each local hour: office hours with
# a lunch dip, a thinner evening, almost nothing at night.
HOUR_WEIGHTS = (
    0.15,
    0.08,
    0.04,
    0.03,
    0.03,
    0.06,
    0.25,
    0.9,
    3.0,
    7.0,
    9.0,
    9.0,
    5.0,
    6.5,
    8.5,
    8.5,
    7.5,
    5.0,
    2.6,
    1.8,
    1.5,
    1.1,
    0.7,
    0.35,
)
# Monday .. Sunday
WEEKDAY_FACTOR = (1.0, 1.05, 1.05, 1.0, 0.8, 0.1, 0.06)


# --- The result -------------------------------------------------------------


@dataclass
class DemoLogin:
    email: str
    password: str
    role: str
    teams: list[str]


@dataclass
class DemoSummary:
    org: Organization | None
    replaced: bool = False
    skipped: bool = False
    logins: list[DemoLogin] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


# --- Entry point ------------------------------------------------------------


def demo_org_rebuild(
    *,
    days: int = 90,
    users: int = 60,
    seed: int = 1,
    now: datetime | None = None,
    if_empty: bool = False,
    progress: bool = False,
    say: Callable[[str], None] = lambda line: None,
) -> DemoSummary:
    """Build the demo org, replacing it (and its people) if it exists.

    With `if_empty`, do nothing when the database already has an organisation:
    `make run` calls it that way so a restart keeps what is there.
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    if users < len(LOGINS):
        raise ValueError(f"users must be at least {len(LOGINS)} (the demo logins)")
    started = time.monotonic()
    now = (now or timezone.now()).astimezone(UTC)
    if if_empty and Organization.objects.exists():
        org = Organization.objects.filter(slug=DEMO_SLUG).first()
        return DemoSummary(org=org, skipped=True, logins=_logins(org) if org else [])
    with transaction.atomic():
        replaced = _delete_demo_org()
        if replaced:
            say(f"Deleted the existing demo org {DEMO_SLUG!r} and its data.")
        say(f"Building the demo org: {users} people, {days} days, seed {seed}…")
        builder = _Builder(rng=random.Random(seed), now=now, days=days, users=users)
        counts = builder.build(progress=progress)
    return DemoSummary(
        org=builder.org,
        replaced=replaced,
        logins=_logins(builder.org),
        counts=counts,
        seconds=time.monotonic() - started,
    )


def _logins(org: Organization) -> list[DemoLogin]:
    memberships = {
        m.user.email: m
        for m in Membership.objects.filter(org=org, user__email__in=[s.email for s in LOGINS])
        .select_related("user")
        .prefetch_related("teams")
    }
    return [
        DemoLogin(spec.email, spec.password, spec.role, [t.name for t in memberships[spec.email].teams.all()])
        for spec in LOGINS
        if spec.email in memberships
    ]


def _delete_demo_org() -> bool:
    """Delete the demo org, its data and the people who belong to no other org."""
    org = Organization.objects.filter(slug=DEMO_SLUG).first()
    if org is None:
        return False
    people = list(Membership.objects.filter(org=org).values_list("user_id", flat=True))
    # Tag links first, then the rows (which PROTECT their users), then their sessions.
    UsageRecordTag.objects.filter(record__org=org).delete()
    ActivityEventTag.objects.filter(event__org=org).delete()
    for model in (UsageRecord, ActivityEvent, ResourceUsage, Session):
        # QuerySet.delete() would load every row to look for cascades that
        # are already gone; one DELETE statement does the same in a moment.
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {connection.ops.quote_name(model._meta.db_table)} WHERE org_id = %s", [org.pk])
    org.delete()
    User.objects.filter(pk__in=people, memberships__isnull=True, is_superuser=False).delete()
    return True


# --- Planning helpers -------------------------------------------------------


def poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _weighted(rng: random.Random, weights: dict) -> object:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


@dataclass
class _Person:
    user: User
    team: Team
    spec: TeamSpec
    weight: float  # how much they use AI, relative
    shift: int  # hours earlier (-1) or later (+1) than most
    weekend: float  # how much they work at weekends
    first_day: int  # index of the first day they use Tally (late joiners)
    away: frozenset[int]  # day indexes on holiday
    agents: dict[str, float]
    favourite: str | None  # a model they prefer


@dataclass
class _Rows:
    """One day's planned rows, as field values by attname. Records and events
    point at their session's values, which get a primary key when written."""

    sessions: list[dict] = field(default_factory=list)
    records: list[tuple[dict, dict | None, tuple[int, ...]]] = field(default_factory=list)
    events: list[tuple[dict, dict | None, tuple[int, ...]]] = field(default_factory=list)
    resources: list[dict] = field(default_factory=list)


class _Writer:
    """Writes planned rows a batch at a time, below the ORM.

    bulk_create spends most of its time building and preparing model
    instances (over a minute for the default demo); writing value rows
    directly is several times faster. Rows get their primary keys before they
    are written, so tag links and sessions in the same batch can point at them.
    """

    def __init__(self, now: datetime):
        self.now = now
        self.records: list[tuple[dict, tuple[int, ...]]] = []
        self.events: list[tuple[dict, tuple[int, ...]]] = []
        self.resources: list[dict] = []
        self.counts = {"usage records": 0, "activity events": 0, "sessions": 0, "resource allocations": 0}

    def add(self, rows: _Rows) -> None:
        self.write(Session, [(values, ()) for values in rows.sessions])  # gives them their ids
        self.counts["sessions"] += len(rows.sessions)
        for kind, buffer in (("records", self.records), ("events", self.events)):
            for values, session, tags in getattr(rows, kind):
                if session is not None:
                    values["session_id"] = session["id"]
                buffer.append((values, tags))
        self.resources.extend(rows.resources)
        if len(self.records) + len(self.events) + len(self.resources) >= BATCH_SIZE:
            self.flush()

    def flush(self) -> None:
        self.counts["usage records"] += len(self.records)
        self.counts["activity events"] += len(self.events)
        self.counts["resource allocations"] += len(self.resources)
        self.write(UsageRecord, self.records, UsageRecordTag, "record_id")
        self.write(ActivityEvent, self.events, ActivityEventTag, "event_id")
        self.write(ResourceUsage, [(values, ()) for values in self.resources])
        self.records, self.events, self.resources = [], [], []

    def write(self, model, rows: list[tuple[dict, tuple[int, ...]]], through=None, through_fk: str = "") -> None:
        if not rows:
            return
        for (values, _), pk in zip(rows, reserve_ids(model, len(rows)), strict=True):
            values["id"] = pk
        self.insert(model, [values for values, _ in rows])
        links = [{through_fk: values["id"], "tag_id": tag} for values, tags in rows for tag in tags]
        if links:
            for values, pk in zip(links, reserve_ids(through, len(links)), strict=True):
                values["id"] = pk
            self.insert(through, links)

    def insert(self, model, rows: list[dict]) -> None:
        """Every concrete column of each row: its planned value, else the field's default, as the database takes it."""
        fields = model._meta.concrete_fields
        defaults = [
            self.now if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False) else f.get_default()
            for f in fields
        ]
        insert_rows(
            model,
            fields,
            ([row.get(f.attname, default) for f, default in zip(fields, defaults, strict=True)] for row in rows),
        )


class _Builder:
    def __init__(self, *, rng: random.Random, now: datetime, days: int, users: int):
        self.rng, self.now, self.days, self.user_count = rng, now, days, users
        self.seq = {"req": 0, "evt": 0, "ses": 0, "res": 0, "conv": 0}

    # -- the org and its dimensions --

    def build(self, *, progress: bool) -> dict[str, int]:
        self.org = Organization.objects.create(
            name=DEMO_NAME,
            slug=DEMO_SLUG,
            timezone=DEMO_TIMEZONE,
            currency=DEMO_CURRENCY,
        )
        self.tz = self.org.tzinfo
        self.today = self.now.astimezone(self.tz).date()
        self.first_day = self.today - timedelta(days=self.days - 1)
        self.teams = {
            spec.name: Team.objects.create(org=self.org, name=spec.name, colour=spec.colour) for spec in TEAMS
        }
        self.team_specs = {spec.name: spec for spec in TEAMS}
        self.projects, self.repositories = {}, {}
        for name, colour, repos in PROJECTS:
            project = Project.objects.create(org=self.org, name=name, colour=colour)
            self.projects[name] = project
            self.repositories[name] = [Repository.objects.create(org=self.org, name=r, project=project) for r in repos]
        self.agents = {spec.name: Agent.objects.create(org=self.org, name=spec.name) for spec in AGENTS}
        self.agent_specs = {spec.name: spec for spec in AGENTS}
        self.tags = {name: Tag.objects.create(org=self.org, name=name).pk for name in TAGS}
        self.models = self._models()
        self.book = PriceBook.load()
        self.people = self._people()
        self.api_keys = self._api_keys()
        self._plan_spike()

        # Tally runs on PostgreSQL or SQLite (DESIGN §2).
        writer = _Writer(self.now)
        for index in tqdm(
            range(self.days), desc="seed_demo", unit="day", disable=not progress, file=sys.stderr, leave=False
        ):
            writer.add(self._day(index))
        writer.flush()
        # Built here rather than left to the beat task, which the embedded default has none of.
        rollups_rebuild_days(org=self.org, days=[self.first_day + timedelta(days=i) for i in range(self.days)])
        if connection.vendor == "postgresql":  # fresh statistics, or the first pages plan blind
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        return writer.counts

    def _models(self) -> dict[str, tuple[ModelSpec, LLMModel]]:
        models = {}
        others_exist = Organization.objects.exclude(pk=self.org.pk).exists()
        for spec in MODELS:
            model, _ = LLMModel.objects.get_or_create(name=spec.name, defaults={"provider": spec.provider})
            base = PRICE_BEFORE_CHANGE if spec.name == PRICE_CHANGE_MODEL else spec.prices
            ModelPrice.objects.get_or_create(
                model=model,
                effective_from=BASE_PRICE_DATE,
                defaults={**_price_fields(base), "source": spec.source},
            )
            # Prices are global: the demo's price change would re-price other orgs' records, so it
            # happens only on an installation that holds nothing but the demo.
            if (
                spec.name == PRICE_CHANGE_MODEL
                and not others_exist
                and not model.prices.filter(effective_from__gt=BASE_PRICE_DATE).exists()
            ):
                ModelPrice.objects.create(
                    model=model,
                    effective_from=self.today - timedelta(days=self.days // 2),
                    source=PRICE_CHANGE_SOURCE[:200],
                    **_price_fields(spec.prices),
                )
            models[spec.name] = (spec, model)
        return models

    def _people(self) -> list[_Person]:
        rng = self.rng
        others = self.user_count - len(LOGINS)
        # Every team gets someone before the big teams get more.
        sizes = [spec.headcount for spec in TEAMS]
        team_of = [TEAMS[i % len(TEAMS)] for i in range(min(others, len(TEAMS)))]
        team_of += rng.choices(TEAMS, weights=sizes, k=max(0, others - len(TEAMS)))
        names = self._names(others)
        external_ids = iter(rng.sample(range(10_000, 99_999), others))
        heavy = set(rng.sample(range(others), min(others, max(1, self.user_count // 20))))

        people = []
        for spec in LOGINS:
            user = self._login_user(spec)
            people.append(self._person(user, [self.teams[t] for t in spec.teams], spec.role, regular=True))
        for i in range(others):
            first, last = names[i]
            user = User.objects.create_user(
                f"{first}.{last}@{DEMO_EMAIL_DOMAIN}".lower(),
                None,
                name=f"{first} {last}",
            )
            person = self._person(
                user,
                [self.teams[team_of[i].name]],
                Role.MEMBER,
                external_id=f"E{next(external_ids)}" if rng.random() < 0.12 else "",
            )
            if i in heavy:
                person.weight = rng.uniform(3.0, 4.5)  # the power users everyone asks for tips
            people.append(person)
        # The seed decides who uses AI how much, not how big the demo is: scale
        # the weights so the org's total (over the days people are around) is fixed.
        total = sum(p.weight * (self.days - p.first_day - len(p.away)) for p in people)
        for person in people:
            person.weight *= len(people) * self.days / total
        return people

    def _names(self, count: int) -> list[tuple[str, str]]:
        pairs = [(f, last) for f in FIRST_NAMES for last in LAST_NAMES]
        self.rng.shuffle(pairs)
        chosen, firsts, seen = [], set(), set()
        for first, last in pairs:  # distinct first names while they last: easier to tell apart
            if first not in firsts and len(chosen) < count:
                chosen.append((first, last))
                firsts.add(first)
                seen.add((first, last))
        for pair in pairs:
            if len(chosen) >= count:
                break
            if pair not in seen:
                chosen.append(pair)
                seen.add(pair)
        if len(chosen) < count:
            raise ValueError(f"the demo has names for at most {len(pairs)} people")
        return chosen

    def _login_user(self, spec: LoginSpec) -> User:
        user = User.objects.filter(email__iexact=spec.email).first()
        if user is None:
            return User.objects.create_user(spec.email, spec.password, name=spec.name, is_staff=spec.is_staff)
        if user.is_superuser or user.memberships.exists():
            raise DemoError(
                f"{spec.email} already exists outside the demo org; the demo will not reset its password. "
                f"Delete or rename that user first."
            )
        user.name, user.is_staff = spec.name, spec.is_staff
        user.set_password(spec.password)
        user.save()
        return user

    def _person(self, user: User, teams: list[Team], role: str, *, regular=False, external_id="") -> _Person:
        rng = self.rng
        membership = Membership.objects.create(user=user, org=self.org, role=role, external_id=external_id)
        membership.teams.set(teams)
        spec = self.team_specs[teams[0].name]
        weight = min(2.2, max(0.25, rng.lognormvariate(0, 0.5)))
        first_day, away = 0, set()
        if regular:  # the demo logins always have something to show
            weight = max(weight, 0.8)
        else:
            if rng.random() < 0.06:  # signed up, barely uses it
                weight *= 0.12
            if rng.random() < 0.15:  # joined during the period
                first_day = rng.randrange(0, max(1, int(self.days * 0.6)))
        if rng.random() < 0.35 and self.days > 14:
            start = rng.randrange(self.days)
            away = set(range(start, min(self.days, start + rng.randint(4, 11))))
        agents = {name: w * rng.uniform(0.5, 1.5) for name, w in spec.agents.items()}
        favourite = rng.choice(MODELS[:5]).name if rng.random() < 0.25 else None
        return _Person(
            user=user,
            team=teams[0],
            spec=spec,
            weight=weight,
            shift=rng.choice((-1, 0, 0, 0, 1)),
            weekend=rng.choice((0.3, 1.0, 1.0, 1.0, 2.5)),
            first_day=first_day,
            away=frozenset(away),
            agents=agents,
            favourite=favourite,
        )

    def _api_keys(self) -> dict[str, int]:
        keys, self.key_owners = {}, {}
        for name, team, project in API_KEYS:
            # An engineer of the team owns it; with very few people, whoever is in the team.
            in_team = [p for p in self.people[len(LOGINS) :] + self.people[: len(LOGINS)] if p.team.name == team]
            owner = in_team[0] if in_team else None
            key = ApiKey(
                org=self.org,
                name=name,
                owner=owner.user if owner else None,
                default_team=self.teams[team] if team else None,
                default_project=self.projects[project] if project else None,
            )
            key.set_new_secret()  # nobody learns it: the demo's data is seeded, not sent
            key.save()
            keys[name], self.key_owners[name] = key.pk, owner
        return keys

    def _plan_spike(self) -> None:
        """Two consecutive weekdays on which two projects get a big agent-driven refactor."""
        self.spike_days: frozenset[int] = frozenset()
        self.spike_projects = tuple(self.rng.sample(SPIKE_CANDIDATES, 2))
        candidates = [
            i
            for i in range(max(1, self.days // 3), self.days - 2)
            if (self.first_day + timedelta(days=i)).weekday() <= 2  # Mon-Wed, so the next day is a weekday
        ]
        if candidates:
            start = self.rng.choice(candidates)
            self.spike_days = frozenset((start, start + 1))

    # -- a day --

    def _day(self, index: int) -> _Rows:
        rng = self.rng
        day = self.first_day + timedelta(days=index)
        rows = _Rows()
        weekday = WEEKDAY_FACTOR[day.weekday()]
        # Adoption grows over the period.
        trend = 0.8 + 0.35 * index / max(1, self.days - 1)
        spike = index in self.spike_days
        for person in self.people:
            if index < person.first_day or index in person.away:
                continue
            factor = weekday * (person.weekend if day.weekday() >= 5 else 1.0) * trend * person.weight
            spike_projects = [p for p in self.spike_projects if p in person.spec.projects] if spike else []
            for _ in range(poisson(rng, SESSIONS_PER_DAY * factor * (2.5 if spike_projects else 1.0))):
                self._session(rows, person, day, spike_projects)
            for _ in range(poisson(rng, 0.35 * factor)):
                self._experiment(rows, person, day)
            if person.spec.batch_jobs and rng.random() < 0.25 * factor:
                self._embedding_job(rows, person, day)
        self._production(rows, day)
        self._volumes(rows, day)
        # Only the last days can reach past now (a late session runs over midnight).
        return self._until_now(rows) if day >= self.today - timedelta(days=1) else rows

    def _start(self, day: date, shift: int = 0) -> datetime:
        rng = self.rng
        hour = min(23, max(0, rng.choices(range(24), weights=HOUR_WEIGHTS)[0] + shift))
        local = datetime.combine(day, clock(hour, rng.randrange(60), rng.randrange(60)), tzinfo=self.tz)
        return local.astimezone(UTC)

    def _until_now(self, rows: _Rows) -> _Rows:
        """Today's rows stop at now: sessions still open have no end yet."""
        now = self.now
        rows.records = [r for r in rows.records if r[0]["timestamp"] <= now]
        rows.events = [e for e in rows.events if e[0]["timestamp"] <= now]
        rows.resources = [r for r in rows.resources if r["start"] < now]
        for resource in rows.resources:
            resource["end"] = min(resource["end"], now)
        last = {}
        for values, session, _ in rows.records + rows.events:
            if session is not None:
                key = session["session_id"]
                last[key] = max(last.get(key, values["timestamp"]), values["timestamp"])
        # A session starts with its session_start event, so one that started by now keeps a row.
        rows.sessions = [s for s in rows.sessions if s["session_id"] in last]
        for session in rows.sessions:
            session["last_seen"] = last[session["session_id"]]
        return rows

    # -- ids --

    def _id(self, kind: str) -> str:
        # A running number keeps ids unique; the random tail makes them look like real ones.
        self.seq[kind] += 1
        return f"{kind}_{self.seq[kind]:06x}{self.rng.getrandbits(40):010x}"

    # -- rows --

    def _record(
        self,
        rows: _Rows,
        *,
        person: _Person,
        when: datetime,
        model: str,
        service_type: str,
        tokens: Tokens,
        reasoning: int = 0,
        duration_ms: int | None = None,
        session: dict | None = None,
        project: Project | None = None,
        repository: Repository | None = None,
        agent: Agent | None = None,
        api_key: str | None = None,
        conversation: str = "",
        tags: tuple[int, ...] = (),
        error: bool = False,
    ) -> None:
        spec, model_obj = self.models[model]
        price = self.book.price_at(model_obj.pk, when)
        record = dict(
            org_id=self.org.pk,
            timestamp=when,
            user_id=person.user.pk,
            team_id=person.team.pk,
            project_id=project.pk if project else None,
            repository_id=repository.pk if repository else None,
            agent_id=agent.pk if agent else None,
            request_id=self._id("req"),
            model_id=model_obj.pk,
            provider=spec.provider,
            service_type=service_type,
            status=Status.ERROR if error else Status.SUCCESS,
            api_key_id=self.api_keys[api_key] if api_key else None,
            input_tokens=tokens.input,
            cached_input_tokens=tokens.cached_input,
            cache_write_tokens=tokens.cache_write,
            output_tokens=tokens.output,
            reasoning_tokens=reasoning,
            cost=cost_of(tokens, price),
            cost_source=CostSource.PRICED,
            price_id=price.pk,
            duration_ms=duration_ms,
            conversation_id=conversation,
        )
        rows.records.append((record, session, tags))

    def _event(
        self,
        rows: _Rows,
        *,
        person: _Person,
        when: datetime,
        kind: str,
        session: dict | None = None,
        project: Project | None = None,
        repository: Repository | None = None,
        agent: Agent | None = None,
        added: int = 0,
        removed: int = 0,
        tags: tuple[int, ...] = (),
    ) -> None:
        event = dict(
            org_id=self.org.pk,
            timestamp=when,
            user_id=person.user.pk,
            team_id=person.team.pk,
            project_id=project.pk if project else None,
            repository_id=repository.pk if repository else None,
            agent_id=agent.pk if agent else None,
            event_id=self._id("evt"),
            kind=kind,
            lines_added=added,
            lines_removed=removed,
        )
        rows.events.append((event, session, tags))

    def _call(self, model: str, context: int, cached_prefix: int, warm: bool, visible: int) -> tuple[Tokens, int, int]:
        """Tokens, reasoning tokens and duration of one call with `context` prompt tokens,
        of which `cached_prefix` were sent before (a hit if the cache is still `warm`)."""
        rng = self.rng
        spec = self.models[model][0]
        cached = cache_write = 0
        if spec.caching == "explicit":
            cached = cached_prefix if warm else 0
            cache_write = context - cached
        elif spec.caching == "implicit" and warm:
            cached = cached_prefix // 128 * 128  # cached in 128-token blocks
        reasoning = 0
        lo, hi = spec.reasoning
        if hi and rng.random() < 0.9:
            share = rng.uniform(lo, hi)
            reasoning = int(visible * share / (1 - share))
        elif spec.caching == "explicit" and rng.random() < 0.2:  # extended thinking, now and then
            reasoning = int(visible * rng.uniform(0.2, 0.6))
        output = visible + reasoning
        duration = int(250 + context / 60 + output * spec.ms_per_token * rng.uniform(0.7, 1.4))
        return Tokens(input=context, cached_input=cached, cache_write=cache_write, output=output), reasoning, duration

    def _failed(self, tokens: Tokens) -> tuple[Tokens, int]:
        """A failed call: rate limited or overloaded (nothing billed), or timed out after reading the prompt."""
        if self.rng.random() < 0.55:
            return Tokens(), self.rng.randint(40, 900)
        return Tokens(
            input=tokens.input, cached_input=tokens.cached_input, cache_write=tokens.cache_write
        ), self.rng.randint(30_000, 120_000)

    def _model_for(self, person: _Person, agent: AgentSpec) -> str:
        weights = dict(agent.models)
        if person.favourite:
            weights[person.favourite] = weights.get(person.favourite, 0) + 4
        return _weighted(self.rng, weights)

    def _session(self, rows: _Rows, person: _Person, day: date, spike_projects: list[str]) -> None:
        rng = self.rng
        refactor = bool(spike_projects) and rng.random() < 0.75
        if refactor:
            project_name = rng.choice(spike_projects)
            agent_spec = (
                self.agent_specs["Code Assistant"]
                if rng.random() < 0.8
                else self.agent_specs[_weighted(rng, person.agents)]
            )
        else:
            project_name = _weighted(rng, person.spec.projects)
            agent_spec = self.agent_specs[_weighted(rng, person.agents)]
        project, agent = self.projects[project_name], self.agents[agent_spec.name]
        repository = rng.choice(self.repositories[project_name])
        tags = (self.tags["refactor"],) if refactor else (self.tags["experiment"],) if rng.random() < 0.06 else ()
        where = {"person": person, "project": project, "repository": repository, "agent": agent, "tags": tags}

        t = self._start(day, person.shift)
        session = dict(
            org_id=self.org.pk,
            session_id=self._id("ses"),
            user_id=person.user.pk,
            agent_id=agent.pk,
            project_id=project.pk,
            first_seen=t,
            last_seen=t,
        )
        rows.sessions.append(session)
        where["session"] = session
        self._event(rows, when=t, kind=ActivityKind.SESSION_START, **where)
        conversation = self._id("conv")
        self._event(rows, when=t + timedelta(seconds=1), kind=ActivityKind.THREAD_CREATED, **where)

        model = self._model_for(person, agent_spec)
        context = int(agent_spec.context * rng.uniform(0.7, 1.5))
        cached_prefix, last_call = 0, t
        lines_scale = 6 if refactor else 1
        commits = 0
        for turn in range(1 + poisson(rng, agent_spec.turns * (1.5 if refactor else 1))):
            if turn:
                # Reading, thinking, a meeting: the prompt cache lives five minutes.
                t += timedelta(seconds=rng.expovariate(1 / 150) + (rng.uniform(600, 2400) if rng.random() < 0.1 else 0))
                if rng.random() < 0.12:
                    conversation = self._id("conv")
                    self._event(rows, when=t, kind=ActivityKind.THREAD_CREATED, **where)
                if rng.random() < 0.1:
                    model = self._model_for(person, agent_spec)
                    cached_prefix = 0
            self._event(rows, when=t, kind=ActivityKind.MESSAGE_SENT, **where)
            t += timedelta(seconds=rng.uniform(0.5, 2))
            self._event(rows, when=t, kind=ActivityKind.AGENT_RUN, **where)
            if agent_spec.retrieves:
                error = rng.random() < 0.02
                self._record(
                    rows,
                    when=t,
                    model=EMBEDDING_MODEL,
                    service_type=ServiceType.EMBEDDING,
                    tokens=Tokens() if error else Tokens(input=rng.randint(20, 400)),
                    duration_ms=rng.randint(60, 300),
                    api_key="Agent gateway",
                    conversation=conversation,
                    error=error,
                    **where,
                )
                t += timedelta(seconds=rng.uniform(0.2, 1))
            for call in range(1 + poisson(rng, agent_spec.calls * (1.3 if refactor else 1))):
                context += int(agent_spec.step * rng.lognormvariate(0, 0.6))
                warm = (t - last_call).total_seconds() < 300
                visible = int(agent_spec.output * rng.lognormvariate(0, 0.7)) + 20
                tokens, reasoning, duration = self._call(model, context, cached_prefix, warm, visible)
                # A turn opens with a chat reply; the tool loop that follows is agent work.
                service = ServiceType.TEXT_GENERATION if agent_spec.chat or call == 0 else ServiceType.AGENT
                error = rng.random() < 0.02
                if error:
                    (tokens, duration), reasoning = self._failed(tokens), 0
                self._record(
                    rows,
                    when=t,
                    model=model,
                    service_type=service,
                    tokens=tokens,
                    reasoning=reasoning,
                    duration_ms=duration,
                    api_key="Agent gateway",
                    conversation=conversation,
                    error=error,
                    **where,
                )
                last_call = t
                t += timedelta(milliseconds=duration) + timedelta(seconds=rng.uniform(1, 12))  # tools run
                if not error:
                    cached_prefix = context
                    context += tokens.output - reasoning
                if context > 160_000:  # the agent compacts its context; the cache starts over
                    context, cached_prefix = int(agent_spec.context * 1.5), 0
            if rng.random() < (0.9 if refactor else agent_spec.diff):
                added = int(agent_spec.lines * lines_scale * rng.lognormvariate(0, 0.9)) + 1
                removed = int(added * rng.uniform(0.05, 0.9 if refactor else 0.5))
                accepted = rng.random() < agent_spec.accept
                t += timedelta(seconds=rng.uniform(10, 90))
                self._event(
                    rows,
                    when=t,
                    kind=ActivityKind.DIFF_ACCEPTED if accepted else ActivityKind.DIFF_REJECTED,
                    added=added,
                    removed=removed,
                    **where,
                )
                if accepted and rng.random() < 0.4:
                    t += timedelta(seconds=rng.uniform(20, 240))
                    self._event(rows, when=t, kind=ActivityKind.COMMIT, added=added, removed=removed, **where)
                    commits += 1
            if rng.random() < 0.35:
                self._event(rows, when=t + timedelta(seconds=2), kind=ActivityKind.TASK_COMPLETED, **where)
        if commits and rng.random() < 0.35:
            t += timedelta(seconds=rng.uniform(30, 300))
            self._event(rows, when=t, kind=ActivityKind.PULL_REQUEST, **where)
            self._ci_review(rows, person, t + timedelta(seconds=rng.uniform(30, 180)), project, repository)
        t += timedelta(seconds=rng.uniform(20, 300))
        self._event(rows, when=t, kind=ActivityKind.SESSION_END, **where)
        session["last_seen"] = t
        rows.resources.append(
            dict(  # the session's sandbox
                org_id=self.org.pk,
                resource_id=self._id("res"),
                start=session["first_seen"],
                end=t + timedelta(seconds=30),
                user_id=person.user.pk,
                team_id=person.team.pk,
                project_id=project.pk,
                agent_id=agent.pk,
                cpu_cores=Decimal(agent_spec.cpu),
                ram_gb=Decimal(agent_spec.ram),
                storage_gb=Decimal(agent_spec.storage),
            )
        )

    def _ci_review(self, rows: _Rows, person: _Person, t: datetime, project: Project, repository: Repository) -> None:
        """A pull request triggers Scan & Review in CI: an agent run outside any session."""
        rng = self.rng
        spec = self.agent_specs["Scan & Review"]
        where = {
            "person": person,
            "project": project,
            "repository": repository,
            "agent": self.agents[spec.name],
            "tags": (self.tags["ci"],),
        }
        self._event(rows, when=t, kind=ActivityKind.AGENT_RUN, **where)
        start, model = t, _weighted(rng, spec.models)
        context, cached_prefix, last_call = int(spec.context * rng.uniform(0.8, 2.0)), 0, t
        for _ in range(2 + poisson(rng, spec.calls)):
            context += int(spec.step * rng.lognormvariate(0, 0.5))
            warm = (t - last_call).total_seconds() < 300
            visible = int(spec.output * rng.lognormvariate(0, 0.6)) + 20
            tokens, reasoning, duration = self._call(model, context, cached_prefix, warm, visible)
            error = rng.random() < 0.02
            if error:
                (tokens, duration), reasoning = self._failed(tokens), 0
            self._record(
                rows,
                when=t,
                model=model,
                service_type=ServiceType.AGENT,
                tokens=tokens,
                reasoning=reasoning,
                duration_ms=duration,
                api_key="CI",
                error=error,
                **where,
            )
            last_call = t
            if not error:
                cached_prefix = context
            t += timedelta(milliseconds=duration) + timedelta(seconds=rng.uniform(1, 5))
        rows.resources.append(
            dict(
                org_id=self.org.pk,
                resource_id=self._id("res"),
                start=start,
                end=t + timedelta(seconds=20),
                user_id=person.user.pk,
                team_id=person.team.pk,
                project_id=project.pk,
                agent_id=where["agent"].pk,
                cpu_cores=Decimal(2),
                ram_gb=Decimal(4),
                storage_gb=Decimal(10),
            )
        )

    def _experiment(self, rows: _Rows, person: _Person, day: date) -> None:
        """Someone tries a prompt in the sandbox: a few calls, now and then an image or a recording."""
        rng = self.rng
        t = self._start(day, person.shift)
        project_name = _weighted(rng, person.spec.projects)
        where = {
            "person": person,
            "project": self.projects[project_name],
            "api_key": "Sandbox",
            "tags": (self.tags["experiment"],),
            "conversation": self._id("conv"),
        }
        roll = rng.random()
        if roll < 0.1:
            service, model = ServiceType.IMAGE, rng.choice(("gpt-5", "gemini-2.5-pro"))
        elif roll < 0.15:
            service, model = ServiceType.SPEECH_TO_TEXT, "gemini-2.5-pro"
        else:
            service, model = ServiceType.TEXT_GENERATION, person.favourite or rng.choice(MODELS[:5]).name
        context, cached_prefix = rng.randint(300, 6_000), 0
        for _ in range(1 + poisson(rng, 3)):
            if service == ServiceType.IMAGE:
                context += rng.randint(800, 2_500)  # an image is a few thousand input tokens
            elif service == ServiceType.SPEECH_TO_TEXT:
                context = rng.randint(2_000, 20_000)  # about 32 tokens a second of audio
            else:
                context += rng.randint(100, 1_500)
            tokens, reasoning, duration = self._call(
                model, context, cached_prefix, True, int(400 * rng.lognormvariate(0, 0.8)) + 10
            )
            error = rng.random() < 0.02
            if error:
                (tokens, duration), reasoning = self._failed(tokens), 0
            self._record(
                rows,
                when=t,
                model=model,
                service_type=service,
                tokens=tokens,
                reasoning=reasoning,
                duration_ms=duration,
                error=error,
                **where,
            )
            cached_prefix = context if service == ServiceType.TEXT_GENERATION else 0
            t += timedelta(milliseconds=duration) + timedelta(seconds=rng.uniform(15, 240))

    def _embedding_job(self, rows: _Rows, person: _Person, day: date) -> None:
        """A batch job re-indexes documents: a burst of large embedding calls."""
        rng = self.rng
        t = self._start(day, person.shift)
        project_name = _weighted(rng, person.spec.projects)
        where = {
            "person": person,
            "project": self.projects[project_name],
            "repository": rng.choice(self.repositories[project_name]),
            "api_key": "Data jobs",
            "tags": (self.tags["batch"],),
        }
        for _ in range(rng.randint(15, 80)):
            error = rng.random() < 0.02
            tokens = Tokens() if error else Tokens(input=rng.randint(2_000, 8_000))
            duration = rng.randint(150, 900)
            self._record(
                rows,
                when=t,
                model=EMBEDDING_MODEL,
                service_type=ServiceType.EMBEDDING,
                tokens=tokens,
                duration_ms=duration,
                error=error,
                **where,
            )
            t += timedelta(milliseconds=duration + rng.randint(50, 1500))

    def _production(self, rows: _Rows, day: date) -> None:
        """Fleet Manager's operator assistant runs in production on one engineer's key, day and night."""
        rng = self.rng
        person = self.key_owners["Fleet production"] or self.people[0]
        project = self.projects["Fleet Manager"]
        repository = self.repositories["Fleet Manager"][0]
        where = {
            "person": person,
            "project": project,
            "repository": repository,
            "api_key": "Fleet production",
            "tags": (self.tags["prod"],),
        }
        midnight = datetime.combine(day, clock(0), tzinfo=self.tz).astimezone(UTC)
        for hour in range(24):
            # Robots work shifts too: busiest in the local daytime, never idle.
            for _ in range(poisson(rng, 1.2 + 2.5 * HOUR_WEIGHTS[hour] / 9)):
                t = midnight + timedelta(hours=hour, seconds=rng.randrange(3600))
                model = "gpt-5-mini" if rng.random() < 0.7 else "claude-haiku-4-5"
                tokens, reasoning, duration = self._call(
                    model, rng.randint(1_500, 6_000), 1_024, True, int(180 * rng.lognormvariate(0, 0.5)) + 10
                )
                error = rng.random() < 0.02
                if error:
                    (tokens, duration), reasoning = self._failed(tokens), 0
                self._record(
                    rows,
                    when=t,
                    model=model,
                    service_type=ServiceType.TEXT_GENERATION,
                    tokens=tokens,
                    reasoning=reasoning,
                    duration_ms=duration,
                    conversation=self._id("conv"),
                    error=error,
                    **where,
                )

    def _volumes(self, rows: _Rows, day: date) -> None:
        """Each agent keeps a service and its indexes running all day: allocation, whoever uses it."""
        start = datetime.combine(day, clock(0), tzinfo=self.tz).astimezone(UTC)
        end = datetime.combine(day + timedelta(days=1), clock(0), tzinfo=self.tz).astimezone(UTC)
        for spec in AGENTS:
            rows.resources.append(
                dict(
                    org_id=self.org.pk,
                    resource_id=self._id("res"),
                    start=start,
                    end=end,
                    agent_id=self.agents[spec.name].pk,
                    cpu_cores=Decimal("0.5"),
                    ram_gb=Decimal(2),
                    storage_gb=Decimal(spec.storage * 8),
                )
            )


def _price_fields(prices: tuple[str, str, str, str]) -> dict[str, Decimal]:
    return dict(zip(("input", "cached_input", "cache_write", "output"), map(Decimal, prices), strict=False))
