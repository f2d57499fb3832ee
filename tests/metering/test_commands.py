"""set_price, import_usage and reprice, against the contract in DESIGN §5."""

import io
import json
from datetime import date, datetime, timezone
from decimal import Decimal
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from metering.models import CostSource, DirtyDay, LLMModel, ModelPrice, UsageRecord
from metering.services import ingest_batch

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
MODEL = "house-model"  # not in the default price list, so these tests set every price they use


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def house_price(db):
    """$2 input, $0.20 cached, $2.50 cache write, $8 output per million tokens, from 2026-01-01."""
    run(
        "set_price",
        MODEL,
        "--input",
        "2",
        "--cached-input",
        "0.2",
        "--cache-write",
        "2.5",
        "--output",
        "8",
        "--from",
        "2026-01-01",
        "--provider",
        "acme-ai",
    )
    return ModelPrice.objects.get(model__name=MODEL)


def run(*args, **options) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def usage(n, **fields) -> dict:
    return {
        "request_id": f"req-{n}",
        "timestamp": "2026-11-20T10:00:00+01:00",
        "user": "ana@example.com",
        "model": MODEL,
        "input_tokens": 1000,
        "output_tokens": 200,
        **fields,
    }


def cost(request_id: str, org: str = "acme") -> Decimal:
    return UsageRecord.objects.get(org__slug=org, request_id=request_id).cost


# --- set_price ----------------------------------------------------------------


def test_set_price_creates_the_model_and_its_price_from_today_in_utc(db):
    # 00:30 on 21 November in Berlin is still the 20th in UTC.
    with time_machine.travel(datetime(2026, 11, 20, 23, 30, tzinfo=timezone.utc), tick=False):
        output = run(
            "set_price", "new-model", "--input", "3", "--output", "15", "--cached-input", "0.3", "--cache-write", "3.75"
        )
    price = ModelPrice.objects.get(model__name="new-model")
    assert price.effective_from == date(2026, 11, 20)
    assert (price.input, price.cached_input, price.cache_write, price.output) == (
        Decimal("3"),
        Decimal("0.3"),
        Decimal("3.75"),
        Decimal("15"),
    )
    assert "Created the model new-model" in output and "input: 3" in output


def test_cache_rates_not_given_are_zero(db):
    run("set_price", "new-model", "--input", "0.05", "--output", "0.4", "--from", "2026-01-01")
    price = ModelPrice.objects.get(model__name="new-model")
    assert (price.input, price.cached_input, price.cache_write, price.output) == (Decimal("0.05"), 0, 0, Decimal("0.4"))


def test_set_price_again_on_the_same_date_updates_that_price_and_says_what_changed(house_price):
    output = run(
        "set_price",
        MODEL,
        "--input",
        "2.5",
        "--cached-input",
        "0.2",
        "--cache-write",
        "2.5",
        "--output",
        "8",
        "--from",
        "2026-01-01",
    )
    house_price.refresh_from_db()
    assert house_price.input == Decimal("2.5")
    assert ModelPrice.objects.filter(model__name=MODEL).count() == 1
    assert "input: 2 → 2.5" in output and "output:" not in output  # unchanged, so not listed


def test_set_price_run_twice_changes_nothing_the_second_time(house_price):
    output = run(
        "set_price",
        MODEL,
        "--input",
        "2",
        "--cached-input",
        "0.2",
        "--cache-write",
        "2.5",
        "--output",
        "8",
        "--from",
        "2026-01-01",
    )
    assert "nothing changed" in output
    assert list(ModelPrice.objects.filter(model__name=MODEL)) == [house_price]


def test_a_new_date_adds_a_price_and_keeps_the_old_one(house_price):
    run("set_price", MODEL, "--input", "4", "--output", "16", "--from", "2026-11-01")
    assert list(ModelPrice.objects.filter(model__name=MODEL).values_list("effective_from", "input")) == [
        (date(2026, 11, 1), Decimal("4")),
        (date(2026, 1, 1), Decimal("2")),
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input", "-1", "--output", "15"], "-1"),
        (["--input", "3", "--output", "lots"], "lots"),
        (["--input", "NaN", "--output", "15"], "NaN"),
        (["--input", "3", "--output", "15", "--from", "2026-02-30"], "2026-02-30"),
        (["--input", "0.0000001", "--output", "15"], "decimal places"),
    ],
)
def test_a_bad_price_or_date_is_refused_and_nothing_is_stored(db, args, message):
    with pytest.raises(CommandError, match=message):
        run("set_price", "new-model", *args)
    assert not LLMModel.objects.filter(name="new-model").exists()


