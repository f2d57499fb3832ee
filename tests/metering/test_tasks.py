"""The rollup task run by a real Celery worker (not eager mode), against committed data."""

import pytest

from metering.models import DirtyDay, UsageDaily
from metering.tasks import rebuild_dirty_days
from tests.metering.test_rollups import NOW, ingest, raw_usage_by_local_day, rollup_usage_by_day, usage


@pytest.fixture(scope="session")
def celery_config():
    return {"broker_url": "memory://", "result_backend": "cache+memory://"}


@pytest.mark.django_db(transaction=True)
def test_a_worker_rebuilds_the_days_ingestion_marked(celery_app, celery_worker, client, org):
    import time_machine

    with time_machine.travel(NOW, tick=False):
        ingest(client, org, {"usage": [usage(1, "2026-10-27T09:00:00Z"), usage(2, "2026-10-26T09:00:00Z")]})
    assert DirtyDay.objects.count() == 2

    assert rebuild_dirty_days.delay().get(timeout=30) == 2

    assert not DirtyDay.objects.exists()
    assert rollup_usage_by_day(UsageDaily, org) == raw_usage_by_local_day(org)
