#!/usr/bin/env python
"""OTLP intake benchmark: /v1/metrics, /v1/logs and /v1/traces through daphne against PostgreSQL,
beside JSON ingest (/api/v1/ingest) at the same batch size, in the same run (DESIGN §12).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/otlp.py

It creates (and finally drops) its own database `tally_bench_otlp` on the server DATABASE_URL
names and starts daphne processes serving Tally on it (DEBUG off, a rate limit far above the
load). Every OTLP body is made up front by the OpenTelemetry SDK (MeterProvider,
LoggerProvider, TracerProvider with in-memory readers and exporters) and encoded once by its
OTLP encoders, each body with its own sessions, request ids, span ids and times, so none is a
resend of another (the intake's ids are content hashes). Workloads:

  JSON     bench/ingest.py's records and client, batches of --batch (500);
  logs     Claude Code `api_request` events, batches of --batch (500);
  metrics  Claude Code exports, one session interval each: 15-40 delta points;
  traces   GenAI `chat` spans, batches of 512;
  single   one 40-point metrics export at a time, sequentially (--single times).

Goals: /v1/logs records/s >= 50 % of JSON ingest's; /v1/metrics data points/s >= JSON ingest
items/s; a single 40-point export's p95 <= 50 ms.
"""

import argparse
import http.client
import json
import math
import os
import random
import secrets
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# bench/ is the script's folder. The JSON side is ingest.py's own client and records.
from dataset import recreate_database, server_url, with_database  # noqa: E402
from ingest import post_batches, realistic_records, start_servers  # noqa: E402

BENCH_DB = "tally_bench_otlp"

USERS = [f"user{i:03d}@bench.example" for i in range(200)]  # ingest.py's people
USER_WEIGHTS = [1 / (i + 1) for i in range(len(USERS))]
CLAUDE_MODELS = ["claude-sonnet-4-5", "claude-opus-4-5", "claude-haiku-4-5"]
QUERY_SOURCES = ["main", "subagent"]
GENAI_MODELS = [
    ("openai", "gpt-5-mini"),
    ("openai", "gpt-5"),
    ("openai", "gpt-4.1-mini"),
    ("gcp.gemini", "gemini-2.5-pro"),
]
SPANS_PER_BATCH = 512
SINGLE_POINTS = 40
INTERVALS_PER_SESSION = 5  # metrics exports per Claude Code session
SESSIONS_PER_LOG_BATCH = 25
BATCHES_PER_LOG_SESSION = 4
GOALS = {"logs_share": 0.5, "metrics_share": 1.0, "single_p95_ms": 50}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=500, help="log records per /v1/logs and JSON ingest batch")
    parser.add_argument("--json-batches", type=int, default=60, help="JSON ingest batches")
    parser.add_argument("--log-batches", type=int, default=60, help="/v1/logs batches")
    parser.add_argument("--metric-exports", type=int, default=1000, help="/v1/metrics exports (15-40 points each)")
    parser.add_argument("--span-batches", type=int, default=60, help=f"/v1/traces batches of {SPANS_PER_BATCH}")
    parser.add_argument("--single", type=int, default=100, help="sequential 40-point exports")
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    parser.add_argument("--servers", type=int, default=2, help="daphne processes")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    return parser.parse_args()


# ---------------------------------------------------------------- payloads (OpenTelemetry SDK)


@dataclass
class Payload:
    body: bytes
    items: int  # data points, log records or spans in the request


def claude_code_resource():
    from opentelemetry.sdk.resources import Resource

    # A Claude Code process: OTEL_RESOURCE_ATTRIBUTES keys on the resource (§12.4); Resource.create
    # adds the SDK's own keys and a random service.instance.id, as the real exporter does.
    return Resource.create(
        {"service.name": "claude-code", "service.version": "2.1.220", "team.id": "platform", "department": "eng"}
    )


