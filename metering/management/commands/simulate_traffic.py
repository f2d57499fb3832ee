"""Post realistic usage records to a running Tally, through its real ingest API, so Live Mode has
something to show: `manage.py simulate_traffic --rate 5` beside `make run`.

Each record copies the shape of one of the org's recent records (person, team, project,
repository, agent, model, service type, tags), with fresh ids and timestamp and tokens
varied around the original's; people work in sessions of a few dozen requests, and about
2 % of requests fail. The server prices them. A new ingest key is made for the run and
revoked when it stops (Ctrl-C, or --seconds).
"""

import json
import random
import time
import urllib.error
import urllib.request
import uuid
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.access import Scope
from accounts.models import Membership, Organization, Role
from accounts.services import api_key_create
from metering import selectors
from metering.demo import DEMO_SLUG, poisson
from metering.management.orgs import command_org
from metering.models import Agent, LLMModel, Project, Repository, Status

TICK_SECONDS = 0.25
TEMPLATES = 2000  # recent records to copy the shape of
SESSION_REQUESTS = (10, 40)


class Command(BaseCommand):
    help = "Post realistic usage records to a running Tally's ingest API (for trying Live Mode)."

    def add_arguments(self, parser):
        parser.add_argument("--org", help="org slug (default: the demo org, else the only org)")
        parser.add_argument("--rate", type=float, default=5.0, help="records per second (default 5)")
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server (default %(default)s)")
        parser.add_argument("--seconds", type=float, help="stop after this long (default: until Ctrl-C)")
        parser.add_argument("--seed", type=int, help="random seed, for a repeatable run")

    def handle(self, *args, org, rate, url, seconds, seed, **options):
        if rate <= 0:
            raise CommandError("--rate must be more than 0.")
        org = command_org(org, default=DEMO_SLUG)
        rng = random.Random(seed)
        shapes = recent_shapes(org)
        if not shapes:
            raise CommandError(f"{org.slug} has no usage in the last 30 days to copy: run `manage.py seed_demo` first.")
        key, secret = api_key_create(
            org=org, name=f"simulate_traffic {timezone.now():%Y-%m-%d %H:%M:%S}", scopes={"ingest"}
        )
        endpoint = url.rstrip("/") + "/api/v1/ingest"
        self.stdout.write(
            f"Posting about {rate:g} records/s for {org.name} to {endpoint} with a new ingest key "
            f"({key.prefix}, revoked at the end). Open {url.rstrip('/')}/{org.slug}/usage/?live=1 to watch. Ctrl-C stops."
        )
        traffic = Traffic(rng, shapes)
        sent = failed = 0
        started = next_tick = time.monotonic()
        try:
            while seconds is None or time.monotonic() - started < seconds:
                next_tick += TICK_SECONDS
                items = [traffic.record() for _ in range(poisson(rng, rate * TICK_SECONDS))]
                if items:
                    status, answer = post(endpoint, secret, items)
                    if status in (200, 207):
                        sent += answer["accepted"]
                        failed += len(answer["rejected"])
                        for rejection in answer["rejected"][:1]:
                            self.stderr.write(f"\nrejected: {rejection['errors']}")
                    else:
                        failed += len(items)
                        self.stderr.write(f"\n{status}: {answer.get('detail', answer)}")
                        if status in (401, 403, 404):
                            raise CommandError("The server refused the key: is --url the server of this database?")
                    elapsed = time.monotonic() - started
                    self.stdout.write(f"\r{sent:,} records sent in {elapsed:.0f} s ({sent / elapsed:.1f}/s)", ending="")
                    self.stdout.flush()
                time.sleep(max(0.0, next_tick - time.monotonic()))
        except KeyboardInterrupt:
            pass
        finally:
            key.revoked_at = timezone.now()
            key.save(update_fields=["revoked_at"])
        self.stdout.write(f"\nSent {sent:,} records" + (f"; {failed:,} not accepted" if failed else "") + ".")


def recent_shapes(org: Organization) -> list[dict]:
    """The org's newest records (up to TEMPLATES of the last 30 days), as ingest items to vary."""
    now = timezone.now()
    query = selectors.Query(Scope(org=org, role=Role.ADMIN), now - timedelta(days=30), now)
    records = list(selectors.usage_records(query).prefetch_related("tags")[:TEMPLATES])

    def names(model, attr):
        ids = {getattr(r, attr) for r in records} - {None}
        return dict(model.objects.filter(pk__in=ids).values_list("pk", "name"))

    people = {
        uid: email or external
        for uid, email, external in Membership.objects.filter(org=org).values_list(
            "user_id", "user__email", "external_id"
        )
    }
    projects, repositories = names(Project, "project_id"), names(Repository, "repository_id")
    agents, models = names(Agent, "agent_id"), names(LLMModel, "model_id")
    shapes = []
    for record in records:
        if not people.get(record.user_id):
            continue
        shape = {
            "user": people[record.user_id],
            "model": models[record.model_id],
            "service_type": record.service_type,
            "input_tokens": record.input_tokens,
            "cached_input_tokens": record.cached_input_tokens,
            "cache_write_tokens": record.cache_write_tokens,
            "output_tokens": record.output_tokens,
            "reasoning_tokens": record.reasoning_tokens,
            "tags": [tag.name for tag in record.tags.all()],
        }
        for field, value in (
            ("provider", record.provider),
            ("project", projects.get(record.project_id)),
            ("repository", repositories.get(record.repository_id)),
            ("agent", agents.get(record.agent_id)),
        ):
            if value:
                shape[field] = value
        shapes.append(shape)
    return shapes


class Traffic:
    """New records in the shapes given; each person works in sessions of a few dozen requests."""

    def __init__(self, rng: random.Random, shapes: list[dict]):
        self.rng, self.shapes = rng, shapes
        self.sessions: dict[str, tuple[str, str, int]] = {}  # user -> (session id, conversation id, left)

    def record(self) -> dict:
        rng = self.rng
        item = dict(rng.choice(self.shapes))
        session, conversation, left = self.sessions.get(item["user"], (None, None, 0))
        if left <= 0:
            session, left = f"sim-{uuid.uuid4().hex[:12]}", rng.randint(*SESSION_REQUESTS)
        if conversation is None or rng.random() < 0.15:
            conversation = f"sim-{uuid.uuid4().hex[:12]}"
        self.sessions[item["user"]] = (session, conversation, left - 1)
        scale = rng.uniform(0.6, 1.4)
        for field in ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens"):
            item[field] = int(item[field] * scale)
        if rng.random() < 0.02:
            item["status"], item["output_tokens"], item["reasoning_tokens"] = Status.ERROR, 0, 0
        item.update(
            request_id=f"sim-{uuid.uuid4()}",
            timestamp=timezone.now().isoformat(),
            session_id=session,
            conversation_id=conversation,
            duration_ms=rng.randint(300, 9000),
        )
        return item


def post(endpoint: str, secret: str, items: list[dict]) -> tuple[int, dict]:
    request = urllib.request.Request(
        endpoint,
        data=json.dumps({"usage": items}).encode(),
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.loads(error.read())
        except ValueError:
            return error.code, {"detail": error.reason}
    except urllib.error.URLError as error:
        raise CommandError(f"Cannot reach {endpoint}: {error.reason}. Is `make run` serving it?") from None
