"""The users of bench/load.py's load test: a locustfile, run by locust in a process of its own.

bench/load.py seeds the database, starts the servers, writes the plan (TALLY_LOAD_PLAN: sessions,
the ingest key, pages, timings, the PIDs to watch) and runs `locust -f bench/load_users.py
--headless`. This file stays apart from load.py because locust monkey-patches the standard
library with gevent as soon as it is imported, which the orchestration (Django, psycopg,
subprocesses) must not live under; so it imports nothing but locust, websockets and two
helpers of the other benchmarks.

- IngestUser posts batches of usage records to /api/v1/ingest, paced so that together they send
  the plan's records/s, and counts what the answers say was accepted.
- DashboardUser, signed in as one of the org's people, loads a page, then some of its htmx
  partials (HX-Request, HX-Target), with a think time between clicks.
- LiveUser opens the Usage page in Live Mode and its websocket, as a browser does, and notes
  when each record arrives (with the plan's `refresh`, it also refreshes the page's live
  sections as static/js/live.js does).

A controller waits until every socket is open, resets the statistics, lets ingest run for the
plan's seconds, waits for the last batches and for their records to reach the sockets, writes
what happened (TALLY_LOAD_RESULTS) and stops locust.
"""

import itertools
import json
import os
import random
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import gevent
from gevent.event import Event
from locust import FastHttpUser, between, constant, constant_pacing, events, task
from locust.exception import StopUser
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import realistic_records  # noqa: E402  (bench/ is this file's folder)
from live import cpu_seconds, socket_args  # noqa: E402

PLAN = json.loads(Path(os.environ["TALLY_LOAD_PLAN"]).read_text())
INGEST, DASHBOARD, LIVE = PLAN["ingest"], PLAN["dashboard"], PLAN["live"]
# Each ingest user sends one batch every INGEST_INTERVAL seconds; together, INGEST["rate"] records/s.
INGEST_INTERVAL = INGEST["users"] * INGEST["batch"] / INGEST["rate"]
REFRESH_SECONDS = 1.0  # static/js/live.js's REFRESH_MS


class Run:
    """What the users and the controller share (one process, one gevent hub: no locks needed)."""

    go, stop = Event(), Event()
    in_flight = 0
    sockets_open = 0
    accepted_total = 0  # the sum of the answers' "accepted"
    accepted: dict[str, tuple[float, str]] = {}  # request id -> (when its answer came, its user's email)
    unsure = 0  # records of batches whose answer does not say which of them were stored
    received: list[dict[str, float]] = [{} for _ in LIVE["sessions"]]  # per socket: request id -> arrival
    repeated = [0] * len(LIVE["sessions"])  # a request id a socket received again
    closed = [""] * len(LIVE["sessions"])  # why a socket closed before the end
    window: dict[str, float] = {}
    cpu: dict[str, float] = {}


ingest_numbers, dashboard_numbers, live_numbers = itertools.count(), itertools.count(), itertools.count()


def fire(environment, kind: str, name: str, started: float, exception=None) -> None:
    environment.events.request.fire(
        request_type=kind,
        name=name,
        response_time=(time.perf_counter() - started) * 1000,
        response_length=0,
        exception=exception,
        context={},
    )


