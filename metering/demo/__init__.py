"""The demo organisation: a believable org with a few months of AI usage.

`manage.py seed_demo` is a thin wrapper around `demo_org_rebuild`. The org is
"Demo Robotics": teams, projects with repositories, agents, and people who
work office hours in Berlin, more on weekdays than at weekends, a few of them
far more than the rest. They open agent sessions (turns of model calls that
end in diffs, commits and pull requests), run CI reviews, embedding jobs and
experiments, and one service runs in production around the clock.

Everything random comes from one `random.Random(seed)` and "now" is read
once, so the same seed on the same day gives the same rows (compare natural
keys: primary keys differ between runs). Rows are planned a day at a time
and written in large batches (COPY on PostgreSQL, executemany on SQLite)
inside one transaction; the default demo takes well under a minute.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Membership, Organization, User
from metering.models import ActivityEvent, ActivityEventTag, ResourceUsage, Session, UsageRecord, UsageRecordTag

from .builder import DemoError, _Builder
from .specs import DEMO_SLUG, LOGINS, UTC
from .traffic import poisson

__all__ = ["DEMO_SLUG", "DemoError", "DemoLogin", "DemoSummary", "demo_org_rebuild", "poisson"]


# --- The result -------------------------------------------------------------


@dataclass
class DemoLogin:
    email: str
    password: str
    role: str
    teams: list[str]


@dataclass
class DemoSummary:
    org: Organization | None
    replaced: bool = False
    skipped: bool = False
    logins: list[DemoLogin] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


# --- Entry point ------------------------------------------------------------


def demo_org_rebuild(
    *,
    days: int = 90,
    users: int = 60,
    seed: int = 1,
    now: datetime | None = None,
    if_empty: bool = False,
    progress: bool = False,
    say: Callable[[str], None] = lambda line: None,
) -> DemoSummary:
    """Build the demo org, replacing it (and its people) if it exists.

    With `if_empty`, do nothing when the database already has an organisation:
    `make run` calls it that way so a restart keeps what is there.
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    if users < len(LOGINS):
        raise ValueError(f"users must be at least {len(LOGINS)} (the demo logins)")
    started = time.monotonic()
    now = (now or timezone.now()).astimezone(UTC)
    if if_empty and Organization.objects.exists():
        org = Organization.objects.filter(slug=DEMO_SLUG).first()
        return DemoSummary(org=org, skipped=True, logins=_logins(org) if org else [])
    with transaction.atomic():
        replaced = _delete_demo_org()
        if replaced:
            say(f"Deleted the existing demo org {DEMO_SLUG!r} and its data.")
        say(f"Building the demo org: {users} people, {days} days, seed {seed}…")
        builder = _Builder(rng=random.Random(seed), now=now, days=days, users=users)
        counts = builder.build(progress=progress)
    return DemoSummary(
        org=builder.org,
        replaced=replaced,
        logins=_logins(builder.org),
        counts=counts,
        seconds=time.monotonic() - started,
    )


def _logins(org: Organization) -> list[DemoLogin]:
    memberships = {
        m.user.email: m
        for m in Membership.objects.filter(org=org, user__email__in=[s.email for s in LOGINS])
        .select_related("user")
        .prefetch_related("teams")
    }
    return [
        DemoLogin(spec.email, spec.password, spec.role, [t.name for t in memberships[spec.email].teams.all()])
        for spec in LOGINS
        if spec.email in memberships
    ]


def _delete_demo_org() -> bool:
    """Delete the demo org, its data and the people who belong to no other org."""
    org = Organization.objects.filter(slug=DEMO_SLUG).first()
    if org is None:
        return False
    people = list(Membership.objects.filter(org=org).values_list("user_id", flat=True))
    # Tag links first, then the rows (which PROTECT their users), then their sessions.
    UsageRecordTag.objects.filter(record__org=org).delete()
    ActivityEventTag.objects.filter(event__org=org).delete()
    for model in (UsageRecord, ActivityEvent, ResourceUsage, Session):
        # QuerySet.delete() would load every row to look for cascades that
        # are already gone; one DELETE statement does the same in a moment.
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {connection.ops.quote_name(model._meta.db_table)} WHERE org_id = %s", [org.pk])
    org.delete()
    User.objects.filter(pk__in=people, memberships__isnull=True, is_superuser=False).delete()
    return True
