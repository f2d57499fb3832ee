"""The `tally` template tags: numbers, money and sparklines, the same in every page."""

import re
from decimal import Decimal

import pytest
from django.template import Context, Template
from django.test import override_settings

from dashboards.templatetags.tally import compact, money, sparkline, thousands


def render(source: str, **context) -> str:
    return Template("{% load tally %}" + source).render(Context(context))


@pytest.mark.parametrize(
    "value, expected",
    [
        (0, "0"),
        (7, "7"),
        (999, "999"),
        (1000, "1K"),
        (1234, "1.2K"),
        (1250, "1.3K"),  # half up, not to even
        (15_000, "15K"),
        (999_949, "999.9K"),
        (999_950, "1M"),  # rounds into the next unit instead of "1000K"
        (1_234_567, "1.2M"),
        (3_000_000_000, "3B"),
        (4_560_000_000_000, "4.6T"),
        (Decimal("12.345"), "12.3"),
        (Decimal("999.96"), "1K"),
        (Decimal("1234567.89"), "1.2M"),
        ("2500", "2.5K"),
        (-1234, "-1.2K"),
        (Decimal("-0.04"), "0"),
    ],
)
def test_compact_abbreviates_thousands_millions_and_billions(value, expected):
    assert compact(value) == expected


@pytest.mark.parametrize(
    "value, currency, expected",
    [
        (Decimal("1234.56"), "USD", "$1,234.56"),
        (Decimal("1234.56"), "EUR", "€1,234.56"),
        (Decimal("1234.56"), "GBP", "1,234.56 GBP"),
        (Decimal("1234.56"), "eur", "€1,234.56"),
        (Decimal("1234.5"), "USD", "$1,234.50"),
        (1_000_000, "USD", "$1,000,000.00"),
        (Decimal("0.125"), "USD", "$0.13"),  # half up
        (Decimal("2.675"), "USD", "$2.68"),  # a float would make this 2.67
        ("0.30", "USD", "$0.30"),  # money arrives from JSON as a string
        (0.1 + 0.2, "USD", "$0.30"),
        (0, "USD", "$0.00"),
        (Decimal("0.004"), "USD", "<$0.01"),
        (Decimal("0.00000001"), "EUR", "<€0.01"),
        (Decimal("0.004"), "JPY", "<0.01 JPY"),
        (Decimal("0.005"), "USD", "<$0.01"),  # less than a cent, though it would round up to one
        (Decimal("0.01"), "USD", "$0.01"),
        (Decimal("-12.345"), "USD", "-$12.35"),
        (Decimal("-0.004"), "USD", "-<$0.01"),
    ],
)
def test_money_shows_two_decimals_and_the_currency(value, currency, expected):
    assert money(value, currency) == expected


def test_money_defaults_to_dollars():
    assert money(Decimal("5")) == "$5.00"
    assert money(Decimal("5"), "") == "$5.00"
    assert money(Decimal("5"), None) == "$5.00"


@pytest.mark.parametrize(
    "value, expected",
    [
        (0, "0"),
        (999, "999"),
        (1234567, "1,234,567"),
        (-1000, "-1,000"),
        (Decimal("1234.50"), "1,234.50"),
        ("98765", "98,765"),
    ],
)
def test_thousands_groups_digits(value, expected):
    assert thousands(value) == expected


@override_settings(USE_THOUSAND_SEPARATOR=True, THOUSAND_SEPARATOR=".", DECIMAL_SEPARATOR=",")
def test_the_filters_ignore_locale_settings():
    assert render("{{ n|thousands }} {{ c|money:'EUR' }} {{ n|compact }}", n=1234567, c=Decimal("1234.5")) == (
        "1,234,567 €1,234.50 1.2M"
    )


@pytest.mark.parametrize("filter_name", ["compact", "money", "thousands"])
def test_the_filters_render_none_as_nothing_and_leave_junk_alone(filter_name):
    assert render(f"[{{{{ v|{filter_name} }}}}]", v=None) == "[]"
    assert render(f"[{{{{ v|{filter_name} }}}}]", v="n/a") == "[n/a]"


def test_money_below_a_cent_is_escaped_in_html():
    assert render("{{ v|money }}", v=Decimal("0.001")) == "&lt;$0.01"


def test_money_takes_the_currency_from_the_context():
    assert render("{{ v|money:currency }}", v=Decimal("9.99"), currency="EUR") == "€9.99"


def points(svg: str) -> list[tuple[float, float]]:
    raw = re.search(r'points="([^"]*)"', svg).group(1)
    return [tuple(float(c) for c in pair.split(",")) for pair in raw.split()]


def test_sparkline_is_an_svg_image_with_a_summary():
    svg = str(sparkline([3, 10, 4, 1200]))

    assert svg.startswith('<svg class="sparkline" viewBox="0 0 100 24"')
    assert 'role="img"' in svg
    assert 'aria-label="Trend: min 3, max 1.2K, last 1.2K"' in svg


def test_sparkline_spans_the_box_from_left_to_right_and_bottom_to_top():
    line = points(str(sparkline([5, 0, 10])))

    assert [x for x, _ in line] == [0, 50, 100]
    ys = [y for _, y in line]
    assert max(ys) <= 24 and min(ys) >= 0
    assert ys[1] > ys[0] > ys[2]  # SVG y grows downwards: the lowest value is the largest y


def test_sparkline_of_nothing_is_a_flat_baseline():
    svg = str(sparkline([]))

    assert 'aria-label="Trend: no data"' in svg
    assert len({y for _, y in points(svg)}) == 1


def test_sparkline_of_zeros_lies_on_the_baseline():
    svg = str(sparkline([0, 0, 0]))

    assert 'aria-label="Trend: min 0, max 0, last 0"' in svg
    assert {y for _, y in points(svg)} == {22}


def test_sparkline_of_one_value_is_still_a_line():
    assert len(points(str(sparkline([Decimal("4.5")])))) == 2


def test_sparkline_takes_money_strings_and_treats_gaps_as_zero():
    svg = str(sparkline(["0.50", None, "1.50"], label="Cost"))

    assert 'aria-label="Cost: min 0, max 1.5, last 1.5"' in svg


def test_sparkline_escapes_its_label():
    html = render("{% sparkline values label=name %}", values=[1, 2], name='"><script>x</script>')

    assert "<script>" not in html
    assert 'aria-label="&quot;&gt;&lt;script&gt;x&lt;/script&gt;: min 1, max 2, last 2"' in html


def test_dashboard_pages_lists_the_five_pages_in_order():
    html = render("{% dashboard_pages as pages %}{% for name, label in pages %}{{ name }}={{ label }} {% endfor %}")

    assert html == "overview=Overview usage=Usage analytics=Analytics agents=Agents resources=Resources "
