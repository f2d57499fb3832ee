"""The Django admin for accounts, and the org scoping every Tally admin shares.

A superuser sees and edits everything. A staff user who is an admin of some
orgs (Membership role "admin") runs those orgs here without any Django model
permission: `OrgScopedAdminMixin` narrows every list, object and choice to
their orgs, so another org's rows "don't exist" for them. Anyone who is not
staff never gets past the admin login.
"""

from auditlog.admin import LogEntryAdmin as AuditlogLogEntryAdmin
from auditlog.filters import ResourceTypeFilter
from auditlog.models import LogEntry as AuditLogEntry
from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm
from django.contrib.auth.forms import UserChangeForm as DjangoUserChangeForm
from django.core.exceptions import ValidationError
from django.db.models import Count, Q, QuerySet
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.timezone import localtime
from django.utils.translation import ngettext

from accounts.models import ApiKey, Membership, Organization, Role, Tag, Team, User

admin.site.site_header = "Tally administration"
admin.site.site_title = "Tally admin"


def admin_org_ids(request) -> frozenset[int] | None:
    """The orgs `request.user` runs in the admin; None for a superuser, who runs them all."""
    user = request.user
    if user.is_superuser:
        return None
    if not hasattr(request, "_admin_org_ids"):  # asked dozens of times per page: look it up once
        request._admin_org_ids = frozenset(
            Membership.objects.filter(user=user, role=Role.ADMIN).values_list("org_id", flat=True)
            if user.is_active and user.is_staff
            else ()
        )
    return request._admin_org_ids


def org_q(model, org_ids) -> Q | None:
    """The rows of `model` that belong to `org_ids`; None for global models (LLM models, prices)."""
    if model is Organization:
        return Q(pk__in=org_ids)
    if model is User:
        # A subquery rather than a join, so a user in two of the orgs is listed once.
        return Q(pk__in=Membership.objects.filter(org__in=org_ids).values("user"))
    if model is Membership.teams.through:
        return Q(team__org__in=org_ids)
    if any(field.name == "org" for field in model._meta.fields):
        return Q(org__in=org_ids)
    return None


def limit_to_admin_orgs(queryset: QuerySet, request) -> QuerySet:
    org_ids = admin_org_ids(request)
    q = None if org_ids is None else org_q(queryset.model, org_ids)
    return queryset if q is None else queryset.filter(q)


class OrgConsistentForm(forms.ModelForm):
    """Rejects links across orgs, such as an Acme API key defaulting to a Globex team."""

    def clean(self):
        cleaned = super().clean()
        org_ids = set()
        if "org" not in self.fields and getattr(self.instance, "org_id", None):
            org_ids.add(self.instance.org_id)  # org is read-only here, e.g. on an existing API key
        for value in cleaned.values():
            for row in value if isinstance(value, QuerySet) else [value]:
                if isinstance(row, Organization):
                    org_ids.add(row.pk)
                elif getattr(row, "org_id", None):
                    org_ids.add(row.org_id)
        if len(org_ids) > 1:
            raise ValidationError("Everything chosen here must belong to the same organization.")
        return cleaned


