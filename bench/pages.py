#!/usr/bin/env python
"""Issue 5's page benchmark: server time and query count of every page and partial.

    .venv/bin/python bench/pages.py [--org acme-demo] [--runs 7]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tally_bench_queries .venv/bin/python bench/pages.py --org bench

It uses the database DATABASE_URL names as it is (the demo after `make run`,
or bench/dataset.py's 10M records), signs in an admin, a manager and a member
of the org through Django's test client (no network, so the time is the
server's), and prints p50/p95 and the number of SQL queries of each full page
and each htmx partial against the goals: a page <= 500 ms, a partial <= 150 ms.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAGE_GOAL_MS, PARTIAL_GOAL_MS = 500, 150
WHOLE_BODY = {"analytics-body"}


def page_sections() -> dict[str, dict[str, str]]:
    """Each page (its URL name) and its htmx partials: {HX-Target: section} (after django.setup())."""
    from dashboards import views

    return {
        "overview": views.OVERVIEW_SECTIONS,
        "usage": views.USAGE_SECTIONS,
        "analytics": views.ANALYTICS_SECTIONS,
        "agents": views.AGENTS_SECTIONS,
        "resources": views.RESOURCES_SECTIONS,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--org", help="the org's slug (default: the org with the most usage records)")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--query", default="", help="query string for every page, e.g. 'range=7d'")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "usage_site.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.db.models import Count
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from accounts.models import Membership, Organization, Role
    from metering.models import UsageRecord
    from usage_site.server import tune_gc

    settings.ALLOWED_HOSTS = ["*"]
    tune_gc()  # as usage_site.asgi does for the server
    if args.org:
        org = Organization.objects.get(slug=args.org)
    else:
        busiest = UsageRecord.objects.values("org").annotate(n=Count("id")).order_by("-n").first()
        org = Organization.objects.get(pk=busiest["org"])
    sections = page_sections()
    print(f"org {org.slug}: {UsageRecord.objects.filter(org=org).count():,} usage records; query '{args.query}'")
    header = f"{'page / partial':30} {'viewer':8} {'p50':>8} {'p95':>8} {'queries':>8}  goal"
    print(header)
    print("-" * len(header))
    missed = 0
    for role in (Role.ADMIN, Role.MANAGER, Role.MEMBER):
        membership = (
            Membership.objects.filter(org=org, role=role, user__is_active=True)
            .annotate(n=Count("teams"))
            .order_by("-n", "pk")
            .first()
        )
        if membership is None:
            print(f"(no {role} in {org.slug})")
            continue
        client = Client()
        client.force_login(membership.user)
        for page, partials in sections.items():
            url = reverse(page, kwargs={"org_slug": org.slug}) + (f"?{args.query}" if args.query else "")
            targets = [(page, None)] + [(f"  #{target}", target) for target in partials]
            for label, target in targets:
                headers = {"HX-Request": "true", "HX-Target": target} if target else {}
                client.get(url, headers=headers)  # warm
                times, queries = [], 0
                for _ in range(args.runs):
                    with CaptureQueriesContext(connection) as captured:
                        started = time.perf_counter()
                        response = client.get(url, headers=headers)
                        times.append((time.perf_counter() - started) * 1000)
                    queries = len(captured.captured_queries)
                    assert response.status_code == 200, (url, target, response.status_code)
                p95 = statistics.quantiles(times, n=20, method="inclusive")[-1] if len(times) > 1 else times[0]
                # The Analytics refresh swaps the whole body, every section of the page: a page's goal.
                goal = PARTIAL_GOAL_MS if target and target not in WHOLE_BODY else PAGE_GOAL_MS
                ok = p95 <= goal
                missed += not ok
                print(
                    f"{label:30} {role:8} {statistics.median(times):6.0f}ms {p95:6.0f}ms {queries:8}  "
                    f"{'ok' if ok else 'MISSED'} (<= {goal} ms)"
                )
    print(f"\n{missed} pages or partials missed their goal" if missed else "\nevery goal met")


if __name__ == "__main__":
    main()
