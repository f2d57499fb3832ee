#!/usr/bin/env python
"""The dataset of issue 4's query benchmark: one skewed, believable org, loaded with COPY.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/dataset.py \\
        [--records 10000000] [--days 90] [--seed 1] [--now 2026-11-22T06:00:00Z] \\
        [--db tally_bench_queries] [--drop] [--verify]

It recreates its own database (default `tally_bench_queries`) on the server
DATABASE_URL names, migrates it and loads the org "Bench" (Europe/Berlin):
1,000 users in 50 uneven teams, 40 projects, 40-80 repositories, 20 agents,
12 models of the default price list, 200 API keys, 20 tags and `--records`
usage records over the `--days` days before `now`. About 70 % of the records
belong to agent and chat sessions of 20-50 requests (with conversations,
growing contexts and prompt caching); the rest are people's direct API calls
and service accounts' traffic around the clock. Activity events (40 % as
many as records) come from the sessions; resource allocations are few. Use
is Zipf-skewed over users, projects, agents and tags, follows office hours
and weekdays in Berlin, grows over the period, and ~2 % of requests fail.
Every record is priced with metering.pricing, as ingestion would price it.

The database is kept for bench/queries.py (`--drop` drops it at the end);
`loaded_params()` tells what it holds, including the pinned `now`. The same
`--seed` and `--now` give the same rows (natural keys; ids may differ).

Speed: rows are generated an org-local day at a time and written with COPY
in one transaction that first truncates the tables, so COPY ... FREEZE
writes them frozen and all-visible (no VACUUM afterwards). While it runs,
the bulk tables' non-unique indexes are dropped and triggers (the foreign
key checks) are off for the session; the indexes are rebuilt afterwards,
the tables analysed, and each phase is timed.
"""

import argparse
import bisect
import hashlib
import json
import os
import random
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_DB = "tally_bench_queries"
UTC = timezone.utc
HOUR = timedelta(hours=1)

# --- The org's shape --------------------------------------------------------

USERS, TEAMS, PROJECTS, SERVICE_USERS = 1000, 50, 40, 10  # the last users are service accounts
SESSION_SHARE, SERVICE_SHARE = 0.70, 0.12  # of the records; the rest are people's direct calls
EVENTS_PER_RECORD = 0.40
ERROR_RATE = 0.02
TAGGED_SESSIONS, TAGGED_CALLS = 0.30, 0.25

# name, vendor of its models, service type of its requests
AGENTS = [
    ("Claude Code", "anthropic", "agent"),
    ("Codex CLI", "openai", "agent"),
    ("Cursor", "mixed", "agent"),
    ("Copilot Chat", "openai", "text_generation"),
    ("Gemini CLI", "google", "agent"),
    ("Aider", "mixed", "agent"),
    ("Cline", "anthropic", "agent"),
    ("Review Bot", "anthropic", "agent"),
    ("Triage", "openai", "agent"),
    ("Docs Writer", "google", "text_generation"),
    ("Test Writer", "anthropic", "agent"),
    ("SecOps", "openai", "agent"),
    ("Refactor", "anthropic", "agent"),
    ("Migrations", "openai", "agent"),
    ("Release Notes", "google", "text_generation"),
    ("Slack Assistant", "openai", "text_generation"),
    ("Data Analyst", "google", "agent"),
    ("Support Copilot", "anthropic", "text_generation"),
    ("Oncall Helper", "openai", "agent"),
    ("Planner", "mixed", "agent"),
]
# A session's main model by its agent's vendor, and the small model its side calls use.
SESSION_MODELS = {
    "anthropic": ({"claude-sonnet-4-5": 70, "claude-opus-4-5": 20, "claude-haiku-4-5": 10}, "claude-haiku-4-5"),
    "openai": ({"gpt-5": 45, "gpt-5-mini": 30, "gpt-4.1": 15, "gpt-4.1-mini": 10}, "gpt-5-nano"),
    "google": ({"gemini-2.5-pro": 60, "gemini-2.5-flash": 40}, "gemini-2.5-flash"),
    "mixed": ({"claude-sonnet-4-5": 45, "gpt-5": 30, "gemini-2.5-pro": 15, "claude-opus-4-5": 10}, "gpt-5-mini"),
}
# Direct API calls: service type -> models.
CALL_TYPES = {"text_generation": 70, "embedding": 25, "speech_to_text": 3, "text_to_speech": 2}
CALL_MODELS = {
    "text_generation": {
        "gpt-5-mini": 25,
        "gpt-4o-mini": 20,
        "claude-haiku-4-5": 15,
        "gemini-2.5-flash": 15,
        "gpt-4.1-mini": 10,
        "gpt-5-nano": 10,
        "claude-sonnet-4-5": 5,
    },
    "embedding": {"text-embedding-3-small": 1},
    "speech_to_text": {"gpt-4o-mini": 1},
    "text_to_speech": {"gpt-4o-mini": 1},
}
# Share of output spent reasoning, at most; models absent here do not reason.
REASONING = {
    "gpt-5": 0.7,
    "gpt-5-mini": 0.6,
    "gpt-5-nano": 0.5,
    "gemini-2.5-pro": 0.6,
    "gemini-2.5-flash": 0.4,
    "claude-opus-4-5": 0.3,
}
CACHE_WRITERS = {"claude-sonnet-4-5", "claude-opus-4-5", "claude-haiku-4-5"}  # billed for cache writes
TAGS = (
    "prod ci interactive experiment batch eval backfill hotfix migration security "
    "docs frontend backend infra data ml support oncall demo customer-acme"
).split()
EVENT_MIX = {
    "message_sent": 30,
    "agent_run": 25,
    "diff_accepted": 18,
    "diff_rejected": 7,
    "task_completed": 8,
    "commit": 8,
    "pull_request": 4,
}
# People's activity by local hour and weekday (Monday first).
HOUR_PROFILE = [
    float(x) for x in "0.02 .01 .01 .01 .01 .02 .05 .15 .45 .85 1 .95 .6 .75 .95 1 .9 .7 .4 .25 .2 .15 .08 .04".split()
]
WEEKDAY_PROFILE = (1.0, 1.05, 1.05, 1.0, 0.85, 0.12, 0.08)