def test_a_record_after_a_price_change_gets_the_new_price_and_an_earlier_one_keeps_the_old(org, house_price):
    run("set_price", MODEL, "--input", "4", "--output", "16", "--from", "2026-11-15")
    ingest_batch(
        org=org, usage=[usage(1, timestamp="2026-11-14T23:59:00Z"), usage(2, timestamp="2026-11-15T00:00:00Z")]
    )
    assert cost("req-1") == Decimal(1000 * 2 + 200 * 8) / 10**6
    assert cost("req-2") == Decimal(1000 * 4 + 200 * 16) / 10**6
    assert UsageRecord.objects.get(request_id="req-2").price.effective_from == date(2026, 11, 15)


# --- import_usage -------------------------------------------------------------

GOOD_1 = usage(1, team="Platform", project="Atlas", tags=["prod", "ci"])
GOOD_2 = usage(
    2,
    user="bob@example.com",
    input_tokens=10_000,
    cached_input_tokens=4_000,
    cache_write_tokens=1_000,
    output_tokens=500,
)
GOOD_3 = usage(3, cost="0.5")
# Costs at the house price, written out: (fresh input × $2 + cached × $0.20 + written × $2.50 + output × $8) / 1M
COST_1 = Decimal(1000 * 2 + 200 * 8) / 10**6
COST_2 = (
    Decimal(5_000 * 2) + Decimal(4_000) * Decimal("0.2") + Decimal(1_000) * Decimal("2.5") + Decimal(500 * 8)
) / 10**6


def write_jsonl(path, lines: list) -> str:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return str(path)


@pytest.fixture
def jsonl_file(tmp_path):
    return write_jsonl(
        tmp_path / "usage.jsonl",
        [
            GOOD_1,  # line 1
            GOOD_2,  # line 2
            usage(1, input_tokens=5),  # line 3: a duplicate of line 1
            usage(4, input_tokens=-5),  # line 4: rejected by validation
            "",  # line 5: blank, skipped
            '{"request_id": "req-5", oops',  # line 6: not JSON
            GOOD_3,  # line 7
        ],
    )


def test_import_usage_from_json_lines_stores_the_good_lines_and_reports_the_rest(org, house_price, jsonl_file):
    output = run("import_usage", jsonl_file, "--org", "acme")
    assert "6 lines read, 3 accepted, 1 duplicate, 2 rejected" in output
    assert "line 4 (req-4): input_tokens: Input should be greater than or equal to 0" in output
    assert "line 6: not valid JSON" in output
    assert set(UsageRecord.objects.values_list("request_id", flat=True)) == {"req-1", "req-2", "req-3"}
    assert (cost("req-1"), cost("req-2"), cost("req-3")) == (COST_1, COST_2, Decimal("0.5"))
    record = UsageRecord.objects.get(request_id="req-1")
    assert (record.org, record.team.name, record.project.name, record.input_tokens) == (org, "Platform", "Atlas", 1000)
    assert sorted(record.tags.values_list("name", flat=True)) == ["ci", "prod"]
    assert UsageRecord.objects.get(request_id="req-3").cost_source == CostSource.CLIENT


def test_importing_the_same_file_again_reports_duplicates_and_stores_nothing(org, house_price, jsonl_file):
    run("import_usage", jsonl_file)
    before = list(UsageRecord.objects.order_by("pk").values())
    output = run("import_usage", jsonl_file)
    assert "6 lines read, 0 accepted, 4 duplicates, 2 rejected" in output
    assert list(UsageRecord.objects.order_by("pk").values()) == before


CSV_HEADER = (
    "request_id,timestamp,user,model,provider,service_type,status,team,project,repository,agent,"
    "input_tokens,cached_input_tokens,cache_write_tokens,output_tokens,reasoning_tokens,cost,"
    "duration_ms,session_id,conversation_id,tags,metadata"
)


@pytest.fixture
def csv_file(tmp_path):
    path = tmp_path / "usage.csv"
    path.write_text(
        "\r\n".join(
            [
                CSV_HEADER,  # line 1
                "req-1,2026-11-20T10:00:00+01:00,ana@example.com,house-model,acme-ai,,,Platform,Atlas,atlas-api,QA,"
                '1000,,,200,,,1234,s-1,,prod;ci,"{""branch"": ""main""}"',  # line 2
                "req-2,2026-11-20T10:00:00+01:00,bob@example.com,house-model,,,,,,,,10000,4000,1000,500,100,,,,,,",  # line 3
                "req-1,2026-11-20T10:00:00+01:00,ana@example.com,house-model,,,,,,,,5,,,,,,,,,,",  # line 4: duplicate
                "req-4,2026-11-20T10:00:00,ana@example.com,house-model,,,,,,,,lots,,,,,,,,,,",  # line 5: bad
                "",  # line 6: blank
                "req-3,2026-11-20T10:00:00+01:00,ana@example.com,house-model,,agent,error,,,,,1000,,,200,,0.5,,,c-9,a|b,",  # line 7
                'req-6,2026-11-20T10:00:00+01:00,ana@example.com,house-model,,,,,,,,1,,,1,,,,,,,{"no": json}',  # line 8: bad metadata
            ]
        )
        + "\r\n"
    )
    return str(path)


