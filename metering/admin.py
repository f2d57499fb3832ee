"""The Django admin for metering: per-org dimensions, global model prices, and read-only usage data."""

from functools import cached_property

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator

from accounts.admin import OrgConsistentForm, OrgRelatedFilter, OrgScopedAdminMixin, colour_swatch
from metering.models import (
    ActiveUserDaily,
    ActivityDaily,
    ActivityDailyBy,
    ActivityEvent,
    ActivityHourlyOrg,
    Agent,
    ConversationDaily,
    ConversationDayCount,
    DirtyDay,
    LLMModel,
    ModelPrice,
    OtlpSession,
    OtlpStream,
    Project,
    Repository,
    ResourceDaily,
    ResourceUsage,
    Session,
    SessionDaily,
    UsageDaily,
    UsageDailyBy,
    UsageDailyByTag,
    UsageHourly,
    UsageHourlyBy,
    UsageHourlyOrg,
    UsageRecord,
)


class CappedCountPaginator(Paginator):
    """Counts at most CAP rows.

    An exact COUNT(*) over millions of usage rows takes seconds on every page
    load; past the cap the list pages up to CAP rows and the date hierarchy
    and filters narrow it further.
    """

    CAP = 10_000

    @cached_property
    def count(self):
        return self.object_list.order_by()[: self.CAP].count()


class PerOrgAdmin(OrgScopedAdminMixin, admin.ModelAdmin):
    list_filter = [("org", OrgRelatedFilter)]
    list_select_related = ["org"]
    search_fields = ["name"]
    autocomplete_fields = ["org"]
    ordering = ["org__name", "name"]
    list_per_page = 50


@admin.register(Project)
class ProjectAdmin(PerOrgAdmin):
    list_display = ["name", "swatch", "org", "created_at"]

    @admin.display(description="colour", ordering="colour")
    def swatch(self, obj):
        return colour_swatch(obj.colour)


@admin.register(Repository)
class RepositoryAdmin(PerOrgAdmin):
    list_display = ["name", "project", "org", "created_at"]
    list_select_related = ["org", "project"]
    search_fields = ["name", "project__name"]
    autocomplete_fields = ["org", "project"]


@admin.register(Agent)
class AgentAdmin(PerOrgAdmin):
    list_display = ["name", "org", "created_at"]


class ModelPriceForm(OrgConsistentForm):
    """A price that records were costed at is history: it may not change under them."""

    PRICE_FIELDS = ("effective_from", "input", "cached_input", "cache_write", "output", "model")

    def clean(self):
        cleaned = super().clean()
        changed = set(self.changed_data) & set(self.PRICE_FIELDS)
        if self.instance.pk and changed and UsageRecord.objects.filter(price=self.instance).exists():
            raise ValidationError(
                "Usage records were priced at this price, so it can no longer change. Add a new price with a "
                "later 'effective from' date, then run `manage.py reprice` for the period it should cover."
            )
        return cleaned


class ModelPriceInline(OrgScopedAdminMixin, admin.TabularInline):
    model = ModelPrice
    form = ModelPriceForm
    extra = 0
    fields = ["effective_from", "input", "cached_input", "cache_write", "output", "source"]


@admin.register(LLMModel)
class LLMModelAdmin(OrgScopedAdminMixin, admin.ModelAdmin):
    list_display = ["name", "provider"]
    list_filter = ["provider"]
    search_fields = ["name", "provider"]
    inlines = [ModelPriceInline]
    list_per_page = 100


@admin.register(ModelPrice)
class ModelPriceAdmin(OrgScopedAdminMixin, admin.ModelAdmin):
    form = ModelPriceForm
    list_display = ["model", "effective_from", "input", "cached_input", "cache_write", "output", "source"]
    list_editable = ["input", "cached_input", "cache_write", "output"]
    list_filter = ["model__provider"]
    list_select_related = ["model"]
    search_fields = ["model__name"]
    autocomplete_fields = ["model"]
    list_per_page = 100

    def get_changelist_form(self, request, **kwargs):
        # The list's inline editing would otherwise use a plain ModelForm and skip the check.
        return super().get_changelist_form(request, form=ModelPriceForm, **kwargs)


