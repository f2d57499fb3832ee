"""Which org a management command works on."""

from django.core.management.base import CommandError

from accounts.models import Organization


def command_org(slug: str | None, *, default: str | None = None) -> Organization:
    """The org named by --org; without one, the `default` org if it exists, else the only org."""
    if slug:
        org = Organization.objects.filter(slug=slug).first()
        if org is None:
            raise CommandError(f"No org with slug {slug!r}.")
        return org
    org = Organization.objects.filter(slug=default).first() if default else None
    if org is not None:
        return org
    orgs = list(Organization.objects.order_by("slug")[:2])
    if len(orgs) == 1:
        return orgs[0]
    if not orgs:
        raise CommandError("There is no org yet; create one with `manage.py create_org`.")
    raise CommandError("There is more than one org: name one with --org SLUG.")
