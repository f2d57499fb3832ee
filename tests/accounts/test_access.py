"""The scope gate: every role sees exactly what it may, outsiders see nothing."""

from datetime import datetime, timezone
from itertools import count

import pytest
from django.contrib.auth.models import AnonymousUser
from django.http import Http404
from django.test import RequestFactory
from django.utils import timezone as djtz

from accounts.access import scope_for_api_key, scope_for_request, scope_for_user
from accounts.models import ApiKey, Membership, Role
from metering.models import LLMModel, UsageRecord
from metering.selectors import visible as visible_q
from tests.conftest import make_user

_ids = count()


def record(user, team=None):
    """One usage record of `user` in the fixture org, attributed to `team` as at request time."""
    membership = user.memberships.get()
    return UsageRecord.objects.create(
        org=membership.org,
        user=user,
        team=team,
        request_id=f"r-{next(_ids)}",
        timestamp=datetime(2026, 11, 20, tzinfo=timezone.utc),
        model=LLMModel.objects.get_or_create(name="gpt-5")[0],
    )


@pytest.fixture
def records(admin, manager, member, web_member, platform_team, web_team):
    return {
        "admin": record(admin),
        "manager": record(manager, platform_team),
        "member": record(member, platform_team),
        "web": record(web_member, web_team),
        # The member's request made while they were still in Web: history keeps its team.
        "member_in_web": record(member, web_team),
    }


def visible(scope):
    return set(UsageRecord.objects.filter(visible_q(scope)).values_list("request_id", flat=True))


def names(records, *keys):
    return {records[k].request_id for k in keys}


def test_an_admin_sees_the_whole_org(org, admin, records):
    scope = scope_for_user(admin, org)
    assert scope.sees_whole_org
    assert visible(scope) == names(records, *records)


def test_a_manager_sees_their_teams_and_themselves(org, manager, platform_team, records):
    scope = scope_for_user(manager, org)
    assert (scope.role, scope.team_ids) == (Role.MANAGER, {platform_team.pk})
    assert visible(scope) == names(records, "manager", "member")


def test_a_member_sees_only_their_own_usage_whatever_its_team(org, member, records):
    scope = scope_for_user(member, org)
    assert scope.role == Role.MEMBER
    assert visible(scope) == names(records, "member", "member_in_web")


def test_a_manager_sees_the_members_of_their_teams_only(org, manager, member, web_member):
    scope = scope_for_user(manager, org)
    seen = set(Membership.objects.filter(scope.users_q()).values_list("user__email", flat=True).distinct())
    assert seen == {manager.email, member.email}


def test_an_outsider_gets_404_not_an_empty_org(org, outsider, records):
    with pytest.raises(Http404):
        scope_for_user(outsider, org)


def test_anonymous_and_deactivated_users_get_404(org, member):
    with pytest.raises(Http404):
        scope_for_user(AnonymousUser(), org)
    member.is_active = False
    member.save()
    with pytest.raises(Http404):
        scope_for_user(member, org)


def test_a_user_in_two_orgs_has_the_role_of_each(org, other_org, manager, records):
    Membership.objects.create(user=manager, org=other_org, role=Role.ADMIN)
    assert scope_for_user(manager, org).role == Role.MANAGER
    elsewhere = scope_for_user(manager, other_org)
    assert elsewhere.role == Role.ADMIN
    # Being admin elsewhere widens nothing here, and vice versa.
    assert visible(elsewhere) == set()
    assert visible(scope_for_user(manager, org)) == names(records, "manager", "member")


def test_a_superuser_without_membership_administers_any_org(org, superuser, records):
    assert visible(scope_for_user(superuser, org)) == names(records, *records)


def test_a_request_for_an_unknown_org_slug_is_404(org, admin):
    request = RequestFactory().get("/")
    request.user = admin
    assert scope_for_request(request, "acme").org == org
    with pytest.raises(Http404):
        scope_for_request(request, "no-such-org")


def api_key(org, owner=None, revoked=False):
    key = ApiKey(org=org, name="reader", owner=owner, scope_read=True, revoked_at=djtz.now() if revoked else None)
    key.set_new_secret()
    key.save()
    return key


def test_an_unbound_read_key_reads_the_whole_org(org, records):
    assert visible(scope_for_api_key(api_key(org))) == names(records, *records)


def test_a_read_key_bound_to_a_user_reads_with_their_visibility(org, member, manager, records):
    assert visible(scope_for_api_key(api_key(org, owner=member))) == names(records, "member", "member_in_web")
    assert visible(scope_for_api_key(api_key(org, owner=manager))) == names(records, "manager", "member")


def test_a_revoked_key_or_one_bound_to_an_outsider_reads_nothing(org, outsider, records):
    with pytest.raises(Http404):
        scope_for_api_key(api_key(org, revoked=True))
    with pytest.raises(Http404):
        scope_for_api_key(api_key(org, owner=outsider))


def test_a_new_user_of_the_org_sees_nothing_until_given_a_role_with_data(org, records):
    newcomer = make_user("new@acme.test", org, Role.MEMBER)
    assert visible(scope_for_user(newcomer, org)) == set()
