"""The one access gate: who is asking, and what they may see.

Every view, API endpoint and websocket consumer turns its caller into a
`Scope` here, then hands the scope to the metering selectors, which are the
only code that filters usage by it (`metering.selectors.visible` turns a scope
into the rows of metering's tables).

- admin (or a Django superuser): the whole org
- manager: usage of the teams they belong to, and their own
- member: only their own usage
- anyone else: 404, so an org's existence does not leak
"""

from dataclasses import dataclass

from django.db.models import Q
from django.http import Http404

from accounts.models import ApiKey, Membership, Organization, Role, User


@dataclass(frozen=True)
class Scope:
    org: Organization
    role: str
    user_id: int | None = None
    team_ids: frozenset[int] = frozenset()
    # A superuser with no membership in the org, administering it all the same.
    via_superuser: bool = False

    @property
    def sees_whole_org(self) -> bool:
        return self.role == Role.ADMIN

    def allows(self, *, user_id: int | None, team_id: int | None) -> bool:
        """Whether a row of this org attributed to (user, team) is visible: metering's `visible`, in Python,
        for rows that never touch the database (Live Mode's announcements)."""
        if self.role == Role.ADMIN:
            return True
        if user_id is not None and user_id == self.user_id:
            return True
        return self.role == Role.MANAGER and team_id in self.team_ids

    def q(self, *, teams: str) -> Q:
        """The rows of a table with org and user_id that this scope may see, `teams` naming the
        lookup that matches a row to the manager's teams (`team_id__in` on a usage-shaped table)."""
        q = Q(org=self.org)
        if self.role == Role.ADMIN:
            return q
        own = Q(user_id=self.user_id)
        if self.role == Role.MANAGER:
            return q & (own | Q(**{teams: self.team_ids}))
        return q & own

    def users_q(self) -> Q:
        """The org's memberships this scope may see (for people lists and filters)."""
        return self.q(teams="teams__in")


def scope_for_membership(membership: Membership) -> Scope:
    return Scope(
        org=membership.org,
        role=membership.role,
        user_id=membership.user_id,
        team_ids=frozenset(membership.teams.values_list("id", flat=True)),
    )


def scope_for_user(user: User, org: Organization) -> Scope:
    """The scope of `user` in `org`; Http404 when they have none there."""
    if not user.is_authenticated or not user.is_active:
        raise Http404("No such organization")
    membership = Membership.objects.filter(user=user, org=org).select_related("org").first()
    if membership is not None:
        return scope_for_membership(membership)
    if user.is_superuser:
        return Scope(org=org, role=Role.ADMIN, user_id=user.pk, via_superuser=True)
    raise Http404("No such organization")


def scope_for_request(request, org_slug: str) -> Scope:
    """The scope of the logged-in user of `request` in the org named by `org_slug`."""
    org = Organization.objects.filter(slug=org_slug).first()
    if org is None:
        raise Http404("No such organization")
    return scope_for_user(request.user, org)


def scope_for_websocket(ws_scope: dict, org_slug: str) -> Scope:
    """The scope of a websocket's user (channels' AuthMiddlewareStack puts them in its scope)."""
    org = Organization.objects.filter(slug=org_slug).first()
    if org is None:
        raise Http404("No such organization")
    return scope_for_user(ws_scope["user"], org)


def scope_for_api_key(api_key: ApiKey) -> Scope:
    """A read key bound to a user reads as that user; an unbound key reads the whole org."""
    if not api_key.is_active:
        raise Http404("No such organization")
    if api_key.owner_id is None:
        return Scope(org=api_key.org, role=Role.ADMIN)
    return scope_for_user(api_key.owner, api_key.org)


def scopes_for_user(user: User) -> list[Scope]:
    """The user's scope in every org they can open: their memberships by org name, then (for a
    superuser) every other org, as admin. Three queries however many orgs."""
    memberships = Membership.objects.filter(user=user).select_related("org").prefetch_related("teams")
    scopes = [
        Scope(org=m.org, role=m.role, user_id=user.pk, team_ids=frozenset(t.pk for t in m.teams.all()))
        for m in memberships.order_by("org__name")
    ]
    if user.is_superuser:
        others = Organization.objects.exclude(memberships__user=user).order_by("name")
        scopes += [Scope(org=org, role=Role.ADMIN, user_id=user.pk, via_superuser=True) for org in others]
    return scopes


def default_org_for(user: User) -> Organization | None:
    """The org a user lands on at `/`: their first membership, by org name."""
    membership = Membership.objects.filter(user=user).select_related("org").order_by("org__name").first()
    if membership is not None:
        return membership.org
    if user.is_superuser:
        return Organization.objects.order_by("name").first()
    return None
