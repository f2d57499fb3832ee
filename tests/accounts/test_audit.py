"""The audit log (DESIGN §14): admin changes to orgs, teams, memberships, roles, API keys and prices
are recorded with who, when and before → after, never an API key's secret, never by ingestion, and
the log is read in the admin, where no one may write it."""

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from auditlog.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.test import AsyncClient, Client
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.timezone import localtime

from accounts.models import ApiKey, Membership, Organization, Role, Team
from accounts.services import api_key_create
from metering.models import LLMModel, ModelPrice, UsageRecord
from tests.accounts.test_admin import form_data, url
from tests.accounts.test_commands import run
from tests.conftest import PASSWORD
from tests.metering.test_api_ingest import post

LOG = reverse("admin:auditlog_logentry_changelist")


def admin_signed_in(user, **client_options) -> Client:
    """A client signed in through the admin's login form, as a person would."""
    client = Client(**client_options)
    response = client.post(reverse("admin:login"), {"username": user.email, "password": PASSWORD, "next": "/admin/"})
    assert response.status_code == 302, "the admin login form did not sign in"
    return client


def last_entry() -> int:
    """The newest entry's id (0 for none): what a test did comes after it, its fixtures' rows before."""
    return LogEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def entries(obj, action=None, *, since=0) -> list[LogEntry]:
    found = LogEntry.objects.get_for_object(obj).filter(pk__gt=since).order_by("pk")
    return list(found if action is None else found.filter(action=action))


def everything_logged() -> str:
    """All that the log holds, as one text, to look for what must never be in it."""
    return "\n".join(
        json.dumps([entry.changes, entry.changes_text, entry.object_repr, entry.serialized_data, entry.additional_data])
        for entry in LogEntry.objects.all()
    )


def change_role(client, membership, role, **extra):
    data = form_data(client.get(url(Membership, "change", membership.pk)))
    return client.post(url(Membership, "change", membership.pk), {**data, "role": role}, **extra)


@pytest.fixture
def membership(member, org):
    return Membership.objects.get(user=member, org=org)


@pytest.fixture
def su_signed_in(superuser):
    return admin_signed_in(superuser)


@pytest.fixture
def key_from_admin(su_signed_in, org):
    """An ingest key added through the admin's form: (the key, the full key the page showed once)."""
    response = su_signed_in.post(
        url(ApiKey, "add"),
        {
            "org": org.pk,
            "name": "gateway",
            "scope_ingest": "on",
            "otlp_usage_source": "auto",
            "otlp_use_client_cost": "on",
        },
    )
    assert response.status_code == 200, "the add form did not answer with the created key's page"
    return ApiKey.objects.get(org=org, name="gateway"), response.context["full_key"]


# What is recorded


def test_an_admin_changing_a_role_is_recorded_with_who_when_and_before_and_after(org_admin, membership):
    client = admin_signed_in(org_admin)
    before, since = timezone.now(), last_entry()

    response = change_role(client, membership, Role.MANAGER)

    assert response.status_code == 302
    [entry] = entries(membership, since=since)
    assert entry.changes_dict == {"role": ["member", "manager"]}
    assert entry.actor == org_admin
    assert entry.actor_email == org_admin.email
    assert before <= entry.timestamp <= timezone.now()
    assert entry.object_repr == "member@acme.test in Acme (manager)"


def test_the_address_is_the_clients_not_one_a_header_claims(org_admin, membership):
    client = admin_signed_in(org_admin, REMOTE_ADDR="198.51.100.20")
    since = last_entry()

    change_role(client, membership, Role.ADMIN, HTTP_X_FORWARDED_FOR="203.0.113.66")

    [entry] = entries(membership, since=since)
    assert entry.remote_addr == "198.51.100.20"


