from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accounts.management.arguments import add_org_argument, iso_date_type, org_by_slug
from accounts.models import Organization
from metering.rollups import days_with_data, rollups_rebuild

# A CommandError, not argparse's usage error, as this command has always answered.
iso_date = iso_date_type(example="2026-11-20", error=CommandError)


class Command(BaseCommand):
    help = "Rebuild the daily rollups of one org (or all) from the raw records, day by day."

    def add_arguments(self, parser):
        add_org_argument(parser, nargs="?", help="org slug (default: every org)")
        parser.add_argument("--from", dest="first", type=iso_date, help="first day (org-local), YYYY-MM-DD")
        parser.add_argument("--to", dest="last", type=iso_date, help="last day (org-local), default today")

    def handle(self, *args, org, first, last, **options):
        orgs = [org_by_slug(org)] if org else list(Organization.objects.all())
        if first and last and first > last:
            raise CommandError("--from must not be after --to.")
        total = sum(len(days_with_data(o, first, last)) for o in orgs)
        with tqdm(total=total, unit="day", desc="rebuild_rollups", disable=options["verbosity"] == 0) as bar:
            done = rollups_rebuild(orgs=orgs, first=first, last=last, progress=bar.update)
        self.stdout.write(self.style.SUCCESS(f"Rebuilt {done} org-days of rollups."))
