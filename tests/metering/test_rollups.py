"""Daily rollups agree with the raw rows, per org-local day, and rebuild idempotently."""

import json
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection

from accounts.access import Scope, scope_for_user
from accounts.models import Role, User
from accounts.services import api_key_create
from metering import rollups
from metering.models import (
    ActivityDaily,
    ConversationDayCount,
    DirtyDay,
    ResourceDaily,
    SessionDaily,
    UsageDaily,
    UsageDailyByTag,
    UsageRecord,
    UsageRecordTag,
)
from metering.rollups import dirty_days_rebuild, mark_days_dirty, rollup_day_rebuild
from metering.selectors import Query, conversation_counts, summary

NOW = datetime(2026, 10, 28, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def ingest(client, org, body):
    key = api_key_create(org=org, name="k", scopes={"ingest"})[1]
    response = client.post(
        "/api/v1/ingest", json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}"
    )
    assert response.status_code == 200, response.content
    return response.json()


def usage(n, ts, **fields):
    return {
        "request_id": f"r-{n}",
        "timestamp": ts,
        "user": "ana@example.com",
        "model": "gpt-5",
        "input_tokens": 1000 + n,
        "output_tokens": 100 + n,
        "cost": f"0.{n:04d}",
        **fields,
    }


@pytest.fixture
def ingested(client, org):
    # Berlin changed from CEST to CET on Sunday 25 October 2026: that day has 25 hours.
    ingest(
        client,
        org,
        {
            "usage": [
                usage(1, "2026-10-24T21:59:59Z", tags=["a", "b"], session_id="s-1"),  # 23:59:59 CEST, the 24th
                usage(2, "2026-10-24T22:00:00Z", session_id="s-1", status="error"),  # 00:00 the 25th
                usage(3, "2026-10-25T22:59:59Z", tags=["a"], project="Atlas"),  # 23:59:59 CET, still the 25th
                usage(4, "2026-10-25T23:00:00Z", user="bob@example.com", agent="QA"),  # the 26th
            ],
            "activity": [
                {
                    "event_id": "e-1",
                    "timestamp": "2026-10-25T10:00:00Z",
                    "kind": "diff_accepted",
                    "user": "ana@example.com",
                    "lines_added": 7,
                    "lines_removed": 2,
                    "session_id": "s-2",
                }
            ],
            "resources": [
                # Two hours across Berlin midnight at the end of the 26th: one hour on each day.
                {"resource_id": "w-1", "start": "2026-10-26T22:00:00Z", "end": "2026-10-27T00:00:00Z", "cpu_cores": 2}
            ],
        },
    )


def raw_usage_by_local_day(org):
    days = defaultdict(lambda: {"requests": 0, "failed": 0, "input": 0, "cost": Decimal(0)})
    for r in UsageRecord.objects.filter(org=org):
        d = days[r.timestamp.astimezone(org.tzinfo).date()]
        d["requests"] += 1
        d["failed"] += r.status == "error"
        d["input"] += r.input_tokens
        d["cost"] += r.cost
    return dict(days)


def rollup_usage_by_day(table, org):
    days = defaultdict(lambda: {"requests": 0, "failed": 0, "input": 0, "cost": Decimal(0)})
    for row in table.objects.filter(org=org):
        d = days[row.day]
        d["requests"] += row.requests
        d["failed"] += row.failed_requests
        d["input"] += row.input_tokens
        d["cost"] += row.cost
    return dict(days)


def test_ingestion_marks_days_and_the_dirty_rebuild_makes_rollups_equal_raw(ingested, org):
    assert set(DirtyDay.objects.values_list("day", flat=True)) == {
        date(2026, 10, 24),
        date(2026, 10, 25),
        date(2026, 10, 26),
        date(2026, 10, 27),
    }
    assert dirty_days_rebuild() == 4
    assert not DirtyDay.objects.exists()
    expected = raw_usage_by_local_day(org)
    assert set(expected) == {date(2026, 10, 24), date(2026, 10, 25), date(2026, 10, 26)}
    assert expected[date(2026, 10, 25)]["requests"] == 2  # the 25-hour day keeps its last hour
    assert rollup_usage_by_day(UsageDaily, org) == expected


