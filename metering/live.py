"""Live Mode's announcements: new usage records sent to the channel-layer groups that may see them.

Ingestion calls `announce_usage` once its transaction has committed. Each record goes to the
group of its org (admins), of its team (that team's managers) and of its user (the person,
whatever their role), and to no other, so a consumer only ever receives rows its viewer may
see (dashboards.consumers joins the groups the viewer's scope allows, and checks again).

Sending never holds up or fails an ingest request. In the web process the records are
handed to the server's event loop, which reads the names the payloads show and sends them,
and the request goes on at once; the in-memory channel
layer of the embedded default only reaches consumers on that loop anyway (DESIGN §11).
Elsewhere (import_usage, a shell) they are sent before returning, within SEND_TIMEOUT. If the
layer cannot be reached (Redis is down) the announcement is dropped and logged: the records
are stored, and open pages catch up when they next refresh or reconnect.
"""

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from accounts.models import Membership, Team, User
from metering.bulk import select_in
from metering.models import LLMModel, UsageRecord
from metering.pricing import format_money

logger = logging.getLogger(__name__)

SEND_TIMEOUT = 2.0  # seconds for one announcement to reach the layer
SENDS_AT_ONCE = 16  # group sends of one announcement in flight at once
EVENT_TYPE = "live.usage"  # handled by LiveConsumer.live_usage

_web_loop: asyncio.AbstractEventLoop | None = None


def org_group(org_id: int) -> str:
    return f"live-org-{org_id}"


def team_group(team_id: int) -> str:
    return f"live-team-{team_id}"


def user_group(user_id: int) -> str:
    return f"live-user-{user_id}"


def remembering_loop(app):
    """ASGI middleware for the web process: remembers the server's event loop, so that
    announcements from synchronous views are scheduled on it without waiting."""

    async def wrapped(scope, receive, send):
        global _web_loop
        if _web_loop is None:
            _web_loop = asyncio.get_running_loop()
        return await app(scope, receive, send)

    return wrapped


def usage_payloads(org, records: Iterable[tuple[UsageRecord, Iterable[int]]]) -> list[dict]:
    """What a live feed row shows of each (record, its tag ids), and under `dims` the ids the
    consumer matches against the page's filters (never sent to the browser). One query."""
    records = list(records)
    found: list[dict[int, list]] = [{}, {}, {}]  # people, teams, models: {id: columns}
    for part, pk, *columns in select_in(
        [
            (
                f"{Membership._meta.db_table} m JOIN {User._meta.db_table} u ON u.id = m.user_id",
                "m.user_id",
                {r.user_id for r, _ in records},
                {"m.org_id": org.pk},
                ["u.name", "u.email", "m.external_id"],
            ),
            (Team._meta.db_table, "id", {r.team_id for r, _ in records if r.team_id}, {}, ["name", "colour", "NULL"]),
            (LLMModel._meta.db_table, "id", {r.model_id for r, _ in records}, {}, ["name", "NULL", "NULL"]),
        ]
    ):
        found[part][pk] = columns
    people = {
        pk: (name or email or external or f"user {pk}", email or external or "")
        for pk, (name, email, external) in found[0].items()
    }
    teams = {pk: (name, colour) for pk, (name, colour, _) in found[1].items()}
    models = {pk: name for pk, (name, _, _) in found[2].items()}
    tz = org.tzinfo
    payloads = []
    for record, tag_ids in records:
        label, email = people.get(record.user_id, (f"user {record.user_id}", ""))
        team, colour = teams.get(record.team_id, ("", ""))
        payloads.append(
            {
                "request_id": record.request_id,
                "timestamp": record.timestamp.astimezone(tz).isoformat(),
                "received_at": record.received_at.astimezone(tz).isoformat(),
                "user": label,
                "email": email,
                "team": team,
                "team_colour": colour,
                "model": models.get(record.model_id, ""),
                "service_type": record.service_type,
                "status": record.status,
                "input_tokens": record.input_tokens,
                "cached_input_tokens": record.cached_input_tokens,
                "output_tokens": record.output_tokens,
                "total_tokens": record.input_tokens + record.output_tokens,
                "cost": format_money(record.cost),
                "dims": {
                    "user": record.user_id,
                    "team": record.team_id,
                    "project": record.project_id,
                    "repository": record.repository_id,
                    "agent": record.agent_id,
                    "model": record.model_id,
                    "api_key": record.api_key_id,
                    "service_type": record.service_type,
                    "tag": sorted(set(tag_ids)),
                },
            }
        )
    return payloads


def messages_by_group(org_id: int, payloads: list[dict]) -> dict[str, list[dict]]:
    """Each group and the payloads it may receive: the org's group all of them, a team's group
    and a user's group only their own."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for payload in payloads:
        groups[org_group(org_id)].append(payload)
        if payload["dims"]["team"]:
            groups[team_group(payload["dims"]["team"])].append(payload)
        groups[user_group(payload["dims"]["user"])].append(payload)
    return groups


def announce_usage(org, records: list[tuple[UsageRecord, Iterable[int]]]) -> None:
    """Send the committed `records` (with their tag ids) to Live Mode; never raises."""
    if not records:
        return
    try:
        layer = get_channel_layer()
        if layer is None:
            return
        loop = _web_loop
        if loop is not None and loop.is_running() and loop is not _running_loop():
            # The web process: the server's loop reads the payloads' names and sends them, so
            # the request that stored the records is answered without waiting for either.
            future = asyncio.run_coroutine_threadsafe(_announce(layer, org, records), loop)
            future.add_done_callback(_log_failure)
            return
        groups = messages_by_group(org.pk, usage_payloads(org, records))
        if (here := _running_loop()) is not None:
            # Synchronous code on a loop's own thread (a script or test driving an event loop):
            # it cannot wait for the loop, so the loop sends once this code has returned.
            task = here.create_task(_send(layer, groups))
            _pending.add(task)
            task.add_done_callback(_pending.discard)
            task.add_done_callback(_log_failure)
        else:
            async_to_sync(_send)(layer, groups)
    except Exception:
        logger.warning("live: announcing %d records of org %s failed; skipped", len(records), org.pk, exc_info=True)


async def _announce(layer, org, records) -> None:
    payloads = await database_sync_to_async(usage_payloads)(org, records)
    await _send(layer, messages_by_group(org.pk, payloads))


_pending: set[asyncio.Task] = set()  # the event loop keeps only weak references to tasks


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _send(layer, groups: dict[str, list[dict]]) -> None:
    # Several groups at once: one after the other, a batch of twenty people's records waited for
    # some twenty round trips to Redis before the last group had it. At most SENDS_AT_ONCE: a
    # batch of 500 reaches some 300 groups, more than the Redis client's pool of 100 connections
    # (MaxConnectionsError, under bench/load.py), which the consumers need too.
    gate = asyncio.Semaphore(SENDS_AT_ONCE)

    async def send(group, payloads):
        async with gate:
            await layer.group_send(group, {"type": EVENT_TYPE, "records": payloads})

    async def send_all():
        await asyncio.gather(*(send(group, payloads) for group, payloads in groups.items()))

    await asyncio.wait_for(send_all(), SEND_TIMEOUT)


def _log_failure(future) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("live: an announcement could not be sent; skipped", exc_info=future.exception())