def test_import_usage_from_csv_converts_cells_and_reports_rejected_lines(org, house_price, csv_file):
    output = run("import_usage", csv_file)
    assert "6 lines read, 3 accepted, 1 duplicate, 2 rejected" in output
    assert "line 5 (req-4):" in output and "timestamp: Input should have timezone info" in output
    assert "input_tokens: Input should be a valid integer" in output
    assert "line 8 (req-6): metadata" in output
    assert (cost("req-1"), cost("req-2"), cost("req-3")) == (COST_1, COST_2, Decimal("0.5"))
    first = UsageRecord.objects.get(request_id="req-1")
    assert (first.repository.name, first.agent.name, first.duration_ms, first.metadata) == (
        "atlas-api",
        "QA",
        1234,
        {"branch": "main"},
    )
    assert sorted(first.tags.values_list("name", flat=True)) == ["ci", "prod"]
    third = UsageRecord.objects.get(request_id="req-3")
    assert (third.service_type, third.status, third.conversation_id) == ("agent", "error", "c-9")
    assert sorted(third.tags.values_list("name", flat=True)) == ["a", "b"]
    assert UsageRecord.objects.get(request_id="req-2").reasoning_tokens == 100


def test_importing_the_same_csv_again_stores_nothing(org, house_price, csv_file):
    run("import_usage", csv_file)
    assert "0 accepted, 4 duplicates, 2 rejected" in run("import_usage", csv_file)
    assert UsageRecord.objects.count() == 3


def test_a_csv_with_a_column_that_is_not_a_usage_field_is_refused(org, tmp_path):
    path = tmp_path / "usage.csv"
    path.write_text("request_id,timestamp,user,model,input_token\n")
    with pytest.raises(CommandError, match="unknown: input_token"):
        run("import_usage", str(path))


def test_the_listing_of_rejected_lines_is_capped(org, tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", ["not json"] * 60)
    output = run("import_usage", path)
    assert "60 rejected" in output and "line 50: not valid JSON" in output and "line 51" not in output
    assert "and 10 more" in output


def test_json_lines_can_come_from_standard_input(org, house_price, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(json.dumps(GOOD_1).encode() + b"\n")))
    assert "1 line read, 1 accepted" in run("import_usage", "-")
    assert cost("req-1") == COST_1


