"""/healthz and /readyz (DESIGN §14): open probes that say whether the process, the database
and Redis answer, and name what does not."""

import socket

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext


def dead_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_healthz_answers_without_login_or_database(db):
    with CaptureQueriesContext(connection) as queries:
        response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"
    assert len(queries) == 0


def test_readyz_is_200_when_everything_answers(db):
    response = Client().get("/readyz")
    assert response.status_code == 200
    expected = {"database": "ok", **({"redis": "ok"} if settings.REDIS_URL else {})}
    assert response.json() == {"status": "ok", "checks": expected}


def test_readyz_names_redis_when_it_does_not_answer(db, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{dead_port()}/0"
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "redis": "unavailable"},
        "failed": ["redis"],
    }


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the probe opens a PostgreSQL connection of its own")
def test_readyz_names_the_database_when_it_does_not_answer(db, monkeypatch, caplog):
    port = dead_port()
    monkeypatch.setitem(connection.settings_dict, "PORT", str(port))
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["database"]
    assert response.json()["checks"]["database"] == "unavailable"
    # The log says what failed, never the driver's message (it names hosts and users).
    assert "readyz: database unavailable: OperationalError" in caplog.text
    assert str(port) not in caplog.text


def test_probes_are_exempt_from_the_https_redirect(db, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert Client().get("/healthz").status_code == 200
    assert Client().get("/readyz").status_code == 200
    assert Client().get("/login/").status_code == 301


def test_probes_take_only_get_and_head(db):
    assert Client().post("/readyz").status_code == 405
    assert Client().head("/healthz").status_code == 200
