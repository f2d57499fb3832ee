"""The question: what a viewer may see, the filters, the time range; filters from the names people type."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Q

from accounts.access import Scope
from accounts.models import ApiKey, Membership, Tag, Team
from metering.models import (
    Agent,
    LLMModel,
    Project,
    Repository,
    UsageMeasures,
)

DIMENSIONS = ("team", "user", "project", "repository", "agent", "model", "api_key", "tag", "service_type")
MEASURES = UsageMeasures.measure_names()
MONEY_MEASURES = ("cost", "session_cost")


def visible(scope: Scope) -> Q:
    """The rows of a usage-shaped table (org, user, team: records, events, allocations and their
    rollups) that `scope` may see: the org's, a manager's teams' and their own, a member's own."""
    return scope.q(teams="team_id__in")


@dataclass(frozen=True)
class Filters:
    """Selected values per dimension: ids, or service type values. A dimension that was
    asked for but matched nothing is present with an empty set: it selects nothing."""

    selected: tuple[tuple[str, frozenset], ...] = ()

    @classmethod
    def of(cls, **dimensions: Iterable | None) -> "Filters":
        unknown = set(dimensions) - set(DIMENSIONS)
        if unknown:
            raise ValueError(f"Unknown dimensions: {sorted(unknown)}")
        return cls(tuple(sorted((k, frozenset(v)) for k, v in dimensions.items() if v is not None)))

    def __iter__(self):
        return iter(self.selected)

    @property
    def dims(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.selected)

    @property
    def select_nothing(self) -> bool:
        return any(not values for _, values in self.selected)

    def get(self, name: str) -> frozenset | None:
        return dict(self.selected).get(name)

    def matches(self, dims: Mapping) -> bool:
        """Whether a row with these dimension values (ids; `tag` a list of ids) is selected: the
        filters applied in Python, to rows that never touch the database (Live Mode)."""
        for name, values in self.selected:
            if name == "tag":
                if not values.intersection(dims.get("tag") or ()):
                    return False
            elif dims.get(name) not in values:
                return False
        return True


@dataclass(frozen=True)
class Query:
    scope: Scope
    start: datetime
    end: datetime
    filters: Filters = field(default_factory=Filters)

    @property
    def org(self):
        return self.scope.org


def filters_from_names(org, names: Mapping[str, list[str]]) -> Filters:
    """Filters from the values people type (names; emails or external ids for users; names or
    public prefixes for API keys), looked up in `org` only. Unknown names select nothing: a
    member asking for someone else gets zeros, not a hint that the person exists."""
    selected: dict[str, set] = {}
    for dimension, values in names.items():
        values = [v for v in values if v]
        if not values:
            continue
        if dimension == "service_type":
            selected[dimension] = set(values)
        elif dimension == "user":
            emails = Q(user__email__in=[])
            for value in values:
                emails |= Q(user__email__iexact=value)
            members = Membership.objects.filter(org=org).filter(emails | Q(external_id__in=values))
            selected[dimension] = set(members.values_list("user_id", flat=True))
        elif dimension == "api_key":
            keys = ApiKey.objects.filter(org=org).filter(Q(name__in=values) | Q(prefix__in=values))
            selected[dimension] = set(keys.values_list("pk", flat=True))
        elif dimension == "model":
            selected[dimension] = set(LLMModel.objects.filter(name__in=values).values_list("pk", flat=True))
        else:
            model = {"team": Team, "project": Project, "repository": Repository, "agent": Agent, "tag": Tag}[dimension]
            selected[dimension] = set(model.objects.filter(org=org, name__in=values).values_list("pk", flat=True))
    return Filters.of(**selected)
