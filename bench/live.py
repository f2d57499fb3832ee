#!/usr/bin/env python
"""Live Mode benchmark (issues 6 and 17): latency from an ingest response to the record on open
sockets and, with --browser, in the feeds of open pages.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres [REDIS_URL=redis://127.0.0.1:6379/0] \\
        .venv/bin/python bench/live.py [--clients 5] [--rate 200] [--seconds 60] [--batch 20] \\
        [--browser] [--code REV]

It creates (and finally drops) the database `tally_bench_live`, with one org of 40 people in
four teams, and starts one daphne process serving it (with REDIS_URL: channels-redis, else the
in-memory layer). Five websocket clients open Live Mode (last 24 hours) as an admin, two
managers and two members, each with their own session, the way a browser does (cookie, Origin). One client
posts `--rate` records a second in batches of `--batch`, spread over the 40 people, for
`--seconds`. Every client notes when each record reaches it.

It prints, per client and overall, the latency from the ingest response that stored a record
to that record arriving on the socket (p50, p95, p99, max), how many records each client should
have received by its scope and how many it did (nothing dropped, nothing extra), and the CPU
time the web process used. Goal: p99 < 300 ms, nothing dropped that the scope allows.

--browser also opens the Usage page (last 24 hours, ?live=1) in Chromium as the admin, the first
manager and the first member (the socket clients' sessions). A script the page runs before its
own notes when each record reaches the page's socket and when its row enters the feed (a
MutationObserver: the row is in the DOM, painted at the next frame), and the bench counts the
feed's repaints and the partial refreshes the page asks the server for. What a user sees is the
page latency; the socket-in-page latency tells the server's share from the page's.

--code REV serves git revision REV (say HEAD) instead of the working tree, exported with git
archive into a temporary folder, so an old and a new version run under the same conditions.
"""

import argparse
import asyncio
import http.client
import json
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
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
    parser.add_argument("--browser", action="store_true", help="also time the feeds of pages open in Chromium")
    parser.add_argument("--code", metavar="REV", help="serve git revision REV instead of the working tree")
    return parser.parse_args()


def session_for(user) -> str:
    """The key of a new signed-in session of `user`, as the login form would leave it (the servers
    must share this process's SECRET_KEY: the session holds a hash derived from it)."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


def socket_args(host: str, session_key: str, org: str = "bench", query: str = "range=24h") -> dict:
    """websockets.connect()'s arguments (its asyncio and sync clients alike) to open Live Mode as a
    browser does: the page's socket path and query, the session cookie and the page's own Origin
    (AllowedHostsOriginValidator refuses a socket without one)."""
    return {
        "uri": f"ws://{host}/ws/{org}/live/?{query}",
        "additional_headers": {"Cookie": f"sessionid={session_key}"},
        "origin": f"http://{host}",
    }


def expected_for(scope, stored: dict, people: dict) -> set[str]:
    """The request ids of `stored` ({request id: (anything, user email)}) that `scope` may see,
    by `people` ({email: (user id, team id)}): what a socket of that viewer should receive."""
    return {
        rid for rid, (_, email) in stored.items() if scope.allows(user_id=people[email][0], team_id=people[email][1])
    }


def build_org(clients: int):
    """The org, its people (email -> (user id, team id)), the viewers (label, scope, session key)
    and an ingest key. Viewers: an admin, then managers (of one team each) and members (the
    busiest people) in turn."""
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
        viewers.append((f"{kind} {i}", scope_for_user(user, org), session_for(user)))
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

    async with websockets.connect(**socket_args(f"127.0.0.1:{port}", session_key)) as socket:
        ready.set()
        while not done.is_set():
            try:
                message = await asyncio.wait_for(socket.recv(), timeout=0.5)
            except TimeoutError:
                continue
            arrived = time.monotonic()
            for record in json.loads(message)["records"]:
                received.setdefault(record["request_id"], arrived)


# Runs in each page before its own scripts (an init script: the Content-Security-Policy, which
# forbids eval, does not apply to it). Times are wall-clock milliseconds, as time.time() * 1000.
PAGE_SCRIPT = """
(() => {
  const now = () => performance.timeOrigin + performance.now();
  const bench = (window.__bench = { socket: {}, shown: {}, paints: [] });
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (event) => {  // added before the page's own listener
        const at = now();
        for (const r of JSON.parse(event.data).records || []) bench.socket[r.request_id] ??= at;
      });
    }
  };
  new MutationObserver((mutations) => {
    const at = now();
    let painted = false;
    for (const mutation of mutations) {
      for (const node of mutation.addedNodes) {
        if (node.nodeType === 1 && node.matches("[data-live-rows] > tr[data-request-id]")) {
          bench.shown[node.dataset.requestId] ??= at;
          painted = true;
        }
      }
    }
    if (painted) bench.paints.push(at);
  }).observe(document, { childList: true, subtree: true });
})();
"""


def page_viewers(viewers: list) -> list[int]:
    """The indexes of the first admin, manager and member: the viewers who get a page."""
    firsts: dict[str, int] = {}
    for i, (label, _, _) in enumerate(viewers):
        firsts.setdefault(label.split()[0], i)
    return sorted(firsts.values())


async def watch_page(browser, base: str, session_key: str) -> dict:
    """A Chromium page on the Usage page with Live Mode on, signed in with `session_key`, once its
    socket is open; the bench's notes on it (the partial refreshes it requests, CSP refusals)."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    await context.add_cookies([{"name": "sessionid", "value": session_key, "url": base}])
    await context.add_init_script(PAGE_SCRIPT)
    page = await context.new_page()
    watched = {"page": page, "refreshes": [], "refused": []}
    # live.js asks for a section's partial with HX-Target: one request per section and refresh.
    page.on("request", lambda r: "hx-target" in r.headers and watched["refreshes"].append(time.time() * 1000))
    page.on("console", lambda m: "Content Security Policy" in m.text and watched["refused"].append(m.text))
    await page.goto(f"{base}/bench/usage/?range=24h&live=1")
    await page.wait_for_selector('#dashboard[data-live-state="on"]', state="attached", timeout=30_000)
    return watched