@pytest.mark.django_db(transaction=True)
def test_the_actor_is_recorded_under_asgi_too(org_admin, membership):
    """Through Django's ASGI handler (daphne's), where the middleware chain runs in a thread of its own."""
    client = AsyncClient()
    signed_in = async_to_sync(client.post)(
        reverse("admin:login"), {"username": org_admin.email, "password": PASSWORD, "next": "/admin/"}
    )
    assert signed_in.status_code == 302
    data = form_data(async_to_sync(client.get)(url(Membership, "change", membership.pk)))
    since = last_entry()

    async_to_sync(client.post)(url(Membership, "change", membership.pk), {**data, "role": Role.MANAGER})

    [entry] = entries(membership, since=since)
    assert (entry.actor, entry.changes_dict) == (org_admin, {"role": ["member", "manager"]})


def test_a_members_teams_changed_on_their_page_are_recorded(org_admin, membership, platform_team, web_team):
    client = admin_signed_in(org_admin)
    data = form_data(client.get(url(Membership, "change", membership.pk)))
    since = last_entry()

    client.post(url(Membership, "change", membership.pk), {**data, "teams": [web_team.pk]})

    changes = [(entry.changes_dict, entry.actor) for entry in entries(membership, since=since)]
    assert changes == [  # set() removes, then adds
        ({"teams": {"type": "m2m", "operation": "delete", "objects": ["Platform"]}}, org_admin),
        ({"teams": {"type": "m2m", "operation": "add", "objects": ["Web"]}}, org_admin),
    ]


def test_an_org_renamed_and_a_team_recoloured_are_recorded(su_signed_in, superuser, org, platform_team):
    org_data = form_data(su_signed_in.get(url(Organization, "change", org.pk)))
    team_data = form_data(su_signed_in.get(url(Team, "change", platform_team.pk)))
    since = last_entry()

    su_signed_in.post(url(Organization, "change", org.pk), {**org_data, "name": "Acme Corp"})
    su_signed_in.post(url(Team, "change", platform_team.pk), {**team_data, "colour": "#000000"})

    [renamed] = entries(org, since=since)
    [recoloured] = entries(platform_team, since=since)
    assert (renamed.actor, renamed.changes_dict) == (superuser, {"name": ["Acme", "Acme Corp"]})
    assert (recoloured.actor, recoloured.changes_dict) == (superuser, {"colour": ["#2563eb", "#000000"]})


def test_a_key_created_and_revoked_in_the_admin_is_recorded_without_its_secret(su_signed_in, superuser, key_from_admin):
    key, full_key = key_from_admin

    response = su_signed_in.post(url(ApiKey, "changelist"), {"action": "revoke", "_selected_action": [key.pk]})

    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    [created] = entries(key, LogEntry.Action.CREATE)
    [revoked] = entries(key, LogEntry.Action.UPDATE)
    assert created.actor == revoked.actor == superuser
    assert created.changes_dict["prefix"] == ["None", key.prefix]  # the public part names the key
    assert created.changes_dict["name"] == ["None", "gateway"]
    assert "secret_hash" not in created.changes_dict
    assert list(revoked.changes_dict) == ["revoked_at"]
    before, after = revoked.changes_dict["revoked_at"]
    assert (before, datetime.fromisoformat(after).replace(tzinfo=UTC)) == ("None", key.revoked_at)  # stored in UTC
    secret = ApiKey.split(full_key)[1]
    logged = everything_logged()
    assert key.secret_hash not in logged
    assert secret not in logged
    assert full_key not in logged


def test_a_price_changed_in_the_admin_is_recorded(su_signed_in, superuser):
    price = ModelPrice.objects.create(
        model=LLMModel.objects.create(name="audit-model", provider="test"),
        effective_from="2026-01-01",
        input=3,
        output=15,
    )
    data = form_data(su_signed_in.get(url(ModelPrice, "change", price.pk)))
    since = last_entry()

    su_signed_in.post(url(ModelPrice, "change", price.pk), {**data, "input": "4.5"})

    [entry] = entries(price, since=since)
    assert entry.actor == superuser
    assert list(entry.changes_dict) == ["input"]
    assert [Decimal(value) for value in entry.changes_dict["input"]] == [Decimal(3), Decimal("4.5")]


# What is not


