"""Live Mode's announcements (metering/live.py): what ingestion sends, to whom, and that a
broken channel layer never costs an ingest request anything."""

import asyncio
import json
import logging

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.test import Client
from django.utils import timezone

from accounts.services import api_key_create
from metering import live
from metering.models import UsageRecord
from metering.ratelimit import seconds_until_allowed

URL = "/api/v1/ingest"
# Nothing listens on port 1: connecting is refused at once.
DEAD_REDIS = "redis://127.0.0.1:1/0"


def usage(request_id: str, user: str, **fields) -> dict:
    return {
        "request_id": request_id,
        "timestamp": timezone.now().isoformat(),
        "user": user,
        "model": "gpt-5",
        "input_tokens": 100,
        "output_tokens": 10,
        "cost": "0.01",
        **fields,
    }


def post(key: str, items: list[dict]):
    return Client().post(
        URL, json.dumps({"usage": items}), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}"
    )


@pytest.fixture
def ingest_key(org):
    return api_key_create(org=org, name="gateway", scopes={"ingest"})[1]


@pytest.mark.django_db(transaction=True)
def test_an_ingested_record_reaches_its_orgs_teams_and_users_groups_and_no_other(
    org, ingest_key, admin, manager, member, web_member, platform_team, web_team
):
    groups = {
        "org": live.org_group(org.pk),
        "platform": live.team_group(platform_team.pk),
        "web": live.team_group(web_team.pk),
        "member": live.user_group(member.pk),
        "web member": live.user_group(web_member.pk),
    }

    async def scenario():
        layer = get_channel_layer()
        channels = {}
        for name, group in groups.items():
            channels[name] = await layer.new_channel()
            await layer.group_add(group, channels[name])
        response = await database_sync_to_async(post)(ingest_key, [usage("r-1", "member@acme.test")])
        assert response.status_code == 200, response.content
        got = {}
        for name, channel in channels.items():
            try:
                message = await asyncio.wait_for(layer.receive(channel), timeout=1)
            except asyncio.TimeoutError:
                message = None
            await layer.group_discard(groups[name], channel)
            got[name] = [r["request_id"] for r in message["records"]] if message else None
        return got

    got = async_to_sync(scenario)()
    assert got == {"org": ["r-1"], "platform": ["r-1"], "member": ["r-1"], "web": None, "web member": None}


def test_each_group_gets_only_the_records_of_its_team_or_user(org, admin, member, web_member, platform_team, web_team):
    payloads = [
        {"request_id": "r-mia", "dims": {"user": member.pk, "team": platform_team.pk}},
        {"request_id": "r-wes", "dims": {"user": web_member.pk, "team": web_team.pk}},
        {"request_id": "r-ada", "dims": {"user": admin.pk, "team": None}},
    ]

    groups = live.messages_by_group(org.pk, payloads)

    assert {group: [p["request_id"] for p in items] for group, items in groups.items()} == {
        live.org_group(org.pk): ["r-mia", "r-wes", "r-ada"],
        live.team_group(platform_team.pk): ["r-mia"],
        live.user_group(member.pk): ["r-mia"],
        live.team_group(web_team.pk): ["r-wes"],
        live.user_group(web_member.pk): ["r-wes"],
        live.user_group(admin.pk): ["r-ada"],
    }


def test_payloads_show_the_feed_row_and_keep_the_filter_ids_apart(org, ingest_key, member, platform_team):
    post(ingest_key, [usage("r-1", "member@acme.test", project="Atlas", tags=["ci", "nightly"], cost="0.0125")])
    record = UsageRecord.objects.get(request_id="r-1")
    tags = list(record.tags.values_list("pk", flat=True))

    (payload,) = live.usage_payloads(org, [(record, tags)])

    assert payload["request_id"] == "r-1"
    assert (payload["user"], payload["email"], payload["team"]) == ("Mia Member", "member@acme.test", "Platform")
    assert (payload["model"], payload["cost"], payload["total_tokens"]) == ("gpt-5", "0.0125", 110)
    assert payload["timestamp"] == record.timestamp.astimezone(org.tzinfo).isoformat()
    assert payload["dims"] == {
        "user": member.pk,
        "team": platform_team.pk,
        "project": record.project_id,
        "repository": None,
        "agent": None,
        "model": record.model_id,
        "api_key": record.api_key_id,
        "service_type": "text_generation",
        "tag": sorted(tags),
    }


def test_a_channel_layer_that_is_down_never_fails_ingestion(
    settings, org, ingest_key, member, caplog, django_capture_on_commit_callbacks
):
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [DEAD_REDIS]}}
    }
    with caplog.at_level(logging.WARNING, logger="metering.live"):
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            response = post(ingest_key, [usage("r-1", "member@acme.test"), usage("r-2", "member@acme.test")])

    assert response.status_code == 200
    assert response.json()["accepted"] == 2
    assert UsageRecord.objects.filter(org=org).count() == 2
    assert len(callbacks) == 1
    assert "skipped" in caplog.text


def test_a_cache_that_is_down_lets_requests_through_and_says_so(settings, caplog):
    settings.API_RATE_LIMIT_PER_MINUTE = 1
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": DEAD_REDIS}}
    with caplog.at_level(logging.WARNING, logger="metering.ratelimit"):
        assert [seconds_until_allowed(7) for _ in range(3)] == [0, 0, 0]
    assert "unavailable" in caplog.text


def test_nothing_is_announced_for_a_batch_that_stored_nothing(org, ingest_key, django_capture_on_commit_callbacks):
    item = usage("r-1", "member@acme.test")
    post(ingest_key, [item])
    with django_capture_on_commit_callbacks() as callbacks:
        assert post(ingest_key, [item]).json()["duplicates"] == 1

    assert callbacks == []
