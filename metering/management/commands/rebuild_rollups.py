from datetime import date

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accounts.models import Organization
from metering.rollups import days_with_data, rollups_rebuild


def iso_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a date like 2026-11-20") from None


class Command(BaseCommand):
    help = "Rebuild the daily rollups of one org (or all) from the raw records, day by day."

    def add_arguments(self, parser):
        parser.add_argument("org", nargs="?", help="org slug (default: every org)")
        parser.add_argument("--from", dest="first", type=iso_date, help="first day (org-local), YYYY-MM-DD")
        parser.add_argument("--to", dest="last", type=iso_date, help="last day (org-local), default today")

    def handle(self, *args, org, first, last, **options):
        orgs = Organization.objects.all()
        if org:
            orgs = orgs.filter(slug=org)
            if not orgs.exists():
                raise CommandError(f"No org with slug {org!r}.")
        if first and last and first > last:
            raise CommandError("--from must not be after --to.")
        orgs = list(orgs)
        total = sum(len(days_with_data(o, first, last)) for o in orgs)
        with tqdm(total=total, unit="day", desc="rebuild_rollups", disable=options["verbosity"] == 0) as bar:
            done = rollups_rebuild(orgs=orgs, first=first, last=last, progress=bar.update)
        self.stdout.write(self.style.SUCCESS(f"Rebuilt {done} org-days of rollups."))