class IngestUser(FastHttpUser):
    fixed_count = INGEST["users"]
    wait_time = constant_pacing(INGEST_INTERVAL)

    def on_start(self):
        self.number, self.batches = next(ingest_numbers), 0
        self.headers = {"Authorization": f"Bearer {INGEST['key']}", "Content-Type": "application/json"}
        Run.go.wait()
        # Spread over the interval: all of them at once would be bursts of users x batch records.
        gevent.sleep(self.number * INGEST_INTERVAL / self.fixed_count)

    @task
    def post_batch(self):
        if Run.stop.is_set():
            return
        prefix = f"load{self.number}b{self.batches}"
        seed = self.number * 1_000_000 + self.batches
        batch = realistic_records(INGEST["batch"], prefix, seed=seed, users=INGEST["emails"])
        self.batches += 1
        Run.in_flight += 1
        try:
            with self.client.post(
                "/api/v1/ingest",
                data=json.dumps({"usage": batch}),
                headers=self.headers,
                name=f"ingest {INGEST['batch']}",
                catch_response=True,
            ) as response:
                answered = time.monotonic()
                self.count(response, batch, answered)
        finally:
            Run.in_flight -= 1

    @staticmethod
    def count(response, batch: list[dict], answered: float) -> None:
        if response.status_code not in (200, 207):
            response.failure(f"status {response.status_code}: {(response.text or '')[:200]}")
            return
        answer = response.json()
        Run.accepted_total += answer["accepted"]
        rejected = {item["index"] for item in answer["rejected"] if item["kind"] == "usage"}
        if answer["duplicates"]:
            Run.unsure += len(batch)  # which ones were duplicates, the answer does not say
        else:
            for i, item in enumerate(batch):
                if i not in rejected:
                    Run.accepted[item["request_id"]] = (answered, item["user"])
        if answer["accepted"] != len(batch):
            response.failure(f"accepted {answer['accepted']} of {len(batch)}: {json.dumps(answer)[:300]}")


class DashboardUser(FastHttpUser):
    fixed_count = len(DASHBOARD["sessions"])
    wait_time = between(*DASHBOARD["think"])

    def on_start(self):
        session = DASHBOARD["sessions"][next(dashboard_numbers) % len(DASHBOARD["sessions"])]
        self.headers = {"Cookie": f"sessionid={session}"}

    @task
    def browse(self):
        """One page, then 0-3 clicks that swap one of its sections (a table's sort, a chart's
        interval, ...), each after reading what came back."""
        name = random.choices(list(DASHBOARD["pages"]), DASHBOARD["weights"])[0]
        page = DASHBOARD["pages"][name]
        url = page["url"] + random.choice(DASHBOARD["queries"])
        self.get(url, f"page {name}", {})
        for _ in range(random.randint(0, 3)):
            gevent.sleep(random.uniform(*DASHBOARD["think"]))
            target = random.choice(page["sections"])
            self.get(url, f"partial {target}", {"HX-Request": "true", "HX-Target": target})

    def get(self, url: str, name: str, headers: dict) -> None:
        with self.client.get(
            url, headers=self.headers | headers, name=name, catch_response=True, allow_redirects=False
        ) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")


