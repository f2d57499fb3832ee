"""The default price list shipped by migration metering 0003."""

import importlib
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
import time_machine
from django.apps import apps

from metering.models import LLMModel, ModelPrice, UsageRecord
from metering.services import ingest_batch

migration = importlib.import_module("metering.migrations.0003_default_prices")

LISTED = [
    "claude-opus-4-5",
    "claude-opus-4-1",
    "claude-sonnet-4-5",
    "claude-sonnet-4",
    "claude-haiku-4-5",
    "claude-3-5-haiku",
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4o",
    "gpt-4o-mini",
    "o3",
    "o4-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
]


def prices_of(name: str) -> tuple:
    price = ModelPrice.objects.get(model__name=name, effective_from=date(2025, 1, 1))
    return price.input, price.cached_input, price.cache_write, price.output


def test_every_listed_model_has_a_price_from_2025_01_01(db):
    prices = ModelPrice.objects.filter(model__name__in=LISTED, effective_from=date(2025, 1, 1))
    assert sorted(prices.values_list("model__name", flat=True)) == sorted(LISTED)


@pytest.mark.parametrize(
    "name, provider, expected",
    [
        ("claude-opus-4-5", "anthropic", ("5", "0.50", "6.25", "25")),
        ("claude-3-5-haiku", "anthropic", ("0.80", "0.08", "1", "4")),
        ("gpt-5-nano", "openai", ("0.05", "0.005", "0", "0.40")),
        ("o4-mini", "openai", ("1.10", "0.275", "0", "4.40")),
        ("text-embedding-3-large", "openai", ("0.13", "0", "0", "0")),
        ("gemini-2.5-pro", "google", ("1.25", "0.31", "0", "10")),
        ("gemini-2.5-flash-lite", "google", ("0.10", "0.025", "0", "0.40")),
    ],
)
def test_list_prices_are_as_published(db, name, provider, expected):
    assert prices_of(name) == tuple(Decimal(value) for value in expected)
    assert LLMModel.objects.get(name=name).provider == provider


def test_each_price_names_its_source(db):
    sources = dict(
        ModelPrice.objects.filter(model__name__in=["claude-sonnet-4-5", "gpt-4o", "gemini-2.5-flash"]).values_list(
            "model__name", "source"
        )
    )
    assert "anthropic.com/pricing" in sources["claude-sonnet-4-5"]
    assert "openai.com/api/pricing" in sources["gpt-4o"]
    assert "ai.google.dev/gemini-api/docs/pricing" in sources["gemini-2.5-flash"]


def test_a_listed_model_is_priced_out_of_the_box(org):
    with time_machine.travel(datetime(2026, 11, 20, 12, tzinfo=timezone.utc), tick=False):
        ingest_batch(
            org=org,
            usage=[
                {
                    "request_id": "r-1",
                    "timestamp": "2026-11-20T10:00:00Z",
                    "user": "a@example.com",
                    "model": "claude-sonnet-4-5",
                    "input_tokens": 10_000,
                    "cached_input_tokens": 8_000,
                    "output_tokens": 1_000,
                }
            ],
        )
    # 2,000 fresh input × $3 + 8,000 cached × $0.30 + 1,000 output × $15, per million
    assert UsageRecord.objects.get().cost == Decimal("0.0234")


def test_running_it_again_adds_nothing_and_keeps_edited_prices(db):
    ModelPrice.objects.filter(model__name="gpt-5").update(input=Decimal("9"))
    count = ModelPrice.objects.count()
    migration.add_default_prices(apps, None)
    assert ModelPrice.objects.count() == count
    assert prices_of("gpt-5")[0] == Decimal("9")


def test_the_reverse_removes_what_nothing_uses_and_keeps_prices_records_were_costed_at(org):
    with time_machine.travel(datetime(2026, 11, 20, 12, tzinfo=timezone.utc), tick=False):
        ingest_batch(
            org=org,
            usage=[
                {
                    "request_id": "r-1",
                    "timestamp": "2026-11-20T10:00:00Z",
                    "user": "a@example.com",
                    "model": "gpt-4o",
                    "input_tokens": 10,
                }
            ],
        )
    LLMModel.objects.create(name="in-house")
    migration.remove_unused_default_prices(apps, None)
    assert list(ModelPrice.objects.values_list("model__name", flat=True)) == ["gpt-4o"]
    assert sorted(LLMModel.objects.values_list("name", flat=True)) == ["gpt-4o", "in-house"]
    migration.add_default_prices(apps, None)
    assert ModelPrice.objects.filter(model__name__in=LISTED).count() == len(LISTED)
