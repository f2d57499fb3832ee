"""Reads of the home page: every org the viewer can open, with their teams and, for an admin, its head count."""

from dataclasses import dataclass, field

from django.db.models import Count, Q

from accounts.access import Scope, scopes_for_user
from accounts.models import Membership, Organization, Role, Team, User


@dataclass
class OrgPlace:
    """One org on the home page, as the viewer stands in it."""

    scope: Scope
    own_teams: list[Team] = field(default_factory=list)
    # Teams the viewer may see the people of, each with `member_count`:
    # all of them for an admin, their own for a manager, none for a member.
    visible_teams: list[Team] = field(default_factory=list)
    people_count: int | None = None

    @property
    def org(self) -> Organization:
        return self.scope.org

    @property
    def via_superuser(self) -> bool:
        return self.scope.via_superuser

    @property
    def role_label(self) -> str:
        return Role(self.scope.role).label


def org_places_for(user: User) -> list[OrgPlace]:
    """Every org `user` can open, in the order `access.default_org_for` picks from.

    A fixed number of queries however many orgs and teams: the scopes (access
    gate), then every team the viewer belongs to or may see with its member
    count, then the people of the orgs they administer.
    """
    places = [OrgPlace(scope=scope) for scope in scopes_for_user(user)]
    admin_org_ids = [p.org.pk for p in places if p.scope.role == Role.ADMIN]
    own_team_ids = {team_id for p in places for team_id in p.scope.team_ids}
    teams = Team.objects.filter(Q(org_id__in=admin_org_ids) | Q(pk__in=own_team_ids)).annotate(
        member_count=Count("memberships")
    )
    for team in teams:  # ordered by name
        for place in places:
            if place.org.pk != team.org_id:
                continue
            if team.pk in place.scope.team_ids:
                place.own_teams.append(team)
            if place.scope.role == Role.ADMIN or (place.scope.role == Role.MANAGER and team.pk in place.scope.team_ids):
                place.visible_teams.append(team)
    if admin_org_ids:
        people = dict(
            Membership.objects.filter(org_id__in=admin_org_ids)
            .order_by()
            .values("org_id")
            .annotate(n=Count("id"))
            .values_list("org_id", "n")
        )
        for place in places:
            if place.scope.role == Role.ADMIN:
                place.people_count = people.get(place.org.pk, 0)
    return places
