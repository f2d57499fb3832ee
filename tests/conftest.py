"""Shared fixtures: one org with two teams and a user of every role, plus an outsider; and a
watch over every log line of the run for secrets."""

import logging
import re

import pytest
from channels.layers import channel_layers
from django.test import Client

from accounts.models import Membership, Organization, Role, Team, User

PASSWORD = "correct-horse-battery"
# Prompt text as a test sends it in an OTLP event: it must be stored nowhere and never logged.
PROMPT_TEXT = "Summarise the Q3 salary review for the board"
# What may never be in a log line: an API key (tly_<prefix>_<secret>), the tests' password, a prompt.
SECRETS = re.compile(rf"tly_[0-9a-f]{{12}}_[A-Za-z0-9_-]{{8,}}|{re.escape(PASSWORD)}|{re.escape(PROMPT_TEXT)}")


class SecretWatch(logging.Handler):
    """On the root logger for the whole run: every record that any logger lets through at the
    configured levels (what production would write), with its traceback, checked for SECRETS."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.leaks: list[str] = []

    def emit(self, record):
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        if SECRETS.search(text):
            self.leaks.append(f"{record.name}: {text[:500]}")


_secret_watch = SecretWatch()


@pytest.fixture(autouse=True)
def secret_watch():
    """Puts the watch (back) on the root logger before each test: django.setup(), which importing
    the ASGI app runs again, replaces the root logger's handlers."""
    root = logging.getLogger()
    if _secret_watch not in root.handlers:
        root.addHandler(_secret_watch)
    return _secret_watch


def pytest_sessionfinish(session, exitstatus):
    if _secret_watch.leaks:
        print("\nSecrets in log lines of this run:\n  " + "\n  ".join(_secret_watch.leaks[:20]))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def make_user(email: str, org: Organization | None = None, role: str = Role.MEMBER, teams=(), **fields) -> User:
    user = User.objects.create_user(email, PASSWORD, **fields)
    if org is not None:
        membership = Membership.objects.create(user=user, org=org, role=role)
        membership.teams.set(teams)
    return user


@pytest.fixture(autouse=True)
def fast_password_hashing(request, settings):
    """PBKDF2 costs ~0.3 s a user; tests do not need it. Browser tests log in through a
    separate server process with the real settings, so they keep the real hasher."""
    if request.node.get_closest_marker("browser") is None:
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """Each test gets channel layers of its own. A Redis layer keeps asyncio locks bound to the
    event loop that first waited on them, and each async_to_sync of a test runs its own loop: a
    lock an earlier test left held (a receive cut off when its loop ended) failed a later
    test's receive with "bound to a different event loop". A server has one loop for good."""
    yield
    channel_layers.backends.clear()


@pytest.fixture
def org(db):
    return Organization.objects.create(name="Acme", slug="acme", timezone="Europe/Berlin")


@pytest.fixture
def other_org(db):
    return Organization.objects.create(name="Globex", slug="globex", timezone="America/New_York")


@pytest.fixture
def platform_team(org):
    return Team.objects.create(org=org, name="Platform", colour="#2563eb")


@pytest.fixture
def web_team(org):
    return Team.objects.create(org=org, name="Web", colour="#db2777")


@pytest.fixture
def admin(org):
    return make_user("admin@acme.test", org, Role.ADMIN, name="Ada Admin")


@pytest.fixture
def manager(org, platform_team):
    return make_user("manager@acme.test", org, Role.MANAGER, [platform_team], name="Max Manager")


@pytest.fixture
def member(org, platform_team):
    return make_user("member@acme.test", org, Role.MEMBER, [platform_team], name="Mia Member")


@pytest.fixture
def web_member(org, web_team):
    return make_user("web@acme.test", org, Role.MEMBER, [web_team], name="Wes Web")


@pytest.fixture
def outsider(other_org):
    return make_user("outsider@globex.test", other_org, Role.ADMIN, name="Otto Outsider")


@pytest.fixture
def superuser(db):
    return User.objects.create_superuser("root@tally.test", PASSWORD)


@pytest.fixture
def org_admin(admin):
    """An admin of Acme who may log into the Django admin, with no Django permissions."""
    admin.is_staff = True
    admin.save()
    return admin


def logged_in(user) -> Client:
    client = Client()  # a client of its own, so one test can act as two people
    client.force_login(user)
    return client


@pytest.fixture
def su_client(superuser):
    return logged_in(superuser)


@pytest.fixture
def admin_client_(org_admin):
    return logged_in(org_admin)
