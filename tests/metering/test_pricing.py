from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from metering.models import LLMModel, ModelPrice
from metering.pricing import PriceBook, Tokens, cost_of, format_money


@pytest.fixture
def sonnet(db):
    model = LLMModel.objects.create(name="test-sonnet", provider="anthropic")
    ModelPrice.objects.create(
        model=model,
        effective_from=date(2026, 1, 1),
        input=Decimal(3),
        cached_input=Decimal("0.3"),
        cache_write=Decimal("3.75"),
        output=Decimal(15),
    )
    ModelPrice.objects.create(
        model=model,
        effective_from=date(2026, 6, 1),
        input=Decimal(2),
        cached_input=Decimal("0.2"),
        cache_write=Decimal("2.5"),
        output=Decimal(10),
    )
    return model


def test_a_record_is_priced_at_the_price_in_force_at_its_utc_date(sonnet):
    book = PriceBook.load()
    assert book.price_at(sonnet.pk, datetime(2025, 12, 31, 23, 59, tzinfo=timezone.utc)) is None
    assert book.price_at(sonnet.pk, datetime(2026, 5, 31, 23, 59, tzinfo=timezone.utc)).input == 3
    assert book.price_at(sonnet.pk, datetime(2026, 6, 1, 0, 0, tzinfo=timezone.utc)).input == 2
    # 01:30 in Berlin on 1 June is still 31 May in UTC: the old price.
    berlin = datetime.fromisoformat("2026-06-01T01:30:00+02:00")
    assert book.price_at(sonnet.pk, berlin).input == 3


def test_cached_reads_and_cache_writes_are_billed_at_their_own_rates(sonnet):
    price = sonnet.prices.get(effective_from=date(2026, 1, 1))
    tokens = Tokens(input=10_000, cached_input=6_000, cache_write=1_000, output=2_000)
    # 3,000 fresh input at $3/M + 6,000 cached at $0.30/M + 1,000 written at $3.75/M + 2,000 output at $15/M
    expected = Decimal("0.009") + Decimal("0.0018") + Decimal("0.00375") + Decimal("0.03")
    assert cost_of(tokens, price) == expected


def test_one_token_of_a_cheap_model_is_not_rounded_away(db):
    model = LLMModel.objects.create(name="test-embedding")
    price = ModelPrice.objects.create(model=model, effective_from=date(2026, 1, 1), input=Decimal("0.02"))
    assert cost_of(Tokens(input=1), price) == Decimal("0.00000002")


def test_a_model_without_prices_has_no_price(db):
    model = LLMModel.objects.create(name="mystery")
    assert PriceBook.load().price_at(model.pk, datetime(2026, 1, 1, tzinfo=timezone.utc)) is None


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("12.5"), "12.50"),
        (Decimal("0.0012345"), "0.0012345"),
        (Decimal("0"), "0.00"),
        (Decimal("1E+3"), "1000.00"),
        (Decimal("0.1234567891"), "0.1234567891"),
        (Decimal("12.3400000000"), "12.34"),
        (Decimal("0.00000000015"), "0.0000000002"),  # rounded half to even at 10 places
        (3, "3.00"),
    ],
)
def test_format_money_is_exact_with_at_least_two_decimals(value, text):
    assert format_money(value) == text