def test_ingesting_with_the_key_writes_no_audit_entry(client, key_from_admin):
    key, full_key = key_from_admin
    logged_before = LogEntry.objects.count()
    now = timezone.now().isoformat()
    items = [
        # A new user, a new team and a new project: ingestion creates them, an admin did not.
        {"request_id": f"r-{n}", "timestamp": now, "user": f"new-{n}@example.com", "team": "Night shift",
         "project": "Atlas", "model": "gpt-4o", "input_tokens": 10, "output_tokens": 2}
        for n in range(3)
    ]  # fmt: skip

    response = post(client, full_key, {"usage": items})

    assert response.status_code == 200, response.content
    assert UsageRecord.objects.filter(api_key=key).count() == 3
    key.refresh_from_db()
    assert key.last_used_at is not None  # ingestion did write to the key
    assert Membership.objects.filter(org=key.org, user__email="new-0@example.com").exists()
    assert LogEntry.objects.count() == logged_before


def test_a_keys_last_use_is_not_logged_even_when_saved(org):
    """Excluded, not just written with update(): a save of it alone writes no entry."""
    key, _ = api_key_create(org=org, name="ci", scopes={"ingest"})
    key.last_used_at = timezone.now()
    since = last_entry()

    key.save()

    assert entries(key, since=since) == []


def test_a_creation_records_the_fields_and_not_the_reverse_relations(db):
    run("create_org", "initech", "--name", "Initech", "--timezone", "UTC")
    key, _ = api_key_create(org=Organization.objects.get(slug="initech"), name="ci", scopes={"ingest"})

    [org_created] = entries(Organization.objects.get(slug="initech"))
    [key_created] = entries(key)
    assert set(org_created.changes_dict) == {"id", "name", "slug", "timezone", "currency", "created_at"}
    concrete = {field.name for field in ApiKey._meta.concrete_fields}
    assert {"org", "name", "prefix", "scope_ingest"} <= set(key_created.changes_dict) <= concrete - {"secret_hash"}


def test_management_commands_leave_entries_without_an_actor(org):
    run("create_user", "acme", "ana@example.com", "--role", "manager", "--team", "Data")
    output = run("create_api_key", "acme", "ci", "--scope", "read")
    run("set_price", "audit-model", "--input", "2", "--output", "8", "--from", "2026-01-01")

    membership = Membership.objects.get(user__email="ana@example.com")
    key = ApiKey.objects.get(name="ci")
    price = ModelPrice.objects.get(model__name="audit-model")
    [joined] = entries(membership, LogEntry.Action.CREATE)
    [teamed] = entries(membership, LogEntry.Action.UPDATE)
    [key_created] = entries(key, LogEntry.Action.CREATE)
    [price_set] = entries(price, LogEntry.Action.CREATE)
    assert joined.changes_dict["role"] == ["None", "manager"]
    assert teamed.changes_dict == {"teams": {"type": "m2m", "operation": "add", "objects": ["Data"]}}
    assert key_created.changes_dict["scope_read"] == ["None", "True"]
    assert price_set.changes_dict["input"][0] == "None" and Decimal(price_set.changes_dict["input"][1]) == 2
    assert [entry.actor for entry in (joined, teamed, key_created, price_set)] == [None] * 4
    assert output.splitlines()[-1] not in everything_logged()


# Reading the log


@pytest.fixture
def logged_changes(org_admin, superuser, membership, platform_team):
    """A role changed by the org admin, a team renamed by the superuser, a key made by a command."""
    change_role(admin_signed_in(org_admin), membership, Role.MANAGER)
    su = admin_signed_in(superuser)
    data = form_data(su.get(url(Team, "change", platform_team.pk)))
    su.post(url(Team, "change", platform_team.pk), {**data, "name": "Infra"})
    run("create_api_key", "acme", "ci")
    return ApiKey.objects.get(name="ci")


def ids(queryset) -> set[int]:
    return set(queryset.values_list("pk", flat=True))


def row_of(html: str, text: str) -> str:
    """The list's table row that holds `text`."""
    start = html.rindex("<tr", 0, html.index(text))
    return html[start : html.index("</tr>", start)]


