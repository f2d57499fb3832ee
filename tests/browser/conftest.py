"""Browser tests: a real daphne serving the test database, driven by Debian's Chromium.

Run them on their own (`pytest -m browser tests/browser`): Playwright's sync
API leaves an event loop behind that breaks later asyncio tests in the same
process (DESIGN §11), and the default addopts deselect the marker anyway.

pytest-django's `live_server` is a WSGI thread without websockets, so the
server here is the production one, daphne, in a subprocess. A subprocess only
sees committed rows, so every test that uses `live_url` runs with
`transactional_db`; its DATABASE_URL points at the test database.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
STARTUP_TIMEOUT = 30  # seconds for daphne to import Django and listen


def pytest_collection_modifyitems(items):
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is missing: install Debian's Chromium (apt-get install chromium)")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


def database_url_for_subprocess(settings_dict) -> str:
    """A DATABASE_URL naming the database this process is testing against."""
    engine = settings_dict["ENGINE"]
    if engine == "django.db.backends.sqlite3":
        name = str(settings_dict["NAME"])
        if name == ":memory:" or name.startswith("file:"):
            raise RuntimeError("Browser tests need a file-backed SQLite test database (settings TEST NAME).")
        return f"sqlite:///{Path(name).resolve()}"
    if engine == "django.db.backends.postgresql":
        user = quote(settings_dict.get("USER") or "", safe="")
        password = settings_dict.get("PASSWORD") or ""
        credentials = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
        host = settings_dict.get("HOST") or "127.0.0.1"
        port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
        return f"postgres://{credentials}{host}{port}/{quote(settings_dict['NAME'], safe='')}"
    raise RuntimeError(f"Browser tests do not know how to share a {engine} database with a subprocess.")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"daphne did not listen on port {port} within {STARTUP_TIMEOUT}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def daphne_url(django_db_setup, django_db_blocker):
    """Base URL of a daphne subprocess serving the test database; stopped at the end of the session.

    Depends on `django_db_setup` so the test database exists before daphne
    connects and is dropped only after daphne has gone.
    """
    with django_db_blocker.unblock():
        database_url = database_url_for_subprocess(connection.settings_dict)
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "usage_site.settings",
        "DATABASE_URL": database_url,
        # No persistent or pooled connections: the test run truncates and finally drops this database.
        "DB_POOL": "0",
        "DB_CONN_MAX_AGE": "0",
        # DEBUG serves static files through WhiteNoise's finders, without collectstatic.
        "DEBUG": "1",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # see `browser`: the server keeps Django's check
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / "daphne.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "usage_site.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, process, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def live_url(daphne_url, transactional_db):
    """The server's base URL, for a test whose data is committed so daphne can read it."""
    return daphne_url


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, so
    # Django's async-safety check would refuse the ORM calls the tests make
    # between page actions. They are plain synchronous code: a false alarm,
    # silenced only while the browser is up, and never for daphne.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def make_page(browser, request):
    """Open pages in fresh browser contexts; the last one is screenshotted to artifacts/<test>.png.
    Whatever the pages did, the Content-Security-Policy refused none of it."""
    contexts = []
    pages = []
    refused = []

    def make(*, color_scheme: str = "light", width: int = 1280, height: int = 800):
        context = browser.new_context(color_scheme=color_scheme, viewport={"width": width, "height": height})
        context.set_default_timeout(10_000)
        contexts.append(context)
        pages.append(context.new_page())
        pages[-1].on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
        return pages[-1]

    yield make
    if pages:
        ARTIFACTS.mkdir(exist_ok=True)
        pages[-1].screenshot(path=ARTIFACTS / f"{request.node.name}.png", full_page=True)
    for context in contexts:
        context.close()
    assert not refused, f"the Content-Security-Policy refused: {refused}"


@pytest.fixture
def page(make_page):
    return make_page()


def wait_for_chart(page, canvas_id: str, timeout_s: float = 10) -> None:
    """Until Chart.js has drawn on the canvas `canvas_id`. Polled from here with page.evaluate:
    page.wait_for_function evaluates its predicate with eval, which the page's
    Content-Security-Policy refuses."""
    deadline = time.monotonic() + timeout_s
    drawn = "id => Boolean(window.Chart && Chart.getChart(document.getElementById(id)))"
    while not page.evaluate(drawn, canvas_id):
        if time.monotonic() > deadline:
            raise AssertionError(f"no chart drawn on #{canvas_id} within {timeout_s} s")
        page.wait_for_timeout(50)