class OrgScopedAdminMixin:
    """Lets org admins run their own orgs in the admin; mixed into every Tally ModelAdmin and inline.

    Rows, objects and the choices of every relation are narrowed to the
    viewer's orgs. Django model permissions still count (the super() calls),
    but an org admin needs none. Global models (LLM models and their prices)
    are shared by every org, so org admins only view them.
    """

    read_only = False  # ingested data: viewable, never added or changed through the admin
    form = OrgConsistentForm

    def _runs_orgs(self, request) -> bool:
        return bool(admin_org_ids(request))

    def _may_edit(self, request) -> bool:
        return self._runs_orgs(request) and org_q(self.model, ()) is not None

    def get_queryset(self, request):
        return limit_to_admin_orgs(super().get_queryset(request), request)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        return self._limit_choices(super().formfield_for_foreignkey(db_field, request, **kwargs), request)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        return self._limit_choices(super().formfield_for_manytomany(db_field, request, **kwargs), request)

    @staticmethod
    def _limit_choices(formfield, request):
        if formfield is not None:  # None for a many-to-many with its own through model
            formfield.queryset = limit_to_admin_orgs(formfield.queryset, request)
        return formfield

    def has_module_permission(self, request):
        return super().has_module_permission(request) or self._runs_orgs(request)

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) or self._runs_orgs(request)

    def has_add_permission(self, request, *args):  # inlines also get the parent object
        return not self.read_only and (super().has_add_permission(request, *args) or self._may_edit(request))

    def has_change_permission(self, request, obj=None):
        return not self.read_only and (super().has_change_permission(request, obj) or self._may_edit(request))

    def has_delete_permission(self, request, obj=None):
        if self.read_only:
            # Superusers keep it: deleting an org through the admin cascades to its usage.
            return request.user.is_superuser
        return super().has_delete_permission(request, obj) or self._may_edit(request)


class OrgRelatedFilter(admin.RelatedFieldListFilter):
    """A list filter on a relation that offers only the viewer's orgs' rows, not every customer's names."""

    def field_choices(self, field, request, model_admin):
        org_ids = admin_org_ids(request)
        return field.get_choices(
            include_blank=False,
            limit_choices_to=None if org_ids is None else org_q(field.related_model, org_ids),
            ordering=self.field_admin_ordering(field, request, model_admin),
        )


def colour_swatch(colour: str):
    return format_html(
        '<span style="display:inline-block;width:.9em;height:.9em;border-radius:2px;'
        'vertical-align:middle;background:{}"></span> {}',
        colour,
        colour,
    )