def test_the_list_shows_who_when_what_and_the_changes(su_signed_in, org_admin, membership, logged_changes):
    role_change = LogEntry.objects.get(content_type__model="membership", changes__has_key="role", actor=org_admin)
    key_made = LogEntry.objects.get_for_object(logged_changes).get()

    response = su_signed_in.get(LOG)

    assert response.status_code == 200
    html = response.content.decode()
    row = row_of(html, "role: member → manager")
    assert f'href="{url(Membership, "change", membership.pk)}"' in row  # what, linked
    assert "member@acme.test in Acme (manager)" in row
    assert f">{org_admin.email}</a>" in row  # who
    assert date_format(localtime(role_change.timestamp), "DATETIME_FORMAT") in row  # when
    assert '<td class="field-action">update</td>' in row
    key_row = row_of(html, str(logged_changes))
    assert '<td class="field-user_url">system</td>' in key_row  # made by a command: no actor
    assert '<td class="field-action">create</td>' in key_row
    assert str(key_made.pk) in key_row
    # Every entry is listed, newest first.
    assert [e.pk for e in response.context["cl"].result_list] == list(
        LogEntry.objects.order_by("-timestamp").values_list("pk", flat=True)
    )


def test_the_list_filters_by_model_and_actor_and_searches(su_signed_in, org_admin, superuser, logged_changes):
    def listed(**params) -> set[int]:
        response = su_signed_in.get(LOG, params)
        assert response.status_code == 200
        return {entry.pk for entry in response.context["cl"].result_list}

    team_type = ContentType.objects.get_for_model(Team)
    by_org_admin = ids(LogEntry.objects.filter(actor=org_admin))
    renamed = ids(LogEntry.objects.filter(content_type=team_type, object_repr="Infra"))

    assert listed(resource_type=team_type.pk) == ids(LogEntry.objects.filter(content_type=team_type)) != set()
    assert listed(actor__id__exact=org_admin.pk) == by_org_admin != set()
    assert listed(actor__id__exact=superuser.pk) == ids(LogEntry.objects.filter(actor=superuser)) != set()
    assert listed(q="Infra") == renamed != set()
    assert listed(q=org_admin.email) >= by_org_admin  # the actor's email (and entries that name them)
    offered = {choice for choice, _ in su_signed_in.get(LOG).context["cl"].filter_specs[2].lookup_choices}
    assert offered == {org_admin.pk, superuser.pk}  # the people who changed something, no one else


def test_an_entry_reads_but_no_one_adds_changes_or_deletes_one_not_even_a_superuser(su_signed_in, logged_changes):
    entry = LogEntry.objects.get(content_type__model="membership", changes__has_key="role", actor__isnull=False)
    stored = (entry.changes, entry.actor_id, entry.timestamp, entry.object_repr)
    count = LogEntry.objects.count()
    add_url = reverse("admin:auditlog_logentry_add")
    change_url = reverse("admin:auditlog_logentry_change", args=[entry.pk])
    delete_url = reverse("admin:auditlog_logentry_delete", args=[entry.pk])

    page = su_signed_in.get(change_url)
    assert page.status_code == 200  # read, without a form to save
    assert "<td>member</td><td>manager</td>" in page.content.decode().replace("\n", "")
    assert 'name="_save"' not in page.content.decode()
    assert su_signed_in.get(add_url).status_code == 403
    assert su_signed_in.post(add_url, {"object_repr": "forged", "action": 0}).status_code == 403
    assert su_signed_in.post(change_url, {"changes": "{}", "object_repr": "nothing"}).status_code == 403
    assert su_signed_in.get(delete_url).status_code == 403
    assert su_signed_in.post(delete_url, {"post": "yes"}).status_code == 403
    listing = su_signed_in.get(LOG)
    assert "action-checkbox" not in listing.content.decode()  # no bulk actions, so no bulk delete
    su_signed_in.post(LOG, {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"})

    entry.refresh_from_db()
    assert (entry.changes, entry.actor_id, entry.timestamp, entry.object_repr) == stored
    assert LogEntry.objects.count() == count
