"""The default price list: common models at their list prices, in force from 2025-01-01.

List prices as published on the providers' pricing pages, November 2025, in
USD per million tokens. Admins edit or extend them in the admin or with
`manage.py set_price`. Rows that exist already are left as they are (they may
have been edited), so the migration is safe on a database that has prices.
"""

from datetime import date
from decimal import Decimal

from django.db import migrations

EFFECTIVE_FROM = date(2025, 1, 1)
ANTHROPIC = "https://www.anthropic.com/pricing"
OPENAI = "https://openai.com/api/pricing/"
GOOGLE = "https://ai.google.dev/gemini-api/docs/pricing"
SOURCES = {"anthropic": ANTHROPIC, "openai": OPENAI, "google": GOOGLE}

# List prices as published on the providers' pricing pages, November 2025.
# name, provider, (input, cached input, cache write, output) in USD per million tokens
DEFAULT_PRICES = [
    ("claude-opus-4-5", "anthropic", ("5", "0.50", "6.25", "25")),
    ("claude-opus-4-1", "anthropic", ("15", "1.50", "18.75", "75")),
    ("claude-sonnet-4-5", "anthropic", ("3", "0.30", "3.75", "15")),
    ("claude-sonnet-4", "anthropic", ("3", "0.30", "3.75", "15")),
    ("claude-haiku-4-5", "anthropic", ("1", "0.10", "1.25", "5")),
    ("claude-3-5-haiku", "anthropic", ("0.80", "0.08", "1", "4")),
    ("gpt-5", "openai", ("1.25", "0.125", "0", "10")),
    ("gpt-5-mini", "openai", ("0.25", "0.025", "0", "2")),
    ("gpt-5-nano", "openai", ("0.05", "0.005", "0", "0.40")),
    ("gpt-4.1", "openai", ("2", "0.50", "0", "8")),
    ("gpt-4.1-mini", "openai", ("0.40", "0.10", "0", "1.60")),
    ("gpt-4o", "openai", ("2.50", "1.25", "0", "10")),
    ("gpt-4o-mini", "openai", ("0.15", "0.075", "0", "0.60")),
    ("o3", "openai", ("2", "0.50", "0", "8")),
    ("o4-mini", "openai", ("1.10", "0.275", "0", "4.40")),
    ("text-embedding-3-small", "openai", ("0.02", "0", "0", "0")),
    ("text-embedding-3-large", "openai", ("0.13", "0", "0", "0")),
    ("gemini-2.5-pro", "google", ("1.25", "0.31", "0", "10")),
    ("gemini-2.5-flash", "google", ("0.30", "0.075", "0", "2.50")),
    ("gemini-2.5-flash-lite", "google", ("0.10", "0.025", "0", "0.40")),
]


def add_default_prices(apps, schema_editor):
    LLMModel = apps.get_model("metering", "LLMModel")
    ModelPrice = apps.get_model("metering", "ModelPrice")
    for name, provider, prices in DEFAULT_PRICES:
        model, _ = LLMModel.objects.get_or_create(name=name, defaults={"provider": provider})
        if not model.provider:  # first seen in ingested usage without a provider
            model.provider = provider
            model.save(update_fields=["provider"])
        ModelPrice.objects.get_or_create(
            model=model, effective_from=EFFECTIVE_FROM,
            defaults={**dict(zip(("input", "cached_input", "cache_write", "output"), map(Decimal, prices))),
                      "source": SOURCES[provider]},
        )


def remove_unused_default_prices(apps, schema_editor):
    """Remove the default prices no record was priced at, then the listed models nothing refers to.

    A default price that records used stays (deleting it would be refused,
    and would lose what they were costed at); so does its model.
    """
    LLMModel = apps.get_model("metering", "LLMModel")
    ModelPrice = apps.get_model("metering", "ModelPrice")
    UsageRecord = apps.get_model("metering", "UsageRecord")
    names = [name for name, _, _ in DEFAULT_PRICES]
    ModelPrice.objects.filter(
        model__name__in=names, effective_from=EFFECTIVE_FROM, source__in=SOURCES.values(),
    ).exclude(pk__in=UsageRecord.objects.filter(price__isnull=False).values("price")).delete()
    LLMModel.objects.filter(name__in=names, prices__isnull=True).exclude(
        pk__in=UsageRecord.objects.values("model")
    ).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("metering", "0002_dirty_day"),
    ]

    operations = [
        migrations.RunPython(add_default_prices, remove_unused_default_prices),
    ]
