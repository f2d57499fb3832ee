"""The login and home pages in a real browser, against a real daphne.

Every test leaves a full-page screenshot in artifacts/<test name>.png.
"""

import pytest
from playwright.sync_api import expect

from accounts.models import Membership, Role, Team
from tests.browser.conftest import ARTIFACTS
from tests.conftest import PASSWORD, make_user

pytestmark = pytest.mark.browser


def sign_in(page, live_url, email, password=PASSWORD):
    page.goto(f"{live_url}/")  # the login_required redirect brings the form, with ?next=/
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


@pytest.fixture
def busy_org(org, other_org, platform_team, web_team, admin, manager, member, web_member):
    """Acme with four teams and a dozen people; its admin, also Django staff, manages a team at Globex."""
    data = Team.objects.create(org=org, name="Data", colour="#059669")
    research = Team.objects.create(org=org, name="Research", colour="#d97706")
    for i, teams in enumerate([[platform_team], [platform_team, data], [data], [web_team], [research], [data]]):
        make_user(f"dev{i}@acme.test", org, Role.MEMBER, teams)
    make_user("lead@acme.test", org, Role.MANAGER, [web_team, research])
    Membership.objects.get(user=admin, org=org).teams.set([platform_team])
    admin.is_staff = True
    admin.save()
    growth = Team.objects.create(org=other_org, name="Growth", colour="#0891b2")
    Membership.objects.create(user=admin, org=other_org, role=Role.MANAGER).teams.set([growth])
    return org


def test_the_login_page_has_labelled_fields_styles_and_local_htmx(live_url, page):
    page.goto(f"{live_url}/login/")

    expect(page).to_have_title("Sign in · Tally")
    expect(page.get_by_label("Email")).to_be_focused()
    expect(page.get_by_label("Password")).to_have_attribute("type", "password")
    # The stylesheet and htmx both came from our own static files.
    assert page.evaluate("getComputedStyle(document.querySelector('.auth__card')).borderRadius") == "12px"
    assert page.evaluate("typeof window.htmx") == "object"
    assert page.evaluate("document.querySelector('script[src*=htmx]').src").startswith(live_url)


def test_the_login_page_in_dark_mode(live_url, make_page):
    page = make_page(color_scheme="dark")
    page.goto(f"{live_url}/login/")

    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(12, 14, 19)"


@pytest.mark.parametrize("role", ["admin", "manager", "member"])
def test_each_role_signs_in_through_the_form_and_sees_their_role(live_url, page, request, role):
    user = request.getfixturevalue(role)

    sign_in(page, live_url, user.email)

    expect(page).to_have_url(f"{live_url}/")
    card = page.locator("[data-org=acme]")
    expect(card.locator(".org__header [data-role]")).to_have_attribute("data-role", role)
    expect(card.locator(".org__header [data-role]")).to_have_text(role.capitalize())
    expect(page.locator(".topbar")).to_contain_text(user.email)


def test_a_wrong_password_shows_the_error(live_url, page, member):
    sign_in(page, live_url, member.email, "not-the-password")

    expect(page.get_by_role("alert")).to_contain_text("email and password don’t match")
    expect(page.get_by_label("Email")).to_have_value(member.email)
    expect(page.get_by_label("Password")).to_be_focused()
    assert "/login/" in page.url


def test_too_many_wrong_passwords_pause_sign_in_and_say_for_how_long(live_url, page, member):
    for _ in range(5):  # LOGIN_FAILURE_LIMIT's default
        sign_in(page, live_url, member.email, "not-the-password")

    expect(page.get_by_role("heading", name="Sign-in paused")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("5 wrong passwords in a row for this email from your address")
    expect(page.get_by_role("alert")).to_contain_text("Try again in 15 minutes")
    page.screenshot(path=ARTIFACTS / "sign-in-paused.png")
    page.get_by_role("link", name="Back to sign in").click()
    expect(page.get_by_label("Email")).to_be_visible()


def test_the_home_page_lists_each_org_with_role_and_teams(live_url, page, busy_org, admin):
    sign_in(page, live_url, admin.email)

    acme, globex = page.locator("[data-org=acme]"), page.locator("[data-org=globex]")
    expect(acme.locator(".org__header [data-role]")).to_have_text("Admin")
    expect(globex.locator(".org__header [data-role]")).to_have_text("Manager")
    expect(acme.locator("[data-row=Data] [data-value]")).to_have_attribute("data-value", "3")
    expect(globex.locator("[data-team=Growth]").first).to_be_visible()
    expect(page.get_by_role("link", name="Admin").first).to_have_attribute("href", "/admin/")


def test_the_home_page_in_dark_mode(live_url, make_page, busy_org, admin):
    page = make_page(color_scheme="dark")
    sign_in(page, live_url, admin.email)

    expect(page.locator("[data-org=acme]")).to_be_visible()
    assert page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")


def test_the_home_page_fits_a_700px_window(live_url, make_page, busy_org, manager):
    page = make_page(width=700, height=900)
    sign_in(page, live_url, manager.email)

    expect(page.locator("[data-org=acme]")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_someone_in_no_org_sees_the_empty_state(live_url, page, db):
    loner = make_user("loner@nowhere.test", name="Lou Loner")

    sign_in(page, live_url, loner.email)

    expect(page.locator("[data-testid=no-org]")).to_contain_text("ask an admin", ignore_case=True)


def test_signing_out_returns_to_the_login_page(live_url, page, member):
    sign_in(page, live_url, member.email)

    page.get_by_role("button", name="Sign out").click()

    expect(page).to_have_url(f"{live_url}/login/")
    expect(page.get_by_role("status")).to_contain_text("You have been signed out.")
    # The session is really gone (asked with the page's cookies, without leaving the page).
    home = page.request.get(f"{live_url}/", max_redirects=0)
    assert home.status == 302
    assert home.headers["location"] == "/login/?next=/"