def test_a_record_with_two_tags_counts_under_each(ingested, org):
    dirty_days_rebuild()
    by_tag = {(row.tag.name, row.day): row.requests for row in UsageDailyByTag.objects.select_related("tag")}
    assert by_tag == {("a", date(2026, 10, 24)): 1, ("b", date(2026, 10, 24)): 1, ("a", date(2026, 10, 25)): 1}


def test_tag_rollups_find_records_whose_ids_lie_apart(client, ingested, org, monkeypatch):
    # Every id its own band: records of a day whose ids are not consecutive (here a late record)
    # are found through several ranges of ids.
    monkeypatch.setattr(rollups, "ID_BAND", 1)
    ingest(client, org, {"usage": [usage(9, "2026-10-24T12:00:00Z", tags=["a"]), usage(10, "2026-10-26T09:00:00Z")]})
    dirty_days_rebuild()
    by_tag = defaultdict(int)
    for link in UsageRecordTag.objects.select_related("record", "tag"):
        by_tag[link.tag.name, link.record.timestamp.astimezone(org.tzinfo).date()] += 1
    assert by_tag[("a", date(2026, 10, 24))] == 2
    assert {(row.tag.name, row.day): row.requests for row in UsageDailyByTag.objects.select_related("tag")} == by_tag


def test_activity_sessions_and_resources_are_rolled_up(ingested, org):
    dirty_days_rebuild()
    activity = ActivityDaily.objects.get()
    assert (activity.day, activity.kind, activity.events, activity.lines_added, activity.lines_removed) == (
        date(2026, 10, 25),
        "diff_accepted",
        1,
        7,
        2,
    )
    sessions = set(SessionDaily.objects.values_list("session__session_id", "day"))
    assert sessions == {("s-1", date(2026, 10, 24)), ("s-1", date(2026, 10, 25)), ("s-2", date(2026, 10, 25))}
    cpu = dict(ResourceDaily.objects.values_list("day", "cpu_core_seconds"))
    assert cpu == {date(2026, 10, 26): Decimal(7200), date(2026, 10, 27): Decimal(7200)}


def test_rebuilding_twice_changes_nothing(ingested, org):
    def snapshot():
        rows = UsageDaily.objects.values_list("day", "user_id", "project_id", "agent_id", "requests", "cost")
        return sorted(rows, key=repr)

    rollup_day_rebuild(org=org, day=date(2026, 10, 25))
    first = snapshot()
    rollup_day_rebuild(org=org, day=date(2026, 10, 25))
    assert snapshot() == first and first


@pytest.mark.skipif(connection.vendor != "postgresql", reason="elsewhere a rebuild deletes the day and inserts it")
def test_a_rebuild_rewrites_only_the_rows_that_changed(ingested, org):
    day = date(2026, 10, 25)
    dirty_days_rebuild()

    def ids():
        return {row.project_id: row.pk for row in UsageDaily.objects.filter(day=day)}

    before = ids()
    UsageRecord.objects.filter(request_id="r-3").update(cost=Decimal("1.5"))  # as reprice does
    rollup_day_rebuild(org=org, day=day)
    after = ids()
    atlas = UsageDaily.objects.get(day=day, project__name="Atlas")
    assert atlas.cost == Decimal("1.5") and before.keys() == after.keys() == {None, atlas.project_id}
    assert after[None] == before[None] and after[atlas.project_id] != before[atlas.project_id]
    assert rollup_usage_by_day(UsageDaily, org) == raw_usage_by_local_day(org)


def test_a_rebuild_removes_stray_copies_of_a_row(ingested, org):
    dirty_days_rebuild()
    stray = UsageDaily.objects.get(day=date(2026, 10, 25), project__isnull=True)
    stray.pk = None
    stray.save()
    assert rollup_usage_by_day(UsageDaily, org) != raw_usage_by_local_day(org)
    rollup_day_rebuild(org=org, day=date(2026, 10, 25))
    assert rollup_usage_by_day(UsageDaily, org) == raw_usage_by_local_day(org)


def test_a_day_marked_again_during_its_rebuild_stays_dirty(ingested, org, monkeypatch):
    original = rollups.rollup_day_rebuild

    def rebuild_while_ingest_marks_the_day(*, org, day):
        original(org=org, day=day)
        mark_days_dirty(org, [day])  # a batch committed for this day while we rebuilt it

    monkeypatch.setattr(rollups, "rollup_day_rebuild", rebuild_while_ingest_marks_the_day)
    dirty_days_rebuild()
    assert DirtyDay.objects.count() == 4
    monkeypatch.undo()
    dirty_days_rebuild()
    assert not DirtyDay.objects.exists()