class LiveUser(FastHttpUser):
    fixed_count = len(LIVE["sessions"])
    wait_time = constant(0)  # listen() runs until the end

    def on_start(self):
        self.number = next(live_numbers)
        session = LIVE["sessions"][self.number]
        self.headers = {"Cookie": f"sessionid={session}"}
        self.next_refresh = 0.0
        with self.client.get(LIVE["page"], headers=self.headers, name="live page", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
        started = time.perf_counter()
        try:
            args = socket_args(urlsplit(self.host).netloc, session, PLAN["org"], LIVE["query"])
            self.socket = connect(**args, open_timeout=30, max_size=None)
        except Exception as exc:
            Run.closed[self.number] = f"connect: {exc!r}"
            fire(self.environment, "WS", "live connect", started, exc)
            raise StopUser() from exc
        fire(self.environment, "WS", "live connect", started)
        Run.sockets_open += 1

    def on_stop(self):
        socket = getattr(self, "socket", None)
        if socket is not None:
            socket.close()

    @task
    def listen(self):
        received, arrived_any = Run.received[self.number], False
        while True:
            try:
                message = self.socket.recv(timeout=0.5)
            except TimeoutError:
                message = None
            except ConnectionClosed as exc:
                Run.closed[self.number] = f"closed: {exc!r}"
                fire(self.environment, "WS", "live socket", time.perf_counter(), exc)
                raise StopUser() from exc
            if message is not None:
                arrived = time.monotonic()
                for record in json.loads(message)["records"]:
                    if record["request_id"] in received:
                        Run.repeated[self.number] += 1
                    else:
                        received[record["request_id"]] = arrived
                arrived_any = True
            if LIVE["refresh"] and arrived_any and time.monotonic() >= self.next_refresh:
                self.refresh()
                arrived_any = False

    def refresh(self):
        """As live.js does: the page's live sections through its own view, all at once, at most
        every second, or every twice as long as the last refresh took."""
        started = time.monotonic()
        gevent.joinall([gevent.spawn(self.refresh_section, target) for target in LIVE["sections"]])
        self.next_refresh = time.monotonic() + max(REFRESH_SECONDS, 2 * (time.monotonic() - started))

    def refresh_section(self, target: str):
        headers = self.headers | {"HX-Request": "true", "HX-Target": target}
        with self.client.get(LIVE["page"], headers=headers, name=f"live {target}", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")


def cpu_now() -> dict[str, float]:
    """CPU seconds used so far by each watched process and by locust, and the machine's busy and
    total core-seconds (from /proc/stat: everyone's, the other helpers' and PostgreSQL's too)."""
    seconds = {}
    for name, pids in PLAN["pids"].items():
        seconds[name] = sum(cpu_seconds(pid) for pid in pids if Path(f"/proc/{pid}").exists())
    seconds["locust"] = cpu_seconds(os.getpid())
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    seconds["machine total"] = sum(fields[:8]) / tick
    seconds["machine busy"] = (sum(fields[:8]) - fields[3] - fields[4]) / tick  # all but idle and iowait
    return seconds


def control(environment):
    deadline = time.monotonic() + 60
    while Run.sockets_open + sum(bool(c) for c in Run.closed) < LiveUser.fixed_count and time.monotonic() < deadline:
        gevent.sleep(0.1)
    gevent.sleep(1)  # the dashboard users' first pages, served before the window, stay out of the numbers
    environment.stats.reset_all()
    before = cpu_now()
    Run.window["start"] = time.monotonic()
    Run.go.set()
    gevent.sleep(PLAN["seconds"])
    Run.stop.set()
    Run.window["stop"] = time.monotonic()
    while Run.in_flight and time.monotonic() < Run.window["stop"] + 60:
        gevent.sleep(0.05)
    Run.window["ingest_done"] = time.monotonic()
    gevent.sleep(PLAN["tail"])  # the last records' way to the sockets
    Run.window["end"] = time.monotonic()
    after = cpu_now()
    Run.cpu = {name: after[name] - before[name] for name in after}
    write_results(environment, complete=True)
    environment.runner.quit()


def stats_of(entry) -> dict:
    return {
        "requests": entry.num_requests,
        "failures": entry.num_failures,
        "p50": entry.get_response_time_percentile(0.50),
        "p95": entry.get_response_time_percentile(0.95),
        "p99": entry.get_response_time_percentile(0.99),
        "max": entry.max_response_time,
        "rps": entry.total_rps,
    }


def write_results(environment, complete: bool) -> None:
    from locust.stats import StatsEntry

    stats = environment.stats
    endpoints, groups = {}, {}
    for (name, _method), entry in sorted(stats.entries.items()):
        endpoints[name] = stats_of(entry)
        group = name.split(" ")[0]  # page, partial, ingest, live, ...
        groups.setdefault(group, StatsEntry(stats, group, "")).extend(entry)
    results = {
        "complete": complete,
        "window": Run.window,
        "cpu": Run.cpu,
        "endpoints": endpoints,
        "groups": {name: stats_of(entry) for name, entry in groups.items()},
        "total": stats_of(stats.total),
        "errors": [{"name": e.name, "error": str(e.error), "count": e.occurrences} for e in stats.errors.values()],
        "exceptions": [{"count": x["count"], "msg": x["msg"]} for x in environment.runner.exceptions.values()],
        "accepted_total": Run.accepted_total,
        "accepted": Run.accepted,
        "unsure": Run.unsure,
        "received": Run.received,
        "repeated": Run.repeated,
        "closed": Run.closed,
        "sockets_open": Run.sockets_open,
    }
    Path(os.environ["TALLY_LOAD_RESULTS"]).write_text(json.dumps(results))


@events.test_start.add_listener
def start_controller(environment, **kwargs):
    gevent.spawn(control, environment)


@events.quitting.add_listener
def write_unfinished(environment, **kwargs):
    """Ctrl-C or locust's --run-time came before the controller finished: keep what there is."""
    if not Path(os.environ["TALLY_LOAD_RESULTS"]).exists():
        write_results(environment, complete=False)
