"""Query parameters of the analytics API and the pages (DESIGN sections 7 and 8), parsed once."""

from datetime import date, datetime, time, timedelta

from django import forms
from django.utils import timezone

from metering.models import ServiceType
from metering.selectors import DIMENSIONS, INTERVAL_LENGTHS, INTERVALS, METRICS, Query, filters_from_names

DEFAULT_RANGE = "30d"
MAX_POINTS_ASKED = 5000
# The filter bar's presets (DESIGN section 7), also accepted by the API so that a page URL and an
# API URL with the same query string give the same numbers. `start`/`end` override them. "Last N
# days" are today and the N - 1 days before it in the org's zone: whole days, like the charts'
# day buckets (and readable from the daily rollups); "24h" is the last 24 hours to the minute.
RANGES = {"24h": None, "7d": 7, "14d": 14, "30d": 30}


def parse_moment(value: str, tz, *, end: bool) -> datetime:
    """RFC 3339 with an offset, or YYYY-MM-DD in the org's zone (a date `end` includes that day)."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime.combine(day + timedelta(days=1) if end else day, time(), tz)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise forms.ValidationError(
            "Give an RFC 3339 time with an offset (2026-11-01T09:00:00+01:00) or a date (2026-11-01)."
        ) from None
    if moment.tzinfo is None:
        raise forms.ValidationError("The time has no offset: add one, e.g. +00:00 or Z.")
    return moment


class RepeatableField(forms.Field):
    """A parameter that may be given several times (?team=a&team=b)."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value):
        return [v.strip() for v in (value or []) if v and v.strip()]


class AnalyticsForm(forms.Form):
    range = forms.ChoiceField(choices=[(r, r) for r in [*RANGES, "month"]], required=False)
    month = forms.CharField(required=False, help_text="YYYY-MM, with range=month; default the current month")
    start = forms.CharField(required=False)
    end = forms.CharField(required=False)
    metric = forms.ChoiceField(choices=[(m, m) for m in METRICS], required=False)
    interval = forms.ChoiceField(choices=[(i, i) for i in INTERVALS], required=False)
    team = RepeatableField(required=False)
    user = RepeatableField(required=False)
    project = RepeatableField(required=False)
    repository = RepeatableField(required=False)
    agent = RepeatableField(required=False)
    model = RepeatableField(required=False)
    api_key = RepeatableField(required=False)
    tag = RepeatableField(required=False)
    service_type = RepeatableField(required=False)

    def __init__(self, data, *, org, now: datetime | None = None):
        super().__init__(data)
        self.org = org
        self.now = now or timezone.now()

    def clean_start(self):
        value = self.cleaned_data["start"]
        return parse_moment(value, self.org.tzinfo, end=False) if value else None

    def clean_end(self):
        value = self.cleaned_data["end"]
        return parse_moment(value, self.org.tzinfo, end=True) if value else None

    def clean_service_type(self):
        values = self.cleaned_data["service_type"]
        unknown = sorted(set(values) - set(ServiceType.values))
        if unknown:
            raise forms.ValidationError(
                f"Unknown service type {', '.join(unknown)}; expected one of {', '.join(ServiceType.values)}."
            )
        return values

    def clean_month(self):
        value = self.cleaned_data["month"]
        if not value:
            return None
        try:
            return date.fromisoformat(f"{value}-01")
        except ValueError:
            raise forms.ValidationError("Give the month as YYYY-MM.") from None

    def _preset(self, data) -> tuple[datetime, datetime]:
        """The range the preset names, ending now (a month: the whole month in the org's zone)."""
        tz = self.org.tzinfo
        if data["range"] == "month" or data["month"]:
            first = data["month"] or self.now.astimezone(tz).date().replace(day=1)
            following = (first + timedelta(days=32)).replace(day=1)
            return datetime.combine(first, time(), tz), datetime.combine(following, time(), tz)
        days = RANGES[data["range"] or DEFAULT_RANGE]
        if days is None:
            return self.now - timedelta(hours=24), self.now
        first = self.now.astimezone(tz).date() - timedelta(days=days - 1)
        return datetime.combine(first, time(), tz), self.now

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        preset_start, preset_end = self._preset(data)
        end = data["end"] or (preset_end if not data["start"] else self.now)
        start = data["start"] or (preset_start if not data["end"] else end - timedelta(days=RANGES[DEFAULT_RANGE]))
        if start >= end:
            raise forms.ValidationError("'start' must be before 'end'.")
        interval = data.get("interval")
        if interval and (end - start) / INTERVAL_LENGTHS[interval] > MAX_POINTS_ASKED:
            raise forms.ValidationError(
                f"{interval} buckets over this range would be more than {MAX_POINTS_ASKED} points; "
                "pick a longer interval or a shorter range."
            )
        data["start"], data["end"] = start, end
        return data

    def query(self, scope) -> Query:
        """The validated parameters as a query for `scope` (call after is_valid())."""
        names = {name: self.cleaned_data[name] for name in DIMENSIONS}
        return Query(scope, self.cleaned_data["start"], self.cleaned_data["end"], filters_from_names(self.org, names))

    def error_text(self) -> str:
        return "; ".join(
            f"{name}: {' '.join(errors)}" if name != "__all__" else " ".join(errors)
            for name, errors in self.errors.items()
        )
