"""Fixtures of the fault tests: Tally as production runs it (daphne, DEBUG off) on a PostgreSQL
and a Redis of the tests' own, which a test may stop and start (tests/faults/services.py).

The tests' own servers make them independent of the suite's DATABASE_URL and REDIS_URL: they
run the same with both set or neither. Migrating takes the longest (half a minute on a busy
machine), so it is done once per run, into a template database that also holds the org, its
admin and an ingest key (made with the management commands, DESIGN §5); each test module
gets a copy of it (CREATE DATABASE ... TEMPLATE, a file copy).

`pg` and `redis` hand a test the running server and start it again afterwards if the test
left it stopped, so the next test finds it up. Data is not cleared between the tests of a
module: each test sends request ids of its own and counts only those.
"""

import http.client
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import psycopg
import pytest

from tests.conftest import PASSWORD
from tests.faults.services import CeleryWorker, Postgres, Redis

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))  # bench/ingest.py: the benchmark's daphne starter and records
from ingest import realistic_records, start_servers  # noqa: E402

TEMPLATE_DB = "tally_template"
ORG = "acme"
ADMIN = "admin@acme.test"
# High enough that no test is refused, low enough that every request is counted in Redis.
RATE_LIMIT_PER_MINUTE = 100_000


def manage(database_url: str, *args: str) -> str:
    """`manage.py <args>` against `database_url` without Redis; its output."""
    env = base_env() | {"DATABASE_URL": database_url}
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    if done.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def base_env() -> dict:
    """This process's environment without the suite's services: the tests name their own."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    return env | {"DJANGO_SETTINGS_MODULE": "usage_site.settings"}


@dataclass(frozen=True)
class Tenant:
    """What the template database holds: an org, its admin (password PASSWORD) and an ingest key."""

    org: str
    admin: str
    key: str


@pytest.fixture(scope="session")
def pg_cluster():
    """The tests' PostgreSQL cluster, with the template database migrated and its tenant made."""
    cluster = Postgres().start()
    try:
        with psycopg.connect(cluster.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
        template = database_url(cluster, TEMPLATE_DB)
        manage(template, "migrate", "--noinput", "--verbosity", "0")
        # The three commands in one process: each of its own would start Django again (seconds).
        commands = [
            ["create_org", ORG, "--name", "Acme", "--timezone", "Europe/Berlin"],
            ["create_user", ORG, ADMIN, "--role", "admin", "--password", PASSWORD],
            ["create_api_key", ORG, "gateway", "--scope", "ingest"],
        ]
        script = f"from django.core.management import call_command\nfor args in {commands!r}: call_command(*args)"
        key = manage(template, "shell", "--no-imports", "--command", script).strip().splitlines()[-1]
        cluster.tenant = Tenant(ORG, ADMIN, key)
        yield cluster
    finally:
        cluster.destroy()


def database_url(cluster: Postgres, name: str) -> str:
    return f"postgres://postgres@127.0.0.1:{cluster.port}/{name}"


@pytest.fixture
def pg(pg_cluster):
    """The running cluster; started again after the test if the test stopped it."""
    if not pg_cluster.running:
        pg_cluster.start()
    yield pg_cluster
    if not pg_cluster.running:
        pg_cluster.start()


@pytest.fixture(scope="module")
def tally_db(pg_cluster, request) -> str:
    """A database of this module's own, a copy of the template: its URL."""
    name = "tally_" + re.sub(r"\W", "_", request.module.__name__.rsplit(".", 1)[-1])
    if not pg_cluster.running:
        pg_cluster.start()
    with psycopg.connect(pg_cluster.url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    return database_url(pg_cluster, name)


@pytest.fixture
def tenant(pg_cluster) -> Tenant:
    return pg_cluster.tenant


def sql(url: str, query: str, params=()) -> list[tuple]:
    """Rows of one query on a fresh connection (the test's own view of the database)."""
    with psycopg.connect(url, connect_timeout=5) as conn:
        return conn.execute(query, params).fetchall()


def stored_usage(database: str, prefix: str) -> dict[str, tuple[int, set[str]]]:
    """request id -> (rows with that id, names of the tags linked to them), for ids under `prefix`."""
    rows = sql(
        database,
        "SELECT r.request_id, count(DISTINCT r.id), array_remove(array_agg(t.name), NULL)"
        " FROM metering_usagerecord r LEFT JOIN metering_usagerecordtag rt ON rt.record_id = r.id"
        " LEFT JOIN accounts_tag t ON t.id = rt.tag_id WHERE r.request_id LIKE %s GROUP BY r.request_id",
        (prefix + "-%",),
    )
    return {request_id: (count, set(tags)) for request_id, count, tags in rows}


@pytest.fixture(scope="session")
def redis_server():
    server = Redis().start()
    yield server
    server.stop()


@pytest.fixture
def redis(redis_server):
    """The running Redis; started again (empty, on the same port) if the test stopped it."""
    if not redis_server.running:
        redis_server.start()
    yield redis_server
    if not redis_server.running:
        redis_server.start()


@pytest.fixture(scope="session")
def collected_static():
    """With DEBUG off, pages name their static files through collectstatic's manifest (an error
    page too). Collected into the project's STATIC_ROOT, as `make run` does; under a lock,
    since other test runs on this machine may collect at the same time."""
    import fcntl

    with open(Path(tempfile.gettempdir()) / "tally-collectstatic.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
            cwd=ROOT,
            env=base_env() | {"DEBUG": "0", "SECRET_KEY": "collectstatic"},
            capture_output=True,
            text=True,
        )
    assert done.returncode == 0, done.stderr


@dataclass
class Server:
    """A daphne process serving Tally: its base URL, process and log (stderr: every log line)."""

    url: str
    proc: subprocess.Popen

    def log(self) -> str:
        self.proc.log.seek(0)
        return self.proc.log.read().decode(errors="replace")


def server_env(database: str, redis_url: str | None, overrides: dict) -> dict:
    """Production settings (DEBUG off) on the tests' own services; `overrides` set variables,
    None removes one (REDIS_URL=None: no Redis, the in-memory layer and eager Celery)."""
    env = base_env() | {
        "DATABASE_URL": database,
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",  # plain HTTP to the process, as behind a TLS-terminating proxy
        "API_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT_PER_MINUTE),
        "LOG_LEVEL": "INFO",
    }
    if redis_url:
        env["REDIS_URL"] = redis_url
    env |= overrides
    return {k: v for k, v in env.items() if v is not None}


@pytest.fixture
def tally_server(tally_db, redis, collected_static):
    """Starts daphne processes: `tally_server(**env overrides)` → Server. Stopped after the test."""
    servers = []

    def start(**overrides) -> Server:
        (proc,), (port,) = start_servers(1, server_env(tally_db, redis.url, overrides))
        servers.append(Server(f"http://127.0.0.1:{port}", proc))
        return servers[-1]

    yield start
    for server in servers:
        server.proc.terminate()
        try:
            server.proc.wait(10)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


@pytest.fixture
def tally_worker(tally_db, redis, tmp_path):
    """Starts Celery workers on the same services: `tally_worker(**env overrides)` → CeleryWorker
    (its log in `.log`), ready when returned. Stopped after the test."""
    workers = []

    def start(**overrides) -> CeleryWorker:
        log = tmp_path / f"worker-{len(workers)}.log"
        workers.append(CeleryWorker(server_env(tally_db, redis.url, overrides), log, cwd=ROOT).start())
        return workers[-1]

    yield start
    for worker in workers:
        worker.stop()


# --- Talking to the server over plain HTTP --------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict  # names in lower case
    body: bytes
    cookies: dict  # what Set-Cookie set

    def json(self):
        return json.loads(self.body)


def http_request(url: str, method: str, path: str, body: bytes | None = None, headers=None, timeout=60) -> Answer:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body, headers or {})
        response = conn.getresponse()
        cookies = {}
        for value in response.headers.get_all("Set-Cookie") or []:
            cookies |= {name: morsel.value for name, morsel in SimpleCookie(value).items()}
        headers = {k.lower(): v for k, v in response.getheaders()}
        return Answer(response.status, headers, response.read(), cookies)
    finally:
        conn.close()


class Browserless:
    """A signed-in visitor without a browser: keeps its cookies itself, since DEBUG off marks
    them Secure and the standard library's cookie jar would not send them over plain HTTP."""

    def __init__(self, url: str):
        self.url = url
        self.cookies: dict[str, str] = {}

    def sign_in(self, email: str, password: str = PASSWORD) -> None:
        page = self.get("/login/")
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body).group(1).decode()
        answer = self.post("/login/", {"username": email, "password": password, "csrfmiddlewaretoken": token})
        assert answer.status == 302 and "sessionid" in self.cookies, answer.body[:500]

    def get(self, path: str) -> Answer:
        return self._send("GET", path)

    def post(self, path: str, form: dict) -> Answer:
        return self._send("POST", path, urlencode(form).encode())

    def _send(self, method: str, path: str, body: bytes | None = None) -> Answer:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if body is not None:
            headers |= {"Content-Type": "application/x-www-form-urlencoded", "Origin": self.url}
        answer = http_request(self.url, method, path, body, headers)
        self.cookies |= answer.cookies
        return answer


