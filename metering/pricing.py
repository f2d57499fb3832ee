"""Turning tokens into money: the one place costs are computed and quantised.

A record is priced at the model's price in force at its timestamp (the
latest `effective_from` on or before its UTC date). Cached reads and cache
writes are billed at their own rates; the rest of the input at the input rate.
"""

import bisect
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal

from django.conf import settings

from metering.models import ModelPrice

MILLION = Decimal(1_000_000)
MONEY_QUANTUM = Decimal(1).scaleb(-settings.MONEY_DECIMAL_PLACES)


def quantize_money(value: Decimal) -> Decimal:
    return value.quantize(MONEY_QUANTUM)


@dataclass(frozen=True)
class Tokens:
    input: int = 0
    cached_input: int = 0
    cache_write: int = 0
    output: int = 0


def cost_of(tokens: Tokens, price: ModelPrice) -> Decimal:
    fresh_input = tokens.input - tokens.cached_input - tokens.cache_write
    amount = (
        fresh_input * price.input
        + tokens.cached_input * price.cached_input
        + tokens.cache_write * price.cache_write
        + tokens.output * price.output
    ) / MILLION
    return quantize_money(amount)


class PriceBook:
    """All prices, loaded once, answering 'which price was in force then?' without a query."""

    def __init__(self, prices):
        self._by_model: dict[int, list[ModelPrice]] = defaultdict(list)
        for price in sorted(prices, key=lambda p: p.effective_from):
            self._by_model[price.model_id].append(price)
        self._days = {model_id: [p.effective_from for p in ps] for model_id, ps in self._by_model.items()}

    @classmethod
    def load(cls) -> "PriceBook":
        return cls(ModelPrice.objects.all())

    def price_at(self, model_id: int, when: datetime) -> ModelPrice | None:
        days = self._days.get(model_id)
        if not days:
            return None
        day: date = when.astimezone(timezone.utc).date()
        i = bisect.bisect_right(days, day)
        return self._by_model[model_id][i - 1] if i else None