class IngestedAdmin(OrgScopedAdminMixin, admin.ModelAdmin):
    """Ingested data: viewable, never added or changed here (that would bypass pricing and rollups)."""

    read_only = True
    show_full_result_count = False  # these tables reach tens of millions of rows

    @admin.display(description="tags")
    def tag_names(self, obj):
        return ", ".join(obj.tags.values_list("name", flat=True))

    paginator = CappedCountPaginator
    list_filter = [("org", OrgRelatedFilter)]
    search_help_text = "An exact id, or the start of a user's email."
    list_per_page = 50


@admin.register(UsageRecord)
class UsageRecordAdmin(IngestedAdmin):
    date_hierarchy = "timestamp"
    list_display = [
        "timestamp",
        "request_id",
        "user",
        "org",
        "team",
        "model",
        "service_type",
        "status",
        "input_tokens",
        "output_tokens",
        "cost",
        "cost_source",
    ]
    list_filter = [("org", OrgRelatedFilter), "service_type", "status", "cost_source", "model"]
    list_select_related = ["org", "user", "team", "model"]
    search_fields = ["request_id__exact", "user__email__istartswith"]
    readonly_fields = ["tag_names"]


@admin.register(ActivityEvent)
class ActivityEventAdmin(IngestedAdmin):
    date_hierarchy = "timestamp"
    list_display = [
        "timestamp",
        "event_id",
        "kind",
        "user",
        "org",
        "agent",
        "project",
        "lines_added",
        "lines_removed",
        "quantity",
    ]
    list_filter = [("org", OrgRelatedFilter), "kind"]
    list_select_related = ["org", "user", "agent", "project"]
    search_fields = ["event_id__exact", "user__email__istartswith"]
    readonly_fields = ["tag_names"]


@admin.register(ResourceUsage)
class ResourceUsageAdmin(IngestedAdmin):
    date_hierarchy = "start"
    list_display = [
        "resource_id",
        "start",
        "end",
        "org",
        "user",
        "agent",
        "project",
        "cpu_cores",
        "ram_gb",
        "storage_gb",
    ]
    list_select_related = ["org", "user", "agent", "project"]
    search_fields = ["resource_id__exact", "user__email__istartswith"]


@admin.register(Session)
class SessionAdmin(IngestedAdmin):
    date_hierarchy = "first_seen"
    list_display = ["session_id", "org", "user", "agent", "project", "first_seen", "last_seen", "duration"]
    list_select_related = ["org", "user", "agent", "project"]
    search_fields = ["session_id__exact", "user__email__istartswith"]


@admin.register(OtlpSession)
class OtlpSessionAdmin(IngestedAdmin):
    """Which OTLP signal each Claude Code session's usage comes from: owned by the OTLP intake."""

    date_hierarchy = "first_seen"
    list_display = ["session_id", "org", "usage_source", "first_seen", "logs_seen_at"]
    list_filter = [("org", OrgRelatedFilter), "usage_source"]
    list_select_related = ["org"]
    search_fields = ["session_id__exact"]
    search_help_text = "An exact session id."


@admin.register(OtlpStream)
class OtlpStreamAdmin(IngestedAdmin):
    """The last point of each cumulative OTLP metric stream: owned by the OTLP intake."""

    list_display = ["stream_hash", "org", "start_time_ns", "last_time_ns", "last_value", "updated_at"]
    list_select_related = ["org"]
    search_fields = ["stream_hash__exact"]
    search_help_text = "An exact stream hash."


@admin.register(DirtyDay)
class DirtyDayAdmin(IngestedAdmin):
    """Days waiting for their rollups to be rebuilt: useful to see, owned by the rollup task."""

    list_display = ["org", "day", "marked_at"]
    list_select_related = ["org"]
    date_hierarchy = "day"


class RollupAdmin(IngestedAdmin):
    """Rollups are derived data, shown for checking; `manage.py rebuild_rollups` rewrites them."""

    date_hierarchy = "day"
    list_filter = [("org", OrgRelatedFilter)]
    list_select_related = ["org"]
    ordering = ["-day"]

    def get_list_display(self, request):
        return [f.name for f in self.model._meta.concrete_fields if f.name != "id"]


ROLLUPS = (
    UsageDaily,
    UsageDailyByTag,
    UsageDailyBy,
    UsageHourly,
    UsageHourlyBy,
    UsageHourlyOrg,
    ActivityDaily,
    ActivityDailyBy,
    ActivityHourlyOrg,
    ActiveUserDaily,
    ResourceDaily,
    SessionDaily,
    ConversationDaily,
    ConversationDayCount,
)
for rollup in ROLLUPS:
    admin.site.register(rollup, RollupAdmin)
