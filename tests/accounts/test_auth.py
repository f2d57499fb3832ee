"""Signing in with an email and a password, and signing out."""

from datetime import timedelta

import pytest
import time_machine
from axes.models import AccessAttempt
from django.contrib.auth import get_user
from django.test import Client

from accounts.models import User
from tests.conftest import PASSWORD, make_user

pytestmark = pytest.mark.django_db


def sign_in(client, email, password=PASSWORD, **extra):
    return client.post("/login/", {"username": email, "password": password, **extra})


def test_the_login_page_asks_for_an_email_and_a_password(client):
    response = client.get("/login/")

    assert response.status_code == 200
    html = response.content.decode()
    assert '<label class="field__label" for="id_username">Email</label>' in html
    assert 'type="email"' in html
    assert '<label class="field__label" for="id_password">Password</label>' in html


def test_it_signs_in_with_email_and_password(client, member):
    response = sign_in(client, "member@acme.test")

    assert response.status_code == 302
    assert response.url == "/"
    assert get_user(client) == member


def test_the_email_is_not_case_sensitive(client, member):
    sign_in(client, "  Member@ACME.test ")

    assert get_user(client) == member


@pytest.mark.parametrize("email, password", [("member@acme.test", "wrong-password"), ("nobody@acme.test", PASSWORD)])
def test_a_bad_email_or_password_gets_one_clear_message(client, member, email, password):
    response = sign_in(client, email, password)

    assert response.status_code == 200
    assert not get_user(client).is_authenticated
    # The same words for both, so the form does not reveal which emails exist.
    assert "That email and password don’t match an account." in response.content.decode()


def test_an_inactive_user_cannot_sign_in(client, org):
    make_user("gone@acme.test", org, is_active=False)

    response = sign_in(client, "gone@acme.test")

    assert not get_user(client).is_authenticated
    assert "don’t match an account" in response.content.decode()


def test_a_user_without_a_usable_password_cannot_sign_in(client, org):
    User.objects.create_user("ingested@acme.test")  # seen in usage data, never invited

    sign_in(client, "ingested@acme.test", "")

    assert not get_user(client).is_authenticated


def test_anonymous_visitors_of_home_are_sent_to_login_with_next(client):
    response = client.get("/")

    assert response.status_code == 302
    assert response.url == "/login/?next=/"


def test_next_is_kept_in_the_form_and_honoured(client, member):
    page = client.get("/login/?next=/admin/")
    assert 'name="next" value="/admin/"' in page.content.decode()

    response = sign_in(client, "member@acme.test", next="/admin/")

    assert response.url == "/admin/"


def test_next_to_another_site_is_ignored(client, member):
    response = sign_in(client, "member@acme.test", next="https://evil.test/steal")

    assert response.url == "/"


def test_a_signed_in_user_opening_login_goes_home(client, member):
    client.force_login(member)

    response = client.get("/login/")

    assert response.status_code == 302
    assert response.url == "/"


def test_signing_out_by_post_signs_out_and_says_so(client, member):
    client.force_login(member)

    response = client.post("/logout/", follow=True)

    assert response.redirect_chain == [("/login/", 302)]
    assert not get_user(client).is_authenticated
    assert "You have been signed out." in response.content.decode()


def test_signing_out_by_get_is_refused(client, member):
    client.force_login(member)

    response = client.get("/logout/")

    assert response.status_code == 405
    assert get_user(client) == member


def test_signing_out_needs_the_csrf_token(member):
    client = Client(enforce_csrf_checks=True)
    client.force_login(member)

    response = client.post("/logout/")

    assert response.status_code == 403
    assert get_user(client) == member


def test_a_user_stored_with_capitals_logs_in_whatever_the_case_typed(client, org):
    user = User(email="Mixed.Case@Acme.test")  # as an older admin form might have saved it
    user.set_password(PASSWORD)
    user.save()
    assert sign_in(client, "mixed.case@acme.test").status_code == 302
    assert get_user(client) == user


# --- sign-in throttling (django-axes) ------------------------------------------------------------


def test_too_many_wrong_passwords_pause_sign_in_for_that_email_and_address(client, member, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert sign_in(client, "member@acme.test", "wrong-password").status_code == 200
    assert sign_in(client, "member@acme.test", "wrong-password").status_code == 429  # the last one allowed

    response = sign_in(client, "member@acme.test")  # the right password, now refused

    assert response.status_code == 429
    assert response["Retry-After"] == str(15 * 60)
    text = response.content.decode()
    assert "Sign-in paused" in text
    assert f"{settings.AXES_FAILURE_LIMIT} wrong passwords in a row" in text
    assert "Try again in 15 minutes" in text
    assert not get_user(client).is_authenticated
    # The same email from another address still signs in: a stranger cannot lock a colleague out.
    other = Client(REMOTE_ADDR="203.0.113.9")
    assert sign_in(other, "member@acme.test").status_code == 302
    assert get_user(other) == member


def test_the_pause_ends_after_the_cool_off(client, member, settings):
    with time_machine.travel("2026-12-07 09:00 +0000", tick=False) as clock:
        for _ in range(settings.AXES_FAILURE_LIMIT):
            sign_in(client, "member@acme.test", "wrong-password")
        assert sign_in(client, "member@acme.test").status_code == 429
        clock.shift(settings.AXES_COOLOFF_TIME + timedelta(seconds=1))
        assert sign_in(client, "member@acme.test").status_code == 302


def test_a_success_resets_the_count(client, member, settings):
    for _ in range(2):
        for _ in range(settings.AXES_FAILURE_LIMIT - 1):
            sign_in(client, "member@acme.test", "wrong-password")
        assert sign_in(client, "member@acme.test").status_code == 302
        client.post("/logout/")


def test_the_admin_login_is_throttled_too_and_no_password_is_kept(client, admin, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/admin/login/", {"username": "admin@acme.test", "password": "hunter2-guess"})
    response = client.post("/admin/login/", {"username": "admin@acme.test", "password": PASSWORD})
    assert response.status_code == 429
    attempt = AccessAttempt.objects.get(username="admin@acme.test")
    assert attempt.failures_since_start >= settings.AXES_FAILURE_LIMIT
    assert "hunter2-guess" not in attempt.post_data and PASSWORD not in attempt.post_data
