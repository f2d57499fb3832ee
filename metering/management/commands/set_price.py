import argparse
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.management.arguments import iso_date
from metering.pricing import price_set


def usd_per_million(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a price: use a number of US dollars, 0 or more")
    return value


def show(value) -> str:
    # 3.000000 as stored reads better as 3 (and 10 must not become 1E+1).
    return format(value.normalize(), "f") if isinstance(value, Decimal) else repr(value)


class Command(BaseCommand):
    help = (
        "Set a model's price in USD per million tokens, in force from 00:00 UTC of --from (default today). "
        "Creates the model if needed; re-running with the same date updates that price."
    )

    def add_arguments(self, parser):
        parser.add_argument("model", help="the model as clients name it, e.g. claude-sonnet-4-5")
        parser.add_argument("--input", required=True, type=usd_per_million, help="fresh input tokens")
        parser.add_argument("--output", required=True, type=usd_per_million, help="output tokens (reasoning included)")
        parser.add_argument(
            "--cached-input", type=usd_per_million, default=Decimal(0), help="cached input reads (default 0)"
        )
        parser.add_argument("--cache-write", type=usd_per_million, default=Decimal(0), help="cache writes (default 0)")
        parser.add_argument("--from", dest="effective_from", type=iso_date, help="YYYY-MM-DD, UTC (default today)")
        parser.add_argument("--provider", help="e.g. anthropic, openai, google")
        parser.add_argument("--source", help="where the price comes from, e.g. the pricing page's address")

    def handle(self, *args, model, effective_from, **options):
        effective_from = effective_from or timezone.now().date()  # USE_TZ: now() is UTC
        try:
            price, changes = price_set(
                model=model,
                effective_from=effective_from,
                input=options["input"],
                output=options["output"],
                cached_input=options["cached_input"],
                cache_write=options["cache_write"],
                provider=options["provider"],
                source=options["source"],
            )
        except ValidationError as exc:
            raise CommandError(f"Price not saved: {' '.join(exc.messages)}") from None
        where = f"{model} from {effective_from} (UTC)"
        if not changes:
            self.stdout.write(f"The price of {where} is already as given; nothing changed.")
            return
        if "model" in changes:
            self.stdout.write(f"Created the model {model}.")
        lines = [
            f"  {f}: {show(old)} → {show(new)}" if old is not None else f"  {f}: {show(new)}"
            for f, (old, new) in changes.items()
            if f != "model"
        ]
        self.stdout.write(self.style.SUCCESS(f"Set the price of {where}, USD per million tokens:"))
        self.stdout.write("\n".join(lines))
        self.stdout.write(
            "Records already stored keep their cost; `manage.py reprice ORG --from DATE` re-prices a period."
        )
