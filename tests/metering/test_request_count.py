"""The OTLP intake's groundwork in §4, §5 and §8 (DESIGN §12.7, §12.8): request counts, sources,
ids reserved for the intake, the ingest hook, lines changed and the per-key export statistics."""

import io
import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction

from accounts.access import Scope
from accounts.models import Role
from accounts.services import api_key_create
from metering import services
from metering.models import (
    ActivityDaily,
    ActivityEvent,
    OtlpKeyStats,
    ResourceUsage,
    UsageDaily,
    UsageDailyBy,
    UsageHourly,
    UsageHourlyBy,
    UsageHourlyOrg,
    UsageRecord,
)
from metering.rollups import day_bounds, dirty_days_rebuild
from metering.schemas import RESERVED_ID_MESSAGE
from metering.selectors import Buckets, Query, by_agent, cost_breakdown, raw_only, summary, timeseries, usage_sums
from metering.services import Batch, ingest_batch, record_otlp_export

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
URL = "/api/v1/ingest"


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def ingest_key(org):
    return api_key_create(org=org, name="ingest", scopes={"ingest"})[1]


def post(client, key, body):
    return client.post(URL, json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}")


def usage(n, **fields):
    return {
        "request_id": f"req-{n}",
        "timestamp": "2026-11-18T10:00:00+01:00",
        "user": "ana@example.com",
        "model": "gpt-5",
        "input_tokens": 100,
        "output_tokens": 10,
        "cost": "0.01",
        **fields,
    }


def event(n, kind, **fields):
    return {
        "event_id": f"ev-{n}",
        "timestamp": "2026-11-18T11:00:00+01:00",
        "kind": kind,
        "user": "ana@example.com",
    } | (fields)


def days_query(org, first: date, last: date) -> Query:
    start, _ = day_bounds(org, first)
    _, end = day_bounds(org, last)
    return Query(Scope(org=org, role=Role.ADMIN), start, end)


# --- request_count ----------------------------------------------------------------------------------


MIXED = [
    usage(1, request_count=3, project="Atlas", agent="Claude Code"),
    usage(2),  # the default: one request
    usage(3, request_count=0, project="Atlas"),  # tokens and cost without a request of its own
    usage(4, request_count=5, status="error", timestamp="2026-11-17T23:30:00+01:00", agent="Claude Code"),
    usage(5, status="error", timestamp="2026-11-19T08:00:00+01:00", user="bob@example.com"),
    usage(6, request_count=2, timestamp="2026-11-19T09:15:00+01:00", user="bob@example.com", project="Atlas"),
]


def independent_counts(org) -> tuple[int, int]:
    """(requests, failed requests) summed in Python over the stored rows."""
    rows = list(UsageRecord.objects.filter(org=org).values_list("request_count", "status"))
    return sum(n for n, _ in rows), sum(n for n, status in rows if status == "error")


def answers(org) -> dict:
    query = days_query(org, date(2026, 11, 17), date(2026, 11, 19))
    s = summary(query)
    costs = cost_breakdown(query)
    hours = Buckets.of(org, query.start, query.end, "1h")
    return {
        "summary": (s["requests"], s["failed_requests"]),
        "by_project": {row["name"]: row["requests"] for row in costs["by_project"]},
        "by_user": {row["name"]: row["requests"] for row in costs["by_user"]},
        "by_agent": {row["agent"]: row["requests"] for row in by_agent(query)["agents"]},
        "daily": [p["value"] for p in timeseries(query, metric="requests", interval="day")["points"]],
        "hourly": sum(p["value"] for p in timeseries(query, metric="requests", interval="1h")["points"]),
        "five_minutes": sum(p["value"] for p in timeseries(query, metric="requests", interval="5m")["points"]),
        "failed_by_service_type_and_hour": sum(
            sums["failed_requests"]
            for sums in usage_sums(
                query, by=("service_type",), buckets=hours, measures=("failed_requests",)
            ).sums.values()
        ),
    }


def test_request_count_is_stored_and_requests_are_its_sum_raw_and_rolled_up_alike(client, org, ingest_key):
    response = post(client, ingest_key, {"usage": MIXED})
    assert response.status_code == 200, response.content
    assert dict(UsageRecord.objects.values_list("request_id", "request_count")) == {
        "req-1": 3,
        "req-2": 1,
        "req-3": 0,
        "req-4": 5,
        "req-5": 1,
        "req-6": 2,
    }
    assert independent_counts(org) == (12, 6)

    with raw_only():
        raw = answers(org)
    dirty = answers(org)  # every day still marked dirty: read raw by the planner
    dirty_days_rebuild()
    rolled_up = answers(org)

    assert raw == {
        "summary": (12, 6),
        "by_project": {"Atlas": 5, None: 7},
        "by_user": {"ana@example.com": 9, "bob@example.com": 3},
        "by_agent": {"Claude Code": 8, None: 4},
        "daily": [5, 4, 3],
        "hourly": 12,
        "five_minutes": 12,
        "failed_by_service_type_and_hour": 6,
    }
    assert dirty == raw
    assert rolled_up == raw


