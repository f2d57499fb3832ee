"""Live Mode's websocket (dashboards/consumers.py) through channels' WebsocketCommunicator.

Records are ingested through metering.services.ingest_batch, whose commit announces them on
the configured channel layer (Redis when REDIS_URL is set, else the in-memory one), so every
test runs the real path: ingest -> metering.live -> layer -> consumer -> socket. The consumer
reads the database from another thread, so the data must be committed: transactional tests.
pytest-asyncio is not a dependency; each test runs its scenario with async_to_sync.
"""

import asyncio
import os
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from accounts.models import Membership, Tag
from dashboards import consumers
from dashboards.consumers import LiveConsumer
from metering import live
from metering.models import LLMModel
from metering.services import ingest_batch
from usage_site.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

RECEIVE_TIMEOUT = 3  # seconds to wait for a message that must come
SILENCE = 0.3  # seconds a message that must not come is given to show up


def record(request_id: str, user: str, **fields) -> dict:
    return {
        "request_id": request_id,
        "timestamp": timezone.now().isoformat(),
        "user": user,
        "model": "gpt-5",
        "input_tokens": 1200,
        "output_tokens": 300,
        "cost": "0.0125",
        **fields,
    }


def communicator(user, path: str = "/ws/acme/live/", query: str = "range=24h") -> WebsocketCommunicator:
    """A socket to the consumer alone, as `user` (AuthMiddlewareStack's job, done by hand)."""
    org_slug = path.split("/")[2]
    comm = WebsocketCommunicator(LiveConsumer.as_asgi(), f"{path}?{query}")
    comm.scope["user"] = user
    comm.scope["url_route"] = {"args": (), "kwargs": {"org_slug": org_slug}}
    return comm


ingest = database_sync_to_async(ingest_batch)


async def received_ids(comm, *, count: int) -> list[str]:
    """Request ids of the records the socket receives until it has `count` of them."""
    ids: list[str] = []
    while len(ids) < count:
        message = await comm.receive_json_from(timeout=RECEIVE_TIMEOUT)
        assert message["type"] == "records"
        ids += [r["request_id"] for r in message["records"]]
    return ids


async def assert_silent(comm) -> None:
    assert await comm.receive_nothing(timeout=SILENCE), "the socket received something it should not"


@pytest.fixture
def people(org, admin, manager, member, web_member):
    return {"admin": admin, "manager": manager, "member": member, "web": web_member}


def traffic():
    """One record of each person: who sees what is read off the request ids."""
    return [
        record("r-admin", "admin@acme.test"),
        record("r-manager", "manager@acme.test"),
        record("r-member", "member@acme.test"),
        record("r-web", "web@acme.test"),
    ]


def seen_by(user, org, query: str = "range=24h", items=None) -> list[str]:
    items = items if items is not None else traffic()

    async def scenario():
        comm = communicator(user, query=query)
        connected, _ = await comm.connect()
        assert connected
        await ingest(org=org, usage=items)
        ids: list[str] = []
        # receive_nothing waits without cancelling the consumer (a receive that times out would).
        while not await comm.receive_nothing(timeout=SILENCE * 3):
            ids += [r["request_id"] for r in (await comm.receive_json_from())["records"]]
        await comm.disconnect()
        return ids

    return async_to_sync(scenario)()


def test_an_admin_gets_every_record_of_the_org(org, people):
    assert sorted(seen_by(people["admin"], org)) == ["r-admin", "r-manager", "r-member", "r-web"]


def test_a_manager_gets_their_teams_records_and_their_own(org, people):
    assert sorted(seen_by(people["manager"], org)) == ["r-manager", "r-member"]


def test_a_member_gets_only_their_own_records(org, people):
    assert seen_by(people["member"], org) == ["r-member"]


def test_a_member_asking_for_someone_else_gets_nothing(org, people):
    assert seen_by(people["member"], org, query="range=24h&user=web@acme.test") == []


def test_a_page_filtered_to_one_team_gets_only_that_team(org, people, web_team):
    assert seen_by(people["admin"], org, query="range=24h&team=Web") == ["r-web"]


def test_a_page_filtered_by_model_and_tag_gets_only_matching_records(org, people):
    # Filters name what exists when the page opens (transactional tests start without the price list's models).
    LLMModel.objects.get_or_create(name="claude-sonnet-4-5")
    Tag.objects.create(org=org, name="ci")
    items = [
        record("r-1", "web@acme.test", model="claude-sonnet-4-5", tags=["ci"]),
        record("r-2", "web@acme.test", model="claude-sonnet-4-5"),
        record("r-3", "web@acme.test", tags=["ci"]),
    ]
    query = "range=24h&model=claude-sonnet-4-5&tag=ci"
    assert seen_by(people["admin"], org, query=query, items=items) == ["r-1"]