class MembershipInline(OrgScopedAdminMixin, admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user", "org", "teams"]


class UserMembershipInline(MembershipInline):
    def get_min_num(self, request, obj=None, **kwargs):
        # An org admin's new user needs a place in one of their orgs, or it would vanish from their admin on save.
        return 1 if obj is None and admin_org_ids(request) is not None else 0


class TeamMembershipInline(OrgScopedAdminMixin, admin.TabularInline):
    model = Membership.teams.through
    extra = 0
    autocomplete_fields = ["membership"]
    verbose_name = "member"
    verbose_name_plural = "members"


class UserCreationForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ["email", "name"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["email"].required = True  # optional on the model only for people first seen in usage data

    def clean_email(self):
        return self.cleaned_data["email"].lower()  # as UserManager stores it


class UserChangeForm(DjangoUserChangeForm):
    class Meta:
        model = User
        fields = "__all__"

    def clean_email(self):
        email = self.cleaned_data["email"]
        return email.lower() if email else email


@admin.register(User)
class UserAdmin(OrgScopedAdminMixin, DjangoUserAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        ("Personal info", {"fields": ["name"]}),
        ("Permissions", {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        ("Important dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [
        (None, {"classes": ["wide"], "fields": ["email", "name", "usable_password", "password1", "password2"]}),
    ]
    readonly_fields = ["last_login", "date_joined"]
    list_display = ["email", "name", "is_active", "is_staff", "is_superuser", "last_login"]
    list_filter = ["is_active", "is_staff", "is_superuser", ("memberships__org", OrgRelatedFilter), "memberships__role"]
    search_fields = ["email", "name", "memberships__external_id"]
    ordering = ["email"]
    list_per_page = 50
    inlines = [UserMembershipInline]

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if request.user.is_superuser:
            return fieldsets
        superuser_only = {"is_superuser", "groups", "user_permissions"}
        return [
            (name, {**opts, "fields": [f for f in opts["fields"] if f not in superuser_only]})
            for name, opts in fieldsets
        ]

    def _runs_all_of(self, request, user) -> bool:
        # Changing the email or password of someone who is also in another org
        # (or is a superuser) would reach beyond the orgs this admin runs.
        org_ids = admin_org_ids(request)
        return org_ids is None or (not user.is_superuser and not user.memberships.exclude(org_id__in=org_ids).exists())

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and (obj is None or self._runs_all_of(request, obj))

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and (obj is None or self._runs_all_of(request, obj))


@admin.register(Organization)
class OrganizationAdmin(OrgScopedAdminMixin, admin.ModelAdmin):
    list_display = ["name", "slug", "timezone", "currency", "member_count", "team_count", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(member_count=Count("memberships", distinct=True), team_count=Count("teams", distinct=True))
        )

    @admin.display(description="members", ordering="member_count")
    def member_count(self, obj):
        return obj.member_count

    @admin.display(description="teams", ordering="team_count")
    def team_count(self, obj):
        return obj.team_count

    # Org admins run their orgs; creating one, or deleting one with all its usage, is for superusers.
    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


@admin.register(Team)
class TeamAdmin(OrgScopedAdminMixin, admin.ModelAdmin):
    list_display = ["name", "swatch", "org", "member_count"]
    list_filter = [("org", OrgRelatedFilter)]
    list_select_related = ["org"]
    search_fields = ["name", "org__name"]
    autocomplete_fields = ["org"]
    ordering = ["org__name", "name"]
    inlines = [TeamMembershipInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(member_count=Count("memberships"))

    @admin.display(description="colour", ordering="colour")
    def swatch(self, obj):
        return colour_swatch(obj.colour)

    @admin.display(description="members", ordering="member_count")
    def member_count(self, obj):
        return obj.member_count


@admin.register(Membership)
class MembershipAdmin(OrgScopedAdminMixin, admin.ModelAdmin):
    list_display = ["user", "org", "role", "team_names", "external_id", "created_at"]
    list_filter = ["role", ("org", OrgRelatedFilter), ("teams", OrgRelatedFilter)]
    list_select_related = ["user", "org"]
    search_fields = ["user__email", "user__name", "external_id"]
    autocomplete_fields = ["user", "org", "teams"]
    list_per_page = 50

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("teams")

    @admin.display(description="teams")
    def team_names(self, obj):
        return ", ".join(team.name for team in obj.teams.all())


@admin.register(Tag)
class TagAdmin(OrgScopedAdminMixin, admin.ModelAdmin):
    list_display = ["name", "org"]
    list_filter = [("org", OrgRelatedFilter)]
    list_select_related = ["org"]
    search_fields = ["name"]
    autocomplete_fields = ["org"]
    ordering = ["org__name", "name"]


class RevokedFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request, queryset):
        if self.value() in ("active", "revoked"):
            return queryset.filter(revoked_at__isnull=self.value() == "active")
        return queryset


class ApiKeyForm(OrgConsistentForm):
    def clean(self):
        cleaned = super().clean()
        org_id = cleaned["org"].pk if cleaned.get("org") else self.instance.org_id
        owner = cleaned.get("owner")
        if owner and org_id and not owner.memberships.filter(org_id=org_id).exists():
            self.add_error("owner", "The owner must be a member of the key's organization.")
        return cleaned


@admin.register(ApiKey)
class ApiKeyAdmin(OrgScopedAdminMixin, admin.ModelAdmin):
    """The full key is shown once, on the page that answers the add form; only prefix and hash are kept."""

    form = ApiKeyForm
    add_fields = [
        "org",
        "name",
        "owner",
        "default_team",
        "default_project",
        "scope_ingest",
        "scope_read",
        "otlp_usage_source",
        "otlp_use_client_cost",
    ]
    change_fields = [
        "name",
        "org",
        "prefix",
        "owner",
        "default_team",
        "default_project",
        "scope_ingest",
        "scope_read",
        "otlp_usage_source",
        "otlp_use_client_cost",
        "otlp_exports",
        "created_at",
        "created_by",
        "last_used_at",
        "revoked_at",
    ]  # never secret_hash
    list_display = ["name", "org", "prefix", "scope_list", "owner", "created_at", "last_used_at", "active"]
    list_filter = [("org", OrgRelatedFilter), "scope_ingest", "scope_read", RevokedFilter]
    list_select_related = ["org", "owner"]
    search_fields = ["name", "prefix", "owner__email"]
    autocomplete_fields = ["org", "owner", "default_team", "default_project"]
    actions = ["revoke"]
    list_per_page = 50

    def get_fields(self, request, obj=None):
        return self.add_fields if obj is None else self.change_fields

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["org", "prefix", "otlp_exports", "created_at", "created_by", "last_used_at", "revoked_at"]

    @admin.display(description="OTLP exports")
    def otlp_exports(self, obj):
        # Through the reverse relation: accounts does not import metering, which owns the stats.
        stats = list(obj.otlp_stats.order_by("signal"))
        if not stats:
            return "None yet."
        columns = ("signal", "last export", "requests", "stored", "duplicates", "ignored", "rejected", "last rejection")
        header = format_html_join("", "<th>{}</th>", ((name,) for name in columns))
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    row.get_signal_display(),
                    date_format(localtime(row.last_export_at), "DATETIME_FORMAT") if row.last_export_at else "–",
                    row.requests,
                    row.stored,
                    row.duplicates,
                    row.ignored,
                    row.rejected,
                    row.last_rejection or "–",
                )
                for row in stats
            ),
        )
        return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", header, rows)

    @admin.display(description="scopes")
    def scope_list(self, obj):
        return ", ".join(obj.scopes)

    @admin.display(description="active", boolean=True, ordering="revoked_at")
    def active(self, obj):
        return obj.is_active

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
            # Held on the instance only until response_add renders it: never saved, logged or put in messages.
            obj.full_key = obj.set_new_secret()
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "API key created",
            "api_key": obj,
            "full_key": obj.full_key,
        }
        return TemplateResponse(request, "admin/accounts/apikey/created.html", context)

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request, queryset):
        keys = list(queryset.active())
        now = timezone.now()
        for key in keys:
            key.revoked_at = now
            key.save(update_fields=["revoked_at"])  # a save, not update(): the audit log records it
            self.log_change(request, key, "Revoked.")
        message = ngettext("Revoked %d API key.", "Revoked %d API keys.", len(keys)) % len(keys)
        self.message_user(request, message, messages.SUCCESS)


