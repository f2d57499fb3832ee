#!/usr/bin/env python
"""Ingest benchmark: HTTP ingest through daphne against PostgreSQL, and COPY into the same table.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/ingest.py

It creates (and finally drops) its own database `tally_bench_ingest` on the
server DATABASE_URL names, starts daphne processes serving Tally on it
(DEBUG off, rate limit off), and has K concurrent clients post batches of
realistic usage records to /api/v1/ingest. Then it loads the same number of
records with COPY into metering_usagerecord and prints both rates and their
ratio. Goal (issue 3): HTTP ingest at least 25 % of COPY's rate.
"""

import argparse
import http.client
import itertools
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dataset import recreate_database, server_url, with_database  # noqa: E402  (bench/ is the script's folder)

BENCH_DB = "tally_bench_ingest"

MODELS = ["claude-sonnet-4-5", "claude-haiku-4-5", "gpt-5", "gpt-5-mini", "gemini-2.5-pro", "gpt-4.1-mini"]
AGENTS = ["QA", "SecOps", "Scan & Review", "Docs", "Refactor", "Triage"]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    parser.add_argument("--servers", type=int, default=2, help="daphne processes")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    return parser.parse_args()


def realistic_records(n: int, prefix: str, seed: int = 7, users: list[str] | None = None) -> list[dict]:
    """`n` usage records with request ids `prefix-0`, `prefix-1`, ... from the last 24 hours, by
    `users` (emails; default 200 made-up people), the first ones the busiest."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    users = users or [f"user{i:03d}@bench.example" for i in range(200)]
    # A few heavy users, a long tail; summed once here, not by every rng.choices call.
    cum_weights = list(itertools.accumulate(1 / (i + 1) for i in range(len(users))))
    records = []
    for i in range(n):
        input_tokens = int(rng.lognormvariate(8, 1.2)) + 1
        cached = int(input_tokens * rng.choice([0, 0, 0.3, 0.6, 0.9]))
        output = int(rng.lognormvariate(6, 1)) + 1
        records.append(
            {
                "request_id": f"{prefix}-{i}",
                "timestamp": (now - timedelta(seconds=rng.randint(60, 86_000))).isoformat(),
                "user": rng.choices(users, cum_weights=cum_weights)[0],
                "model": rng.choice(MODELS),
                "project": f"project-{rng.randint(1, 20)}",
                "repository": f"repo-{rng.randint(1, 40)}",
                "agent": rng.choice(AGENTS),
                "service_type": rng.choice(["text_generation"] * 6 + ["agent"] * 3 + ["embedding"]),
                "status": "error" if rng.random() < 0.02 else "success",
                "input_tokens": input_tokens,
                "cached_input_tokens": cached,
                "output_tokens": output,
                "reasoning_tokens": output // 4,
                "duration_ms": rng.randint(200, 30_000),
                "session_id": f"{prefix}-s{i // 20}",
                "conversation_id": f"{prefix}-c{i // 8}",
                "tags": rng.sample(["prod", "ci", "experiment", "batch", "interactive"], k=rng.randint(0, 2)),
            }
        )
    return records


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_servers(count: int, env: dict) -> tuple[list[subprocess.Popen], list[int]]:
    """`count` daphne processes on free ports. Each one's stderr goes to a temporary file,
    `proc.log` (a pipe nobody reads would stop the server once its buffer filled)."""
    procs, ports = [], []
    for _ in range(count):
        port = free_port()
        log = tempfile.TemporaryFile()
        proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "usage_site.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        proc.log = log
        procs.append(proc)
        ports.append(port)
    deadline = time.monotonic() + 30
    for port in ports:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit(f"daphne on port {port} did not start")
                time.sleep(0.1)
    return procs, ports


def post_batches(batches: list[bytes], ports: list[int], clients: int, key: str) -> tuple[float, list[float]]:
    def client(index: int) -> list[float]:
        port = ports[index % len(ports)]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        latencies = []
        for body in batches[index::clients]:
            started = time.perf_counter()
            conn.request(
                "POST", "/api/v1/ingest", body, {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            )
            response = conn.getresponse()
            payload = response.read()
            latencies.append(time.perf_counter() - started)
            if response.status != 200:
                raise SystemExit(f"ingest answered {response.status}: {payload[:300]!r}")
        conn.close()
        return latencies

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        latencies = [lat for part in pool.map(client, range(clients)) for lat in part]
    return time.perf_counter() - started, latencies


def copy_rows(records: list[dict], org) -> tuple[float, int]:
    """Load the same records with COPY, with every id resolved beforehand: COPY's best case."""
    from django.db import connection

    from accounts.models import User
    from metering.models import Agent, LLMModel, Project, Repository
    from metering.pricing import PriceBook, Tokens, cost_of

    users = dict(User.objects.values_list("email", "id"))
    models = dict(LLMModel.objects.values_list("name", "id"))
    projects = dict(Project.objects.filter(org=org).values_list("name", "id"))
    repos = dict(Repository.objects.filter(org=org).values_list("name", "id"))
    agents = dict(Agent.objects.filter(org=org).values_list("name", "id"))
    book = PriceBook.load()
    now = datetime.now(timezone.utc)
    rows = []
    for r in records:
        ts = datetime.fromisoformat(r["timestamp"])
        price = book.price_at(models[r["model"]], ts)
        cost = (
            cost_of(Tokens(r["input_tokens"], r["cached_input_tokens"], 0, r["output_tokens"]), price) if price else 0
        )
        rows.append(
            (
                org.pk,
                r["request_id"] + "-copy",
                ts,
                users[r["user"]],
                projects[r["project"]],
                repos[r["repository"]],
                agents[r["agent"]],
                models[r["model"]],
                r["service_type"],
                r["status"],
                r["input_tokens"],
                r["cached_input_tokens"],
                0,
                r["output_tokens"],
                r["reasoning_tokens"],
                cost,
                "priced" if price else "unpriced",
                price.pk if price else None,
                r["duration_ms"],
                r["conversation_id"],
                "{}",
                now,
                "",
            )
        )
    columns = (
        "org_id, request_id, timestamp, user_id, project_id, repository_id, agent_id, model_id, service_type, "
        "status, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens, cost, "
        "cost_source, price_id, duration_ms, conversation_id, metadata, received_at, provider"
    )
    with connection.cursor() as cursor:
        started = time.perf_counter()
        with cursor.cursor.copy(f"COPY metering_usagerecord ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        connection.commit() if not connection.get_autocommit() else None
        return time.perf_counter() - started, len(rows)


def main():
    args = parse_args()
    base_url = server_url()
    recreate_database(base_url, BENCH_DB)
    bench_url = with_database(base_url, BENCH_DB)
    os.environ["DATABASE_URL"] = bench_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "usage_site.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from accounts.models import Organization
    from accounts.services import api_key_create

    procs = []
    try:
        call_command("migrate", verbosity=0)
        org = Organization.objects.create(name="Bench", slug="bench", timezone="Europe/Berlin")
        key = api_key_create(org=org, name="bench", scopes={"ingest"})[1]
        records = realistic_records(args.records, "http")
        batches = [
            json.dumps({"usage": records[i : i + args.batch]}).encode() for i in range(0, len(records), args.batch)
        ]
        env = {
            **os.environ,
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(40),
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "0",
            "API_RATE_LIMIT_PER_MINUTE": "0",
            "LOG_LEVEL": "WARNING",
        }
        env.pop("REDIS_URL", None)
        procs, ports = start_servers(args.servers, env)
        # One small warm-up batch per server: first requests pay for imports and connections.
        for port in ports:
            post_batches(
                [json.dumps({"usage": realistic_records(10, f"warm{port}", seed=port)}).encode()], [port], 1, key
            )

        elapsed, latencies = post_batches(batches, ports, args.clients, key)
        http_rate = len(records) / elapsed
        copy_seconds, copied = copy_rows(records, org)
        copy_rate = copied / copy_seconds
        latencies.sort()
        p50 = statistics.median(latencies)
        p95 = latencies[max(0, int(len(latencies) * 0.95) - 1)]
        print(
            f"records: {len(records):,} in batches of {args.batch}; {args.clients} clients, {args.servers} daphne processes"
        )
        print(
            f"HTTP ingest:  {http_rate:10,.0f} records/s  ({elapsed:.1f} s; batch latency p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms)"
        )
        print(f"COPY:         {copy_rate:10,.0f} rows/s     ({copy_seconds:.2f} s for {copied:,} rows)")
        print(f"ratio:        HTTP is {http_rate / copy_rate:.0%} of COPY (goal: at least 25 %)")
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
