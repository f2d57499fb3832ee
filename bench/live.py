#!/usr/bin/env python
"""Live Mode benchmark (issue 6): latency from an ingest response to the update on open sockets.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres [REDIS_URL=redis://127.0.0.1:6379/0] \\
        .venv/bin/python bench/live.py [--clients 5] [--rate 200] [--seconds 60] [--batch 20]

It creates (and finally drops) the database `tally_bench_live`, with one org of 40 people in
four teams, and starts one daphne process serving it (with REDIS_URL: channels-redis, else the
in-memory layer). Five websocket clients open Live Mode (last 24 hours) as an admin, two
managers and two members, each with their own session, the way a browser does (cookie, Origin). One client
posts `--rate` records a second in batches of `--batch`, spread over the 40 people, for
`--seconds`. Every client notes when each record reaches it.

It prints, per client and overall, the latency from the ingest response that stored a record
to that record arriving on the socket (p50, p99, max), how many records each client should
have received by its scope and how many it did (nothing dropped, nothing extra), and the CPU
time the web process used. Goal: p99 < 300 ms, nothing dropped that the scope allows.
"""

import argparse
import asyncio
import http.client
import json
import os
import random
import secrets
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dataset import recreate_database, server_url, with_database  # noqa: E402  (bench/ is the script's folder)
from ingest import start_servers  # noqa: E402

BENCH_DB = "tally_bench_live"
P99_GOAL_MS = 300
TEAMS = ("Platform", "Web", "Data", "Mobile")
MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5", "gpt-5", "gpt-5-mini")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=5, help="websocket clients (roles cycle admin, manager, member)")
    parser.add_argument("--rate", type=int, default=200, help="records per second")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--batch", type=int, default=20, help="records per ingest request")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    return parser.parse_args()