admin.site.unregister(AuditLogEntry)  # auditlog's own, which lets a superuser delete entries


@admin.register(AuditLogEntry)
class AuditLogEntryAdmin(AuditlogLogEntryAdmin):
    """The audit log (DESIGN §14): who changed what, when, each field's before → after.

    Read here, never written: no one adds, changes or deletes an entry, superusers included, or
    the log would prove nothing. Not org-scoped: an entry names its object generically (a content
    type and a primary key), so superusers read it, across all orgs (and staff given "Can view log
    entry"). Which models are recorded: AUDITLOG_INCLUDE_TRACKING_MODELS in settings.
    """

    list_display = ["created", "resource_url", "action", "user_url", "changes_summary", "remote_addr"]
    list_filter = ["action", ResourceTypeFilter, ("actor", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["object_repr", "changes", "actor__email"]  # auditlog's adds first/last_name: our User has none
    search_help_text = "Part of an object's name, a changed value, or the actor's email."
    readonly_fields = ["created", "resource_url", "action", "user_url", "remote_addr", "msg"]
    fieldsets = [
        (None, {"fields": ["created", "user_url", "remote_addr", "resource_url"]}),
        ("Changes", {"fields": ["action", "msg"]}),
    ]
    actions = None
    list_per_page = 50

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="changes")
    def changes_summary(self, obj):
        """One line per field, as stored: "role: member → manager"; "teams: add Platform" for a many-to-many."""
        lines = []
        for field, change in obj.changes_dict.items():
            if isinstance(change, dict):  # {"type": "m2m", "operation": "add" or "delete", "objects": [names]}
                lines.append((field, f"{change['operation']} {', '.join(change['objects'])}"))
            else:
                lines.append((field, " → ".join(str(value) for value in change)))
        return format_html_join(mark_safe("<br>"), "{}: {}", lines)
