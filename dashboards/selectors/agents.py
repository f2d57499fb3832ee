"""Reads of the Agents page: the per-agent table (by-agent API rows plus reviewed diffs) and metrics by agent."""

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from dashboards.charts import Series, top_series
from dashboards.selectors.common import money, money_series, tokens
from dashboards.tables import duration_text
from metering import selectors as metering
from metering.models import ActivityKind

TOP_AGENT_SERIES = 8
AGENT_METRICS = (("cost", "Cost"), ("tokens", "Tokens"), ("requests", "Requests"), ("sessions", "Sessions"))


@dataclass
class AgentRow:
    """One agent of the Agents page's table: metering.by_agent's numbers plus its diffs."""

    key: str  # data-row: the agent's name ("" for usage without an agent)
    label: str
    sessions: int = 0
    requests: int = 0
    total_tokens: int = 0
    cost: Decimal = Decimal(0)
    avg_cost_per_session: Decimal = Decimal(0)
    avg_duration_seconds: float = 0.0
    accepted_diffs: int = 0
    rejected_diffs: int = 0

    @property
    def has_diffs(self) -> bool:
        return bool(self.accepted_diffs or self.rejected_diffs)

    @property
    def accept_rate(self) -> float:
        """Accepted / (accepted + rejected) diffs; -1 when there were none (sorts last)."""
        reviewed = self.accepted_diffs + self.rejected_diffs
        return self.accepted_diffs / reviewed if reviewed else -1.0

    @property
    def avg_duration_text(self) -> str:
        return duration_text(self.avg_duration_seconds)

    @property
    def search_text(self) -> str:
        return self.label.lower()


def agent_rows(query: metering.Query) -> list[AgentRow]:
    """metering.by_agent (the by-agent API) row for row, with accepted and rejected diffs."""
    api_rows = metering.by_agent(query)["agents"]
    diffs = metering.activity_sums(query, metering.plan(query.org, query.start, query.end), by=("agent",))
    reviewed = {
        (kind, agent): values["quantity"]
        for (kind, agent), values in diffs.items()
        if kind in (ActivityKind.DIFF_ACCEPTED, ActivityKind.DIFF_REJECTED)
    }
    names = metering.dimension_names("agent", {agent for _, agent in reviewed}, query.org)
    by_name: dict = defaultdict(lambda: {"accepted": 0, "rejected": 0})
    for (kind, agent), quantity in reviewed.items():
        side = "accepted" if kind == ActivityKind.DIFF_ACCEPTED else "rejected"
        by_name[names.get(agent) if agent is not None else None][side] += quantity
    rows = []
    for row in api_rows:
        name = row["agent"]
        rows.append(
            AgentRow(
                key=name or "",
                label=name or "No agent",
                sessions=row["sessions"],
                requests=row["requests"],
                total_tokens=row["total_tokens"],
                cost=money(row["cost"]),
                avg_cost_per_session=money(row["avg_cost_per_session"]),
                avg_duration_seconds=row["avg_duration_seconds"],
                accepted_diffs=by_name[name]["accepted"] if name in by_name else 0,
                rejected_diffs=by_name[name]["rejected"] if name in by_name else 0,
            )
        )
    return rows


def agent_series(query: metering.Query, buckets: metering.Buckets, metric: str) -> list[Series]:
    """`metric` per bucket of each agent (TOP_AGENT_SERIES of them, then "Other agents").

    Cost, tokens and requests add up per bucket to the timeseries API's; a session counts
    once per agent it ran on in a bucket.
    """
    n = len(buckets.starts) - 1
    per_agent: dict = defaultdict(lambda: [Decimal(0) if metric == "cost" else 0] * n)
    if metric == "sessions":
        for (bucket, agent), count in metering.session_counts(query, buckets, by="agent").items():
            per_agent[agent][bucket] += count
    else:
        for (bucket, agent), sums in metering.usage_sums(query, by=("agent",), buckets=buckets).sums.items():
            per_agent[agent][bucket] += (
                sums["cost"] if metric == "cost" else tokens(sums) if metric == "tokens" else sums["requests"]
            )
        if metric == "cost":
            per_agent = {agent: money_series(values) for agent, values in per_agent.items()}
    names = metering.dimension_names("agent", per_agent, query.org)
    totals = {agent: sum(values) for agent, values in per_agent.items()}
    return top_series(
        per_agent,
        totals,
        lambda a: names.get(a, f"agent {a}") if a is not None else "No agent",
        lambda a: "",
        n,
        TOP_AGENT_SERIES,
        "Other agents",
    )
