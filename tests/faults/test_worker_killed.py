"""A Celery worker SIGKILLed in the middle of a day's rollup rebuild (issue 17): the day stays
dirty, no rollup of it is half-written, and the next beat run makes it exact.

Everything is real and the test's own: a PostgreSQL cluster and a Redis on spare ports, the
demo org loaded by `seed_demo`, late records by `import_usage` (which marks their day dirty),
and `celery -A usage_site worker` processes. The kill comes at a chosen point, not after a
guessed delay: the test holds a SHARE lock on ResourceDaily, which readers pass but the
rebuild's delete of the day's ResourceDaily rows waits on, after it has written the day's other
rollups in the same transaction. The test sees the worker's backend waiting on that lock in
pg_stat_activity, and its locks on the rollups it wrote in pg_locks, then kills it.

What is promised (DESIGN §14) is the dirty mark, not redelivery. The task is acks_late
(settings), so a worker killed whole leaves its message unacknowledged in Redis, which hands it
out again only after the visibility timeout (an hour); with a child killed, the worker acks the
task as failed (reject_on_worker_lost is off, so a task that kills its child is not retried
forever). Either way the next `rebuild_dirty_days` that beat sends, every minute, rebuilds the
day from its mark: the test sends it as beat does, by name through the broker.
"""

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from celery import Celery

from metering.models import (
    ActiveUserDaily,
    ActivityDaily,
    ActivityDailyBy,
    ActivityHourlyOrg,
    ConversationDaily,
    ConversationDayCount,
    DirtyDay,
    ResourceDaily,
    SessionDaily,
    UsageDaily,
    UsageDailyBy,
    UsageDailyByTag,
    UsageHourly,
    UsageHourlyBy,
    UsageHourlyOrg,
)
from tests.faults.services import CeleryWorker, Postgres, Redis

pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parents[2]
ROLLUP_TABLES = [
    model._meta.db_table
    for model in (
        UsageDaily, UsageDailyByTag, UsageDailyBy, UsageHourly, UsageHourlyBy, UsageHourlyOrg, ConversationDaily,
        ConversationDayCount, ActivityDaily, ActivityDailyBy, ActivityHourlyOrg, SessionDaily, ActiveUserDaily,
        ResourceDaily,
    )
]  # fmt: skip
BLOCKING_TABLE = ResourceDaily._meta.db_table
DIRTY = DirtyDay._meta.db_table
WAIT = 60  # seconds for anything the test waits on: a worker to start, a task to run


def wait_until(condition, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)
    return result


@pytest.fixture(scope="module")
def servers():
    """A migrated PostgreSQL and a Redis of this module's own, with the demo org (two days) in
    its clean state: the environment a subprocess of Tally needs to use them."""
    postgres, redis = Postgres().start(), Redis().start()
    try:
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE tally")
        env = {
            **os.environ,
            "DATABASE_URL": postgres.url.rsplit("/", 1)[0] + "/tally",
            "REDIS_URL": redis.url,
            "DJANGO_SETTINGS_MODULE": "usage_site.settings",
        }
        for command in (["migrate", "--verbosity", "0"], ["seed_demo", "--days", "2", "--users", "6"]):
            subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True, capture_output=True)
        yield env
    finally:
        redis.stop()
        postgres.destroy()


@pytest.fixture
def sql(servers):
    """A connection of the test's own to the servers' database (autocommit, times in UTC)."""
    with psycopg.connect(servers["DATABASE_URL"], autocommit=True, options="-c TimeZone=UTC") as conn:
        yield conn


@pytest.fixture
def workers(servers, tmp_path):
    """Start workers with `workers()`; all are stopped after the test."""
    started = []

    def start() -> CeleryWorker:
        log = tmp_path / f"worker-{len(started)}.log"
        started.append(CeleryWorker(servers, log, cwd=ROOT).start())
        return started[-1]

    yield start
    for worker in started:
        worker.stop()