def test_a_late_record_is_picked_up_by_the_next_rebuild(client, ingested, org):
    dirty_days_rebuild()
    ingest(client, org, {"usage": [usage(9, "2026-10-25T12:00:00Z")]})
    assert list(DirtyDay.objects.values_list("day", flat=True)) == [date(2026, 10, 25)]
    dirty_days_rebuild()
    assert rollup_usage_by_day(UsageDaily, org) == raw_usage_by_local_day(org)


def test_the_command_rebuilds_every_day_with_progress(ingested, org, capsys):
    call_command("rebuild_rollups", "acme", "--from", "2026-10-20")
    assert "Rebuilt 9 org-days" in capsys.readouterr().out  # the 20th to today, the 28th
    assert rollup_usage_by_day(UsageDaily, org) == raw_usage_by_local_day(org)
    assert not DirtyDay.objects.exists()


def test_the_command_refuses_an_unknown_org_and_a_reversed_range(db):
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="No org"):
        call_command("rebuild_rollups", "nope")
    with pytest.raises(CommandError, match="--from"):
        call_command("rebuild_rollups", "--from", "2026-10-20", "--to", "2026-10-01")


def test_day_bounds_follow_daylight_saving_time(org):
    def hours(day):
        start, end = rollups.day_bounds(org, day)
        # Aware datetimes of one zone subtract as wall-clock times; compare the instants.
        return (end.astimezone(timezone.utc) - start.astimezone(timezone.utc)) / timedelta(hours=1)

    assert (hours(date(2026, 10, 25)), hours(date(2026, 3, 29)), hours(date(2026, 6, 1))) == (25, 23, 24)


# --- Distinct counts over runs of days (ConversationDayCount, Session spans) ---------------------


def whole_org_query(org, first: date, last: date) -> Query:
    start, _ = rollups.day_bounds(org, first)
    _, end = rollups.day_bounds(org, last)
    return Query(Scope(org=org, role=Role.ADMIN), start, end)


def conversation_days(org) -> dict:
    return {(c.day, c.prev_day): c.conversations for c in ConversationDayCount.objects.filter(org=org)}


def test_each_conversation_counts_once_over_a_run_of_days_and_again_after_a_gap(client, org):
    ingest(client, org, {"usage": [
        usage(1, "2026-10-20T10:00:00+02:00", conversation_id="c-1"),
        usage(2, "2026-10-21T10:00:00+02:00", conversation_id="c-1"),
        usage(3, "2026-10-21T11:00:00+02:00", conversation_id="c-2"),
        usage(4, "2026-10-23T10:00:00+02:00", conversation_id="c-1"),
    ]})  # fmt: skip
    dirty_days_rebuild()

    assert conversation_days(org) == {
        (date(2026, 10, 20), None): 1,
        (date(2026, 10, 21), date(2026, 10, 20)): 1,
        (date(2026, 10, 21), None): 1,
        (date(2026, 10, 23), date(2026, 10, 21)): 1,
    }
    assert summary(whole_org_query(org, date(2026, 10, 20), date(2026, 10, 23)))["conversations"] == 2
    assert summary(whole_org_query(org, date(2026, 10, 21), date(2026, 10, 23)))["conversations"] == 2
    assert summary(whole_org_query(org, date(2026, 10, 22), date(2026, 10, 23)))["conversations"] == 1
    assert summary(whole_org_query(org, date(2026, 10, 22), date(2026, 10, 22)))["conversations"] == 0


