"""Reads of the Overview page: tokens by project per bucket, and the usage leaderboard."""

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from dashboards.charts import Series, top_series
from dashboards.selectors.common import Person, people, project_names, tokens
from metering import selectors as metering
from metering.models import LINES_OF_CODE_KINDS, ActivityKind

TOP_PROJECTS = 8


def tokens_by_project(query: metering.Query, buckets: metering.Buckets) -> list[Series]:
    """Total tokens (input + output) per bucket of each project, biggest first, in its colour.

    Past TOP_PROJECTS the rest are one grey "Other projects" series; usage without a project
    is "No project". Every bucket sums to the API's tokens timeseries for the same buckets.
    """
    n = len(buckets.starts) - 1
    per_project: dict = defaultdict(lambda: [0] * n)
    for (bucket, project), sums in metering.usage_sums(query, by=("project",), buckets=buckets).sums.items():
        per_project[project][bucket] += tokens(sums)
    names = project_names(query.org, list(per_project))
    totals = {key: sum(values) for key, values in per_project.items()}
    return top_series(
        per_project,
        totals,
        lambda p: names[p][0],
        lambda p: names[p][1],
        n,
        TOP_PROJECTS,
        "Other projects",
    )


@dataclass
class LeaderRow:
    person: Person
    accepted_diffs: int = 0
    tasks_completed: int = 0
    tokens: int = 0
    cost: Decimal = Decimal(0)
    lines_of_code: int = 0
    requests: int = 0

    @property
    def key(self) -> str:
        return self.person.key

    @property
    def label(self) -> str:
        return self.person.label

    @property
    def search_text(self) -> str:
        return " ".join([self.person.name, self.person.email, *(t.name for t in self.person.teams)]).lower()


def leaderboard(query: metering.Query) -> list[LeaderRow]:
    """Per user: accepted diffs, tasks completed, tokens, cost and agent lines of code.

    Everyone with usage or activity in the period, as `summary` counts them: the rows add
    up to its accepted_diffs, tasks_completed, total_tokens, cost and lines_of_code.
    """
    usage = metering.usage_sums(query, by=("user",))
    activity = metering.activity_sums(
        query,
        metering.plan(query.org, query.start, query.end),
        by=("user",),
        kinds=(*LINES_OF_CODE_KINDS, ActivityKind.TASK_COMPLETED),
    )
    found = people(query.scope, {key[1] for key in usage.sums} | {user for _, user in activity})
    rows: dict[int, LeaderRow] = {}

    def row(user_id) -> LeaderRow:
        if user_id not in rows:
            rows[user_id] = LeaderRow(found[user_id])
        return rows[user_id]

    for (_, user_id), sums in usage.sums.items():
        target = row(user_id)
        target.tokens, target.cost, target.requests = tokens(sums), sums["cost"], sums["requests"]
    for (kind, user_id), values in activity.items():
        if kind in LINES_OF_CODE_KINDS:
            row(user_id).lines_of_code += values["lines"]
        if kind == ActivityKind.DIFF_ACCEPTED:
            row(user_id).accepted_diffs += values["quantity"]
        elif kind == ActivityKind.TASK_COMPLETED:
            row(user_id).tasks_completed += values["quantity"]
    return list(rows.values())