def beat_run(broker_url: str) -> None:
    """What beat does every minute (CELERY_BEAT_SCHEDULE): send the task by name."""
    app = Celery("beat", broker=broker_url)
    try:
        app.send_task("metering.tasks.rebuild_dirty_days")
    finally:
        app.close()


def late_records(sql, tmp_path, servers, prefix: str) -> tuple[int, str, datetime]:
    """Import records for yesterday (in the org's zone) after its rollups were built: the day is
    marked dirty. Returns the org's id, its zone and the day."""
    org, zone = sql.execute("SELECT id, timezone FROM accounts_organization WHERE slug = 'demo'").fetchone()
    day = (datetime.now(ZoneInfo(zone)) - timedelta(days=1)).date()
    noon = datetime.combine(day, datetime.min.time(), ZoneInfo(zone)) + timedelta(hours=12)
    users = ["admin@example.com", "manager@example.com", "member@example.com"]
    items = [
        {
            "request_id": f"{prefix}-{n}",
            "timestamp": (noon + timedelta(minutes=7 * n)).isoformat(),
            "user": users[n % 3],
            "model": ["claude-sonnet-4-5", "gpt-5"][n % 2],
            "project": "late-project",
            "agent": "Late agent",
            "status": "error" if n % 5 == 0 else "success",
            "input_tokens": 1000 + n,
            "cached_input_tokens": n,
            "output_tokens": 100 + n,
            "cost": f"0.{n:04d}",
            "session_id": f"{prefix}-s{n // 10}",
            "conversation_id": f"{prefix}-c{n // 4}",
            "tags": ["late", prefix][: 1 + n % 2],
        }
        for n in range(40)
    ]
    path = tmp_path / f"{prefix}.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    run = [sys.executable, "manage.py", "import_usage", str(path), "--org", "demo"]
    subprocess.run(run, cwd=ROOT, env=servers, check=True, capture_output=True)
    return org, zone, day


def snapshot(sql, org: int, day) -> dict[str, list[str]]:
    """Every row (ids included) of every rollup of the day."""
    rows = "SELECT t::text FROM {} t WHERE org_id = %s AND day = %s ORDER BY 1"
    return {table: [row for (row,) in sql.execute(rows.format(table), [org, day])] for table in ROLLUP_TABLES}


def dirty_version(sql, org: int, day) -> int | None:
    row = sql.execute(f"SELECT version FROM {DIRTY} WHERE org_id = %s AND day = %s", [org, day]).fetchone()
    return row[0] if row else None