def test_a_late_record_that_gives_a_day_a_conversation_marks_its_next_day_dirty(client, org):
    ingest(client, org, {"usage": [usage(1, "2026-10-23T10:00:00+02:00", conversation_id="c-1")]})
    dirty_days_rebuild()
    assert conversation_days(org) == {(date(2026, 10, 23), None): 1}

    ingest(client, org, {"usage": [usage(2, "2026-10-21T10:00:00+02:00", conversation_id="c-1")]})
    assert set(DirtyDay.objects.values_list("day", flat=True)) == {date(2026, 10, 21)}
    rollup_day_rebuild(org=org, day=date(2026, 10, 21))

    # The 23rd's count still says "first seen" until it is rebuilt, so it is marked: read raw till then.
    assert set(DirtyDay.objects.values_list("day", flat=True)) == {date(2026, 10, 21), date(2026, 10, 23)}
    dirty_days_rebuild()
    assert not DirtyDay.objects.exists()
    assert conversation_days(org) == {(date(2026, 10, 21), None): 1, (date(2026, 10, 23), date(2026, 10, 21)): 1}
    assert summary(whole_org_query(org, date(2026, 10, 21), date(2026, 10, 23)))["conversations"] == 1


def test_a_dirty_day_between_clean_ones_counts_each_conversation_once(client, org):
    ingest(client, org, {"usage": [
        usage(1, "2026-10-20T10:00:00+02:00", conversation_id="c-1"),
        usage(2, "2026-10-21T10:00:00+02:00", conversation_id="c-2"),
        usage(3, "2026-10-22T10:00:00+02:00", conversation_id="c-2"),
        usage(4, "2026-10-22T11:00:00+02:00", conversation_id="c-3"),
    ]})  # fmt: skip
    dirty_days_rebuild()
    # c-3 came to the 21st late: that day is read raw; the 22nd still counts c-3 as new, and c-2
    # as seen on the 21st, whose stale rows are all that counts it.
    ingest(client, org, {"usage": [usage(5, "2026-10-21T12:00:00+02:00", conversation_id="c-3")]})
    assert set(DirtyDay.objects.values_list("day", flat=True)) == {date(2026, 10, 21)}
    days = whole_org_query(org, date(2026, 10, 20), date(2026, 10, 22))

    assert summary(days)["conversations"] == 3
    assert conversation_counts(days, "agent") == {None: 3}
    ana = scope_for_user(User.objects.get(email="ana@example.com"), org)
    assert summary(Query(ana, days.start, days.end))["conversations"] == 3
    dirty_days_rebuild()
    assert summary(days)["conversations"] == 3


def test_a_session_spanning_the_whole_period_without_a_record_in_it_is_not_counted(client, org):
    ingest(client, org, {"usage": [
        usage(1, "2026-10-19T23:00:00+02:00", session_id="s-1"),
        usage(2, "2026-10-23T08:00:00+02:00", session_id="s-1"),
        usage(3, "2026-10-21T09:00:00+02:00", session_id="s-2"),
        usage(4, "2026-10-21T09:30:00+02:00", session_id="s-2"),
    ]})  # fmt: skip
    dirty_days_rebuild()
    middle = summary(whole_org_query(org, date(2026, 10, 20), date(2026, 10, 22)))
    assert (middle["sessions"], middle["avg_session_duration_seconds"]) == (1, 1800.0)
    both = summary(whole_org_query(org, date(2026, 10, 19), date(2026, 10, 23)))
    assert (both["sessions"], both["avg_session_duration_seconds"]) == (2, (3 * 86400 + 9 * 3600 + 1800) / 2)


def test_a_conversation_two_people_share_counts_once_for_the_org_and_once_for_each(client, org):
    ingest(client, org, {"usage": [
        usage(1, "2026-10-20T10:00:00+02:00", conversation_id="c-1"),
        usage(2, "2026-10-21T10:00:00+02:00", conversation_id="c-1", user="bo@example.com"),
        usage(3, "2026-10-22T10:00:00+02:00", conversation_id="c-1", user="bo@example.com"),
    ]})  # fmt: skip
    dirty_days_rebuild()
    days = whole_org_query(org, date(2026, 10, 20), date(2026, 10, 22))

    assert summary(days)["conversations"] == 1
    for email in ("ana@example.com", "bo@example.com"):
        scope = scope_for_user(User.objects.get(email=email), org)
        assert summary(Query(scope, days.start, days.end))["conversations"] == 1
    # From the 21st it is Bo's alone.
    later = whole_org_query(org, date(2026, 10, 21), date(2026, 10, 22))
    assert summary(later)["conversations"] == 1
    ana = scope_for_user(User.objects.get(email="ana@example.com"), org)
    assert summary(Query(ana, later.start, later.end))["conversations"] == 0