def test_every_rollup_grain_holds_the_sum_of_request_counts(client, org, ingest_key):
    post(client, ingest_key, {"usage": MIXED})
    dirty_days_rebuild()
    requests, failed = independent_counts(org)

    for table in (UsageDaily, UsageHourly, UsageHourlyOrg):
        rows = table.objects.filter(org=org)
        assert (sum(r.requests for r in rows), sum(r.failed_requests for r in rows)) == (requests, failed), table
    for table, dimensions in (
        (UsageDailyBy, ("user", "team", "project", "agent", "model", "service_type", "agent,project")),
        (UsageHourlyBy, ("team", "project", "agent", "model", "service_type")),
    ):
        for dimension in dimensions:
            rows = table.objects.filter(org=org, dimension=dimension)
            assert sum(r.requests for r in rows) == requests, (table, dimension)
            assert sum(r.failed_requests for r in rows) == failed, (table, dimension)


def test_a_day_without_failures_rolls_up_zero_failed_requests(client, org, ingest_key):
    post(client, ingest_key, {"usage": [usage(1, request_count=4)]})
    dirty_days_rebuild()
    assert list(UsageDaily.objects.values_list("requests", "failed_requests")) == [(4, 0)]


@pytest.mark.parametrize("value", [-1, 1.5, "2", True, 2**31])
def test_a_request_count_that_is_not_a_non_negative_integer_is_rejected(client, ingest_key, value):
    response = post(client, ingest_key, {"usage": [usage(1, request_count=value)]})
    assert response.status_code == 207
    assert list(response.json()["rejected"][0]["errors"]) == ["request_count"]
    assert not UsageRecord.objects.exists()


def test_the_openapi_schema_shows_request_count(client):
    schema = client.get("/api/v1/openapi.json").json()
    usage_item = schema["components"]["schemas"]["UsageItem"]
    assert usage_item["properties"]["request_count"] | {"description": ""} == {
        "default": 1,
        "description": "",
        "maximum": 2**31 - 1,
        "minimum": 0,
        "title": "Request Count",
        "type": "integer",
    }
    assert "request_count" not in usage_item["required"]
    assert "lines_changed" in schema["components"]["schemas"]["ActivityKind"]["enum"]


# --- Ids reserved for the OTLP intake --------------------------------------------------------------


def test_ids_starting_otlp_are_rejected_on_the_api_and_nothing_is_stored(client, ingest_key):
    body = {
        "usage": [usage(1, request_id="otlp:m:abc")],
        "activity": [event(1, "agent_run", event_id="otlp:cc-tool:t1:accept")],
    }
    response = post(client, ingest_key, body)

    assert response.status_code == 207
    rejected = response.json()["rejected"]
    assert [(r["kind"], r["id"], r["errors"]) for r in rejected] == [
        ("usage", "otlp:m:abc", {"request_id": [RESERVED_ID_MESSAGE]}),
        ("activity", "otlp:cc-tool:t1:accept", {"event_id": [RESERVED_ID_MESSAGE]}),
    ]
    assert RESERVED_ID_MESSAGE == "ids starting 'otlp:' are reserved for the OTLP intake"
    assert not UsageRecord.objects.exists()
    assert not ActivityEvent.objects.exists()


def test_ids_that_only_contain_otlp_are_accepted(client, ingest_key):
    response = post(client, ingest_key, {"usage": [usage(1, request_id="my-otlp:1"), usage(2, request_id="OTLPx")]})
    assert response.json()["accepted"] == 2


def test_the_otlp_intake_may_write_reserved_ids(org):
    result = ingest_batch(
        org=org,
        usage=[usage(1, request_id="otlp:m:abc")],
        activity=[event(1, "lines_changed", event_id="otlp:m:def", lines_added=3, quantity=0)],
        allow_reserved_ids=True,
    )
    assert (result.accepted, result.rejected) == (2, [])
    assert UsageRecord.objects.get().request_id == "otlp:m:abc"
    assert ActivityEvent.objects.get().event_id == "otlp:m:def"


def test_without_the_flag_ingest_batch_refuses_reserved_ids_too(org):
    result = ingest_batch(org=org, usage=[usage(1, request_id="otlp:m:abc")])
    assert (result.accepted, [r.errors for r in result.rejected]) == (0, [{"request_id": [RESERVED_ID_MESSAGE]}])


