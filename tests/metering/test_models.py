"""The database itself refuses bad rows, whatever code writes them."""

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from metering.models import (
    ActivityEvent,
    LLMModel,
    ModelPrice,
    ResourceUsage,
    Session,
    UsageRecord,
)

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def llm(db):
    return LLMModel.objects.create(name="test-model", provider="anthropic")


@pytest.fixture
def record_fields(org, member, llm):
    return dict(
        org=org,
        user=member,
        model=llm,
        timestamp=T0,
        request_id="r-1",
        input_tokens=1000,
        cached_input_tokens=200,
        cache_write_tokens=100,
        output_tokens=300,
        reasoning_tokens=50,
        cost=Decimal("0.01"),
    )


def refused(table, **fields):
    with pytest.raises(IntegrityError), transaction.atomic():
        table.objects.create(**fields)
    return True


def test_a_valid_usage_record_is_stored(record_fields):
    UsageRecord.objects.create(**record_fields)
    assert UsageRecord.objects.get().total_tokens == 1300


@pytest.mark.parametrize(
    "bad",
    [
        {"input_tokens": -1, "cached_input_tokens": 0, "cache_write_tokens": 0},
        {"output_tokens": -5, "reasoning_tokens": 0},
        {"cached_input_tokens": -1},
        {"cache_write_tokens": -1},
        {"cached_input_tokens": 1001},
        # cached reads and cache writes are both part of input
        {"cached_input_tokens": 950, "cache_write_tokens": 100},
        {"reasoning_tokens": 301},
        {"cost": Decimal("-0.01")},
        {"service_type": "telepathy"},
        {"status": "maybe"},
        {"cost_source": "guessed"},
    ],
    ids=lambda bad: ",".join(f"{k}={v}" for k, v in bad.items()),
)
def test_the_database_refuses_a_bad_usage_record(record_fields, bad):
    assert refused(UsageRecord, **{**record_fields, **bad})
    assert not UsageRecord.objects.exists()


def test_a_request_id_is_stored_once_per_org(record_fields, other_org, outsider):
    UsageRecord.objects.create(**record_fields)
    assert refused(UsageRecord, **{**record_fields, "timestamp": T0 + timedelta(hours=1)})
    # Another org may use the same id: the idempotency key is per org.
    UsageRecord.objects.create(**{**record_fields, "org": other_org, "user": outsider})
    assert UsageRecord.objects.filter(request_id="r-1").count() == 2


def test_the_database_refuses_bad_activity_events(org, member):
    fields = dict(org=org, user=member, timestamp=T0, event_id="e-1", kind="diff_accepted", lines_added=3)
    ActivityEvent.objects.create(**fields)
    assert refused(ActivityEvent, **fields)  # duplicate event id
    assert refused(ActivityEvent, **{**fields, "event_id": "e-2", "kind": "daydream"})
    assert refused(ActivityEvent, **{**fields, "event_id": "e-3", "lines_removed": -1})
    assert refused(ActivityEvent, **{**fields, "event_id": "e-4", "quantity": -1})
    assert ActivityEvent.objects.count() == 1


def test_the_database_refuses_bad_resource_usage(org, member):
    fields = dict(
        org=org,
        user=member,
        resource_id="w-1",
        start=T0,
        end=T0 + timedelta(minutes=5),
        cpu_cores=Decimal(2),
        ram_gb=Decimal(4),
        storage_gb=Decimal(10),
    )
    ResourceUsage.objects.create(**fields)
    assert refused(ResourceUsage, **fields)  # duplicate resource id
    assert refused(ResourceUsage, **{**fields, "resource_id": "w-2", "end": T0})
    assert refused(ResourceUsage, **{**fields, "resource_id": "w-3", "cpu_cores": Decimal(-1)})
    assert refused(ResourceUsage, **{**fields, "resource_id": "w-4", "storage_gb": Decimal("-0.5")})
    assert ResourceUsage.objects.count() == 1


def test_the_database_refuses_bad_sessions(org, member):
    fields = dict(org=org, user=member, session_id="s-1", first_seen=T0, last_seen=T0 + timedelta(minutes=3))
    Session.objects.create(**fields)
    assert refused(Session, **fields)
    assert refused(Session, **{**fields, "session_id": "s-2", "last_seen": T0 - timedelta(seconds=1)})


def test_the_database_refuses_bad_prices(llm):
    fields = dict(model=llm, effective_from=date(2026, 1, 1), input=Decimal(3), output=Decimal(15))
    ModelPrice.objects.create(**fields)
    assert refused(ModelPrice, **fields)  # two prices for one model and day
    assert refused(ModelPrice, **{**fields, "effective_from": date(2026, 2, 1), "cached_input": Decimal("-0.3")})
    assert ModelPrice.objects.filter(model=llm).count() == 1
