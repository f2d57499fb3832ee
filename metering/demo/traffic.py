"""What the demo's people and services do on a day, drawn from the seed and planned as rows: the `_Traffic` mixin."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock
from decimal import Decimal
from typing import NamedTuple

from accounts.models import Organization, Team, User
from metering.models import ActivityKind, Agent, CostSource, LLMModel, Project, Repository, ServiceType, Status
from metering.pricing import PriceBook, Tokens, cost_of

from .rows import _Rows
from .specs import AGENTS, EMBEDDING_MODEL, HOUR_WEIGHTS, MODELS, UTC, AgentSpec, ModelSpec, TeamSpec


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


@dataclass(frozen=True)
class _Where:
    """Who and what a planned row is attributed to; `api_key` names the key of usage records."""

    person: _Person | None = None
    project: Project | None = None
    repository: Repository | None = None
    agent: Agent | None = None
    session: dict | None = None
    tags: tuple[int, ...] = ()
    api_key: str | None = None

    def ids(self) -> dict[str, int | None]:
        """The attribution columns that records, events and resource allocations share."""
        return dict(
            user_id=self.person.user.pk if self.person else None,
            team_id=self.person.team.pk if self.person else None,
            project_id=self.project.pk if self.project else None,
            agent_id=self.agent.pk if self.agent else None,
        )


class _Call(NamedTuple):
    """The outcome of one model call."""

    tokens: Tokens
    reasoning: int
    duration: int  # ms
    error: bool


class _Traffic:
    """Plans the demo's sessions, CI reviews, experiments, batch jobs, production calls and volumes as rows.

    A mixin of `_Builder`, which sets up the org and its dimensions before any day is planned.
    """

    rng: random.Random
    org: Organization
    tz: object
    seq: dict[str, int]
    models: dict[str, tuple[ModelSpec, LLMModel]]
    book: PriceBook
    api_keys: dict[str, int]
    key_owners: dict[str, _Person | None]
    people: list[_Person]
    projects: dict[str, Project]
    repositories: dict[str, list[Repository]]
    agents: dict[str, Agent]
    agent_specs: dict[str, AgentSpec]
    tags: dict[str, int]

    # -- times and ids --

    def _start(self, day: date, shift: int = 0) -> datetime:
        rng = self.rng
        hour = min(23, max(0, rng.choices(range(24), weights=HOUR_WEIGHTS)[0] + shift))
        local = datetime.combine(day, clock(hour, rng.randrange(60), rng.randrange(60)), tzinfo=self.tz)
        return local.astimezone(UTC)

    def _midnight(self, day: date) -> datetime:
        return datetime.combine(day, clock(0), tzinfo=self.tz).astimezone(UTC)

    def _id(self, kind: str) -> str:
        # A running number keeps ids unique; the random tail makes them look like real ones.
        self.seq[kind] += 1
        return f"{kind}_{self.seq[kind]:06x}{self.rng.getrandbits(40):010x}"

    # -- rows --

    def _attribution(self, where: _Where, when: datetime) -> dict:
        """The columns of `Attribution`, which usage records and activity events share."""
        return dict(
            org_id=self.org.pk,
            timestamp=when,
            **where.ids(),
            repository_id=where.repository.pk if where.repository else None,
        )

    def _record(
        self,
        rows: _Rows,
        where: _Where,
        *,
        when: datetime,
        model: str,
        service_type: str,
        call: _Call,
        conversation: str = "",
    ) -> None:
        spec, model_obj = self.models[model]
        price = self.book.price_at(model_obj.pk, when)
        tokens = call.tokens
        record = dict(
            **self._attribution(where, when),
            request_id=self._id("req"),
            model_id=model_obj.pk,
            provider=spec.provider,
            service_type=service_type,
            status=Status.ERROR if call.error else Status.SUCCESS,
            api_key_id=self.api_keys[where.api_key] if where.api_key else None,
            input_tokens=tokens.input,
            cached_input_tokens=tokens.cached_input,
            cache_write_tokens=tokens.cache_write,
            output_tokens=tokens.output,
            reasoning_tokens=call.reasoning,
            cost=cost_of(tokens, price),
            cost_source=CostSource.PRICED,
            price_id=price.pk,
            duration_ms=call.duration,
            conversation_id=conversation,
        )
        rows.records.append((record, where.session, where.tags))

    def _event(
        self, rows: _Rows, where: _Where, *, when: datetime, kind: str, added: int = 0, removed: int = 0
    ) -> None:
        event = dict(
            **self._attribution(where, when),
            event_id=self._id("evt"),
            kind=kind,
            lines_added=added,
            lines_removed=removed,
        )
        rows.events.append((event, where.session, where.tags))

    def _resource(
        self, rows: _Rows, where: _Where, *, start: datetime, end: datetime, cpu: object, ram: object, storage: object
    ) -> None:
        """An allocation (not utilisation) of `cpu` cores, `ram` and `storage` GB from `start` to `end`."""
        rows.resources.append(
            dict(
                org_id=self.org.pk,
                resource_id=self._id("res"),
                start=start,
                end=end,
                **where.ids(),
                cpu_cores=Decimal(cpu),
                ram_gb=Decimal(ram),
                storage_gb=Decimal(storage),
            )
        )

    # -- model calls --

    def _call(self, model: str, context: int, cached_prefix: int, warm: bool, visible: int) -> _Call:
        """One call with `context` prompt tokens, of which `cached_prefix` were sent before (a hit if the
        cache is still `warm`), and `visible` output tokens; one in fifty fails."""
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
        tokens = Tokens(input=context, cached_input=cached, cache_write=cache_write, output=output)
        if rng.random() < 0.02:
            tokens, duration = self._failed(tokens)
            return _Call(tokens, 0, duration, error=True)
        return _Call(tokens, reasoning, duration, error=False)

    def _failed(self, tokens: Tokens) -> tuple[Tokens, int]:
        """A failed call: rate limited or overloaded (nothing billed), or timed out after reading the prompt."""
        if self.rng.random() < 0.55:
            return Tokens(), self.rng.randint(40, 900)
        return Tokens(
            input=tokens.input, cached_input=tokens.cached_input, cache_write=tokens.cache_write
        ), self.rng.randint(30_000, 120_000)

    def _embedding(self, tokens: tuple[int, int], duration: tuple[int, int]) -> _Call:
        """One embedding call of `tokens` input tokens taking `duration` ms (ranges); one in fifty fails."""
        error = self.rng.random() < 0.02
        return _Call(
            Tokens() if error else Tokens(input=self.rng.randint(*tokens)), 0, self.rng.randint(*duration), error
        )

    def _agent_call(
        self, spec: AgentSpec, model: str, context: int, cached_prefix: int, idle: timedelta, sigmas: tuple
    ) -> tuple[int, _Call]:
        """A call in an agent's tool loop: the context grows by a message or tool result, the model answers.
        `sigmas` spread the step and the visible output; the prompt cache is warm after less than 5 minutes `idle`."""
        rng = self.rng
        context += int(spec.step * rng.lognormvariate(0, sigmas[0]))
        warm = idle.total_seconds() < 300
        visible = int(spec.output * rng.lognormvariate(0, sigmas[1])) + 20
        return context, self._call(model, context, cached_prefix, warm, visible)

    def _model_for(self, person: _Person, agent: AgentSpec) -> str:
        weights = dict(agent.models)
        if person.favourite:
            weights[person.favourite] = weights.get(person.favourite, 0) + 4
        return _weighted(self.rng, weights)

    # -- what happens on a day --

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
        where = _Where(person, project, repository, agent, session, tags, api_key="Agent gateway")
        self._event(rows, where, when=t, kind=ActivityKind.SESSION_START)
        conversation = self._id("conv")
        self._event(rows, where, when=t + timedelta(seconds=1), kind=ActivityKind.THREAD_CREATED)

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
                    self._event(rows, where, when=t, kind=ActivityKind.THREAD_CREATED)
                if rng.random() < 0.1:
                    model = self._model_for(person, agent_spec)
                    cached_prefix = 0
            self._event(rows, where, when=t, kind=ActivityKind.MESSAGE_SENT)
            t += timedelta(seconds=rng.uniform(0.5, 2))
            self._event(rows, where, when=t, kind=ActivityKind.AGENT_RUN)
            if agent_spec.retrieves:
                call = self._embedding((20, 400), (60, 300))
                self._record(
                    rows,
                    where,
                    when=t,
                    model=EMBEDDING_MODEL,
                    service_type=ServiceType.EMBEDDING,
                    call=call,
                    conversation=conversation,
                )
                t += timedelta(seconds=rng.uniform(0.2, 1))
            for n in range(1 + poisson(rng, agent_spec.calls * (1.3 if refactor else 1))):
                context, call = self._agent_call(agent_spec, model, context, cached_prefix, t - last_call, (0.6, 0.7))
                # A turn opens with a chat reply; the tool loop that follows is agent work.
                service = ServiceType.TEXT_GENERATION if agent_spec.chat or n == 0 else ServiceType.AGENT
                self._record(
                    rows, where, when=t, model=model, service_type=service, call=call, conversation=conversation
                )
                last_call = t
                t += timedelta(milliseconds=call.duration) + timedelta(seconds=rng.uniform(1, 12))  # tools run
                if not call.error:
                    cached_prefix = context
                    context += call.tokens.output - call.reasoning
                if context > 160_000:  # the agent compacts its context; the cache starts over
                    context, cached_prefix = int(agent_spec.context * 1.5), 0
            if rng.random() < (0.9 if refactor else agent_spec.diff):
                added = int(agent_spec.lines * lines_scale * rng.lognormvariate(0, 0.9)) + 1
                removed = int(added * rng.uniform(0.05, 0.9 if refactor else 0.5))
                accepted = rng.random() < agent_spec.accept
                t += timedelta(seconds=rng.uniform(10, 90))
                kind = ActivityKind.DIFF_ACCEPTED if accepted else ActivityKind.DIFF_REJECTED
                self._event(rows, where, when=t, kind=kind, added=added, removed=removed)
                if accepted and rng.random() < 0.4:
                    t += timedelta(seconds=rng.uniform(20, 240))
                    self._event(rows, where, when=t, kind=ActivityKind.COMMIT, added=added, removed=removed)
                    commits += 1
            if rng.random() < 0.35:
                self._event(rows, where, when=t + timedelta(seconds=2), kind=ActivityKind.TASK_COMPLETED)
        if commits and rng.random() < 0.35:
            t += timedelta(seconds=rng.uniform(30, 300))
            self._event(rows, where, when=t, kind=ActivityKind.PULL_REQUEST)
            self._ci_review(rows, person, t + timedelta(seconds=rng.uniform(30, 180)), project, repository)
        t += timedelta(seconds=rng.uniform(20, 300))
        self._event(rows, where, when=t, kind=ActivityKind.SESSION_END)
        session["last_seen"] = t
        sandbox = dict(cpu=agent_spec.cpu, ram=agent_spec.ram, storage=agent_spec.storage)
        self._resource(rows, where, start=session["first_seen"], end=t + timedelta(seconds=30), **sandbox)

    def _ci_review(self, rows: _Rows, person: _Person, t: datetime, project: Project, repository: Repository) -> None:
        """A pull request triggers Scan & Review in CI: an agent run outside any session."""
        rng = self.rng
        spec = self.agent_specs["Scan & Review"]
        where = _Where(person, project, repository, self.agents[spec.name], tags=(self.tags["ci"],), api_key="CI")
        self._event(rows, where, when=t, kind=ActivityKind.AGENT_RUN)
        start, model = t, _weighted(rng, spec.models)
        context, cached_prefix, last_call = int(spec.context * rng.uniform(0.8, 2.0)), 0, t
        for _ in range(2 + poisson(rng, spec.calls)):
            context, call = self._agent_call(spec, model, context, cached_prefix, t - last_call, (0.5, 0.6))
            self._record(rows, where, when=t, model=model, service_type=ServiceType.AGENT, call=call)
            last_call = t
            if not call.error:
                cached_prefix = context
            t += timedelta(milliseconds=call.duration) + timedelta(seconds=rng.uniform(1, 5))
        self._resource(rows, where, start=start, end=t + timedelta(seconds=20), cpu=2, ram=4, storage=10)

    def _experiment(self, rows: _Rows, person: _Person, day: date) -> None:
        """Someone tries a prompt in the sandbox: a few calls, now and then an image or a recording."""
        rng = self.rng
        t = self._start(day, person.shift)
        project_name = _weighted(rng, person.spec.projects)
        where = _Where(person, self.projects[project_name], tags=(self.tags["experiment"],), api_key="Sandbox")
        conversation = self._id("conv")
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
            call = self._call(model, context, cached_prefix, True, int(400 * rng.lognormvariate(0, 0.8)) + 10)
            self._record(rows, where, when=t, model=model, service_type=service, call=call, conversation=conversation)
            cached_prefix = context if service == ServiceType.TEXT_GENERATION else 0
            t += timedelta(milliseconds=call.duration) + timedelta(seconds=rng.uniform(15, 240))

    def _embedding_job(self, rows: _Rows, person: _Person, day: date) -> None:
        """A batch job re-indexes documents: a burst of large embedding calls."""
        rng = self.rng
        t = self._start(day, person.shift)
        project_name = _weighted(rng, person.spec.projects)
        project, repository = self.projects[project_name], rng.choice(self.repositories[project_name])
        where = _Where(person, project, repository, tags=(self.tags["batch"],), api_key="Data jobs")
        for _ in range(rng.randint(15, 80)):
            call = self._embedding((2_000, 8_000), (150, 900))
            self._record(rows, where, when=t, model=EMBEDDING_MODEL, service_type=ServiceType.EMBEDDING, call=call)
            t += timedelta(milliseconds=call.duration + rng.randint(50, 1500))

    def _production(self, rows: _Rows, day: date) -> None:
        """Fleet Manager's operator assistant runs in production on one engineer's key, day and night."""
        rng = self.rng
        person = self.key_owners["Fleet production"] or self.people[0]
        project, repository = self.projects["Fleet Manager"], self.repositories["Fleet Manager"][0]
        where = _Where(person, project, repository, tags=(self.tags["prod"],), api_key="Fleet production")
        midnight = self._midnight(day)
        for hour in range(24):
            # Robots work shifts too: busiest in the local daytime, never idle.
            for _ in range(poisson(rng, 1.2 + 2.5 * HOUR_WEIGHTS[hour] / 9)):
                t = midnight + timedelta(hours=hour, seconds=rng.randrange(3600))
                model = "gpt-5-mini" if rng.random() < 0.7 else "claude-haiku-4-5"
                call = self._call(
                    model, rng.randint(1_500, 6_000), 1_024, True, int(180 * rng.lognormvariate(0, 0.5)) + 10
                )
                service = ServiceType.TEXT_GENERATION
                self._record(
                    rows, where, when=t, model=model, service_type=service, call=call, conversation=self._id("conv")
                )

    def _volumes(self, rows: _Rows, day: date) -> None:
        """Each agent keeps a service and its indexes running all day: allocation, whoever uses it."""
        start, end = self._midnight(day), self._midnight(day + timedelta(days=1))
        for spec in AGENTS:
            where = _Where(agent=self.agents[spec.name])
            self._resource(rows, where, start=start, end=end, cpu="0.5", ram=2, storage=spec.storage * 8)