def test_resource_ids_are_not_reserved(org):
    item = {"resource_id": "otlp:w-1", "start": "2026-11-18T08:00:00Z", "end": "2026-11-18T09:00:00Z", "cpu_cores": 1}
    assert ingest_batch(org=org, resources=[item]).accepted == 1
    assert ResourceUsage.objects.get().resource_id == "otlp:w-1"


# --- Sources ---------------------------------------------------------------------------------------


def test_records_and_events_from_the_api_have_source_api(client, ingest_key):
    post(client, ingest_key, {"usage": [usage(1)], "activity": [event(1, "agent_run")]})
    assert UsageRecord.objects.get().source == "api"
    assert ActivityEvent.objects.get().source == "api"


def test_a_batch_stores_its_source_on_every_record_and_event(org):
    ingest_batch(
        org=org,
        usage=[usage(1), usage(2)],
        activity=[event(1, "agent_run"), event(2, "commit")],
        source="otlp_metrics",
    )
    assert set(UsageRecord.objects.values_list("source", flat=True)) == {"otlp_metrics"}
    assert set(ActivityEvent.objects.values_list("source", flat=True)) == {"otlp_metrics"}


def test_an_unknown_source_is_a_programming_error(org):
    with pytest.raises(ValueError, match="Unknown source"):
        ingest_batch(org=org, usage=[usage(1)], source="otlp")
    assert not UsageRecord.objects.exists()


def test_imported_records_have_source_import_and_keep_their_request_count(org, tmp_path):
    path = tmp_path / "usage.jsonl"
    path.write_text(json.dumps(usage(1, request_count=4)) + "\n")
    csv_path = tmp_path / "usage.csv"
    csv_path.write_text(
        "request_id,timestamp,user,model,request_count\nreq-2,2026-11-18T10:00:00Z,ana@example.com,gpt-5,0\n"
    )

    for file in (path, csv_path):
        call_command("import_usage", str(file), "--org", "acme", stdout=io.StringIO(), stderr=io.StringIO())

    assert sorted(UsageRecord.objects.values_list("request_id", "request_count", "source")) == [
        ("req-1", 4, "import"),
        ("req-2", 0, "import"),
    ]


# --- The in_transaction hook -----------------------------------------------------------------------


def test_the_hook_sees_the_valid_items_before_duplicates_go_and_its_batch_is_written(org):
    ingest_batch(org=org, usage=[usage(1)])
    seen = []

    def hook(batch: Batch) -> Batch:
        assert connection.in_atomic_block  # inside the write transaction
        seen.append([(index, item.request_id) for index, item in batch.usage])
        # Keep all but req-3; delete a stored record in the same transaction.
        UsageRecord.objects.filter(org=org, request_id="req-1").delete()
        return Batch(usage=[(i, item) for i, item in batch.usage if item.request_id != "req-3"])

    result = ingest_batch(
        org=org,
        usage=[usage(1), usage(2), usage(3), usage(4, input_tokens=-1), usage(5)],
        in_transaction=hook,
    )

    # The invalid item never reaches the hook; the stored req-1 does, as a duplicate would.
    assert seen == [[(0, "req-1"), (1, "req-2"), (2, "req-3"), (4, "req-5")]]
    assert (result.accepted, result.duplicates, len(result.rejected)) == (3, 0, 1)
    assert sorted(UsageRecord.objects.values_list("request_id", flat=True)) == ["req-1", "req-2", "req-5"]


def test_the_hook_runs_again_when_the_transaction_is_retried(org, monkeypatch):
    calls = []
    write = services._write

    def conflicting_once(*args):
        if len(calls) == 1:
            raise IntegrityError("a concurrent writer took one of our ids")
        return write(*args)

    monkeypatch.setattr(services, "_write", conflicting_once)

    def hook(batch: Batch) -> Batch:
        calls.append(len(batch.usage))
        return batch

    result = ingest_batch(org=org, usage=[usage(1), usage(2)], in_transaction=hook)
    assert calls == [2, 2]
    assert result.accepted == 2


def test_what_the_hook_did_is_rolled_back_with_a_failed_batch(org):
    ingest_batch(org=org, usage=[usage(1)])

    def hook(batch: Batch) -> Batch:
        UsageRecord.objects.filter(org=org).delete()
        raise RuntimeError("the intake gave up")

    with pytest.raises(RuntimeError), transaction.atomic():
        ingest_batch(org=org, usage=[usage(2)], in_transaction=hook)
    assert list(UsageRecord.objects.values_list("request_id", flat=True)) == ["req-1"]


def test_the_hook_is_not_called_for_a_batch_without_a_valid_item(org):
    def hook(batch: Batch) -> Batch:
        raise AssertionError("called")

    assert ingest_batch(org=org, usage=[usage(1, input_tokens=-1)], in_transaction=hook).accepted == 0


# --- lines_changed ---------------------------------------------------------------------------------


