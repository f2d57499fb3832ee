from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.services import org_create_or_update


def validation_message(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items())
    return " ".join(exc.messages)


class Command(BaseCommand):
    help = "Create an organization, or update the name, time zone and currency of an existing one."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="the org's short name in URLs, e.g. acme")
        parser.add_argument("--name", required=True, help="display name, e.g. 'Acme Inc.'")
        parser.add_argument("--timezone", required=True, help="IANA time zone for day boundaries, e.g. Europe/Berlin")
        parser.add_argument("--currency", help="ISO 4217 code shown with costs (default USD for a new org)")

    def handle(self, *args, slug, name, timezone, currency, **options):
        try:
            org, changed = org_create_or_update(slug=slug, name=name, timezone=timezone, currency=currency)
        except ValidationError as exc:
            raise CommandError(f"Org {slug!r} not saved: {validation_message(exc)}") from None
        summary = f"{org.name!r} ({org.slug}, {org.timezone}, {org.currency})"
        if changed == ["created"]:
            self.stdout.write(self.style.SUCCESS(f"Created org {summary}."))
        elif changed:
            self.stdout.write(self.style.SUCCESS(f"Updated org {summary}: changed {', '.join(changed)}."))
        else:
            self.stdout.write(f"Org {summary} already exists as given; nothing changed.")