def test_a_page_of_a_past_month_gets_no_new_records(org, people):
    last_month = (timezone.now().astimezone(org.tzinfo).replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    assert seen_by(people["admin"], org, query=f"range=month&month={last_month}") == []


def test_a_manager_gets_their_own_record_once_though_two_of_their_groups_carry_it(org, people):
    ids = seen_by(people["manager"], org, items=[record("r-own", "manager@acme.test")])
    assert ids == ["r-own"]


def test_records_carry_what_the_feed_shows_and_no_ids(org, people):
    async def scenario():
        comm = communicator(people["admin"])
        assert (await comm.connect())[0]
        await ingest(org=org, usage=[record("r-1", "member@acme.test", cost="0.0125")])
        message = await comm.receive_json_from(timeout=RECEIVE_TIMEOUT)
        await comm.disconnect()
        return message["records"][0]

    row = async_to_sync(scenario)()
    assert row["request_id"] == "r-1"
    assert (row["user"], row["email"], row["team"], row["model"]) == (
        "Mia Member",
        "member@acme.test",
        "Platform",
        "gpt-5",
    )
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"], row["cost"]) == (1200, 300, 1500, "0.0125")
    assert "dims" not in row


@pytest.mark.parametrize("who", ["anonymous", "outsider", "inactive", "unknown org"])
def test_it_refuses_a_viewer_the_gate_refuses(org, people, outsider, who):
    user = {"anonymous": AnonymousUser(), "outsider": outsider}.get(who, people["member"])
    if who == "inactive":
        user.is_active = False
        user.save()
    path = "/ws/nope/live/" if who == "unknown org" else "/ws/acme/live/"

    async def scenario():
        comm = communicator(user, path=path)
        return await comm.connect()

    connected, code = async_to_sync(scenario)()
    assert (connected, code) == (False, consumers.REFUSED)


def test_another_orgs_admin_gets_nothing_of_this_org(org, people, outsider, other_org):
    async def scenario():
        comm = communicator(outsider, path="/ws/globex/live/")
        assert (await comm.connect())[0]
        await ingest(org=org, usage=traffic())
        await assert_silent(comm)
        await comm.disconnect()

    async_to_sync(scenario)()


def test_it_refuses_bad_filters(org, people):
    async def scenario():
        return await communicator(people["admin"], query="start=yesterday").connect()

    assert async_to_sync(scenario)() == (False, consumers.BAD_REQUEST)


def test_the_full_app_refuses_a_foreign_origin_and_an_anonymous_socket(org, people):
    async def scenario(origin: bytes):
        comm = WebsocketCommunicator(application, "/ws/acme/live/?range=24h", headers=[(b"origin", origin)])
        connected, _ = await comm.connect()
        await comm.disconnect()
        return connected

    assert async_to_sync(scenario)(b"https://evil.example") is False
    # An allowed origin passes the origin check; without a session the gate then refuses it.
    assert async_to_sync(scenario)(b"http://127.0.0.1") is False


def test_a_reconnecting_page_catches_up_on_what_arrived_since(org, people):
    ingest_batch(org=org, usage=[record("r-before", "member@acme.test")])
    since = timezone.now()
    ingest_batch(org=org, usage=[record("r-after", "member@acme.test"), record("r-other", "web@acme.test")])

    async def scenario():
        comm = communicator(people["member"], query=f"range=24h&since={since.isoformat().replace('+', '%2B')}")
        assert (await comm.connect())[0]
        message = await comm.receive_json_from(timeout=RECEIVE_TIMEOUT)
        await comm.disconnect()
        return message

    message = async_to_sync(scenario)()
    assert message["catch_up"] is True
    assert [r["request_id"] for r in message["records"]] == ["r-after"]


def test_bursts_are_coalesced_into_a_few_messages(org, people):
    """Twenty announcements in a burst reach the page in a few messages, none lost."""
    payloads = [
        {
            "request_id": f"r-{i}",
            "timestamp": timezone.now().astimezone(org.tzinfo).isoformat(),
            "dims": {"user": people["member"].pk, "team": None, "tag": []},
        }
        for i in range(20)
    ]

    async def scenario():
        comm = communicator(people["admin"])
        assert (await comm.connect())[0]
        layer = get_channel_layer()
        for payload in payloads:
            await layer.group_send(live.org_group(org.pk), {"type": live.EVENT_TYPE, "records": [payload]})
        messages, ids = 0, []
        while len(ids) < len(payloads):
            message = await comm.receive_json_from(timeout=RECEIVE_TIMEOUT)
            messages += 1
            ids += [r["request_id"] for r in message["records"]]
        await comm.disconnect()
        return messages, ids

    messages, ids = async_to_sync(scenario)()
    assert sorted(ids) == sorted(p["request_id"] for p in payloads)
    assert messages <= 3


def test_a_viewer_removed_from_the_org_is_disconnected(org, people, monkeypatch):
    monkeypatch.setattr(consumers, "RECHECK_SECONDS", 0.2)

    async def scenario():
        comm = communicator(people["manager"])
        assert (await comm.connect())[0]
        await database_sync_to_async(Membership.objects.filter(user=people["manager"]).delete)()
        output = await comm.receive_output(timeout=RECEIVE_TIMEOUT)
        await comm.disconnect()
        return output

    assert async_to_sync(scenario)() == {"type": "websocket.close", "code": consumers.REFUSED}


@pytest.mark.skipif(
    "channels_redis" not in settings.CHANNEL_LAYERS["default"]["BACKEND"], reason="the Redis channel layer only"
)
def test_an_idle_socket_still_gets_records_on_the_redis_layer(org, people):
    """DESIGN §11: redis-py's 5 s socket timeout used to kill consumers idle that long."""
    idle = float(os.environ.get("LIVE_IDLE_SECONDS", "6"))

    async def scenario():
        comm = communicator(people["member"])
        assert (await comm.connect())[0]
        await asyncio.sleep(idle)
        await ingest(org=org, usage=[record("r-late", "member@acme.test")])
        ids = await received_ids(comm, count=1)
        await comm.disconnect()
        return ids

    assert async_to_sync(scenario)() == ["r-late"]
