"""Reads of the Usage page: the breakdown by user or by team, its activity chart, and the models of shown rows."""

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from accounts.models import Team
from dashboards.charts import NEUTRAL_COLOUR, Series, colour_of, top_series
from dashboards.selectors.common import Badge, people
from metering import selectors as metering

TOP_TEAMS = 10


@dataclass
class BreakdownRow:
    """One user or team of the Usage page's table."""

    pk: int | None  # the user's or team's id (None: usage without a team)
    key: str  # data-row: the user's email (or external id), or the team's name
    label: str
    email: str = ""
    badges: tuple[Badge, ...] = ()
    colour: str = ""
    trend: list = field(default_factory=list)  # requests per bucket
    models: list[str] = field(default_factory=list)  # most requested first
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)

    @property
    def search_text(self) -> str:
        return " ".join([self.label, self.email, *(b.name for b in self.badges)]).lower()

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass
class UsageBreakdown:
    rows: list[BreakdownRow]
    chart: list[Series]  # by user: active users per bucket; by team: requests per bucket and team


def usage_breakdown(query: metering.Query, buckets: metering.Buckets, *, by: str) -> UsageBreakdown:
    """The Usage page's table and activity chart, by "user" or by "team", without the rows'
    models (`add_models` reads them for the rows shown).

    One read per part of the range gives every row's totals and trend (metering.usage_trends),
    and the chart; then one or two queries for names. Active users per bucket are users with a
    request in it (the reference's definition); the summary's unique_users also counts users
    with activity alone.
    """
    n = len(buckets.starts) - 1
    measures = ("requests", "input_tokens", "output_tokens", "cost")
    totals, trends = metering.usage_trends(query, buckets, by=by, measures=measures)
    if by == "user":
        found = people(query.scope, totals)
        rows = [
            BreakdownRow(
                pk=user,
                key=found[user].key,
                label=found[user].label,
                email=found[user].email,
                badges=found[user].teams,
                trend=trends[user],
                **totals[user],
            )
            for user in totals
        ]
        active = [sum(map(bool, bucket)) for bucket in zip(*trends.values(), strict=True)] or [0] * n
        chart = [Series("Active users", "", active, None)]
    else:
        teams = dict(
            (pk, (name, colour_of(Team, pk, colour)))
            for pk, name, colour in Team.objects.filter(org=query.org, pk__in=[t for t in totals if t]).values_list(
                "pk", "name", "colour"
            )
        )
        rows = []
        for team in totals:
            name, colour = teams.get(team, ("No team", NEUTRAL_COLOUR)) if team else ("No team", NEUTRAL_COLOUR)
            rows.append(
                BreakdownRow(
                    pk=team,
                    key=name,
                    label=name,
                    badges=(Badge(name, colour),),
                    colour=colour,
                    trend=trends[team],
                    **totals[team],
                )
            )
        colours = {row.label: row.colour for row in rows}
        chart = top_series(
            {row.label: row.trend for row in rows},
            {row.label: row.requests for row in rows},
            lambda label: label,
            colours.get,
            n,
            TOP_TEAMS,
            "Other teams",
        )
    return UsageBreakdown(rows, chart)


def add_models(query: metering.Query, by: str, rows: list[BreakdownRow]) -> None:
    """Fill in the models of `rows` (a page of the table), most requested first.

    One read of those rows' usage by model: restricted to the rows shown, it is several times
    cheaper than the models of every user of a large org.
    """
    if not rows:
        return
    ids = frozenset(row.pk for row in rows)
    selected = dict(query.filters.selected)
    if None not in ids:  # "No team" cannot be filtered on: read every team's (there are few)
        chosen = selected.get(by)
        selected[by] = ids if chosen is None else chosen & ids
    page = metering.Query(query.scope, query.start, query.end, metering.Filters.of(**selected))
    per_model = metering.usage_sums(page, by=(by, "model"), measures=("requests",)).sums
    names = metering.dimension_names("model", {key[2] for key in per_model}, query.org)
    used: dict = defaultdict(list)
    for (_, value, model), _sums in sorted(
        per_model.items(), key=lambda item: (-item[1]["requests"], str(names.get(item[0][2])))
    ):
        used[value].append(names.get(model, f"model {model}"))
    for row in rows:
        row.models = used[row.pk]