class ClaudeCodeSession:
    """One Claude Code process's counters, collected with delta temporality as it exports them."""

    def __init__(self, session_id: str, user: str):
        from opentelemetry.sdk.metrics import Counter, MeterProvider
        from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader

        self.reader = InMemoryMetricReader(preferred_temporality={Counter: AggregationTemporality.DELTA})
        self.provider = MeterProvider(
            resource=claude_code_resource(), metric_readers=[self.reader], shutdown_on_exit=False
        )
        meter = self.provider.get_meter("com.anthropic.claude_code", "2.1.220")
        self.counters = {
            name: meter.create_counter(f"claude_code.{name}", unit=unit)
            for name, unit in (
                ("token.usage", "tokens"),
                ("cost.usage", "USD"),
                ("code_edit_tool.decision", ""),
                ("lines_of_code.count", ""),
                ("active_time.total", "s"),
                ("session.count", ""),
                ("commit.count", ""),
                ("pull_request.count", ""),
            )
        }
        self.base = {
            "session.id": session_id,
            "user.email": user,
            "organization.id": "anthropic-org-uuid",
            "user.account_uuid": f"acct-{user}",
            "terminal.type": "vscode",
        }
        self.started = False

    def interval(self, rng: random.Random, points: int) -> Payload:
        """One collection with exactly `points` data points (15-40)."""
        assert 15 <= points <= 40, points

        def add(name, value, **attrs):
            self.counters[name].add(value, {**self.base, **attrs})

        fixed = 2 + 2  # lines added/removed, active time user/cli
        extras = []
        if not self.started:
            extras.append("session.count")
            self.started = True
        combos = min(6, (points - fixed - len(extras) - 1) // 5)  # 5 points per model x query source
        decisions = points - fixed - len(extras) - combos * 5
        while decisions > 4:  # at most two more: a commit, a pull request
            extras.append("commit.count" if "commit.count" not in extras else "pull_request.count")
            decisions -= 1
        for model, source in rng.sample([(m, s) for m in CLAUDE_MODELS for s in QUERY_SOURCES], combos):
            attrs = {"model": model, "query_source": source}
            add("token.usage", rng.randint(20, 3000), type="input", **attrs)
            add("token.usage", rng.randint(50, 4000), type="output", **attrs)
            add("token.usage", rng.randint(1000, 90_000), type="cacheRead", **attrs)
            add("token.usage", rng.randint(100, 8000), type="cacheCreation", **attrs)
            add("cost.usage", round(rng.uniform(0.001, 0.4), 6), **attrs)
        for decision, tool in [("accept", "Edit"), ("accept", "Write"), ("reject", "Edit"), ("reject", "Write")][
            :decisions
        ]:
            add("code_edit_tool.decision", rng.randint(1, 5), decision=decision, tool_name=tool, source="config")
        add("lines_of_code.count", rng.randint(1, 400), type="added", model=CLAUDE_MODELS[0])
        add("lines_of_code.count", rng.randint(1, 100), type="removed", model=CLAUDE_MODELS[0])
        add("active_time.total", rng.uniform(1, 60), type="user")
        add("active_time.total", rng.uniform(1, 60), type="cli")
        for name in extras:
            add(name, 1)
        return encode_metrics_payload(self.reader)


def encode_metrics_payload(reader) -> Payload:
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

    message = encode_metrics(reader.get_metrics_data())
    points = sum(
        len(getattr(m, m.WhichOneof("data")).data_points)
        for rm in message.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    )
    return Payload(message.SerializeToString(), points)


def metric_exports(count: int, rng: random.Random, prefix: str, clients: int, points=None) -> list[Payload]:
    """`count` exports of INTERVALS_PER_SESSION intervals per session. Export i is session
    i % S's next interval, S a multiple of the clients: each session's exports go through one
    client in turn, as one Claude Code process sends them, never two at once."""
    sessions_per_round = max(clients, -(-count // INTERVALS_PER_SESSION) // clients * clients)
    sessions = [
        ClaudeCodeSession(f"{prefix}-{i}", rng.choices(USERS, USER_WEIGHTS)[0]) for i in range(sessions_per_round)
    ]
    exports = []
    for i in range(count):
        if i and i % sessions_per_round == 0 and i // sessions_per_round % INTERVALS_PER_SESSION == 0:
            sessions = [
                ClaudeCodeSession(f"{prefix}-{i + j}", rng.choices(USERS, USER_WEIGHTS)[0])
                for j in range(sessions_per_round)
            ]
        exports.append(sessions[i % sessions_per_round].interval(rng, points or rng.randint(15, 40)))
    return exports


def log_batches(count: int, size: int, rng: random.Random, prefix: str, clients: int) -> list[Payload]:
    """Claude Code api_request events, `size` a batch (as a collector would forward them): each
    from SESSIONS_PER_LOG_BATCH sessions, a session spread over BATCHES_PER_LOG_SESSION batches
    that one client sends, so no two concurrent requests lock the same session row."""
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=claude_code_resource(), shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("com.anthropic.claude_code.events", "2.1.220")
    groups = 2 * clients
    now = time.time_ns()
    batches = []
    for b in range(count):
        sessions = [
            (
                f"{prefix}-{b % groups}-{b // (groups * BATCHES_PER_LOG_SESSION)}-{s}",
                rng.choices(USERS, USER_WEIGHTS)[0],
            )
            for s in range(SESSIONS_PER_LOG_BATCH)
        ]
        for r in range(size):
            session, user = sessions[r % len(sessions)]
            model = rng.choice(CLAUDE_MODELS)
            cost_micros = rng.randint(100, 400_000)
            logger.emit(
                timestamp=now - rng.randint(60, 86_000) * 10**9 + r,
                event_name="api_request",
                body="claude_code.api_request",
                attributes={
                    "event.name": "api_request",
                    "session.id": session,
                    "user.email": user,
                    "model": model,
                    "input_tokens": rng.randint(1, 3000),
                    "output_tokens": rng.randint(1, 4000),
                    "cache_read_tokens": rng.randint(0, 90_000),
                    "cache_creation_tokens": rng.randint(0, 8000),
                    "cost_usd": cost_micros / 1e6,
                    "cost_usd_micros": cost_micros,
                    "duration_ms": rng.randint(200, 30_000),
                    "request_id": f"req_{prefix}_{b}_{r}",
                },
            )
        records = exporter.get_finished_logs()
        exporter.clear()
        batches.append(Payload(encode_logs(records).SerializeToString(), len(records)))
    return batches


def span_batches(count: int, size: int, rng: random.Random, prefix: str) -> list[Payload]:
    """GenAI `chat` spans with gen_ai.usage.* attributes, `size` a batch, eight to a trace."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import set_span_in_context

    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "support-bot", "deployment.environment": "prod"}),
        shutdown_on_exit=False,
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("openai.instrumentation", "0.40.0")
    now = time.time_ns()
    batches = []
    for b in range(count):
        parent = None
        for s in range(size):
            if s % 8 == 0:
                parent = None  # a new trace
            system, model = rng.choice(GENAI_MODELS)
            start = now - rng.randint(60, 86_000) * 10**9
            input_tokens = rng.randint(50, 20_000)
            span = tracer.start_span(
                f"chat {model}",
                context=set_span_in_context(parent) if parent else None,
                start_time=start,
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": system,
                    "gen_ai.request.model": model,
                    "gen_ai.response.model": model,
                    "gen_ai.response.id": f"chatcmpl-{prefix}-{b}-{s}",
                    "gen_ai.usage.input_tokens": input_tokens,
                    "gen_ai.usage.cache_read.input_tokens": int(input_tokens * rng.choice([0, 0.3, 0.6])),
                    "gen_ai.usage.output_tokens": rng.randint(10, 2000),
                    "gen_ai.conversation.id": f"{prefix}-conv-{b}-{s // 8}",
                    "session.id": f"{prefix}-sess-{b}-{s // 64}",
                    "enduser.id": rng.choices(USERS, USER_WEIGHTS)[0],
                },
            )
            span.end(end_time=start + rng.randint(200, 30_000) * 10**6)
            parent = parent or span
        spans = exporter.get_finished_spans()
        exporter.clear()
        batches.append(Payload(encode_spans(spans).SerializeToString(), len(spans)))
    return batches


# ---------------------------------------------------------------- the OTLP client


@dataclass
class Run:
    elapsed: float
    latencies: list[float]
    rejected: int = 0
    messages: list[str] = field(default_factory=list)


def post_otlp(signal: str, payloads: list[Payload], ports: list[int], clients: int, key: str) -> Run:
    """POST every payload to /v1/<signal> as application/x-protobuf, `clients` at a time on
    keep-alive connections; payload i goes through client i % clients."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    answer, rejected_field = {
        "metrics": (ExportMetricsServiceResponse, "rejected_data_points"),
        "logs": (ExportLogsServiceResponse, "rejected_log_records"),
        "traces": (ExportTraceServiceResponse, "rejected_spans"),
    }[signal]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-protobuf"}

    def client(index: int) -> Run:
        conn = http.client.HTTPConnection("127.0.0.1", ports[index % len(ports)], timeout=120)
        run = Run(0.0, [])
        for payload in payloads[index::clients]:
            started = time.perf_counter()
            conn.request("POST", f"/v1/{signal}", payload.body, headers)
            response = conn.getresponse()
            body = response.read()
            run.latencies.append(time.perf_counter() - started)
            if response.status != 200:
                raise SystemExit(f"/v1/{signal} answered {response.status}: {body[:300]!r}")
            partial = answer.FromString(body).partial_success
            if getattr(partial, rejected_field):
                run.rejected += getattr(partial, rejected_field)
                run.messages.append(partial.error_message)
        conn.close()
        return run

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        runs = list(pool.map(client, range(clients)))
    return Run(
        time.perf_counter() - started,
        [lat for r in runs for lat in r.latencies],
        sum(r.rejected for r in runs),
        [m for r in runs for m in r.messages],
    )


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * share) - 1)]  # nearest rank


