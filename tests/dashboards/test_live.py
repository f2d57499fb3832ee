"""Live Mode on the pages: the toggle and its hooks, the remembered choice, the feed's first rows
(only what the viewer may see), and the toggle's POST (login, CSRF, org, redirect)."""

import re

import pytest
from django.test import Client

from metering.models import UsageRecord
from tests.conftest import logged_in
from tests.dashboards.data import WEEK, htmx_to
from tests.dashboards.data import frozen as frozen
from tests.dashboards.data import week as week

pytestmark = pytest.mark.usefixtures("week")

PAGES = ("/acme/usage/", "/acme/overview/")
TOGGLE = "/acme/live/"


def html(user, url: str, query: str = WEEK, **headers) -> str:
    response = logged_in(user).get(f"{url}?{query}", **headers)
    assert response.status_code == 200
    return response.content.decode()


def root_attr(page: str, name: str) -> str:
    match = re.search(rf'id="dashboard"[^>]*\s{name}="([^"]*)"', page)
    assert match, f"no {name} on the page root"
    return match.group(1)


def feed_ids(page: str) -> list[str]:
    return re.findall(r'<tr data-request-id="([^"]+)"', page)


@pytest.mark.parametrize("url", PAGES)
def test_the_toggle_is_on_the_page_and_off_by_default(admin, url):
    page = html(admin, url)

    assert "data-live-toggle" in page
    assert 'aria-pressed="false"' in page
    assert root_attr(page, "data-live-state") == "off"
    assert re.search(r"<section[^>]*data-live-feed hidden", page)


@pytest.mark.parametrize("url", PAGES)
def test_live_1_turns_it_on_for_that_view_with_the_views_filters(admin, url):
    page = html(admin, url, f"{WEEK}&team=Platform&live=1&page=2")

    assert root_attr(page, "data-live-state") == "connecting"
    assert root_attr(page, "data-live-socket") == "/ws/acme/live/?range=7d&amp;team=Platform"
    assert not re.search(r"<section[^>]*data-live-feed hidden", page)


def test_the_remembered_choice_turns_it_on_and_live_0_overrides_it(admin):
    admin.live_mode = True
    admin.save()

    assert root_attr(html(admin, PAGES[0]), "data-live-state") == "connecting"
    assert root_attr(html(admin, PAGES[0], f"{WEEK}&live=0"), "data-live-state") == "off"


@pytest.mark.parametrize("who", ["admin", "manager", "member"])
def test_the_feed_starts_with_the_newest_requests_the_viewer_may_see(request, who):
    user = request.getfixturevalue(who)
    visible = {
        "admin": UsageRecord.objects.all(),
        "manager": UsageRecord.objects.filter(team__name="Platform") | UsageRecord.objects.filter(user=user),
        "member": UsageRecord.objects.filter(user=user),
    }[who]
    newest = list(visible.order_by("-timestamp", "-id").values_list("request_id", flat=True)[:20])

    assert feed_ids(html(user, PAGES[0], f"{WEEK}&live=1")) == newest


def test_the_feed_follows_the_filters(admin):
    page = html(admin, PAGES[0], f"{WEEK}&live=1&team=Web")

    assert sorted(feed_ids(page)) == sorted(
        UsageRecord.objects.filter(team__name="Web").values_list("request_id", flat=True)
    )


def test_partials_carry_no_feed_and_no_toggle(admin):
    page = html(admin, PAGES[0], f"{WEEK}&live=1", **htmx_to("usage-kpis"))

    assert "data-live-feed" not in page
    assert "data-live-toggle" not in page


def test_toggling_remembers_the_choice_and_returns_to_the_page_without_the_url_switch(admin):
    client = logged_in(admin)

    response = client.post(TOGGLE, {"live": "1", "next": f"/acme/usage/?{WEEK}&live=0&by=team"})
    admin.refresh_from_db()

    assert admin.live_mode is True
    assert response.status_code == 302
    assert response.url == f"/acme/usage/?{WEEK}&by=team"
    client.post(TOGGLE, {"live": "0"})
    admin.refresh_from_db()
    assert admin.live_mode is False


def test_an_htmx_toggle_gets_no_content(member):
    response = logged_in(member).post(TOGGLE, {"live": "1"}, HTTP_HX_REQUEST="true")

    assert response.status_code == 204
    member.refresh_from_db()
    assert member.live_mode is True


def test_the_toggle_never_redirects_off_site(member):
    response = logged_in(member).post(TOGGLE, {"live": "1", "next": "https://evil.example/acme/usage/"})

    assert response.url == "/acme/usage/"


def test_the_toggle_needs_a_csrf_token(member):
    client = Client(enforce_csrf_checks=True)
    client.force_login(member)

    assert client.post(TOGGLE, {"live": "1"}).status_code == 403
    member.refresh_from_db()
    assert member.live_mode is False


def test_the_toggle_needs_a_login_a_post_and_the_org(client, member, outsider):
    assert client.post(TOGGLE, {"live": "1"}).url == f"/login/?next={TOGGLE}"
    assert logged_in(member).get(TOGGLE).status_code == 405
    assert logged_in(outsider).post(TOGGLE, {"live": "1"}).status_code == 404
    outsider.refresh_from_db()
    assert outsider.live_mode is False