# Each pair: the rollup's rows of the day, and the same numbers summed from the raw rows of the
# org-local day (%(zone)s), written independently of metering/rollups.py.
RECORDS_OF_DAY = (
    "FROM metering_usagerecord r WHERE r.org_id = %(org)s AND (r.timestamp AT TIME ZONE %(zone)s)::date = %(day)s"
)
COMPARISONS = {
    "usage per person, team, project, model and service": (
        "SELECT user_id, team_id, project_id, model_id, service_type, SUM(requests), SUM(failed_requests), "
        "SUM(input_tokens), SUM(cached_input_tokens), SUM(output_tokens), SUM(cost) FROM metering_usagedaily "
        "WHERE org_id = %(org)s AND day = %(day)s GROUP BY 1, 2, 3, 4, 5",
        "SELECT user_id, team_id, project_id, model_id, service_type, SUM(request_count), "
        "COALESCE(SUM(request_count) FILTER (WHERE status = 'error'), 0), SUM(input_tokens), "
        f"SUM(cached_input_tokens), SUM(output_tokens), SUM(cost) {RECORDS_OF_DAY} GROUP BY 1, 2, 3, 4, 5",
    ),
    "usage per hour": (
        "SELECT hour, SUM(requests), SUM(input_tokens), SUM(output_tokens), SUM(cost) FROM metering_usagehourlyorg "
        "WHERE org_id = %(org)s AND day = %(day)s GROUP BY 1",
        "SELECT date_trunc('hour', timestamp), SUM(request_count), SUM(input_tokens), SUM(output_tokens), "
        f"SUM(cost) {RECORDS_OF_DAY} GROUP BY 1",
    ),
    "usage per tag": (
        "SELECT tag_id, SUM(requests), SUM(output_tokens), SUM(cost) FROM metering_usagedailybytag "
        "WHERE org_id = %(org)s AND day = %(day)s GROUP BY 1",
        "SELECT l.tag_id, SUM(request_count), SUM(output_tokens), SUM(cost) "
        f"{RECORDS_OF_DAY.replace('WHERE', 'JOIN metering_usagerecordtag l ON l.record_id = r.id WHERE')} GROUP BY 1",
    ),
    "activity per person and kind": (
        "SELECT user_id, kind, SUM(events), SUM(quantity), SUM(lines_added), SUM(lines_removed) "
        "FROM metering_activitydaily WHERE org_id = %(org)s AND day = %(day)s GROUP BY 1, 2",
        "SELECT user_id, kind, COUNT(*), SUM(quantity), SUM(lines_added), SUM(lines_removed) "
        "FROM metering_activityevent WHERE org_id = %(org)s AND (timestamp AT TIME ZONE %(zone)s)::date = %(day)s "
        "GROUP BY 1, 2",
    ),
}


def mismatches(sql, org: int, zone: str, day) -> list[str]:
    """The comparisons whose rollup rows differ from the raw sums."""
    params = {"org": org, "zone": zone, "day": day}
    return [
        name
        for name, (rollup, raw) in COMPARISONS.items()
        if sorted(sql.execute(rollup, params).fetchall()) != sorted(sql.execute(raw, params).fetchall())
    ]


@pytest.mark.parametrize("killed", ["child", "worker"])
def test_a_worker_killed_mid_rebuild_leaves_the_day_dirty_and_the_next_beat_run_makes_it_exact(
    servers, sql, workers, tmp_path, killed
):
    org, zone, day = late_records(sql, tmp_path, servers, prefix=f"late-{killed}")
    version = dirty_version(sql, org, day)
    assert version is not None
    before = snapshot(sql, org, day)
    assert "usage per person, team, project, model and service" in mismatches(sql, org, zone, day)

    worker = workers()
    with psycopg.connect(servers["DATABASE_URL"]) as lock:
        lock.execute(f"LOCK TABLE {BLOCKING_TABLE} IN SHARE MODE")  # held until lock.rollback()
        beat_run(servers["REDIS_URL"])
        waiting = (
            f"SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%%{BLOCKING_TABLE}%%'"
        )
        (backend,) = wait_until(lambda: sql.execute(waiting).fetchone(), "the rebuild waiting on the lock")
        written = "SELECT relation::regclass::text FROM pg_locks WHERE pid = %s AND mode = 'RowExclusiveLock'"
        assert {UsageDaily._meta.db_table, ActiveUserDaily._meta.db_table} <= {
            table for (table,) in sql.execute(written, [backend])
        }, "the rebuild has written the day's other rollups in its transaction"

        if killed == "child":
            worker.kill_child()
        else:
            worker.kill()
        lock.rollback()
    # The backend of the killed process finds its client gone once it may go on; its transaction
    # is rolled back.
    gone = "SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = %s)"
    wait_until(lambda: sql.execute(gone, [backend]).fetchone()[0], "the killed worker's backend ending")

    assert dirty_version(sql, org, day) == version
    assert snapshot(sql, org, day) == before, "no rollup of the day is half-written"

    if killed == "worker":
        workers()
    beat_run(servers["REDIS_URL"])
    wait_until(lambda: dirty_version(sql, org, day) is None, "the next beat run clearing the mark")
    assert snapshot(sql, org, day) != before
    assert mismatches(sql, org, zone, day) == []
