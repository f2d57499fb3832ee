"""Writes and workflows of accounts: API keys."""

from datetime import timedelta

from django.utils import timezone

from accounts.models import ApiKey, Organization, User

# last_used_at is for humans ("is this key still used?"); refreshing it at most
# once a minute saves a write on every request of a busy key.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def api_key_create(
    *, org: Organization, name: str, scopes: set[str], owner: User | None = None, created_by: User | None = None,
    default_team=None, default_project=None,
) -> tuple[ApiKey, str]:
    """A new key and its full secret, which is shown once and never stored."""
    key = ApiKey(
        org=org, name=name, owner=owner, created_by=created_by, default_team=default_team,
        default_project=default_project, scope_ingest="ingest" in scopes, scope_read="read" in scopes,
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