# Column lists of the COPYs; row tuples are built in this order.
COLUMNS = {
    "metering_session": "id, org_id, session_id, first_seen, last_seen, user_id, agent_id, project_id",
    "metering_usagerecord": (
        "id, org_id, timestamp, received_at, metadata, request_id, provider, service_type, status, "
        "input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens, cost, "
        "cost_source, price_id, duration_ms, conversation_id, user_id, team_id, project_id, repository_id, "
        "agent_id, session_id, model_id, api_key_id, request_count, source"
    ),
    "metering_usagerecordtag": "id, record_id, tag_id",
    "metering_activityevent": (
        "id, org_id, timestamp, received_at, metadata, event_id, kind, lines_added, lines_removed, quantity, "
        "user_id, team_id, project_id, repository_id, agent_id, session_id, source"
    ),
    "metering_activityeventtag": "id, event_id, tag_id",
    "metering_resourceusage": (
        'id, org_id, resource_id, start, "end", cpu_cores, ram_gb, storage_gb, received_at, '
        "user_id, team_id, project_id, agent_id"
    ),
}
BULK_TABLES = list(COLUMNS)
FLUSH_ROWS = 60_000  # usage records per COPY round: bounds memory whatever the total


def zipf(n: int, s: float) -> list[float]:
    return [1 / (i + 1) ** s for i in range(n)]


def cumulative(weights) -> list[float]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out


def allocate(total: int, weights: list[float]) -> list[int]:
    """`total` split in proportion to `weights`, exactly (largest remainders)."""
    scale = total / sum(weights)
    quotas = [w * scale for w in weights]
    counts = [int(q) for q in quotas]
    for i in sorted(range(len(quotas)), key=lambda i: counts[i] - quotas[i])[: total - sum(counts)]:
        counts[i] += 1
    return counts


def session_sizes(rng: random.Random, total: int) -> list[int]:
    """Session lengths of 20-50 requests (fewer only if `total` is tiny) adding up to `total` exactly."""
    if total == 0:
        return []
    count = max(1, round(total / 35))
    lo, hi = min(20, total // count), max(50, -(-total // count))
    sizes = [rng.randint(lo, hi) for _ in range(count)]
    missing = total - sum(sizes)
    while missing:  # nudge random sessions a request at a time, within bounds
        i, step = rng.randrange(count), 1 if missing > 0 else -1
        if lo <= sizes[i] + step <= hi:
            sizes[i] += step
            missing -= step
    return sizes


class Picker:
    """rng.choices for a fixed population, with the cumulative weights computed once."""

    def __init__(self, rng: random.Random, weights: dict):
        self.rng, self.items, self.cum = rng, list(weights), cumulative(weights.values())

    def __call__(self):
        return self.items[bisect.bisect(self.cum, self.rng.random() * self.cum[-1])]


class Person:
    __slots__ = ("id", "team", "moves", "weight", "weekend", "first_day", "away", "key", "agent", "project")

    def team_on(self, day: int) -> int:
        # Records keep the team of their day: a move never rewrites history.
        return self.moves[1] if self.moves and day >= self.moves[0] else self.team


# --- Database helpers (used by bench/queries.py too) -------------------------


def server_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit("Set DATABASE_URL to a PostgreSQL server, e.g. postgres://postgres@127.0.0.1:5432/postgres")
    return url


def with_database(url: str, name: str) -> str:
    return urlparse(url)._replace(path=f"/{name}").geturl()


def recreate_database(url: str, name: str, drop_only: bool = False) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if not drop_only:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def loaded_params() -> dict | None:
    """What `load()` put in the current database ({records, days, seed, now, ...}), or None if it did not finish."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = current_database()"
        )
        comment = cursor.fetchone()[0]
    try:
        params = json.loads(comment or "")
    except ValueError:
        return None
    return params if isinstance(params, dict) and params.get("dataset") == "tally-bench" else None


def _execute(sql: str, params=None) -> list:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def _secondary_indexes(table: str) -> list[tuple[str, str]]:
    """(name, CREATE INDEX statement) of the table's indexes that back no constraint and enforce nothing."""
    return _execute(
        "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = %s::regclass AND NOT x.indisunique "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid) ORDER BY 1",
        [table],
    )


# --- The loader ---------------------------------------------------------------


