"""The `_Builder`: creates the demo org and its dimensions and people, then plans and writes its days of traffic."""

from __future__ import annotations

import random
import sys
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection
from tqdm import tqdm

from accounts.models import ApiKey, Membership, Organization, Role, Tag, Team, User
from metering.models import Agent, LLMModel, ModelPrice, Project, Repository
from metering.pricing import PriceBook
from metering.rollups import rollups_rebuild_days

from .rows import _Rows, _Writer
from .specs import (
    AGENTS,
    API_KEYS,
    BASE_PRICE_DATE,
    DEMO_CURRENCY,
    DEMO_EMAIL_DOMAIN,
    DEMO_NAME,
    DEMO_SLUG,
    DEMO_TIMEZONE,
    FIRST_NAMES,
    LAST_NAMES,
    LOGINS,
    MODELS,
    PRICE_BEFORE_CHANGE,
    PRICE_CHANGE_MODEL,
    PRICE_CHANGE_SOURCE,
    PROJECTS,
    SESSIONS_PER_DAY,
    SPIKE_CANDIDATES,
    TAGS,
    TEAMS,
    WEEKDAY_FACTOR,
    LoginSpec,
    ModelSpec,
)
from .traffic import _Person, _Traffic, poisson


class DemoError(Exception):
    """The demo cannot be built without touching an account that is not the demo's."""


class _Builder(_Traffic):
    """Builds the demo org in the current transaction; `build` returns the counts of the rows it wrote."""

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


def _price_fields(prices: tuple[str, str, str, str]) -> dict[str, Decimal]:
    return dict(zip(("input", "cached_input", "cache_write", "output"), map(Decimal, prices), strict=False))
