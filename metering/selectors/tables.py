"""The tables a question can be read from, the dimensions each carries, and scope and filters applied to one."""

from dataclasses import dataclass

from django.db.models import Exists, Model, OuterRef, QuerySet

from metering.models import (
    ActivityDaily,
    ActivityEvent,
    ConversationDaily,
    ResourceDaily,
    ResourceUsage,
    SessionDaily,
    UsageDaily,
    UsageDailyBy,
    UsageDailyByTag,
    UsageHourly,
    UsageHourlyOrg,
    UsageRecord,
)
from metering.rollups import ACTIVITY_BY
from metering.selectors.query import DIMENSIONS, Query, visible


@dataclass(frozen=True)
class Table:
    model: type[Model]
    dims: frozenset[str]
    grain: str  # "day", "hour" or "raw"
    by_user: bool = True  # False: no user column, so only a whole-org scope may read it


USAGE_RAW = Table(UsageRecord, frozenset(DIMENSIONS) | {"session", "conversation"}, "raw")
USAGE_DAILY_BY = Table(UsageDailyBy, frozenset(), "day", by_user=False)  # one dimension at a time
USAGE_HOURLY = Table(UsageHourly, frozenset({"user", "team", "service_type"}), "hour")
USAGE_HOURLY_ORG = Table(UsageHourlyOrg, frozenset(), "hour", by_user=False)  # the whole org, unfiltered
USAGE_DAILY = Table(UsageDaily, frozenset(DIMENSIONS) - {"tag"}, "day")
USAGE_DAILY_BY_TAG = Table(
    UsageDailyByTag, frozenset({"user", "team", "project", "agent", "model", "service_type", "tag"}), "day"
)


ACTIVITY_DIMS = frozenset({"team", "user", "project", "repository", "agent", "tag"})
ACTIVITY_BY_DIMS = frozenset(ACTIVITY_BY)
ACTIVITY_RAW = Table(ActivityEvent, ACTIVITY_DIMS, "raw")
ACTIVITY_DAY = Table(ActivityDaily, ACTIVITY_DIMS - {"tag"}, "day")
SESSION_DAY = Table(SessionDaily, frozenset({"user", "team", "project", "agent"}), "day")  # both kinds
CONVERSATION_DAY = Table(
    ConversationDaily, frozenset({"user", "team", "project", "agent", "model", "service_type"}), "day"
)


# Raw usage records and events, each with the dimensions its rows carry.
RAW_KINDS = ((USAGE_RAW, USAGE_RAW.dims), (ACTIVITY_RAW, ACTIVITY_DIMS))
RESOURCE_DIMS = frozenset({"user", "team", "project", "agent"})
RESOURCE_RAW = Table(ResourceUsage, RESOURCE_DIMS, "raw")
RESOURCE_DAY = Table(ResourceDaily, RESOURCE_DIMS, "day")


def _tag_overlap_ok(query: Query, by: tuple[str, ...]) -> bool:
    """A by-tag rollup counts a record under each of its tags: right when grouping by tag,
    or when filtering on one tag; a filter on several would count a record once per tag."""
    tags = query.filters.get("tag")
    return "tag" in by or tags is None or len(tags) <= 1


def _day_table(query: Query, by: tuple[str, ...], needs: frozenset[str]) -> Table | None:
    """UsageDaily, or UsageDailyByTag for a question about tags (there a record is under each of
    its tags, which is right only as _tag_overlap_ok says); None when neither covers `needs`."""
    if "tag" not in needs:
        return USAGE_DAILY if needs <= USAGE_DAILY.dims else None
    if needs <= USAGE_DAILY_BY_TAG.dims and _tag_overlap_ok(query, by):
        return USAGE_DAILY_BY_TAG
    return None


# Pairs of dimensions UsageDailyBy also keeps (metering.rollups.USAGE_BY), as stored: the
# Analytics page's top agents (each agent's main project) and service-type cards (cost by
# project), and the models of the people or teams a page of the Usage table shows.
PAIRS = {
    frozenset(pair): pair
    for pair in (("agent", "project"), ("project", "service_type"), ("user", "model"), ("team", "model"))
}


def _by_dimension_ok(query: Query, needs: frozenset[str], by: tuple[str, ...]) -> bool:
    """Whether UsageDailyBy answers: the whole org, about one dimension (filtered on it or not),
    or about one of the PAIRS (grouped or filtered by its dimensions)."""
    if not query.scope.sees_whole_org:
        return False
    if len(needs) > 1:
        return needs in PAIRS
    return "tag" not in needs or _tag_overlap_ok(query, by)


def _stored(needs: frozenset[str]) -> str:
    """The `dimension` of UsageDailyBy and UsageHourlyBy rows about `needs`."""
    return ",".join(PAIRS.get(needs) or sorted(needs))


def _restrict(queryset: QuerySet, query: Query, table: Table, kind_dims: frozenset[str]) -> QuerySet:
    """Scope and filters on one table holding rows of a kind with dimensions `kind_dims`. A
    filter on a dimension the kind lacks selects none of its rows (see the module docstring)."""
    scope = query.scope
    if table.by_user:
        queryset = queryset.filter(visible(scope))
    elif scope.sees_whole_org:
        queryset = queryset.filter(org=scope.org)
    else:  # never chosen for a narrower scope; refuse rather than leak
        raise AssertionError(f"{table.model.__name__} cannot be read for a {scope.role}")
    for name, values in query.filters:
        if name not in kind_dims:
            return queryset.none()
        if name not in table.dims:  # the planner picks only tables that carry the filters
            raise AssertionError(f"{table.model.__name__} has no {name}")
        if name == "tag" and table.grain == "raw":
            links = queryset.model.tags.through.objects.filter(**{_link_field(queryset.model): OuterRef("pk")})
            queryset = queryset.filter(Exists(links.filter(tag__in=values)))
        else:
            queryset = queryset.filter(**{f"{name}__in": values})
    return queryset


def _link_field(model) -> str:
    return "record" if model is UsageRecord else "event"


def _raw_group(name: str) -> str:
    return "tags" if name == "tag" else name


def _covering(table: Table, query: Query, kind_dims: frozenset[str]) -> Table | None:
    """`table` if it can apply every filter that applies to its kind of row, else None (read raw)."""
    return table if (query.filters.dims & kind_dims) <= table.dims else None


def _whole_org(query: Query) -> bool:
    """An unfiltered question about the whole org: the one the smallest rollups answer."""
    return query.scope.sees_whole_org and not query.filters.selected
