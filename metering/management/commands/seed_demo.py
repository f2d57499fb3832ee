import sys

from django.core.management.base import BaseCommand, CommandError

from metering.demo import DEMO_SLUG, DemoError, DemoSummary, demo_org_rebuild


class Command(BaseCommand):
    help = (
        "Build the demo org (Demo Robotics: teams, projects, agents and months of usage) and its "
        "logins admin@example.com, manager@example.com and member@example.com. Replaces an existing demo org."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=90, help="days of data, ending today (default 90)")
        parser.add_argument("--users", type=int, default=60, help="people in the org, logins included (default 60)")
        parser.add_argument("--seed", type=int, default=1, help="the same seed on the same day gives the same data")
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="do nothing if the database already has an organisation (what `make run` uses)",
        )

    def handle(self, *args, days, users, seed, if_empty, verbosity, **options):
        if days < 1:
            raise CommandError("--days must be at least 1.")
        if users < 3:
            raise CommandError("--users must be at least 3: the three demo logins.")
        try:
            summary = demo_org_rebuild(
                days=days,
                users=users,
                seed=seed,
                if_empty=if_empty,
                # tqdm draws on the terminal itself: Django's stderr wrapper would break its lines.
                progress=verbosity > 0 and sys.stderr.isatty(),
                say=self.stdout.write if verbosity else lambda line: None,
            )
        except DemoError as exc:
            raise CommandError(str(exc)) from None
        if verbosity:
            self._report(summary)

    def _report(self, summary: DemoSummary) -> None:
        if summary.skipped and summary.org is None:
            self.stdout.write("The database already has organisations; the demo org was not loaded.")
            return
        if summary.skipped:
            self.stdout.write(f"The demo org {DEMO_SLUG!r} is already loaded (`manage.py seed_demo` rebuilds it).")
        else:
            counts = ", ".join(f"{n:,} {what}" for what, n in summary.counts.items())
            self.stdout.write(
                self.style.SUCCESS(
                    f"Built {summary.org.name!r} ({summary.org.slug}): {counts} in {summary.seconds:.1f} s."
                )
            )
        if not summary.logins:
            return
        self.stdout.write("\nDemo logins:")
        width = max(len(login.email) for login in summary.logins)
        sees = {"admin": "sees the whole org", "manager": "sees the teams {teams}", "member": "sees their own usage"}
        for login in summary.logins:
            what = sees[login.role].format(teams=" and ".join(login.teams))
            self.stdout.write(f"  {login.email:<{width}}  password {login.password:<8}  {login.role}: {what}")