def build_org(clients: int):
    """The org, its people (email -> (user id, team id)), the viewers (label, scope, session key)
    and an ingest key. Viewers: an admin, then managers (of one team each) and members (the
    busiest people) in turn."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from accounts.access import scope_for_user
    from accounts.models import Membership, Organization, Role, Team, User
    from accounts.services import api_key_create

    org = Organization.objects.create(name="Bench", slug="bench", timezone="Europe/Berlin")
    teams = [Team.objects.create(org=org, name=name) for name in TEAMS]
    people, users = {}, []
    for i in range(40):
        team = teams[i % len(teams)]
        user = User.objects.create_user(f"person{i:02d}@bench.example", secrets.token_urlsafe(12), name=f"Person {i}")
        Membership.objects.create(user=user, org=org, role=Role.MEMBER).teams.set([team])
        people[user.email] = (user.pk, team.pk)
        users.append(user)
    viewers = []
    for i in range(clients):
        kind = "admin" if i == 0 else ("manager" if i % 2 else "member")
        if kind == "member":
            user = users[i // 2 - 1]  # the busiest people come first (see records_for)
        else:
            user = User.objects.create_user(f"{kind}{i}@bench.example", secrets.token_urlsafe(12))
            membership = Membership.objects.create(
                user=user, org=org, role=Role.ADMIN if kind == "admin" else Role.MANAGER
            )
            membership.teams.set([teams[i % len(teams)]])
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        viewers.append((f"{kind} {i}", scope_for_user(user, org), session.session_key))
    key = api_key_create(org=org, name="bench", scopes={"ingest"})[1]
    return org, people, viewers, key


def records_for(rng, people: dict, n: int, prefix: str) -> list[dict]:
    emails = list(people)
    weights = [1 / (i + 1) ** 0.6 for i in range(len(emails))]  # a few busy people
    now = datetime.now(UTC).isoformat()
    return [
        {
            "request_id": f"{prefix}-{i}",
            "timestamp": now,
            "user": rng.choices(emails, weights)[0],
            "model": rng.choice(MODELS),
            "input_tokens": rng.randint(500, 40_000),
            "output_tokens": rng.randint(50, 2_000),
            "tags": ["bench"],
        }
        for i in range(n)
    ]


def ingest_loop(port: int, key: str, people, args, stored: dict, stop: threading.Event) -> None:
    """Post `rate` records a second in batches; `stored[request_id]` = when its response came."""
    rng = random.Random(1)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    interval = args.batch / args.rate
    next_at, n = time.monotonic(), 0
    while not stop.is_set():
        batch = records_for(rng, people, args.batch, f"b{n}")
        n += 1
        conn.request("POST", "/api/v1/ingest", json.dumps({"usage": batch}), {
            "Authorization": f"Bearer {key}", "Content-Type": "application/json"})  # fmt: skip
        response = conn.getresponse()
        body = response.read()
        answered = time.monotonic()
        if response.status != 200:
            raise SystemExit(f"ingest answered {response.status}: {body[:300]!r}")
        for item in batch:
            stored[item["request_id"]] = (answered, item["user"])
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    conn.close()


async def client(port: int, session_key: str, received: dict, ready: asyncio.Event, done: asyncio.Event):
    import websockets

    url = f"ws://127.0.0.1:{port}/ws/bench/live/?range=24h"
    headers = {"Cookie": f"sessionid={session_key}"}
    async with websockets.connect(url, additional_headers=headers, origin=f"http://127.0.0.1:{port}") as socket:
        ready.set()
        while not done.is_set():
            try:
                message = await asyncio.wait_for(socket.recv(), timeout=0.5)
            except TimeoutError:
                continue
            arrived = time.monotonic()
            for record in json.loads(message)["records"]:
                received.setdefault(record["request_id"], arrived)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def run(args, port, key, people, viewers, pid):
    received = [dict() for _ in viewers]
    done = asyncio.Event()
    readies = [asyncio.Event() for _ in viewers]
    tasks = [
        asyncio.create_task(client(port, session, received[i], readies[i], done))
        for i, (_, _, session) in enumerate(viewers)
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), timeout=30)
    stored: dict = {}
    stop = threading.Event()
    cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
    thread = threading.Thread(target=ingest_loop, args=(port, key, people, args, stored, stop), daemon=True)
    thread.start()
    await asyncio.sleep(args.seconds)
    stop.set()
    await asyncio.to_thread(thread.join)
    await asyncio.sleep(1.0)  # the last records' way to the sockets
    cpu, wall = cpu_seconds(pid) - cpu_before, time.monotonic() - wall_before
    done.set()
    await asyncio.gather(*tasks)
    return stored, received, cpu, wall


def main():
    args = parse_args()
    base_url = server_url()
    recreate_database(base_url, BENCH_DB)
    os.environ["DATABASE_URL"] = with_database(base_url, BENCH_DB)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "usage_site.settings")
    import django

    django.setup()
    from django.core.management import call_command

    procs = []
    try:
        call_command("migrate", verbosity=0)
        org, people, viewers, key = build_org(args.clients)
        env = {
            **os.environ,
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "0",
            "API_RATE_LIMIT_PER_MINUTE": "0",
            "LOG_LEVEL": "WARNING",
        }
        # The sessions were signed with this process's key: the server must share it.
        from django.conf import settings

        env["SECRET_KEY"] = settings.SECRET_KEY
        procs, (port,) = start_servers(1, env)
        layer = "channels-redis" if os.environ.get("REDIS_URL") else "in-memory layer"
        print(
            f"{args.clients} websocket clients, {args.rate} records/s in batches of {args.batch} for "
            f"{args.seconds:.0f} s; 1 daphne process, {layer}"
        )
        stored, received, cpu, wall = asyncio.run(run(args, port, key, people, viewers, procs[0].pid))
        print(
            f"stored {len(stored):,} records in {wall:.1f} s; web process CPU {cpu:.1f} s = {cpu / wall:.0%} of a core\n"
        )
        header = f"{'client':14} {'expected':>9} {'received':>9} {'missing':>8} {'extra':>6} {'p50':>8} {'p99':>8} {'max':>8}"
        print(header)
        print("-" * len(header))
        every, failures = [], 0
        for (label, scope, _), got in zip(viewers, received, strict=True):
            expected = {
                rid
                for rid, (_, email) in stored.items()
                if scope.allows(user_id=people[email][0], team_id=people[email][1])
            }
            latencies = [(got[rid] - stored[rid][0]) * 1000 for rid in expected if rid in got]
            missing, extra = len(expected - set(got)), len(set(got) - expected)
            failures += missing + extra
            every += latencies
            p50, p99, top = (
                (statistics.median(latencies), percentile(latencies, 99), max(latencies)) if latencies else (0, 0, 0)
            )
            print(
                f"{label:14} {len(expected):9,} {len(got):9,} {missing:8,} {extra:6,} {p50:6.1f}ms {p99:6.1f}ms {top:6.0f}ms"
            )
        p99 = percentile(every, 99) if every else float("inf")
        print("-" * len(header))
        print(
            f"{'all':14} {'':9} {len(every):9,} {'':8} {'':6} {statistics.median(every):6.1f}ms {p99:6.1f}ms {max(every):6.0f}ms"
        )
        ok = p99 < P99_GOAL_MS and failures == 0
        print(f"\ngoal p99 < {P99_GOAL_MS} ms and nothing dropped or extra: {'met' if ok else 'MISSED'}")
        print("(latency: from the ingest response that stored a record to its arrival; negative = before the response)")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)
        from django.db import connections

        connections.close_all()
        if not args.keep:
            recreate_database(base_url, BENCH_DB, drop_only=True)


if __name__ == "__main__":
    main()
