"""Live Mode's websocket: new usage records pushed to an open Usage or Overview page (DESIGN §9).

`ws/<org>/live/?<the page's query string>[&since=<RFC 3339>]`

connect() authorises through the access gate (anonymous users, outsiders, other orgs and
deactivated users are refused with close code 4403, bad filters with 4400) and joins only the
groups the viewer's scope allows: the org's for an admin, each of their teams' and their own
for a manager, their own for a member (metering.live sends each record to exactly those).
Each record is checked again against the scope, then against the page's filters and period,
so a page filtered to one team shows only that team. A record after a quiet moment is sent at
once; under a burst records are sent in batches at most every FLUSH_SECONDS, and each request
id once (a manager's own record reaches them through their team's group and their own).

A page that (re)connects with `since` first gets what arrived after that moment (the catch-up).
The scope is checked again every RECHECK_SECONDS: a viewer whose role or teams changed, or who
was removed, is disconnected (4403), and a reconnect takes the new scope.

Messages to the client: {"type": "records", "records": [...], "catch_up": bool}, newest last.
"""

import asyncio
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.http import Http404, QueryDict
from django.utils import timezone

from accounts.access import Scope, scope_for_websocket
from accounts.models import Role
from dashboards.selectors.live import recent_usage
from metering import live, selectors
from metering.forms import AnalyticsForm

FLUSH_SECONDS = 0.05  # at most 20 messages a second; live.js throttles its repaints to 10
RECHECK_SECONDS = 60
SEEN_REQUEST_IDS = 5000  # request ids remembered for de-duplication
CATCH_UP_LIMIT = 100
REFUSED, BAD_REQUEST = 4403, 4400


@dataclass(frozen=True)
class LiveView:
    """What one socket may see and asked to see."""

    query: selectors.Query
    until: datetime | None  # None: the period ends now, so it takes every new record

    @property
    def scope(self) -> Scope:
        return self.query.scope

    def groups(self) -> list[str]:
        scope = self.scope
        if scope.role == Role.ADMIN:
            return [live.org_group(scope.org.pk)]
        teams = sorted(scope.team_ids) if scope.role == Role.MANAGER else []
        return [live.team_group(team) for team in teams] + [live.user_group(scope.user_id)]

    def wants(self, record: dict) -> bool:
        dims = record["dims"]
        if not self.scope.allows(user_id=dims["user"], team_id=dims["team"]):
            return False
        moment = datetime.fromisoformat(record["timestamp"])
        if moment < self.query.start or (self.until is not None and moment >= self.until):
            return False
        return self.query.filters.matches(dims)


def live_view(ws_scope: dict) -> LiveView:
    """The socket's LiveView; Http404 for a viewer the gate refuses, ValueError for bad filters."""
    org_slug = ws_scope["url_route"]["kwargs"]["org_slug"]
    scope = scope_for_websocket(ws_scope, org_slug)
    params = QueryDict(ws_scope.get("query_string", b"").decode("latin-1"))
    form = AnalyticsForm(params, org=scope.org)
    if not form.is_valid():
        raise ValueError(form.error_text())
    query = form.query(scope)
    return LiveView(query=query, until=None if query.end >= form.now else query.end)


def catch_up(view: LiveView, since: datetime) -> list[dict]:
    records = recent_usage(view.query, received_after=since, limit=CATCH_UP_LIMIT)
    return live.usage_payloads(view.scope.org, reversed(records))


def since_of(ws_scope: dict) -> datetime | None:
    values = parse_qs(ws_scope.get("query_string", b"").decode("latin-1")).get("since")
    try:
        moment = datetime.fromisoformat(values[0]) if values else None
    except ValueError:
        return None
    if moment is None or moment.tzinfo is None:
        return None
    return max(moment, timezone.now() - timedelta(hours=1))  # a long-closed laptop: the feed, not history


class LiveConsumer(AsyncJsonWebsocketConsumer):
    view: LiveView | None = None

    async def connect(self):
        try:
            self.view = await database_sync_to_async(live_view)(self.scope)
        except Http404:
            await self.close(code=REFUSED)
            return
        except ValueError:
            await self.close(code=BAD_REQUEST)
            return
        self.groups_joined = self.view.groups()
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        self.pending: list[dict] = []
        self.seen: set[str] = set()
        self.seen_order: deque[str] = deque()
        self.last_flush = 0.0
        self.flusher: asyncio.Task | None = None
        self.rechecker = asyncio.create_task(self.recheck_scope())
        await self.accept()
        since = since_of(self.scope)
        if since is not None:
            records = await database_sync_to_async(catch_up)(self.view, since)
            await self.send_json(
                {
                    "type": "records",
                    "records": [self.client_row(r) for r in records if self.first_time(r)],
                    "catch_up": True,
                }
            )

    async def disconnect(self, code):
        if self.view is None:
            return
        for task in (self.flusher, self.rechecker):
            if task is not None:
                task.cancel()
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        """The page sends nothing the server needs; whatever it sends is ignored, unparsed."""

    async def live_usage(self, event):
        """A batch of new records from metering.live, for one of this socket's groups."""
        fresh = [r for r in event["records"] if self.view.wants(r) and self.first_time(r)]
        if not fresh:
            return
        self.pending.extend(self.client_row(r) for r in fresh)
        if self.flusher is None or self.flusher.done():
            loop = asyncio.get_running_loop()
            delay = max(0.0, self.last_flush + FLUSH_SECONDS - loop.time())
            self.flusher = asyncio.create_task(self.flush_after(delay))

    async def flush_after(self, delay: float):
        if delay:
            await asyncio.sleep(delay)
        records, self.pending = self.pending, []
        self.last_flush = asyncio.get_running_loop().time()
        await self.send_json({"type": "records", "records": records, "catch_up": False})

    async def recheck_scope(self):
        while True:
            await asyncio.sleep(RECHECK_SECONDS)
            try:
                view = await database_sync_to_async(live_view)(self.scope)
            except (Http404, ValueError):
                view = None
            if view is None or view.scope != self.view.scope:
                await self.close(code=REFUSED)
                return

    def first_time(self, record: dict) -> bool:
        request_id = record["request_id"]
        if request_id in self.seen:
            return False
        self.seen.add(request_id)
        self.seen_order.append(request_id)
        if len(self.seen_order) > SEEN_REQUEST_IDS:
            self.seen.discard(self.seen_order.popleft())
        return True

    @staticmethod
    def client_row(record: dict) -> dict:
        """The row without the ids the filters were matched on."""
        return {key: value for key, value in record.items() if key != "dims"}
