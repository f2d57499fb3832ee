"""What the management commands' arguments share: the org they work on, and dates.

accounts is the base app: metering's commands use this too, and nothing here may import metering.
"""

import argparse
from collections.abc import Callable
from datetime import date

from django.core.management.base import CommandError

from accounts.models import Organization

# For commands whose org must already exist: what to do about a slug that names none.
CREATE_ORG_FIRST = "; create it first with `manage.py create_org`"


def add_org_argument(parser: argparse.ArgumentParser, **kwargs) -> None:
    """The positional `org`, an org's slug (read it with `org_by_slug`)."""
    kwargs.setdefault("help", "org slug")
    parser.add_argument("org", **kwargs)


def org_by_slug(slug: str, *, hint: str = "") -> Organization:
    """The org with this slug; if there is none, a CommandError saying so, then `hint`."""
    org = Organization.objects.filter(slug=slug).first()
    if org is None:
        raise CommandError(f"No org with slug {slug!r}{hint}.")
    return org


def iso_date_type(*, example: str, error: type[Exception] = argparse.ArgumentTypeError) -> Callable[[str], date]:
    """An argparse `type` reading a YYYY-MM-DD date. A value that is not one raises `error`, saying
    it is not a date like `example`: argparse reports an ArgumentTypeError as a usage error, while a
    CommandError stops the command with its message alone."""

    def iso_date(text: str) -> date:
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise error(f"{text!r} is not a date like {example}") from None

    return iso_date


iso_date = iso_date_type(example="2026-01-31")