def stored(org) -> dict[str, int]:
    """Usage records and activity events per source, and the OTLP duplicates counted so far."""
    from django.db.models import Count, Sum

    from metering.models import ActivityEvent, OtlpKeyStats, UsageRecord

    counts = {}
    for model, kind in ((UsageRecord, "usage"), (ActivityEvent, "activity")):
        for row in model.objects.filter(org=org).values("source").annotate(n=Count("id")):
            counts[f"{kind}:{row['source']}"] = row["n"]
    counts["duplicates"] = OtlpKeyStats.objects.aggregate(n=Sum("duplicates"))["n"] or 0
    return counts


def grown(before: dict, after: dict, name: str) -> int:
    return after.get(name, 0) - before.get(name, 0)


# ---------------------------------------------------------------- main


def main():
    args = parse_args()
    base_url = server_url()
    recreate_database(base_url, BENCH_DB)
    os.environ["DATABASE_URL"] = with_database(base_url, BENCH_DB)
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

        rng = random.Random(args.seed)
        started = time.perf_counter()
        json_records = realistic_records(args.json_batches * args.batch, "json", seed=args.seed)
        json_batches = [
            json.dumps({"usage": json_records[i : i + args.batch]}).encode()
            for i in range(0, len(json_records), args.batch)
        ]
        logs = log_batches(args.log_batches, args.batch, rng, "logs", args.clients)
        metrics = metric_exports(args.metric_exports, rng, "metrics", args.clients)
        traces = span_batches(args.span_batches, SPANS_PER_BATCH, rng, "traces")
        single = metric_exports(args.single, rng, "single", 1, points=SINGLE_POINTS)
        n = args.servers
        warm = {
            "metrics": metric_exports(n, rng, "warm-m", n),
            "logs": log_batches(n, 10, rng, "warm-l", n),
            "traces": span_batches(n, 10, rng, "warm-t"),
        }
        print(f"payloads made with the OpenTelemetry SDK in {time.perf_counter() - started:.1f} s")

        env = {
            **os.environ,
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(40),
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "0",
            # On, so the limiter's work is in the numbers, but far above the load.
            "API_RATE_LIMIT_PER_MINUTE": "10000000",
            "LOG_LEVEL": "WARNING",
        }
        env.pop("REDIS_URL", None)
        procs, ports = start_servers(args.servers, env)
        # One small request per server and path first: first requests pay for imports and connections.
        for i, port in enumerate(ports):
            warm_json = realistic_records(10, f"warm{port}", seed=port)
            post_batches([json.dumps({"usage": warm_json}).encode()], [port], 1, key)
            for signal, payloads in warm.items():
                post_otlp(signal, payloads[i : i + 1], [port], 1, key)

        results = {}
        before = stored(org)
        elapsed, latencies = post_batches(json_batches, ports, args.clients, key)
        results["json"] = (Run(elapsed, latencies), before, before := stored(org))
        for signal, payloads in (("logs", logs), ("metrics", metrics), ("traces", traces)):
            run = post_otlp(signal, payloads, ports, args.clients, key)
            results[signal] = (run, before, before := stored(org))
        single_run = post_otlp("metrics", single, ports[:1], 1, key)

        report(args, results, json_records, logs, metrics, traces, single, single_run)
    except BaseException:
        failed = True
        raise
    else:
        failed = False
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)
            proc.log.seek(0)
            errors = proc.log.read()
            if failed and errors:  # what the servers said about the failure
                print(errors.decode(errors="replace")[-3000:], file=sys.stderr)
        from django.db import connections

        connections.close_all()
        if not args.keep:
            recreate_database(base_url, BENCH_DB, drop_only=True)


