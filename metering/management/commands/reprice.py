from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from accounts.management.arguments import add_org_argument, iso_date, org_by_slug
from metering.management.commands.import_usage import StreamForTqdm
from metering.pricing import records_reprice
from metering.rollups import rollups_rebuild_days


class Command(BaseCommand):
    help = (
        "Re-price an org's usage records of a period at the prices in force at each record's time, "
        "and mark their days for re-rollup. Costs sent by clients are never changed."
    )

    def add_arguments(self, parser):
        add_org_argument(parser)
        parser.add_argument(
            "--from", dest="start", required=True, type=iso_date, help="first day, YYYY-MM-DD in the org's time zone"
        )
        parser.add_argument(
            "--to", dest="end", type=iso_date, help="last day, inclusive, in the org's time zone (default today)"
        )

    def handle(self, *args, org, start, end, verbosity, **options):
        org_row = org_by_slug(org)
        end = end or timezone.now().astimezone(org_row.tzinfo).date()
        if end < start:
            raise CommandError(f"--to {end} is before --from {start}.")
        with tqdm(
            unit=" records", desc="reprice", file=StreamForTqdm(self.stderr), disable=verbosity == 0, leave=False
        ) as bar:
            result = records_reprice(org=org_row, start=start, end=end, progress=bar)
        # Rebuild the touched days now, so every page agrees with the new costs at once.
        rebuilt = rollups_rebuild_days(org=org_row, days=result.days)
        period = f"{org_row.slug} from {start} to {end} ({org_row.timezone})"
        self.stdout.write(
            self.style.SUCCESS(
                f"Re-priced {period}: {result.changed:,} of {result.examined:,} records changed "
                f"(client-sent costs are left alone); rollups of {rebuilt} days rebuilt."
            )
        )
        self.stdout.write(
            f"Total cost of those {result.examined:,} records: {result.cost_before.normalize():f} → "
            f"{result.cost_after.normalize():f}."
        )
