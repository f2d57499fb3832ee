from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.management.arguments import CREATE_ORG_FIRST, add_org_argument, org_by_slug
from accounts.management.commands.create_org import validation_message
from accounts.models import Role
from accounts.services import user_create_or_update


class Command(BaseCommand):
    help = (
        "Add a person to an org with a role and teams, or update them (idempotent). "
        "Without --password a new user cannot log in."
    )

    def add_arguments(self, parser):
        add_org_argument(parser)
        parser.add_argument("email")
        parser.add_argument("--role", required=True, choices=Role.values)
        parser.add_argument(
            "--team",
            action="append",
            default=[],
            dest="teams",
            help="a team to put them in (repeatable; created if missing). Their teams become exactly these.",
        )
        parser.add_argument("--password", help="set their password (otherwise left as it is)")

    def handle(self, *args, org, email, role, teams, password, **options):
        org_row = org_by_slug(org, hint=CREATE_ORG_FIRST)
        try:
            membership, created = user_create_or_update(
                org=org_row,
                email=email,
                role=role,
                teams=teams,
                password=password,
            )
        except ValidationError as exc:
            raise CommandError(f"User not saved: {validation_message(exc)}") from None
        user = membership.user
        team_names = ", ".join(sorted(t.name for t in membership.teams.all())) or "no team"
        verb = "Created" if created else "Updated"
        self.stdout.write(
            self.style.SUCCESS(f"{verb} {user.email}: {membership.role} of {org_row.slug} ({team_names}).")
        )
        if not user.has_usable_password():
            self.stdout.write("They have no password and cannot log in until one is set (--password).")
