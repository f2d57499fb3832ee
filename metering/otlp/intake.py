"""The OTLP intake's glue: a decoded export request becomes ingest items, written as
/api/v1/ingest writes them (DESIGN §12.2).

One transaction per request: the cumulative streams' state (metering.otlp.streams), the
session's source of truth (metering.otlp.sessions) and the rows themselves commit together
or not at all, through the same bulk paths as JSON ingest (metering.services.ingest_batch),
which marks the days dirty and tells Live Mode after commit.
"""

import re
from dataclasses import dataclass
from functools import partial

from accounts.models import ApiKey
from metering.otlp import mapping, streams
from metering.otlp.sessions import OneSource
from metering.services import ingest_batch, record_otlp_export, retry_on_conflict

SOURCES = {"metrics": "otlp_metrics", "logs": "otlp_logs", "traces": "otlp_traces"}
NAMED_IN_MESSAGE = 5
# Events a metric point's count expanded into share its id up to ':<i>' (DESIGN §12.6).
_EXPANDED = re.compile(r":\d+$")


@dataclass
class Outcome:
    rejected: int = 0
    message: str = ""


def accept(signal: str, message, api_key: ApiKey) -> Outcome:
    org = api_key.org
    settings = mapping.KeySettings(
        owner=api_key.owner.email if api_key.owner_id and api_key.owner.email else None,
        use_client_cost=api_key.otlp_use_client_cost,
    )
    # One transaction, retried whole on a conflict: the streams' state goes back with the rows.
    return retry_on_conflict(partial(_accept, signal, message, api_key, org, settings))


def _accept(signal: str, message, api_key: ApiKey, org, settings: mapping.KeySettings) -> Outcome:
    if signal == "metrics":
        mapped = mapping.map_metrics(message, settings, lambda points: streams.deltas(org, points))
    elif signal == "logs":
        mapped = mapping.map_logs(message, settings)
    else:
        mapped = mapping.map_traces(message, settings)
    derived = {"usage": [], "activity": [], "resources": []}
    for d in mapped.items:
        derived[d.kind].append(d)
    one_source = OneSource(org, api_key, derived)
    result = ingest_batch(
        org=org,
        api_key=api_key,
        usage=[d.item for d in derived["usage"]],
        activity=[d.item for d in derived["activity"]],
        source=SOURCES[signal],
        allow_reserved_ids=True,
        in_transaction=one_source,
        retry=False,
    )
    reasons = list(mapped.rejected)
    origins = {}
    for rejection in result.rejected:
        origin = _EXPANDED.sub("", rejection.id or f"{rejection.kind} item {rejection.index}")
        origins.setdefault(origin, "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in rejection.errors.items()))
    reasons += [f"{origin}: {why}" for origin, why in origins.items()]
    text = _message(reasons)
    # In the same transaction: one commit a request, and the counts agree with what it stored.
    record_otlp_export(
        api_key,
        signal,
        stored=result.accepted,
        duplicates=result.duplicates,
        ignored=mapped.ignored + one_source.dropped,
        rejected=len(reasons),
        message=text,
    )
    return Outcome(rejected=len(reasons), message=text)


def _message(reasons: list[str]) -> str:
    if not reasons:
        return ""
    shown = "; ".join(reasons[:NAMED_IN_MESSAGE])
    more = len(reasons) - NAMED_IN_MESSAGE
    return f"{len(reasons)} rejected: {shown}" + (f"; and {more} more" if more > 0 else "") + "."
