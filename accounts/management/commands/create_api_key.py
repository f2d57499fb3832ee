from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.management.arguments import CREATE_ORG_FIRST, add_org_argument, org_by_slug
from accounts.management.commands.create_org import validation_message
from accounts.models import ApiKeyScope, Membership
from accounts.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key and print its secret, once, alone on the last line."

    def add_arguments(self, parser):
        add_org_argument(parser)
        parser.add_argument("name", help="what the key is for, e.g. 'CI'")
        parser.add_argument(
            "--scope",
            action="append",
            dest="scopes",
            choices=ApiKeyScope.values,
            help="ingest and/or read (repeatable; default ingest)",
        )
        parser.add_argument(
            "--user",
            help="email of the member who owns the key; a read key reads with their visibility",
        )

    def handle(self, *args, org, name, scopes, user, **options):
        org_row = org_by_slug(org, hint=CREATE_ORG_FIRST)
        owner = None
        if user:
            membership = (
                Membership.objects.filter(org=org_row, user__email__iexact=user.strip()).select_related("user").first()
            )
            if membership is None:
                raise CommandError(
                    f"{user!r} is not a member of {org_row.slug}; add them with `manage.py create_user`."
                )
            owner = membership.user
        try:
            key, secret = api_key_create(
                org=org_row, name=name, scopes=set(scopes or [ApiKeyScope.INGEST]), owner=owner
            )
        except ValidationError as exc:
            raise CommandError(f"Key not created: {validation_message(exc)}") from None
        reads_as = f", reads as {owner.email}" if owner else ""
        self.stdout.write(
            self.style.SUCCESS(
                f"Created API key {key.name!r} for {org_row.slug} (scopes: {', '.join(key.scopes)}{reads_as})."
            )
        )
        self.stdout.write("This is the only time the key is shown; store it now:")
        self.stdout.write(secret)