class Loader:
    def __init__(self, *, records: int, days: int, seed: int, now: datetime):
        self.total, self.days, self.seed = records, days, seed
        self.now = now.astimezone(UTC)
        self.start = self.now - timedelta(days=days)
        self.rng = random.Random(seed)
        self.rows = {table: [] for table in BULK_TABLES}
        self.counts = dict.fromkeys(BULK_TABLES, 0)
        self.copy_seconds = dict.fromkeys(BULK_TABLES, 0.0)
        self.seq = {"req": 0, "evt": 0, "ses": 0, "conv": 0}

    # -- dimensions, through the ORM: a few thousand rows --

    def build_dimensions(self) -> None:
        from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX

        from accounts.models import ApiKey, Membership, Organization, Role, Tag, Team, User
        from metering.models import Agent, LLMModel, Project, Repository
        from metering.pricing import PriceBook, Tokens, cost_of

        rng = self.rng
        for table in BULK_TABLES:
            if _execute(f"SELECT EXISTS (SELECT 1 FROM {table})")[0][0]:
                raise RuntimeError(f"{table} has rows: load into a freshly migrated database.")
        org = self.org = Organization.objects.create(name="Bench", slug="bench", timezone="Europe/Berlin")
        self.org_id = org.id  # plain ints in the hot path: Model.pk is a property
        self.tz = org.tzinfo
        self.first_date = self.start.astimezone(self.tz).date()

        areas = "Platform Payments Search Mobile Data Infra Growth Security Support ML".split()
        names = [f"{area}{suffix}" for suffix in ("", " Core", " Labs", " East", " West") for area in areas]
        teams = Team.objects.bulk_create(Team(org=org, name=name) for name in names[:TEAMS])
        words = (
            "atlas billing checkout catalog search ledger gateway console mobile-app web-app insights "
            "pipeline warehouse identity notifications scheduler payroll crm support-portal docs-site "
            "recommender fraud pricing inventory shipping onboarding analytics design-system auth "
            "marketplace chat telemetry cdn backup compliance forecasting ingestion labeling sandbox ops-portal"
        ).split()
        projects = Project.objects.bulk_create(Project(org=org, name=name) for name in words[:PROJECTS])
        project_w = zipf(PROJECTS, 1.0)
        rng.shuffle(project_w)  # the busiest projects are not the first named
        self.project_pick_global = Picker(rng, {p.pk: w for p, w in zip(projects, project_w, strict=True)})
        # One repository per project, then 20-40 more where the work is.
        per_project = [1] * PROJECTS
        for i in rng.choices(range(PROJECTS), project_w, k=rng.randint(20, 40)):
            per_project[i] += 1
        suffixes = ["", "-api", "-web", "-infra", "-ml", "-cli", "-docs", "-sdk"]
        repos = Repository.objects.bulk_create(
            Repository(org=org, project=p, name=f"{p.name}{suffixes[k]}")
            for p, n in zip(projects, per_project, strict=True)
            for k in range(min(n, len(suffixes)))
        )
        self.repos_of = {}
        for r in repos:
            self.repos_of.setdefault(r.project_id, []).append(r.pk)
        agents = Agent.objects.bulk_create(Agent(org=org, name=name) for name, _, _ in AGENTS)
        self.agent_info = {a.pk: spec for a, spec in zip(agents, AGENTS, strict=True)}
        agent_w = zipf(len(AGENTS), 1.1)
        tags = Tag.objects.bulk_create(Tag(org=org, name=name) for name in TAGS)
        self.tag_pick = Picker(rng, {t.pk: w for t, w in zip(tags, zipf(len(tags), 0.9), strict=True)})

        models = {m.name: m for m in LLMModel.objects.all()}
        wanted = {name for mix, small in SESSION_MODELS.values() for name in [*mix, small]}
        wanted |= {name for mix in CALL_MODELS.values() for name in mix}
        missing = wanted - set(models)
        if missing:
            raise RuntimeError(f"Models missing from the price list: {sorted(missing)}")
        self.model_info = {
            models[n].pk: (models[n].provider, REASONING.get(n, 0.0), n in CACHE_WRITERS) for n in sorted(wanted)
        }
        self.session_models = {
            vendor: (Picker(rng, {models[n].pk: w for n, w in mix.items()}), models[small].pk)
            for vendor, (mix, small) in SESSION_MODELS.items()
        }
        self.call_type = Picker(rng, CALL_TYPES)
        self.event_kind = Picker(rng, EVENT_MIX)
        self.call_models = {t: Picker(rng, {models[n].pk: w for n, w in mix.items()}) for t, mix in CALL_MODELS.items()}
        self.book = PriceBook.load()
        self.tokens, self.cost_of = Tokens, cost_of  # bound once: no import per record
        self.prices = {}  # (model id, UTC date) -> ModelPrice, memoising PriceBook.price_at

        # People: Zipf-skewed use over a shuffled order, so heavy users land in any team.
        users = User.objects.bulk_create(
            User(
                email=f"{'svc' if i >= USERS - SERVICE_USERS else 'user'}{i:04d}@bench.example",
                name=f"Service {i}" if i >= USERS - SERVICE_USERS else f"User {i:04d}",
                password=UNUSABLE_PASSWORD_PREFIX + "bench",
            )
            for i in range(USERS)
        )
        team_w = zipf(TEAMS, 0.7)
        rng.shuffle(team_w)
        humans = users[: USERS - SERVICE_USERS]
        human_w = zipf(len(humans), 0.8)
        rng.shuffle(human_w)
        self.people: list[Person] = []
        for i, (user, weight) in enumerate(zip(users, human_w + zipf(SERVICE_USERS, 1.0), strict=True)):
            p = Person()
            p.id, p.weight, p.moves, p.key = user.pk, weight, None, None
            # Every team gets one person first, the rest join by the teams' weights (uneven sizes).
            p.team = teams[i].pk if i < TEAMS else rng.choices(teams, team_w)[0].pk
            p.weekend = 0.8 if rng.random() < 0.15 else 0.1
            p.first_day = rng.randint(1, max(1, self.days - 10)) if rng.random() < 0.08 else 0
            away = set()
            if rng.random() < 0.5:  # a holiday
                first = rng.randrange(self.days)
                away.update(range(first, first + rng.randint(5, 10)))
            away.update(d for d in range(self.days + 1) if rng.random() < 0.04)
            p.away = frozenset(away)
            favourites = []  # three agents, drawn by their popularity, used 70/20/10
            while len(favourites) < 3:
                agent = rng.choices(agents, agent_w)[0]
                if agent.pk not in favourites:
                    favourites.append(agent.pk)
            p.agent = Picker(rng, dict(zip(favourites, (0.7, 0.2, 0.1), strict=True)))
            home = rng.choices(projects, project_w, k=2)
            p.project = Picker(rng, {home[0].pk: 0.6, home[1].pk: 0.25, None: 0.15})  # None: any project
            self.people.append(p)
        self.humans, self.services = self.people[: USERS - SERVICE_USERS], self.people[USERS - SERVICE_USERS :]
        for p in rng.sample(self.humans[TEAMS:], 10):  # a few people change teams mid-period
            p.moves = (rng.randint(self.days // 4, 3 * self.days // 4), rng.choice(teams).pk)
        current_team = {p.id: p.team_on(self.days + 1) for p in self.people}

        memberships = Membership.objects.bulk_create(
            Membership(
                org=org,
                user=user,
                role=Role.ADMIN if i == 0 else Role.MANAGER if i < TEAMS else Role.MEMBER,
                external_id=f"emp-{i:04d}" if i % 3 == 0 else "",
            )
            for i, user in enumerate(users)
        )
        Membership.teams.through.objects.bulk_create(
            Membership.teams.through(membership_id=m.pk, team_id=current_team[m.user_id]) for m in memberships
        )

        # 200 keys: one per team (shared by its scripts and services), personal keys for the
        # 149 heaviest people, and one org-wide read key for bench/queries.py.
        def key(i, **fields):
            secret = f"bench{self.seed}k{i:03d}"
            prefix = f"b{i:03d}" + hashlib.sha256(secret.encode()).hexdigest()[:8]
            return ApiKey(org=org, prefix=prefix, secret_hash=ApiKey.hash_secret(secret), **fields), secret

        specs = [key(0, name="bench read", scope_ingest=False, scope_read=True)]
        specs += [key(1 + k, name=f"{t.name} ingest", default_team=t) for k, t in enumerate(teams)]
        heavy = sorted(self.humans, key=lambda p: -p.weight)[: 200 - len(specs)]
        specs += [
            key(len(specs) + k, name=f"personal {p.id}", owner_id=p.id, scope_read=True) for k, p in enumerate(heavy)
        ]
        keys = ApiKey.objects.bulk_create(k for k, _ in specs)
        self.read_key = f"tly_{keys[0].prefix}_{specs[0][1]}"
        self.team_key = {t.pk: k.pk for t, k in zip(teams, keys[1 : 1 + TEAMS], strict=True)}
        for p, k in zip(heavy, keys[1 + TEAMS :], strict=True):
            p.key = k.pk
        self.dimension_counts = {
            "users": len(users),
            "teams": len(teams),
            "projects": len(projects),
            "repositories": len(repos),
            "agents": len(agents),
            "models": len(self.model_info),
            "api keys": len(keys),
            "tags": len(tags),
        }

    # -- time: each UTC hour of [start, now) weighted by people's and services' rhythm --

    def hour_slots(self) -> list[tuple]:
        """(day index, slot start, slot end, people's weight, services' weight) for each UTC hour.

        Berlin's offsets are whole hours, so a UTC hour is one local hour; DST days
        simply have 23 or 25 of them.
        """
        slots, t = [], self.start.replace(minute=0, second=0, microsecond=0)
        span = self.now - self.start
        while t < self.now:
            lo, hi = max(t, self.start), min(t + HOUR, self.now)
            local = t.astimezone(self.tz)
            size = (hi - lo) / HOUR * (0.8 + 0.4 * ((lo - self.start) / span))  # adoption grows
            people = size * HOUR_PROFILE[local.hour] * WEEKDAY_PROFILE[local.weekday()]
            slots.append(((local.date() - self.first_date).days, lo, hi, people, size))
            t += HOUR
        return slots

    def people_on(self, day: int) -> Picker:
        weekend = (self.first_date + timedelta(days=day)).weekday() >= 5
        weights = {
            p: p.weight * (p.weekend if weekend else 1.0)
            for p in self.humans
            if day >= p.first_day and day not in p.away
        }
        return Picker(self.rng, weights)

    # -- rows --

    def price(self, model_id: int, ts: datetime):
        key = (model_id, ts.date())  # ts is UTC; prices change at 00:00 UTC
        price = self.prices.get(key)
        if price is None:
            price = self.prices[key] = self.book.price_at(model_id, ts)
            if price is None:
                raise RuntimeError(f"No price for model {model_id} at {ts}")
        return price

    def record(self, ts, attribution, model, service, key, conv, tokens, tags) -> None:
        """Append one usage record and its tag links.

        attribution = (user, team, project, repository, agent, session) ids, the column order of both
        records and events; tokens = (input, cached input, cache write, output).
        """
        rng = self.rng
        inp, cached, cache_write, out = tokens
        provider, reasoning_share, _ = self.model_info[model]
        status = "success"
        if rng.random() < ERROR_RATE:
            status, out = "error", 0
        reasoning = int(out * reasoning_share * rng.random()) if reasoning_share else 0
        duration = 250 + out * 12 + int(rng.random() * 1500) if status == "success" else rng.randint(100, 30_000)
        price = self.price(model, ts)
        cost = self.cost_of(self.tokens(inp, cached, cache_write, out), price)
        self.seq["req"] += 1
        rid = self.next_id["metering_usagerecord"]
        self.next_id["metering_usagerecord"] = rid + 1
        self.rows["metering_usagerecord"].append(
            (rid, self.org_id, ts, ts, "{}", f"req-{self.seq['req']:09d}", provider, service, status)
            + (inp, cached, cache_write, out, reasoning, cost, "priced", price.id, duration, conv)
            + attribution
            + (model, key, 1, "api")  # one request each, as the ingest API stores them
        )
        self.link("metering_usagerecordtag", rid, tags)

    def link(self, table: str, row_id: int, tags) -> None:
        for tag in tags:
            self.rows[table].append((self.next_id[table], row_id, tag))
            self.next_id[table] += 1

    def pick_tags(self, share: float) -> tuple:
        if self.rng.random() >= share:
            return ()
        first = self.tag_pick()
        second = self.tag_pick() if self.rng.random() < 0.35 else first
        return (first,) if second == first else (first, second)

    def event(self, ts, kind, attribution, tags, lines=(0, 0)) -> None:
        eid = self.next_id["metering_activityevent"]
        self.next_id["metering_activityevent"] = eid + 1
        self.seq["evt"] += 1
        self.rows["metering_activityevent"].append(
            (eid, self.org_id, ts, ts, "{}", f"evt-{self.seq['evt']:09d}", kind, lines[0], lines[1], 1)
            + attribution
            + ("api",)
        )
        self.link("metering_activityeventtag", eid, tags)

    def session(self, day: int, t0: datetime, n: int, person: Person) -> None:
        """A session of n requests from t0: turns of conversations, then the events they led to."""
        rng = self.rng
        team = person.team_on(day)
        agent = person.agent()
        _, vendor, service = self.agent_info[agent]
        main_pick, small = self.session_models[vendor]
        main = main_pick()
        project = person.project() or self.project_pick_global()
        repo = rng.choice(self.repos_of[project])
        key = person.key or self.team_key[team]
        tags = self.pick_tags(TAGGED_SESSIONS)
        sid = self.next_id["metering_session"]
        self.next_id["metering_session"] = sid + 1
        self.seq["ses"] += 1
        attribution = (person.id, team, project, repo, agent, sid)

        # Request times: a few seconds to minutes apart; a session still open at `now` is squeezed before it.
        gap = rng.lognormvariate(3.6, 0.5)
        offsets, t = [], 0.0
        for _ in range(n):
            t += 1 + rng.expovariate(1 / gap)
            offsets.append(t)
        room = (self.now - t0).total_seconds() - 1
        is_open = offsets[-1] + 60 > room
        if is_open:
            offsets = [o * room / (offsets[-1] + 60) for o in offsets]
        times = [t0 + timedelta(seconds=o) for o in offsets]

        conversations, i = [], 0
        while i < n:
            size = rng.randint(4, 15)
            self.seq["conv"] += 1
            conversations.append((i, f"conv-{self.seq['conv']:09d}"))
            context = int(rng.lognormvariate(8.3, 0.6))  # system prompt, files, tools
            cache_writes = self.model_info[main][2]
            for turn, ts in enumerate(times[i : i + size]):
                if rng.random() < 0.15:  # a side call on the small model: short, uncached
                    inp = int(rng.lognormvariate(7.2, 0.8)) + 1
                    tokens = (inp, 0, 0, int(rng.lognormvariate(5.0, 0.8)) + 1)
                    model = small
                else:
                    inp = min(context + int(rng.lognormvariate(6.0, 1.0)), 400_000)
                    cached = int(min(context, inp) * (0.3 + 0.6 * rng.random())) if turn else 0
                    cache_write = int((inp - cached) * 0.8) if cache_writes and rng.random() < 0.6 else 0
                    tokens = (inp, cached, cache_write, int(rng.lognormvariate(5.9, 0.9)) + 1)
                    model = main
                    context = inp + tokens[3]
                self.record(ts, attribution, model, service, key, conversations[-1][1], tokens, tags)
            i += size

        # Events: start and end, a thread per conversation, then work by EVENT_MIX, ~40 % as many as records overall.
        first = t0  # the first request comes a second or more later
        last = times[-1] if is_open else times[-1] + timedelta(seconds=rng.randint(1, 30))
        self.event(first, "session_start", attribution, tags)
        if not is_open:
            self.event(last, "session_end", attribution, tags)
        for start, _ in conversations:
            self.event(times[start], "thread_created", attribution, tags)
        wanted = int(n * EVENTS_PER_RECORD / SESSION_SHARE + rng.random())
        span = (times[-1] - times[0]).total_seconds()
        for _ in range(wanted - 1 - (not is_open) - len(conversations)):
            kind = self.event_kind()
            lines = (0, 0)
            if kind in ("diff_accepted", "diff_rejected"):
                added = int(rng.lognormvariate(3.0, 1.1)) + 1
                lines = (added, int(added * 0.8 * rng.random()))
            self.event(times[0] + timedelta(seconds=span * rng.random()), kind, attribution, tags, lines)
        self.rows["metering_session"].append(
            (sid, self.org_id, f"sess-{self.seq['ses']:08d}", first, last, person.id, agent, project)
        )

    def call(self, day: int, ts: datetime, person: Person, service_account: bool) -> None:
        """One request outside any session: people's scripts and apps, or a service's traffic."""
        rng = self.rng
        team = person.team_on(day)
        kind = "text_generation" if service_account and rng.random() < 0.7 else self.call_type()
        model = self.call_models[kind]()
        if kind == "embedding":
            tokens = (int(rng.lognormvariate(6.5, 1.2)) + 1, 0, 0, 0)
        elif kind == "speech_to_text":
            inp = rng.randint(200, 4000)
            tokens = (inp, 0, 0, inp // 3)
        elif kind == "text_to_speech":
            inp = rng.randint(20, 600)
            tokens = (inp, 0, 0, inp * 10)
        else:
            inp = int(rng.lognormvariate(7.2, 1.0)) + 1
            cached = int(inp * 0.8 * rng.random()) if rng.random() < 0.4 else 0
            tokens = (inp, cached, 0, int(rng.lognormvariate(5.5, 0.9)) + 1)
        project = person.project() or self.project_pick_global()
        repo = rng.choice(self.repos_of[project]) if rng.random() < 0.4 else None
        agent = person.agent() if not service_account and rng.random() < 0.25 else None
        key = person.key if person.key and rng.random() < 0.6 else self.team_key[team]
        conv = ""
        if kind == "text_generation" and rng.random() < 0.3:
            self.seq["conv"] += 1
            conv = f"conv-{self.seq['conv']:09d}"
        tags = self.pick_tags(TAGGED_CALLS)
        self.record(ts, (person.id, team, project, repo, agent, None), model, kind, key, conv, tokens, tags)

    def resources(self, count: int, slots) -> None:
        """Agent workloads' allocations, starting when people work, clipped at now."""
        rng = self.rng
        pick_slot = cumulative(s[3] for s in slots)
        agents = list(self.agent_info)
        for i in range(count):
            day, lo, hi, _, _ = slots[bisect.bisect(pick_slot, rng.random() * pick_slot[-1])]
            start = lo + (hi - lo) * rng.random()
            end = min(start + timedelta(minutes=rng.lognormvariate(3.5, 1.0) + 1), self.now)
            if end <= start:
                continue
            person = rng.choice(self.humans) if rng.random() < 0.7 else None
            team = person.team_on(day) if person else rng.choice(list(self.team_key))
            rid = self.next_id["metering_resourceusage"]
            self.next_id["metering_resourceusage"] = rid + 1
            self.rows["metering_resourceusage"].append(
                (rid, self.org_id, f"res-{i:07d}", start, end, rng.choice([0.5, 1, 2, 4, 8, 16]))
                + (rng.choice([1, 2, 4, 8, 16, 32, 64]), rng.randint(1, 500), start)
                + (person.id if person else None, team, self.project_pick_global(), rng.choice(agents))
            )

    # -- writing --

    def flush(self) -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            for table, rows in self.rows.items():
                if not rows:
                    continue
                started = time.perf_counter()
                with cursor.cursor.copy(f"COPY {table} ({COLUMNS[table]}) FROM STDIN (FREEZE)") as copy:
                    for row in rows:
                        copy.write_row(row)
                self.copy_seconds[table] += time.perf_counter() - started
                self.counts[table] += len(rows)
                rows.clear()

    def generate(self, bar) -> None:
        """Plan and write the rows, one hour slot at a time, COPYing every FLUSH_ROWS records."""
        rng = self.rng
        slots = self.hour_slots()
        in_sessions = round(self.total * SESSION_SHARE)
        by_services = round(self.total * SERVICE_SHARE)
        sizes = session_sizes(rng, in_sessions)
        session_counts = allocate(len(sizes), [s[3] for s in slots])
        people_counts = allocate(self.total - in_sessions - by_services, [s[3] for s in slots])
        service_counts = allocate(by_services, [s[4] for s in slots])
        service_pick = Picker(rng, {p: p.weight for p in self.services})
        day_people, pick, sizes = None, None, iter(sizes)
        for (day, lo, hi, _, _), n_sessions, n_people, n_service in zip(
            slots, session_counts, people_counts, service_counts, strict=True
        ):
            if day != day_people:
                day_people, pick = day, self.people_on(day)
            width = (hi - lo).total_seconds()
            for _ in range(n_sessions):
                self.session(day, lo + timedelta(seconds=width * rng.random()), next(sizes), pick())
            for _ in range(n_people):
                self.call(day, lo + timedelta(seconds=width * rng.random()), pick(), False)
            for _ in range(n_service):
                self.call(day, lo + timedelta(seconds=width * rng.random()), service_pick(), True)
            if len(self.rows["metering_usagerecord"]) >= FLUSH_ROWS:
                bar.update(len(self.rows["metering_usagerecord"]))
                self.flush()
        self.resources(max(20, self.total // 2000), slots)
        bar.update(len(self.rows["metering_usagerecord"]))
        self.flush()


def load(*, records: int, days: int, seed: int, now: datetime, progress: bool = True) -> dict:
    """Load the dataset into the (freshly migrated) default database; counts, timings and what was loaded.

    Call after django.setup(). Takes minutes for 10M records.
    """
    from django.db import connection, transaction
    from psycopg import sql
    from tqdm import tqdm

    timings = {}
    started = time.perf_counter()
    loader = Loader(records=records, days=days, seed=seed, now=now)
    loader.build_dimensions()
    timings["dimensions"] = time.perf_counter() - started

    indexes = {table: _secondary_indexes(table) for table in BULK_TABLES}
    for found in indexes.values():
        for name, _ in found:
            _execute(f'DROP INDEX "{name}"')
    try:
        # Replica mode fires no triggers, so no foreign-key checks: the ids are ours and are
        # checked by verify(). Truncating in the same transaction lets COPY write frozen rows.
        _execute("SET session_replication_role = replica")
        generation = time.perf_counter()
        with transaction.atomic(), tqdm(total=records, unit=" rec", unit_scale=True, disable=not progress) as bar:
            # Empty already (checked by build_dimensions), but COPY FREEZE needs the truncation.
            _execute(f"TRUNCATE {', '.join(BULK_TABLES)} CASCADE")  # reaches only empty tables
            loader.next_id = {
                table: _execute("SELECT nextval(pg_get_serial_sequence(%s, 'id'))", [table])[0][0]
                for table in BULK_TABLES
            }
            loader.generate(bar)
        timings["generate + COPY"] = time.perf_counter() - generation
    finally:
        _execute("SET session_replication_role = DEFAULT")
    for table in BULK_TABLES:
        _execute(f"SELECT setval(pg_get_serial_sequence(%s, 'id'), (SELECT max(id) FROM {table}))", [table])

    index_seconds = {}
    _execute("SET maintenance_work_mem = '1GB'")
    for table, found in indexes.items():
        begun = time.perf_counter()
        for _, definition in found:
            _execute(definition)
        index_seconds[table] = (len(found), time.perf_counter() - begun)
    timings["indexes"] = sum(seconds for _, seconds in index_seconds.values())
    _execute("RESET maintenance_work_mem")
    begun = time.perf_counter()
    _execute("ANALYZE")
    timings["analyze"] = time.perf_counter() - begun
    timings["total"] = time.perf_counter() - started

    params = {
        "dataset": "tally-bench",
        "records": records,
        "days": days,
        "seed": seed,
        "now": loader.now.isoformat(),
        "start": loader.start.isoformat(),
        "org": "bench",
        "read_key": loader.read_key,
    }
    with connection.cursor() as cursor:
        comment = sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(connection.settings_dict["NAME"]), sql.Literal(json.dumps(params))
        )
        cursor.execute(comment.as_string(cursor.cursor))
    return {
        **params,
        "org_id": loader.org.pk,
        "dimensions": loader.dimension_counts,
        "counts": loader.counts,
        "copy_seconds": loader.copy_seconds,
        "index_seconds": index_seconds,
        "timings": timings,
    }


# --- Checks -------------------------------------------------------------------


def verify(sample: int = 20_000) -> list[tuple[str, object, bool]]:
    """(check, value, ok) for the invariants the benchmark relies on."""
    from metering.models import ModelPrice
    from metering.pricing import Tokens, cost_of

    params = loaded_params() or {}
    results = []

    def check(name, value, ok):
        results.append((name, value, bool(ok)))

    # Foreign keys, since the load ran without their triggers.
    fks = _execute(
        "SELECT c.conrelid::regclass::text, a.attname, c.confrelid::regclass::text FROM pg_constraint c "
        "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
        "WHERE c.contype = 'f' AND c.conrelid::regclass::text = ANY(%s) ORDER BY 1, 2",
        [BULK_TABLES],
    )
    for table, column, target in fks:
        (dangling,) = _execute(
            f"SELECT count(*) FROM {table} t WHERE t.{column} IS NOT NULL "
            f"AND NOT EXISTS (SELECT 1 FROM {target} r WHERE r.id = t.{column})"
        )[0]
        check(f"FK {table}.{column} -> {target}: dangling", dangling, dangling == 0)

    # Costs: every record within half a unit of the last place of tokens x price (SQL, all rows),
    # and exactly cost_of's answer for a sample (Python, the rounding included).
    (off, unpriced) = _execute(
        "SELECT count(*) FILTER (WHERE abs(u.cost - ((u.input_tokens - u.cached_input_tokens - u.cache_write_tokens)"
        " * p.input + u.cached_input_tokens * p.cached_input + u.cache_write_tokens * p.cache_write"
        " + u.output_tokens * p.output) / 1000000) > 0.00000000005),"
        " count(*) FILTER (WHERE u.cost_source <> 'priced' OR u.price_id IS NULL)"
        " FROM metering_usagerecord u LEFT JOIN metering_modelprice p ON p.id = u.price_id"
    )[0]
    check("records whose cost is not tokens x price / 1e6", off, off == 0)
    check("records not priced from the table", unpriced, unpriced == 0)
    prices = {p.pk: p for p in ModelPrice.objects.all()}
    rows = _execute(
        "SELECT input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, price_id, cost "
        "FROM metering_usagerecord TABLESAMPLE SYSTEM (5) REPEATABLE (1) LIMIT %s",
        [sample],
    )
    wrong = sum(cost_of(Tokens(*r[:4]), prices[r[4]]) != r[5] for r in rows)
    check(f"sampled records ({len(rows):,}) not costed exactly as cost_of", wrong, wrong == 0)

    (bad_tokens,) = _execute(
        "SELECT count(*) FROM metering_usagerecord WHERE cached_input_tokens + cache_write_tokens > input_tokens"
        " OR reasoning_tokens > output_tokens"
    )[0]
    check("records with cached + cache write > input or reasoning > output", bad_tokens, bad_tokens == 0)
    if params:
        (outside,) = _execute(
            "SELECT (SELECT count(*) FROM metering_usagerecord WHERE timestamp < %s OR timestamp >= %s)"
            " + (SELECT count(*) FROM metering_activityevent WHERE timestamp >= %s)",
            [params["start"], params["now"], params["now"]],
        )[0]
        check("records before start or at/after now, events at/after now", outside, outside == 0)

    (mismatched, empty) = _execute(
        "WITH span AS (SELECT session_id, min(timestamp) lo, max(timestamp) hi FROM ("
        " SELECT session_id, timestamp FROM metering_usagerecord WHERE session_id IS NOT NULL UNION ALL"
        " SELECT session_id, timestamp FROM metering_activityevent WHERE session_id IS NOT NULL) x GROUP BY 1)"
        " SELECT count(*) FILTER (WHERE s.first_seen <> span.lo OR s.last_seen <> span.hi),"
        " count(*) FILTER (WHERE span.session_id IS NULL)"
        " FROM metering_session s LEFT JOIN span ON span.session_id = s.id"
    )[0]
    check("sessions whose first/last_seen differ from their records' and events' span", mismatched, mismatched == 0)
    check("sessions without records", empty, empty == 0)

    # The shape, for the eye.
    lo, avg, hi = _execute(
        "SELECT min(n), round(avg(n), 1), max(n) FROM (SELECT count(*) n FROM metering_usagerecord"
        " WHERE session_id IS NOT NULL GROUP BY session_id) x"
    )[0]
    check("records per session (min / avg / max)", f"{lo} / {avg} / {hi}", lo >= 1)
    (top10, top100) = _execute(
        "SELECT sum(n) FILTER (WHERE r <= 10) / sum(n), sum(n) FILTER (WHERE r <= 100) / sum(n) FROM"
        " (SELECT count(*)::numeric n, row_number() OVER (ORDER BY count(*) DESC) r"
        " FROM metering_usagerecord GROUP BY user_id) x"
    )[0]
    check("share of records of the top 10 / top 100 users", f"{top10:.0%} / {top100:.0%}", True)
    (weekday, errors, cached, tagged) = _execute(
        "SELECT avg((extract(isodow FROM timestamp AT TIME ZONE 'Europe/Berlin') < 6)::int),"
        " avg((status = 'error')::int), avg((cached_input_tokens > 0)::int),"
        " (SELECT count(DISTINCT record_id) FROM metering_usagerecordtag) / count(*)::numeric"
        " FROM metering_usagerecord"
    )[0]
    check(
        "records on weekdays / failed / tagged / with cached input",
        f"{weekday:.0%} / {errors:.1%} / {tagged:.0%} / {cached:.0%}",
        0.01 < errors < 0.03,
    )
    return results


# --- CLI ----------------------------------------------------------------------


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--now", type=datetime.fromisoformat, help="end of the period (default: now), with an offset")
    parser.add_argument("--db", default=DEFAULT_DB, help="the database to (re)create")
    keep = parser.add_mutually_exclusive_group()
    keep.add_argument("--keep", action="store_true", default=True, help="keep the database (the default)")
    keep.add_argument("--drop", action="store_true", help="drop the database at the end")
    parser.add_argument("--verify", action="store_true", help="check foreign keys, costs and sessions afterwards")
    args = parser.parse_args()
    if args.now is not None and args.now.tzinfo is None:
        parser.error("--now needs an offset, e.g. 2026-11-22T06:00:00+00:00")
    return args


def main():
    args = parse_args()
    base_url = server_url()
    now = args.now or datetime.now(UTC).replace(microsecond=0)
    recreate_database(base_url, args.db)
    os.environ["DATABASE_URL"] = with_database(base_url, args.db)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "usage_site.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, connections

    try:
        started = time.perf_counter()
        call_command("migrate", verbosity=0)
        migrate_seconds = time.perf_counter() - started
        result = load(records=args.records, days=args.days, seed=args.seed, now=now)

        t = result["timings"]
        print(
            f"database {args.db}: {args.records:,} records over {args.days} days to {result['now']}, seed {args.seed}"
        )
        print("dimensions: " + ", ".join(f"{n:,} {name}" for name, n in result["dimensions"].items()))
        print(f"migrate          {migrate_seconds:7.1f} s")
        print(f"dimensions       {t['dimensions']:7.1f} s")
        rows = sum(result["counts"].values())
        print(f"generate + COPY  {t['generate + COPY']:7.1f} s  {rows / t['generate + COPY']:9,.0f} rows/s overall")
        for table, count in result["counts"].items():
            seconds = result["copy_seconds"][table]
            rate = count / seconds if seconds else 0
            print(f"  {table:27} {count:11,} rows  COPY {seconds:6.1f} s  {rate:9,.0f} rows/s")
        copy_total = sum(result["copy_seconds"].values())
        print(f"  generating rows in Python: {t['generate + COPY'] - copy_total:.1f} s, COPY: {copy_total:.1f} s")
        print(f"indexes          {t['indexes']:7.1f} s")
        for table, (count, seconds) in result["index_seconds"].items():
            print(f"  {table:27} {count:3} indexes  {seconds:6.1f} s")
        print(f"analyze          {t['analyze']:7.1f} s")
        print(f"total            {t['total'] + migrate_seconds:7.1f} s")
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT relname, pg_size_pretty(pg_total_relation_size(oid)), "
                "pg_size_pretty(pg_relation_size(oid)) FROM pg_class WHERE relname = ANY(%s) ORDER BY 1",
                [BULK_TABLES],
            )
            print("sizes (total / heap): " + ", ".join(f"{n} {total} / {heap}" for n, total, heap in cursor.fetchall()))
        if args.verify:
            started = time.perf_counter()
            results = verify()
            for name, value, ok in results:
                print(f"  {'ok  ' if ok else 'FAIL'} {name}: {value}")
            print(f"verify           {time.perf_counter() - started:7.1f} s")
            if not all(ok for _, _, ok in results):
                sys.exit(1)
    finally:
        connections.close_all()
        if args.drop:
            recreate_database(base_url, args.db, drop_only=True)


if __name__ == "__main__":
    main()
