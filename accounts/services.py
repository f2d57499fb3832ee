"""Writes and workflows of accounts: orgs, people and API keys."""

from collections.abc import Sequence
from datetime import timedelta

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiKey, Membership, Organization, Role, Team, User

# last_used_at is for humans ("is this key still used?"); refreshing it at most
# once a minute saves a write on every request of a busy key.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def api_key_create(
    *,
    org: Organization,
    name: str,
    scopes: set[str],
    owner: User | None = None,
    created_by: User | None = None,
    default_team=None,
    default_project=None,
) -> tuple[ApiKey, str]:
    """A new key and its full secret, which is shown once and never stored."""
    key = ApiKey(
        org=org,
        name=name,
        owner=owner,
        created_by=created_by,
        default_team=default_team,
        default_project=default_project,
        scope_ingest="ingest" in scopes,
        scope_read="read" in scopes,
    )
    full_key = key.set_new_secret()
    key.full_clean(exclude=["prefix", "secret_hash"])
    key.save()
    return key, full_key


def api_key_authenticate(*, presented: str) -> ApiKey | None:
    """The active key matching a presented `tly_<prefix>_<secret>`, or None."""
    parts = ApiKey.split(presented.strip())
    if parts is None:
        return None
    prefix, secret = parts
    key = ApiKey.objects.active().select_related("org", "owner").filter(prefix=prefix).first()
    if key is None or not key.check_secret(secret):
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


def org_create_or_update(
    *, slug: str, name: str, timezone: str, currency: str | None = None
) -> tuple[Organization, list[str]]:
    """The org with this slug, created or brought up to date; and what changed ("created" when new).

    Raises ValidationError (naming the bad value) and stores nothing when a field is invalid.
    """
    org = Organization.objects.filter(slug=slug).first()
    wanted = {"name": name, "timezone": timezone, **({"currency": currency} if currency is not None else {})}
    if org is None:
        org = Organization(slug=slug, **wanted)
        org.full_clean()
        org.save()
        return org, ["created"]
    changed = [field for field, value in wanted.items() if getattr(org, field) != value]
    for field in changed:
        setattr(org, field, wanted[field])
    if changed:
        org.full_clean()
        org.save(update_fields=changed)
    return org, changed


def user_create_or_update(
    *,
    org: Organization,
    email: str,
    role: str,
    teams: Sequence[str] = (),
    password: str | None = None,
) -> tuple[Membership, bool]:
    """Make `email` a member of `org` with exactly this role and these teams; (membership, user was created).

    Teams named are created if missing. The password is set only when given (and must
    pass the password validators), so a new user without one cannot log in. An admin gets `is_staff` so they can open the
    Django admin, which shows them only the orgs they are an admin of; a later
    demotion leaves `is_staff` alone, as it then opens nothing (they may be an
    admin elsewhere).
    """
    email = email.strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError(f"{email!r} is not a valid email address.") from None
    if role not in Role.values:
        raise ValidationError(f"{role!r} is not a role; use one of {', '.join(Role.values)}.")
    if password is not None:
        password_validation.validate_password(password, User(email=email))
    with transaction.atomic():
        user = User.objects.filter(email__iexact=email).first()
        user_created = user is None
        if user_created:
            user = User.objects.create_user(email, password, is_staff=role == Role.ADMIN)
        else:
            fields = []
            if password is not None:
                user.set_password(password)
                fields.append("password")
            if role == Role.ADMIN and not user.is_staff:
                user.is_staff = True
                fields.append("is_staff")
            if fields:
                user.save(update_fields=fields)
        membership, _ = Membership.objects.update_or_create(user=user, org=org, defaults={"role": role})
        team_rows = []
        for team_name in dict.fromkeys(t.strip() for t in teams):
            team = Team.objects.filter(org=org, name=team_name).first()
            if team is None:
                team = Team(org=org, name=team_name)
                team.full_clean()
                team.save()
            team_rows.append(team)
        membership.teams.set(team_rows)
    return membership, user_created


def user_set_live_mode(*, user: User, on: bool) -> None:
    """Remember whether `user` wants Live Mode on when they open the Usage or Overview page."""
    if user.live_mode != on:
        user.live_mode = on
        user.save(update_fields=["live_mode"])