# --- A gateway's stream of ingest batches -------------------------------------------------------


def usage_batches(count: int, size: int, prefix: str | None = None) -> list[list[dict]]:
    """`count` batches of `size` realistic usage records (tags, sessions, the last day), unique ids."""
    prefix = prefix or f"f{uuid.uuid4().hex[:8]}"
    records = realistic_records(count * size, prefix)
    return [records[i : i + size] for i in range(0, len(records), size)]


@dataclass
class Sent:
    """One batch and every answer it got, in order (503s, then the final one)."""

    items: list[dict]
    answers: list[Answer] = field(default_factory=list)


class IngestStream(threading.Thread):
    """Posts batches one after another, as a gateway forwarding its traffic: a batch answered 503
    is sent again after its Retry-After, until answered otherwise (or `give_up_s` has passed).
    `wait_for(n)` blocks until n batches have a final answer."""

    def __init__(self, url: str, key: str, batches: list[list[dict]], path="/api/v1/ingest", give_up_s=120):
        super().__init__(daemon=True)
        self.url, self.key, self.path, self.give_up_s = url, key, path, give_up_s
        self.sent = [Sent(items) for items in batches]
        self.done = 0  # batches with a final answer
        self.unavailable = threading.Event()  # set on the first 503
        self.changed = threading.Condition()
        self.failure: BaseException | None = None
        self.start()

    def run(self):
        try:
            for sent in self.sent:
                deadline = time.monotonic() + self.give_up_s
                body = json.dumps({"usage": sent.items}).encode()
                headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
                while True:
                    answer = http_request(self.url, "POST", self.path, body, headers)
                    sent.answers.append(answer)
                    if answer.status != 503 or time.monotonic() > deadline:
                        break
                    self.unavailable.set()
                    time.sleep(int(answer.headers["retry-after"]))
                with self.changed:
                    self.done += 1
                    self.changed.notify_all()
        except BaseException as exc:  # surfaced by wait_for and finish
            self.failure = exc
            with self.changed:
                self.changed.notify_all()

    def wait_for(self, batches: int, timeout: float = 120) -> None:
        with self.changed:
            ready = self.changed.wait_for(lambda: self.done >= batches or self.failure or not self.is_alive(), timeout)
        if self.failure:
            raise self.failure
        assert ready and self.done >= batches, f"{self.done} of {batches} batches answered in {timeout} s"

    def finish(self, timeout: float = 180) -> list[Sent]:
        self.wait_for(len(self.sent), timeout)
        self.join(timeout)
        return self.sent


def wait_until(predicate, timeout: float = 60, interval: float = 0.2, what: str = "the condition"):
    """Polls `predicate` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(interval)
    return value