def test_the_org_may_be_omitted_only_when_there_is_just_one(org, other_org, house_price, jsonl_file):
    with pytest.raises(CommandError, match="--org"):
        run("import_usage", jsonl_file)
    run("import_usage", jsonl_file, "--org", "globex")
    assert set(UsageRecord.objects.values_list("org__slug", flat=True)) == {"globex"}


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.jsonl", None, "missing.jsonl"),
        ("usage.xlsx", "x", "csv, .jsonl or .ndjson"),
    ],
)
def test_unusable_input_is_a_command_error(org, tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(CommandError, match=message):
        run("import_usage", str(path))


def test_an_unknown_org_is_a_command_error(org, jsonl_file):
    with pytest.raises(CommandError, match="nope"):
        run("import_usage", jsonl_file, "--org", "nope")
    assert not UsageRecord.objects.exists()


def test_a_big_import_takes_queries_per_batch_not_per_line(org, house_price, tmp_path):
    lines = [usage(i, user=f"u{i % 50}@example.com", project=f"p{i % 7}", tags=[f"t{i % 5}"]) for i in range(3000)]
    path = write_jsonl(tmp_path / "big.ndjson", lines)
    with CaptureQueriesContext(connection) as ctx:
        output = run("import_usage", path)
    assert "3,000 lines read, 3,000 accepted" in output
    assert len(ctx.captured_queries) < 300
    assert UsageRecord.objects.count() == 3000


# --- reprice ------------------------------------------------------------------


@pytest.fixture
def priced_period(org, other_org, house_price):
    """Records of several kinds around a price change on 2026-11-01 (ingested before it was known)."""
    records = [
        usage("in-range", timestamp="2026-11-10T12:00:00Z"),
        usage("late-evening", timestamp="2026-11-10T23:30:00Z"),  # 11 November in Berlin
        usage("client-cost", timestamp="2026-11-12T12:00:00Z", cost="0.01"),
        usage("unpriced", timestamp="2026-11-12T12:00:00Z", model="mystery-model"),
        usage("first-local-day", timestamp="2026-10-31T23:30:00Z"),  # 1 Nov in Berlin, 31 Oct in UTC: old price
        usage("before-range", timestamp="2026-10-30T12:00:00Z"),
        usage("after-range", timestamp="2026-11-15T23:30:00Z"),  # 16 November in Berlin
    ]
    assert ingest_batch(org=org, usage=records).accepted == len(records)
    assert ingest_batch(org=other_org, usage=[usage("in-range", timestamp="2026-11-10T12:00:00Z")]).accepted == 1
    run("set_price", MODEL, "--input", "4", "--output", "16", "--from", "2026-11-01")
    run("set_price", "mystery-model", "--input", "1", "--output", "1", "--from", "2026-11-01")
    DirtyDay.objects.all().delete()


OLD_COST = Decimal(1000 * 2 + 200 * 8) / 10**6
NEW_COST = Decimal(1000 * 4 + 200 * 16) / 10**6
MYSTERY_COST = Decimal(1000 * 1 + 200 * 1) / 10**6


def test_reprice_changes_exactly_the_priced_and_unpriced_records_of_the_period(org, priced_period):
    output = run("reprice", "acme", "--from", "2026-11-01", "--to", "2026-11-15")
    costs = {r.request_id: (r.cost, r.cost_source) for r in UsageRecord.objects.filter(org=org)}
    assert costs == {
        "req-in-range": (NEW_COST, CostSource.PRICED),
        "req-late-evening": (NEW_COST, CostSource.PRICED),
        "req-client-cost": (Decimal("0.01"), CostSource.CLIENT),
        "req-unpriced": (MYSTERY_COST, CostSource.PRICED),
        "req-first-local-day": (OLD_COST, CostSource.PRICED),
        "req-before-range": (OLD_COST, CostSource.PRICED),
        "req-after-range": (OLD_COST, CostSource.PRICED),
    }
    assert UsageRecord.objects.get(org=org, request_id="req-in-range").price.effective_from == date(2026, 11, 1)
    assert UsageRecord.objects.exclude(org=org).get().cost == OLD_COST
    assert "3 of 4 records changed" in output
    before, after = 3 * OLD_COST, 2 * NEW_COST + MYSTERY_COST + OLD_COST
    assert f"{before.normalize():f} → {after.normalize():f}" in output


def test_reprice_rebuilds_the_rollups_of_the_org_local_days_it_changed(org, priced_period):
    from django.db.models import Sum

    from metering.models import UsageDaily

    output = run("reprice", "acme", "--from", "2026-11-01", "--to", "2026-11-15")
    assert "rollups of 3 days rebuilt" in output
    assert set(UsageDaily.objects.values_list("day", flat=True)) == {
        date(2026, 11, 10),
        date(2026, 11, 11),
        date(2026, 11, 12),
    }
    rebuilt = set(UsageDaily.objects.values_list("day", flat=True))
    expected = sum(
        r.cost for r in UsageRecord.objects.filter(org=org) if r.timestamp.astimezone(org.tzinfo).date() in rebuilt
    )
    assert UsageDaily.objects.aggregate(cost=Sum("cost"))["cost"] == expected
    assert not DirtyDay.objects.exists()


def test_reprice_run_twice_changes_nothing_the_second_time(org, priced_period):
    run("reprice", "acme", "--from", "2026-11-01", "--to", "2026-11-15")
    DirtyDay.objects.all().delete()
    assert "0 of 4 records changed" in run("reprice", "acme", "--from", "2026-11-01", "--to", "2026-11-15")
    assert not DirtyDay.objects.exists()


def test_reprice_runs_to_today_by_default(org, priced_period):
    output = run("reprice", "acme", "--from", "2026-11-13")
    assert "to 2026-11-20" in output and "1 of 1 records changed" in output
    assert cost("req-after-range") == NEW_COST


@pytest.mark.parametrize(
    "args, message",
    [
        (["nope", "--from", "2026-11-01"], "nope"),
        (["acme", "--from", "yesterday"], "yesterday"),
        (["acme", "--from", "2026-11-10", "--to", "2026-11-01"], "before"),
    ],
)
def test_reprice_refuses_bad_input_and_changes_nothing(org, priced_period, args, message):
    with pytest.raises(CommandError, match=message):
        run("reprice", *args)
    assert cost("req-in-range") == OLD_COST and not DirtyDay.objects.exists()
