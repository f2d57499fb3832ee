"""Turning tokens into money: the one place costs are computed and quantised.

A record is priced at the model's price in force at its timestamp (the
latest `effective_from` on or before its UTC date). Cached reads and cache
writes are billed at their own rates; the rest of the input at the input rate.
Prices are written by `price_set`; `records_reprice` re-prices a period on request.
"""

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from accounts.models import Organization
from metering.models import CostSource, LLMModel, ModelPrice, UsageRecord
from metering.rollups import mark_days_dirty

MILLION = Decimal(1_000_000)
MONEY_QUANTUM = Decimal(1).scaleb(-settings.MONEY_DECIMAL_PLACES)


def quantize_money(value: Decimal) -> Decimal:
    return value.quantize(MONEY_QUANTUM)


def format_money(value: Decimal | int | float) -> str:
    """Money as the API writes it, an exact decimal string with at least two decimals:
    '12.5' -> '12.50', '0.0012345' stays."""
    value = quantize_money(Decimal(value)).normalize()
    if value == value.to_integral_value() or -value.as_tuple().exponent < 2:
        return f"{value:.2f}"
    return f"{value:f}"


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
    """Prices, loaded once, answering 'which price was in force then?' without a query."""

    def __init__(self, prices):
        self._by_model: dict[int, list[ModelPrice]] = defaultdict(list)
        for price in sorted(prices, key=lambda p: p.effective_from):
            self._by_model[price.model_id].append(price)
        self._days = {model_id: [p.effective_from for p in ps] for model_id, ps in self._by_model.items()}

    @classmethod
    def load(cls, model_ids: Iterable[int] | None = None) -> "PriceBook":
        """Every price, or only those of `model_ids`."""
        prices = ModelPrice.objects.all()
        return cls(prices if model_ids is None else prices.filter(model_id__in=set(model_ids)))

    def price_at(self, model_id: int, when: datetime) -> ModelPrice | None:
        days = self._days.get(model_id)
        if not days:
            return None
        day: date = when.astimezone(timezone.utc).date()
        i = bisect.bisect_right(days, day)
        return self._by_model[model_id][i - 1] if i else None


def price_set(
    *,
    model: str,
    effective_from: date,
    input: Decimal,
    output: Decimal,
    cached_input: Decimal = Decimal(0),
    cache_write: Decimal = Decimal(0),
    provider: str | None = None,
    source: str | None = None,
) -> tuple[ModelPrice, dict[str, tuple]]:
    """Upsert `model`'s price in force from 00:00 UTC of `effective_from`; (price, {field: (old, new)}).

    The model is created if missing. The price is exactly what is given (an
    omitted cache rate is 0). Records already priced keep their cost: a price
    change never rewrites history until `records_reprice` is asked to.
    Raises ValidationError, storing nothing, for a negative or malformed price.
    """
    wanted = {"input": input, "cached_input": cached_input, "cache_write": cache_write, "output": output}
    if source is not None:
        wanted["source"] = source
    with transaction.atomic():
        llm, model_created = LLMModel.objects.get_or_create(name=model, defaults={"provider": provider or ""})
        changes: dict[str, tuple] = {"model": (None, model)} if model_created else {}
        if provider is not None and llm.provider != provider:
            changes["provider"] = (llm.provider, provider)
            llm.provider = provider
            llm.save(update_fields=["provider"])
        price = ModelPrice.objects.filter(model=llm, effective_from=effective_from).first()
        if price is None:
            price = ModelPrice(model=llm, effective_from=effective_from)
        differs = {
            f: (getattr(price, f) if price.pk else None, v)
            for f, v in wanted.items()
            if price.pk is None or getattr(price, f) != v
        }
        if differs:
            for f, (_, value) in differs.items():
                setattr(price, f, value)
            price.full_clean()
            price.save()
            changes.update(differs)
    return price, changes


@dataclass
class RepriceResult:
    examined: int = 0
    changed: int = 0
    cost_before: Decimal = Decimal(0)
    cost_after: Decimal = Decimal(0)
    days: set = field(default_factory=set)


REPRICE_BATCH = 2000


def records_reprice(*, org: Organization, start: date, end: date, progress=None) -> RepriceResult:
    """Re-price `org`'s records of the org-local days start..end (inclusive) at the prices in force.

    Only records whose cost came from the price table or that were unpriced
    are touched; a cost the client sent is the client's. Works in batches,
    each in its own transaction, so a long run holds no long lock and
    never loads the whole period; the days it changes are marked dirty so
    their rollups are rebuilt. `progress`, a tqdm bar, is told the total and kept up to date.
    """
    tz = org.tzinfo
    lo = datetime.combine(start, time.min, tzinfo=tz)
    hi = datetime.combine(end + timedelta(days=1), time.min, tzinfo=tz)
    records = UsageRecord.objects.filter(
        org=org,
        timestamp__gte=lo,
        timestamp__lt=hi,
        cost_source__in=[CostSource.PRICED, CostSource.UNPRICED],
    ).only(
        "pk",
        "model_id",
        "timestamp",
        "input_tokens",
        "cached_input_tokens",
        "cache_write_tokens",
        "output_tokens",
        "cost",
        "cost_source",
        "price_id",
    )
    book = PriceBook.load()
    result = RepriceResult()
    if progress is not None:
        progress.reset(total=records.count())
    page = records
    while True:
        # Keyset pages in (timestamp, pk) order walk the (org, timestamp) index: each
        # page reads only its own rows, where pk order would rescan the period each time.
        batch = list(page.order_by("timestamp", "pk")[:REPRICE_BATCH])
        if not batch:
            return result
        last = batch[-1]
        page = records.filter(timestamp__gte=last.timestamp).exclude(timestamp=last.timestamp, pk__lte=last.pk)
        changed = []
        for record in batch:
            price = book.price_at(record.model_id, record.timestamp)
            if price is None:
                cost, source, price_id = Decimal(0), CostSource.UNPRICED, None
            else:
                tokens = Tokens(
                    record.input_tokens, record.cached_input_tokens, record.cache_write_tokens, record.output_tokens
                )
                cost, source, price_id = cost_of(tokens, price), CostSource.PRICED, price.pk
            result.cost_before += record.cost
            result.cost_after += cost
            if (record.cost, record.cost_source, record.price_id) != (cost, source, price_id):
                record.cost, record.cost_source, record.price_id = cost, source, price_id
                changed.append(record)
        days = {record.timestamp.astimezone(tz).date() for record in changed}
        # bulk_update spends its time building a CASE branch per record and field, so only
        # the cost goes through it; source and price are shared by many records: one UPDATE each.
        shared = defaultdict(list)
        for record in changed:
            shared[record.cost_source, record.price_id].append(record.pk)
        with transaction.atomic():
            for (source, price_id), pks in shared.items():
                UsageRecord.objects.filter(pk__in=pks).update(cost_source=source, price_id=price_id)
            UsageRecord.objects.bulk_update(changed, ["cost"])
            mark_days_dirty(org, days)
        result.examined += len(batch)
        result.changed += len(changed)
        result.days |= days
        if progress is not None:
            progress.update(len(batch))