def report(args, results, json_records, logs, metrics, traces, single, single_run):
    def ms(run: Run) -> str:
        return f"{statistics.median(run.latencies) * 1000:6.0f} {percentile(run.latencies, 0.95) * 1000:6.0f}"

    print(
        f"{args.clients} clients, {args.servers} daphne processes; batches of {args.batch} "
        f"(JSON, logs), {SPANS_PER_BATCH} (traces); metrics exports of "
        f"{min(p.items for p in metrics)}-{max(p.items for p in metrics)} points"
    )
    print(f"{'workload':<34} {'requests':>8} {'sent':>9} {'seconds':>7} {'rate':>26} {'p50 ms':>6} {'p95 ms':>6}")

    run, before, after = results["json"]
    json_rate = grown(before, after, "usage:api") / run.elapsed
    print(
        f"{'JSON /api/v1/ingest':<34} {len(run.latencies):8,} {len(json_records):9,} {run.elapsed:7.1f} "
        f"{json_rate:14,.0f} records/s     {ms(run)}"
    )

    run, before, after = results["logs"]
    logs_rate = grown(before, after, "usage:otlp_logs") / run.elapsed
    print(
        f"{'/v1/logs api_request':<34} {len(run.latencies):8,} {sum(p.items for p in logs):9,} {run.elapsed:7.1f} "
        f"{logs_rate:14,.0f} records/s     {ms(run)}"
    )

    run, before, after = results["metrics"]
    points = sum(p.items for p in metrics)
    points_rate = points / run.elapsed
    made = grown(before, after, "usage:otlp_metrics"), grown(before, after, "activity:otlp_metrics")
    print(
        f"{'/v1/metrics Claude Code exports':<34} {len(run.latencies):8,} {points:9,} {run.elapsed:7.1f} "
        f"{points_rate:14,.0f} points/s      {ms(run)}"
    )
    print(
        f"{'':<34} {'':>8} {'':>9} {'':>7} {sum(made) / run.elapsed:14,.0f} rows/s        ({made[0]:,} records, {made[1]:,} events)"
    )

    run, before, after = results["traces"]
    spans = sum(p.items for p in traces)
    print(
        f"{'/v1/traces GenAI chat spans':<34} {len(run.latencies):8,} {spans:9,} {run.elapsed:7.1f} "
        f"{spans / run.elapsed:14,.0f} spans/s       {ms(run)}"
    )
    print(
        f"{'':<34} {'':>8} {'':>9} {'':>7} {grown(before, after, 'usage:otlp_traces') / run.elapsed:14,.0f} records/s"
    )

    print(
        f"{'single 40-point export, alone':<34} {len(single_run.latencies):8,} {sum(p.items for p in single):9,} "
        f"{single_run.elapsed:7.1f} {'':>26} {ms(single_run)}"
    )

    duplicates = results["traces"][2]["duplicates"]
    rejected = sum(r[0].rejected for r in results.values()) + single_run.rejected
    print(f"duplicates: {duplicates:,}; rejected: {rejected:,}")
    for message in [m for r in results.values() for m in r[0].messages][:3]:
        print(f"  rejected: {message[:300]}")

    single_p95 = percentile(single_run.latencies, 0.95) * 1000
    goals = [
        (
            f"/v1/logs records/s >= 50 % of JSON ingest's: {logs_rate / json_rate:.0%}",
            logs_rate >= GOALS["logs_share"] * json_rate,
        ),
        (
            f"/v1/metrics points/s >= JSON ingest items/s: {points_rate / json_rate:.0%}",
            points_rate >= GOALS["metrics_share"] * json_rate,
        ),
        (f"single 40-point export p95 <= 50 ms: {single_p95:.0f} ms", single_p95 <= GOALS["single_p95_ms"]),
    ]
    print("goals:")
    for text, met in goals:
        print(f"  {'ok    ' if met else 'MISSED'} {text}")


if __name__ == "__main__":
    main()
