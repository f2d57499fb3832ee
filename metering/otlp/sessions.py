"""One source of truth per Claude Code session (DESIGN §12.3.3).

Claude Code's metrics and its events both carry the tokens, cost and edit decisions of the
same API requests. Per (org, session.id) they are counted from one of the two: under the
key's `otlp_usage_source` = `logs` or `metrics` always that one; under `auto` from metrics
until the session's first usage-bearing event arrives, then from events for good, the
metrics-sourced records and diff events already stored being deleted in the same
transaction. The decision is taken under a row lock on the session's `OtlpSession` (rows
locked in key order by one upsert), so requests in different processes serialize on it and the result
does not depend on the order metrics and events arrive in.
"""

from collections.abc import Sequence

from django.db import connection
from django.utils import timezone

from accounts.models import ApiKey, Organization
from metering.models import ActivityEvent, ActivityKind, OtlpSession, UsageRecord
from metering.otlp.mapping import Derived
from metering.rollups import mark_days_dirty
from metering.services import Batch, local_day

METRICS, LOGS = "metrics_usage", "logs_usage"
DIFF_KINDS = (ActivityKind.DIFF_ACCEPTED, ActivityKind.DIFF_REJECTED)


class OneSource:
    """The ingest_batch `in_transaction` hook: the batch without the items their session's
    source excludes (counted in `dropped`), superseded metrics-sourced rows deleted."""

    def __init__(self, org: Organization, api_key: ApiKey, derived: dict[str, Sequence[Derived]]):
        self.org, self.api_key, self.derived = org, api_key, derived
        self.dropped = 0

    def __call__(self, batch: Batch) -> Batch:
        kept, self.dropped = Batch(), 0  # called again if ingest retries the transaction
        counting = _sources(self.org, self.api_key, batch, self.derived)
        for kind in ("usage", "activity", "resources"):
            for index, item in getattr(batch, kind):
                d = self.derived[kind][index]
                if d.role and counting.get(d.session, _fixed(self.api_key)) != d.role:
                    self.dropped += 1
                else:
                    getattr(kept, kind).append((index, item))
        return kept


def _fixed(api_key: ApiKey) -> str:
    """What counts without a per-session decision: the key's setting, or metrics (points with no session id)."""
    return {"logs": LOGS, "metrics": METRICS}.get(api_key.otlp_usage_source, METRICS)


def _sources(org: Organization, api_key: ApiKey, batch: Batch, derived: dict) -> dict[str, str]:
    """Under `auto`, the role each session of the batch counts from, decided under its row lock."""
    if api_key.otlp_usage_source != "auto":
        return {}
    roles: dict[str, set[str]] = {}
    for kind in ("usage", "activity"):
        for index, _ in getattr(batch, kind):
            d = derived[kind][index]
            if d.role and d.session:
                roles.setdefault(d.session, set()).add(d.role)
    if not roles:
        return {}
    now = timezone.now()
    locked = _lock(org, sorted(roles), now)
    taken_over = [session for session, source in locked.items() if source == "metrics" and LOGS in roles[session]]
    if taken_over:
        _delete_metrics_rows(org, taken_over)
        OtlpSession.objects.filter(org=org, session_id__in=taken_over).update(usage_source="logs", logs_seen_at=now)
        locked.update(dict.fromkeys(taken_over, "logs"))
    return {session: LOGS if source == "logs" else METRICS for session, source in locked.items()}


def _lock(org: Organization, session_ids: list[str], now) -> dict[str, str]:
    """{session id: its usage_source} of these sessions, rows created as `metrics` where missing,
    every row locked until the transaction ends, in the order given. One statement: an upsert
    locks the rows it inserts and the existing ones its DO UPDATE touches."""
    table = OtlpSession._meta.db_table
    first_seen = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (org_id, session_id, usage_source, first_seen) VALUES "
            + ", ".join(["(%s, %s, 'metrics', %s)"] * len(session_ids))
            + " ON CONFLICT (org_id, session_id) DO UPDATE SET session_id = excluded.session_id"
            " RETURNING session_id, usage_source",
            [value for session in session_ids for value in (org.pk, session, first_seen)],
        )
        return dict(cursor.fetchall())


def _delete_metrics_rows(org: Organization, session_ids: list[str]) -> None:
    """The metrics-sourced usage records and diff events of sessions now counted from events."""
    records = UsageRecord.objects.filter(org=org, source="otlp_metrics", session__session_id__in=session_ids)
    events = ActivityEvent.objects.filter(
        org=org, source="otlp_metrics", kind__in=DIFF_KINDS, session__session_id__in=session_ids
    )
    days = {local_day(org, t) for t in records.values_list("timestamp", flat=True)}
    days |= {local_day(org, t) for t in events.values_list("timestamp", flat=True)}
    records.delete()
    events.delete()
    mark_days_dirty(org, days)