def test_lines_changed_count_in_lines_of_code_raw_and_rolled_up(client, org, ingest_key):
    body = {
        "activity": [
            event(1, "diff_accepted", lines_added=10, lines_removed=2),
            event(2, "diff_rejected", lines_added=100, lines_removed=100),
            event(3, "lines_changed", lines_added=30, quantity=0),
            event(4, "lines_changed", lines_removed=5, quantity=0, timestamp="2026-11-19T10:00:00+01:00"),
        ]
    }
    assert post(client, ingest_key, body).json()["accepted"] == 4
    query = days_query(org, date(2026, 11, 18), date(2026, 11, 19))
    independent = sum(
        e.lines_added + e.lines_removed
        for e in ActivityEvent.objects.filter(kind__in=["diff_accepted", "lines_changed"])
    )

    def figures():
        s = summary(query)
        return s["lines_of_code"], s["accepted_diffs"], s["agent_runs"]

    with raw_only():
        raw = figures()
    dirty_days_rebuild()
    assert ActivityDaily.objects.filter(org=org, kind="lines_changed").exists()
    assert raw == figures() == (independent, 1, 0) == (47, 1, 0)


def test_a_lines_changed_event_has_quantity_0(org):
    result = ingest_batch(
        org=org, activity=[event(1, "lines_changed", lines_added=4), event(2, "lines_changed", quantity=2)]
    )
    assert ActivityEvent.objects.get().quantity == 0
    assert [r.errors for r in result.rejected] == [
        {"quantity": ["A lines_changed event carries lines only: its quantity is 0."]}
    ]


def test_summary_counts_accepted_diffs_and_agent_runs_by_quantity(org):
    ingest_batch(
        org=org,
        activity=[event(1, "diff_accepted", quantity=3), event(2, "agent_run", quantity=4), event(3, "agent_run")],
    )
    query = days_query(org, date(2026, 11, 18), date(2026, 11, 18))
    with raw_only():
        raw = summary(query)
    dirty_days_rebuild()
    rolled_up = summary(query)
    for s in (raw, rolled_up):
        assert (s["accepted_diffs"], s["agent_runs"]) == (3, 5)


# --- Per-key OTLP export statistics ----------------------------------------------------------------


def test_otlp_exports_add_up_per_key_and_signal(org):
    key, _ = api_key_create(org=org, name="collector", scopes={"ingest"})
    other, _ = api_key_create(org=org, name="other", scopes={"ingest"})

    record_otlp_export(key, "metrics", stored=5, duplicates=1, ignored=2, rejected=0)
    with time_machine.travel(NOW + timedelta(minutes=1), tick=False):
        record_otlp_export(key, "metrics", stored=3, duplicates=0, ignored=0, rejected=2, message="bad point")
        record_otlp_export(key, "metrics", stored=1, duplicates=0, ignored=0, rejected=0)
    record_otlp_export(key, "logs", stored=9, duplicates=0, ignored=0, rejected=0)
    record_otlp_export(other, "metrics", stored=1, duplicates=0, ignored=0, rejected=0)

    stats = OtlpKeyStats.objects.get(api_key=key, signal="metrics")
    assert (stats.requests, stats.stored, stats.duplicates, stats.ignored, stats.rejected) == (3, 9, 1, 2, 2)
    assert stats.last_rejection == "bad point"  # an export without a message keeps it
    assert stats.last_export_at == NOW + timedelta(minutes=1)
    assert OtlpKeyStats.objects.get(api_key=key, signal="logs").stored == 9
    assert OtlpKeyStats.objects.get(api_key=other).requests == 1
    assert OtlpKeyStats.objects.count() == 3


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs concurrent writers on one database")
@pytest.mark.django_db(transaction=True)
def test_concurrent_exports_of_one_key_all_count(org):
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from django.db import connections

    key, _ = api_key_create(org=org, name="collector", scopes={"ingest"})
    start = Barrier(8)

    def export(_):
        start.wait()
        try:
            for _ in range(5):
                record_otlp_export(key, "metrics", stored=2, duplicates=1, ignored=0, rejected=0)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(export, range(8)))
    stats = OtlpKeyStats.objects.get()
    assert (stats.requests, stats.stored, stats.duplicates) == (40, 80, 40)


def test_otlp_settings_of_a_key_default_to_auto_and_the_clients_cost(org):
    key, _ = api_key_create(org=org, name="collector", scopes={"ingest"})
    assert (key.otlp_usage_source, key.otlp_use_client_cost) == ("auto", True)


def test_stored_costs_do_not_change_with_request_count(org):
    ingest_batch(org=org, usage=[usage(1, request_count=0, cost="0.25"), usage(2, request_count=9, cost="0.25")])
    query = days_query(org, date(2026, 11, 18), date(2026, 11, 18))
    assert summary(query)["cost"] == Decimal("0.5")
