"""Reads the pages share: the filter bar's options, people and their team badges, project names, sums' totals.

Every function takes the viewer's `Scope` (directly or inside a `Query`) and reads usage only
through the query layer (metering.selectors), a fixed number of times however many rows it returns.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Q

from accounts.access import Scope
from accounts.models import ApiKey, Membership, Role, Tag, Team
from dashboards.charts import NEUTRAL_COLOUR, colour_of
from metering import selectors as metering
from metering.models import Agent, Project, Repository, ServiceType
from metering.pricing import format_money

# --- Filter bar ----------------------------------------------------------------------------------

# The filter bar's multi-selects, in the order it shows them: (parameter, label).
FILTER_DIMENSIONS = (
    ("team", "Teams"),
    ("user", "Users"),
    ("project", "Projects"),
    ("repository", "Repositories"),
    ("agent", "Agents"),
    ("model", "Models"),
    ("api_key", "API keys"),
    ("tag", "Tags"),
    ("service_type", "Service types"),
)


@dataclass(frozen=True)
class Option:
    """One choice of a filter: `value` is what goes in the URL (a name, an email)."""

    value: str
    label: str
    detail: str = ""
    colour: str = ""


def filter_options(scope: Scope, *, start: datetime | None = None, end: datetime | None = None) -> dict:
    """{dimension: [Option]} of what `scope` may filter on.

    People and API keys follow the scope (a member sees themselves, a manager their
    teams' people and keys); teams are the viewer's own unless they see the whole org.
    Projects, repositories, agents and tags are the org's catalogue. Models are global
    (other orgs' names included), so only those with usage the viewer can see in
    [start, end) are offered. One query per dimension.
    """
    org = scope.org
    teams = Team.objects.filter(org=org)
    if not scope.sees_whole_org:
        teams = teams.filter(pk__in=scope.team_ids)
    members = (
        Membership.objects.filter(scope.users_q())
        .order_by("user__name", "user__email", "external_id")
        .values_list("user__email", "external_id", "user__name")
        .distinct()
    )
    users = []
    for email, external_id, name in members:
        value = email or external_id
        if value:
            users.append(Option(value, name or value, value if name else ""))
    return {
        "team": [
            Option(name, name, colour=colour_of(Team, pk, colour))
            for pk, name, colour in teams.values_list("pk", "name", "colour")
        ],
        "user": users,
        "project": [
            Option(name, name, colour=colour_of(Project, pk, colour))
            for pk, name, colour in Project.objects.filter(org=org).values_list("pk", "name", "colour")
        ],
        "repository": _named(Repository.objects.filter(org=org)),
        "agent": _named(Agent.objects.filter(org=org)),
        "model": _models_seen(scope, start, end),
        "api_key": _api_keys(scope),
        "tag": _named(Tag.objects.filter(org=org)),
        "service_type": [Option(value, label) for value, label in ServiceType.choices],
    }


def _named(queryset) -> list[Option]:
    return [Option(name, name) for name in queryset.order_by("name").values_list("name", flat=True)]


def _api_keys(scope: Scope) -> list[Option]:
    keys = ApiKey.objects.filter(org=scope.org)
    if scope.role == Role.MANAGER:
        people = Membership.objects.filter(scope.users_q()).values("user_id")
        keys = keys.filter(Q(owner_id__in=people) | Q(default_team_id__in=scope.team_ids))
    elif not scope.sees_whole_org:
        keys = keys.filter(owner_id=scope.user_id)
    options, seen = [], set()
    for name, revoked_at in keys.order_by("name").values_list("name", "revoked_at"):
        # The form takes a key by name, so keys sharing a name are one choice.
        if name not in seen:
            seen.add(name)
            options.append(Option(name, name, "revoked" if revoked_at else ""))
    return options


def _models_seen(scope: Scope, start: datetime | None, end: datetime | None) -> list[Option]:
    if start is None or end is None:
        return []
    rows = metering.usage_sums(metering.Query(scope, start, end), by=("model",))
    names = metering.dimension_names("model", {key[1] for key in rows.sums}, scope.org)
    return [Option(name, name) for name in sorted(names.values(), key=str.lower)]


# --- People --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Badge:
    name: str
    colour: str


@dataclass(frozen=True)
class Person:
    user_id: int
    key: str  # email, else external id: what the API's by_user lists and the filter takes
    name: str
    email: str
    teams: tuple[Badge, ...] = ()

    @property
    def label(self) -> str:
        return self.name or self.key


def people(scope: Scope, user_ids: Iterable[int | None]) -> dict[int, Person]:
    """The people of `user_ids` in the org, with the teams the viewer may see them in. Two queries."""
    ids = {i for i in user_ids if i is not None}
    if not ids:
        return {}
    teams: dict[int, list[Badge]] = defaultdict(list)
    links = metering.among(
        Membership.teams.through.objects.filter(membership__org=scope.org), "membership__user_id", ids
    )
    if not scope.sees_whole_org:
        links = links.filter(team_id__in=scope.team_ids)
    for user_id, team_id, name, colour in links.order_by("team__name").values_list(
        "membership__user_id", "team_id", "team__name", "team__colour"
    ):
        teams[user_id].append(Badge(name, colour_of(Team, team_id, colour)))
    result = {}
    members = metering.among(Membership.objects.filter(org=scope.org), "user_id", ids)
    for user_id, email, external_id, name in members.values_list("user_id", "user__email", "external_id", "user__name"):
        if user_id not in ids:
            continue
        key = email or external_id or name or f"user {user_id}"
        result[user_id] = Person(user_id, key, name, email or external_id or "", tuple(teams[user_id]))
    for user_id in ids:  # usage of someone no longer in the org still counts; label it
        result.setdefault(user_id, Person(user_id, f"user {user_id}", "", ""))
    return result


# --- Projects ------------------------------------------------------------------------------------


def project_names(org, ids) -> dict:
    """{project id: (name, colour)}; usage without a project is "No project", in grey. One query."""
    found = {
        pk: (name, colour_of(Project, pk, colour))
        for pk, name, colour in Project.objects.filter(org=org, pk__in=[i for i in ids if i]).values_list(
            "pk", "name", "colour"
        )
    }
    return {i: found.get(i, ("No project", NEUTRAL_COLOUR)) if i else ("No project", NEUTRAL_COLOUR) for i in ids}


# --- Sums ----------------------------------------------------------------------------------------


def tokens(sums: dict) -> int:
    """Total tokens of a row of usage sums: input plus output."""
    return sums["input_tokens"] + sums["output_tokens"]


def money(value) -> Decimal:
    """A cost as the API writes it (format_money): '1.05', not '1.0500000000'."""
    return Decimal(format_money(value))


def money_series(values: list) -> list[Decimal]:
    return [money(v) for v in values]
