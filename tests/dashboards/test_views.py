"""The home page: who you are, where you belong, and what you may see there."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Membership, Organization, Role, Team, User
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def home(client, user):
    client.force_login(user)
    response = client.get("/")
    assert response.status_code == 200
    return response


def org_card(response, slug):
    """The HTML of one org's card on the home page."""
    html = response.content.decode()
    start = html.index(f'data-org="{slug}"')
    return html[start : html.index("</section>", start)]


def test_it_requires_a_login(client):
    assert client.get("/").url == "/login/?next=/"


def test_it_refuses_post(client, member):
    client.force_login(member)

    assert client.post("/").status_code == 405


@pytest.mark.parametrize("role", ["admin", "manager", "member"])
def test_it_shows_the_org_and_the_role(client, request, role):
    user = request.getfixturevalue(role)

    response = home(client, user)

    card = org_card(response, "acme")
    assert "Acme" in card
    assert "Europe/Berlin" in card
    assert "USD" in card
    assert f'data-role="{role}"' in card
    assert user.email in response.content.decode()


@pytest.mark.parametrize("role", ["manager", "member"])
def test_it_shows_the_users_teams_in_their_colours(client, request, role, web_team):
    user = request.getfixturevalue(role)

    card = org_card(home(client, user), "acme")

    assert 'style="--team-colour: #2563eb" data-team="Platform"' in card
    assert 'data-team="Web"' not in card


def test_an_admin_sees_every_team_with_its_member_count(client, admin, manager, member, web_member):
    card = org_card(home(client, admin), "acme")

    assert 'data-row="Platform"' in card
    assert 'data-row="Web"' in card
    assert 'data-value="2">2 members' in card  # Platform: the manager and the member
    assert 'data-value="1">1 member<' in card  # Web
    assert "People" in card


def test_a_manager_sees_the_member_counts_of_their_own_teams_only(client, manager, member, web_member):
    card = org_card(home(client, manager), "acme")

    assert 'data-row="Platform"' in card
    assert 'data-row="Web"' not in card
    assert "People" not in card


def test_a_member_sees_no_team_sizes(client, member, web_member):
    card = org_card(home(client, member), "acme")

    assert "data-row=" not in card
    assert "data-value=" not in card


def test_a_user_in_two_orgs_sees_each_with_its_own_role(client, manager, other_org):
    growth = Team.objects.create(org=other_org, name="Growth", colour="#0891b2")
    Membership.objects.create(user=manager, org=other_org, role=Role.ADMIN).teams.set([growth])

    response = home(client, manager)

    acme, globex = org_card(response, "acme"), org_card(response, "globex")
    assert 'data-role="manager"' in acme and 'data-team="Platform"' in acme
    assert 'data-role="admin"' in globex and 'data-team="Growth"' in globex
    assert "Growth" not in acme
    assert "2 organizations" in response.content.decode()


def test_it_does_not_show_orgs_the_user_is_not_in(client, member, outsider):
    html = home(client, member).content.decode()

    assert "Globex" not in html
    assert "globex" not in html


def test_the_admin_link_is_only_for_staff(client, admin, member):
    assert 'href="/admin/"' not in home(client, admin).content.decode()  # an org admin is not Django staff

    member.is_staff = True
    member.save()
    html = home(client, member).content.decode()

    assert 'href="/admin/"' in html
    assert 'data-testid="admin-link"' in html


def test_someone_in_no_org_is_told_to_ask_an_admin(client, db):
    loner = make_user("loner@nowhere.test")

    html = home(client, loner).content.decode()

    assert 'data-testid="no-org"' in html
    assert "Ask an admin of your organization to add you" in html
    assert "data-org=" not in html


def test_a_superuser_on_a_fresh_install_is_sent_to_the_admin(client, superuser):
    html = home(client, superuser).content.decode()

    assert "No organizations yet" in html
    assert "Ask an admin" not in html
    assert 'href="/admin/"' in html


def test_a_superuser_without_membership_sees_every_org_as_admin(client, superuser, org, other_org):
    response = home(client, superuser)

    for slug in ("acme", "globex"):
        card = org_card(response, slug)
        assert 'data-role="admin"' in card
        assert "as superuser" in card
    assert 'href="/admin/"' in response.content.decode()


def test_a_superuser_with_a_membership_keeps_that_role_there(client, superuser, org, other_org):
    Membership.objects.create(user=superuser, org=other_org, role=Role.MEMBER)

    response = home(client, superuser)

    assert 'data-role="member"' in org_card(response, "globex")
    assert "as superuser" not in org_card(response, "globex")
    assert 'data-role="admin"' in org_card(response, "acme")
    # The first card is the org `/` will open: the membership, not an org it reaches as superuser.
    html = response.content.decode()
    assert html.index('data-org="globex"') < html.index('data-org="acme"')


def test_the_top_bar_shows_the_default_org_and_role(client, manager):
    html = home(client, manager).content.decode()

    topbar = html[html.index('<header class="topbar">') : html.index("</header>")]
    assert "Acme" in topbar
    assert "Manager" in topbar
    assert "manager@acme.test" in topbar


def test_the_layout_has_csrf_for_htmx_local_htmx_and_a_post_logout(client, member):
    html = home(client, member).content.decode()

    assert """hx-headers='{"X-CSRFToken": \"""" in html
    assert '<script src="/static/django_htmx/htmx-2.min.js" defer></script>' in html
    assert '<form method="post" action="/logout/"' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert '<meta name="viewport"' in html
    assert 'rel="icon"' in html


def count_home_queries(client, user) -> int:
    client.force_login(user)
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/").status_code == 200
    return len(queries)


def test_the_number_of_queries_does_not_grow_with_orgs_and_teams(client, admin, org):
    one_org = count_home_queries(client, admin)

    for i in range(4):
        extra = Organization.objects.create(name=f"Org {i}", slug=f"org-{i}")
        teams = [Team.objects.create(org=extra, name=f"Team {j}") for j in range(3)]
        Membership.objects.create(user=admin, org=extra, role=Role.ADMIN).teams.set(teams)
        for j in range(3):
            # No password: hashing one is the slowest thing a test can do.
            someone = User.objects.create_user(f"u{i}-{j}@example.test")
            Membership.objects.create(user=someone, org=extra).teams.set(teams[: j + 1])
    more = [Team.objects.create(org=org, name=f"Acme {j}") for j in range(5)]
    Membership.objects.get(user=admin, org=org).teams.set(more)

    assert count_home_queries(client, admin) == one_org


def test_the_query_count_is_small_and_fixed(client, superuser, manager, org, other_org, django_assert_max_num_queries):
    Membership.objects.create(user=superuser, org=org, role=Role.MANAGER)
    client.force_login(superuser)

    # session, user, memberships, their teams, other orgs, team sizes, people per org
    with django_assert_max_num_queries(7):
        client.get("/")
