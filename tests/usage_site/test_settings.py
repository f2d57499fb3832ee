"""Settings come from the environment, fail loudly on bad values, and pass the deploy checklist."""

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from usage_site.env import env_bool, env_int, env_list

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "x7#k2!pL9q$wE4r@tY6u*iO0pA3sD5fG8hJ1kL-zX4cV7bN0mQ",
    "ALLOWED_HOSTS": "tally.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://tally.example.com",
}


def manage(*args, **env):
    """Run manage.py in a fresh process, so settings are read from this environment alone."""
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_deploy_checklist_is_clean_under_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    result = manage("check", **{**PRODUCTION, "SECRET_KEY": ""})
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_a_misspelt_boolean_stops_the_process():
    result = manage("check", DEBUG="ture")
    assert result.returncode != 0
    assert "DEBUG='ture' is not a boolean" in result.stderr


@pytest.mark.parametrize(
    "raw, expected", [("1", True), ("yes", True), ("On", True), ("0", False), ("false", False), ("", False)]
)
def test_booleans_read_every_usual_spelling(monkeypatch, raw, expected):
    monkeypatch.setenv("TALLY_TEST_FLAG", raw)
    assert env_bool("TALLY_TEST_FLAG") is expected


def test_unset_variables_take_their_defaults(monkeypatch):
    monkeypatch.delenv("TALLY_TEST_X", raising=False)
    assert env_bool("TALLY_TEST_X", True) is True
    assert env_int("TALLY_TEST_X", 7) == 7
    assert env_list("TALLY_TEST_X", ["a"]) == ["a"]


def test_integers_and_lists_are_parsed_or_refused(monkeypatch):
    monkeypatch.setenv("TALLY_TEST_N", "12")
    monkeypatch.setenv("TALLY_TEST_L", " a.example.com, b.example.com ,")
    assert env_int("TALLY_TEST_N", 0) == 12
    assert env_list("TALLY_TEST_L", []) == ["a.example.com", "b.example.com"]
    monkeypatch.setenv("TALLY_TEST_N", "twelve")
    with pytest.raises(ImproperlyConfigured, match="not an integer"):
        env_int("TALLY_TEST_N", 0)


def test_a_bad_database_url_is_refused():
    result = manage("check", DATABASE_URL="not a url")
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr


@pytest.mark.django_db
def test_postgresql_connections_have_room_for_distinct_counts_and_no_jit():
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL settings")
    with connection.cursor() as cursor:
        cursor.execute("SHOW work_mem")
        (work_mem,) = cursor.fetchone()
        cursor.execute("SHOW jit")
        (jit,) = cursor.fetchone()
    assert (work_mem, jit) == ("64MB", "off")


def test_every_answer_carries_a_content_security_policy_without_inline_scripts(client):
    policy = client.get("/login/")["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["default-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "'unsafe-inline'" not in directives["style-src"]


def test_our_templates_have_no_inline_script():
    """Every <script> of ours loads a file (the policy would refuse inline code), and no element
    has an on...= handler attribute."""
    offenders = []
    for template in (ROOT / "templates").rglob("*.html"):
        text = template.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            if "src=" not in tag:
                offenders.append(f"{template.name}: {tag}")
        offenders += [f"{template.name}: {m}" for m in re.findall(r"<[^>]*\son[a-z]+=", text)]
    assert offenders == []


def test_production_cookies_are_secure_http_only_and_same_site():
    names = [f"{kind}_COOKIE_{flag}" for kind in ("SESSION", "CSRF") for flag in ("SECURE", "HTTPONLY", "SAMESITE")]
    code = "from django.conf import settings; import json; print(json.dumps([getattr(settings, n) for n in %r]))"
    result = manage("shell", "-c", code % names, **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert dict(zip(names, json.loads(result.stdout.strip().splitlines()[-1]), strict=True)) == {
        "SESSION_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "CSRF_COOKIE_SECURE": True,
        "CSRF_COOKIE_HTTPONLY": True,
        "CSRF_COOKIE_SAMESITE": "Lax",
    }


def test_the_run_wide_secret_watch_sees_a_key_in_a_log_line(secret_watch):
    watch = secret_watch
    seen = len(watch.leaks)
    logging.getLogger("tally.test").warning("presented tly_0123456789ab_%s", "s3cr3tS3cr3tS3cr3t")
    logging.getLogger("tally.test").warning("presented key tly_0123456789ab (prefix only)")
    assert len(watch.leaks) == seen + 1
    del watch.leaks[seen:]  # planted here: not a leak of the run