def exported(rev: str) -> Path:
    """The files of git revision `rev` in a new temporary folder (git archive: the checkout is left alone)."""
    folder = Path(tempfile.mkdtemp(prefix="tally-bench-live-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def spread(latencies: list[float]) -> str:
    """p50, p95, p99 and max of `latencies` (ms), in columns."""
    if not latencies:
        return f"{'-':>8} {'-':>8} {'-':>8} {'-':>8}"
    values = (statistics.median(latencies), percentile(latencies, 95), percentile(latencies, 99), max(latencies))
    return " ".join(f"{v:6.1f}ms" for v in values)


async def run(args, port, key, people, viewers, pid):
    """Open the sockets (and pages), ingest for args.seconds; what each socket and page got."""
    pages, playwright = [], None
    if args.browser:
        from playwright.async_api import async_playwright

        from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

        playwright = await async_playwright().start()
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        for i in page_viewers(viewers):
            pages.append({"viewer": i, **await watch_page(browser, f"http://127.0.0.1:{port}", viewers[i][2])})
    try:
        return await run_sockets(args, port, key, people, viewers, pid, pages)
    finally:
        if playwright is not None:
            await browser.close()
            await playwright.stop()


async def run_sockets(args, port, key, people, viewers, pid, pages):
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
    started_ms = time.time() * 1000
    thread = threading.Thread(target=ingest_loop, args=(port, key, people, args, stored, stop), daemon=True)
    thread.start()
    await asyncio.sleep(args.seconds)
    stop.set()
    await asyncio.to_thread(thread.join)
    await asyncio.sleep(1.0)  # the last records' way to the sockets
    cpu, wall = cpu_seconds(pid) - cpu_before, time.monotonic() - wall_before
    done.set()
    await asyncio.gather(*tasks)
    for page in pages:
        page.update(await page.pop("page").evaluate("() => window.__bench"))
        page["window_ms"] = (started_ms, started_ms + wall * 1000)
        page["clock_offset_ms"] = started_ms - wall_before * 1000  # time.monotonic() -> wall-clock ms
    return stored, received, cpu, wall, pages


def main():
    args = parse_args()
    base_url = server_url()
    recreate_database(base_url, BENCH_DB)
    os.environ["DATABASE_URL"] = with_database(base_url, BENCH_DB)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "usage_site.settings")
    import django

    django.setup()
    from django.core.management import call_command

    procs, code = [], exported(args.code) if args.code else ROOT
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
        if code != ROOT:
            # daphne imports Tally from the export: PYTHONSAFEPATH keeps its working folder (this
            # checkout) off sys.path, and PYTHONPATH comes before the editable install's finder.
            env.update(PYTHONSAFEPATH="1", PYTHONPATH=str(code))
        if args.browser:
            # With DEBUG off pages name hashed static files: the export's own, or the checkout's (as `make run`).
            subprocess.run(
                [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=code, env=env, check=True
            )
        procs, (port,) = start_servers(1, env)
        layer = "channels-redis" if os.environ.get("REDIS_URL") else "in-memory layer"
        print(
            f"{args.clients} websocket clients{' and 3 Chromium pages' if args.browser else ''}, {args.rate} records/s "
            f"in batches of {args.batch} for {args.seconds:.0f} s; 1 daphne process, {layer}; "
            f"code: {args.code or 'working tree'}; load average {os.getloadavg()[0]:.2f}"
        )
        stored, received, cpu, wall, pages = asyncio.run(run(args, port, key, people, viewers, procs[0].pid))
        print(
            f"stored {len(stored):,} records in {wall:.1f} s; web process CPU {cpu:.1f} s = {cpu / wall:.0%} of a core; "
            f"load average {os.getloadavg()[0]:.2f}\n"
        )
        header = (
            f"{'socket':14} {'expected':>9} {'received':>9} {'missing':>8} {'extra':>6} "
            f"{'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}"
        )
        print(header)
        print("-" * len(header))
        every, failures = [], 0
        for (label, scope, _), got in zip(viewers, received, strict=True):
            expected = expected_for(scope, stored, people)
            latencies = [(got[rid] - stored[rid][0]) * 1000 for rid in expected if rid in got]
            missing, extra = len(expected - set(got)), len(set(got) - expected)
            failures += missing + extra
            every += latencies
            print(f"{label:14} {len(expected):9,} {len(got):9,} {missing:8,} {extra:6,} {spread(latencies)}")
        p99 = percentile(every, 99) if every else float("inf")
        print("-" * len(header))
        print(f"{'all':14} {'':9} {len(every):9,} {'':8} {'':6} {spread(every)}")
        if pages:
            p99 = max(p99, report_pages(pages, viewers, stored, people))
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
        if code != ROOT:
            shutil.rmtree(code)


def report_pages(pages: list[dict], viewers: list, stored: dict, people: dict) -> float:
    """Print each page's feed latency (ingest response -> row in the feed), its socket latency,
    its repaints and partial refreshes a second; return the pages' overall p99 (ms)."""
    header = (
        f"\n{'page':14} {'expected':>9} {'socket':>9} {'shown':>9} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}"
        f" {'socket p50':>10} {'p99':>8} {'repaints/s':>10} {'refreshes/s':>11}"
    )
    print(header)
    print("-" * len(header.strip()))
    every, refused = [], []
    for page in pages:
        label, scope, _ = viewers[page["viewer"]]
        expected = expected_for(scope, stored, people)
        answered = {rid: stored[rid][0] * 1000 + page["clock_offset_ms"] for rid in expected}
        shown = [page["shown"][rid] - answered[rid] for rid in expected if rid in page["shown"]]
        socket = [page["socket"][rid] - answered[rid] for rid in expected if rid in page["socket"]]
        start, end = page["window_ms"]
        seconds = (end - start) / 1000
        repaints = sum(start <= t <= end for t in page["paints"]) / seconds
        refreshes = sum(start <= t <= end for t in page["refreshes"]) / seconds
        every += shown
        refused += page["refused"]
        print(
            f"{label:14} {len(expected):9,} {len(socket):9,} {len(shown):9,} {spread(shown)}"
            f" {statistics.median(socket) if socket else 0:8.1f}ms {percentile(socket, 99) if socket else 0:6.1f}ms"
            f" {repaints:10.1f} {refreshes:11.1f}"
        )
    print("-" * len(header.strip()))
    print(f"{'all pages':14} {'':9} {'':9} {len(every):9,} {spread(every)}")
    print(
        "(page: ingest response -> the row in the page's feed; socket: -> the record on the page's socket; a "
        "refresh is one section's partial; shown < expected when a burst outruns the feed's rows)"
    )
    if refused:
        print(f"the Content-Security-Policy refused: {refused[:3]}")
    return percentile(every, 99) if every else float("inf")


if __name__ == "__main__":
    main()
