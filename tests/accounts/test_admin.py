"""The Django admin: every registered model, org-scoped administration, users and API keys."""

import re
from datetime import timedelta

import pytest
from auditlog.models import LogEntry as AuditLogEntry
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.apps import apps
from django.contrib import admin as django_admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from accounts.admin import org_q
from accounts.models import ApiKey, Membership, Organization, Role, Tag, Team, User
from metering.admin import ROLLUPS
from metering.models import (
    ActivityEvent,
    ActivityKind,
    Agent,
    DirtyDay,
    LLMModel,
    ModelPrice,
    OtlpSession,
    OtlpStream,
    Project,
    Repository,
    ResourceUsage,
    Session,
    UsageRecord,
    UsageRecordTag,
)
from metering.rollups import rollup_day_rebuild
from tests.conftest import PASSWORD

REGISTERED = sorted(django_admin.site._registry, key=lambda model: model._meta.label)
ORG_SCOPED = [model for model in REGISTERED if org_q(model, ()) is not None]


def label(model) -> str:
    return model._meta.label


def url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def form_data(response) -> dict:
    """The values of an admin change form and its inlines, as a browser would post them back."""
    data = {}
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        data.update({f"{inline.formset.prefix}-{k}": v for k, v in inline.formset.management_form.initial.items()})
        forms += inline.formset.forms
    for form in forms:
        for name, field in form.fields.items():
            value = form[name].value()
            if field.disabled or value is None or value is False:
                continue
            data[form[name].html_name] = "on" if value is True else value
    return data


def make_org_rows(org: Organization, user: User, llm: LLMModel, price: ModelPrice) -> dict:
    """One row of every org-scoped model in `org`, keyed by model."""
    now = timezone.now()
    team = Team.objects.create(org=org, name=f"{org.slug} team")
    membership = user.memberships.get(org=org)
    membership.teams.add(team)
    tag = Tag.objects.create(org=org, name=f"{org.slug} tag")
    project = Project.objects.create(org=org, name=f"{org.slug} project")
    agent = Agent.objects.create(org=org, name=f"{org.slug} agent")
    session = Session.objects.create(org=org, session_id=f"{org.slug}-s", user=user, first_seen=now, last_seen=now)
    key = ApiKey(org=org, name=f"{org.slug} key", owner=user)
    key.set_new_secret()
    key.save()
    usage = UsageRecord.objects.create(
        org=org,
        timestamp=now,
        user=user,
        model=llm,
        price=price,
        request_id=f"{org.slug}-r",
        team=team,
        project=project,
        agent=agent,
        session=session,
        conversation_id=f"{org.slug}-c",
        api_key=key,
        input_tokens=100,
        output_tokens=20,
    )
    UsageRecordTag.objects.create(record=usage, tag=tag)
    rows = {
        Organization: org,
        User: user,
        Team: team,
        Membership: membership,
        Tag: tag,
        ApiKey: key,
        Project: project,
        Agent: agent,
        Session: session,
        UsageRecord: usage,
        Repository: Repository.objects.create(org=org, name=f"{org.slug} repo", project=project),
        ActivityEvent: ActivityEvent.objects.create(
            org=org, timestamp=now, user=user, event_id=f"{org.slug}-e", kind=ActivityKind.COMMIT
        ),
        ResourceUsage: ResourceUsage.objects.create(
            org=org, resource_id=f"{org.slug}-w", start=now - timedelta(hours=1), end=now, user=user, cpu_cores=2
        ),
        DirtyDay: DirtyDay.objects.create(org=org, day=now.date()),
        OtlpSession: OtlpSession.objects.create(org=org, session_id=f"{org.slug}-s", first_seen=now),
        OtlpStream: OtlpStream.objects.create(
            org=org, stream_hash=f"{org.slug:0<64}"[:64], start_time_ns=1, last_time_ns=2, last_value=3
        ),
    }
    # The rollups of that day, built from the rows above.
    day = now.astimezone(org.tzinfo).date()
    rollup_day_rebuild(org=org, day=day)
    for rollup in ROLLUPS:
        rows[rollup] = rollup.objects.filter(org=org, day=day).first()
        assert rows[rollup] is not None
    return rows


def sign_in_records() -> dict:
    """django-axes' records of sign-ins (not org-scoped: superusers only): a failed attempt and a
    sign-in, made through the login form; a failure log row (that log is off) made directly."""
    Client(REMOTE_ADDR="198.51.100.7").post("/login/", {"username": "admin@acme.test", "password": "wrong"})
    Client(REMOTE_ADDR="198.51.100.8").post("/login/", {"username": "admin@acme.test", "password": PASSWORD})
    AccessFailureLog.objects.create(username="admin@acme.test", ip_address="198.51.100.7", path_info="/login/")
    return {model: model.objects.first() for model in (AccessAttempt, AccessLog, AccessFailureLog)}


@pytest.fixture
def rows(org, other_org, admin, outsider):
    """(Acme's rows, Globex's rows), sharing the global ones: a model, its price, a group."""
    llm = LLMModel.objects.create(name="test-model-1", provider="test-provider")
    price = ModelPrice.objects.create(model=llm, effective_from="2025-01-01", input=3, output=15)
    shared = {LLMModel: llm, ModelPrice: price, Group: Group.objects.create(name="Auditors"), **sign_in_records()}
    acme = make_org_rows(org, admin, llm, price)
    globex = make_org_rows(other_org, outsider, llm, price)
    shared[AuditLogEntry] = AuditLogEntry.objects.first()  # the audit log's record of the rows above
    return {**shared, **acme}, {**shared, **globex}


# Every registered model


def test_every_model_of_accounts_and_metering_has_an_admin():
    through_tables = {"UsageRecordTag", "ActivityEventTag"}
    shown_on_their_key = {"OtlpKeyStats"}  # on the API key's page (test_an_api_keys_page_shows_its_otlp_exports)
    models = [
        model
        for app in ("accounts", "metering")
        for model in apps.get_app_config(app).get_models()
        if model.__name__ not in through_tables | shown_on_their_key
    ]
    assert [label(m) for m in models if m not in django_admin.site._registry] == []


@pytest.mark.parametrize("model", REGISTERED, ids=label)
def test_every_admin_page_loads_for_a_superuser(su_client, superuser, rows, model):
    acme, _ = rows
    assert model in acme, f"make_org_rows or rows should create a {label(model)}"
    request = RequestFactory().get("/admin/")
    request.user = superuser
    addable = django_admin.site._registry[model].has_add_permission(request)

    assert su_client.get(url(model, "changelist")).status_code == 200
    assert su_client.get(url(model, "add")).status_code == (200 if addable else 403)
    assert su_client.get(url(model, "change", acme[model].pk)).status_code == 200


@pytest.mark.parametrize("model", ORG_SCOPED, ids=label)
def test_an_org_admin_lists_their_orgs_rows_and_not_another_orgs(admin_client_, rows, model):
    acme, globex = rows

    response = admin_client_.get(url(model, "changelist"))

    assert response.status_code == 200
    listed = {obj.pk for obj in response.context["cl"].result_list}
    assert acme[model].pk in listed
    assert globex[model].pk not in listed
    assert admin_client_.get(url(model, "change", acme[model].pk)).status_code == 200


@pytest.mark.parametrize("model", ORG_SCOPED, ids=label)
def test_another_orgs_row_does_not_exist_for_an_org_admin(admin_client_, rows, model):
    _, globex = rows

    response = admin_client_.get(url(model, "change", globex[model].pk))

    assert response.status_code == 302
    assert response.url == reverse("admin:index")  # Django's "doesn't exist. Perhaps it was deleted?"


# Who gets in


def test_a_member_who_is_not_staff_is_sent_to_the_admin_login(client, member):
    client.force_login(member)

    for path in (reverse("admin:index"), url(Team, "changelist")):
        response = client.get(path)
        assert response.status_code == 302
        assert response.url.startswith(reverse("admin:login"))


def test_a_staff_manager_gets_no_org_data(client, manager, platform_team):
    manager.is_staff = True
    manager.save()
    client.force_login(manager)

    assert client.get(url(Team, "changelist")).status_code == 403
    assert client.get(url(Team, "change", platform_team.pk)).status_code == 403


def test_an_org_admin_edits_their_orgs_team(admin_client_, platform_team):
    data = form_data(admin_client_.get(url(Team, "change", platform_team.pk)))

    response = admin_client_.post(url(Team, "change", platform_team.pk), {**data, "name": "Infra"})

    assert response.status_code == 302
    platform_team.refresh_from_db()
    assert platform_team.name == "Infra"


def test_an_org_admin_neither_adds_nor_deletes_organizations(admin_client_, org):
    assert admin_client_.get(url(Organization, "add")).status_code == 403
    assert admin_client_.get(url(Organization, "delete", org.pk)).status_code == 403
    assert admin_client_.get(url(Organization, "change", org.pk)).status_code == 200


def test_an_org_admin_is_offered_only_their_orgs_teams(admin_client_, platform_team, other_org):
    Team.objects.create(org=other_org, name="Globex platform")

    response = admin_client_.get(
        reverse("admin:autocomplete"),
        {"app_label": "accounts", "model_name": "apikey", "field_name": "default_team", "term": ""},
    )

    assert [r["text"] for r in response.json()["results"]] == ["Platform"]


def test_an_org_admins_org_filter_offers_only_the_orgs_they_run(admin_client_, org_admin, org, other_org):
    initech = Organization.objects.create(name="Initech", slug="initech")
    Membership.objects.create(user=org_admin, org=initech, role=Role.ADMIN)
    Membership.objects.create(user=org_admin, org=other_org, role=Role.MEMBER)

    response = admin_client_.get(url(Team, "changelist"))

    org_filter = response.context["cl"].filter_specs[0]
    assert org_filter.lookup_choices == [(org.pk, "Acme"), (initech.pk, "Initech")]


def test_a_membership_cannot_join_a_team_of_another_org(su_client, org, other_org, member):
    globex_team = Team.objects.create(org=other_org, name="Globex platform")
    membership = member.memberships.get()
    data = form_data(su_client.get(url(Membership, "change", membership.pk)))

    response = su_client.post(url(Membership, "change", membership.pk), {**data, "teams": [globex_team.pk]})

    assert response.status_code == 200
    assert "must belong to the same organization" in response.content.decode()
    assert list(membership.teams.all()) != [globex_team]


def test_organization_and_team_pages_show_their_memberships(su_client, org, platform_team, member):
    assert "member@acme.test" in su_client.get(url(Organization, "change", org.pk)).content.decode()
    assert "member@acme.test" in su_client.get(url(Team, "change", platform_team.pk)).content.decode()


# Users


def test_a_user_is_added_with_an_email_and_a_password_twice(su_client):
    response = su_client.post(
        url(User, "add"),
        {
            "email": "New.Person@Acme.test",
            "name": "New Person",
            "usable_password": "true",
            "password1": PASSWORD,
            "password2": PASSWORD,
            "memberships-TOTAL_FORMS": 0,
            "memberships-INITIAL_FORMS": 0,
        },
    )

    assert response.status_code == 302
    user = User.objects.get(email="new.person@acme.test")
    assert user.check_password(PASSWORD)
    assert su_client.get(response.url).status_code == 200


def test_the_user_change_page_links_to_the_password_form(su_client, member):
    response = su_client.get(url(User, "change", member.pk))

    assert 'href="../password/"' in response.content.decode()
    assert su_client.get(reverse("admin:auth_user_password_change", args=[member.pk])).status_code == 200


def test_an_org_admin_adds_a_user_into_their_org(admin_client_, org, platform_team):
    response = admin_client_.post(
        url(User, "add"),
        {
            "email": "hire@acme.test",
            "usable_password": "true",
            "password1": PASSWORD,
            "password2": PASSWORD,
            "memberships-TOTAL_FORMS": 1,
            "memberships-INITIAL_FORMS": 0,
            "memberships-0-org": org.pk,
            "memberships-0-role": Role.MEMBER,
            "memberships-0-teams": [platform_team.pk],
        },
    )

    assert response.status_code == 302
    user = User.objects.get(email="hire@acme.test")
    assert list(user.memberships.values_list("org", "role")) == [(org.pk, Role.MEMBER)]
    assert admin_client_.get(response.url).status_code == 200


def test_an_org_admin_cannot_add_a_user_outside_their_orgs(admin_client_, other_org):
    base = {"email": "stray@acme.test", "usable_password": "false"}
    no_place = {**base, "memberships-TOTAL_FORMS": 1, "memberships-INITIAL_FORMS": 0}
    elsewhere = {**no_place, "memberships-0-org": other_org.pk, "memberships-0-role": Role.ADMIN}

    for data in (no_place, elsewhere):
        assert admin_client_.post(url(User, "add"), data).status_code == 200  # the form again, with errors
    assert not User.objects.filter(email="stray@acme.test").exists()


def test_an_org_admin_cannot_make_anyone_a_superuser(admin_client_, member):
    response = admin_client_.get(url(User, "change", member.pk))
    assert "is_superuser" not in response.context["adminform"].form.fields

    response = admin_client_.post(url(User, "change", member.pk), {**form_data(response), "is_superuser": "on"})

    assert response.status_code == 302
    member.refresh_from_db()
    assert not member.is_superuser


def test_an_org_admin_cannot_change_someone_who_is_also_in_another_org(admin_client_, member, other_org):
    Membership.objects.create(user=member, org=other_org)
    response = admin_client_.get(url(User, "change", member.pk))
    assert response.status_code == 200  # viewing is fine

    response = admin_client_.post(url(User, "change", member.pk), {"email": "taken@over.test"})

    assert response.status_code == 403
    assert admin_client_.get(reverse("admin:auth_user_password_change", args=[member.pk])).status_code == 403


# API keys


def add_key(client, org, **fields) -> object:
    # As a browser posts the form: the OTLP settings at their initial values.
    data = {
        "org": org.pk,
        "name": "CI",
        "scope_ingest": "on",
        "otlp_usage_source": "auto",
        "otlp_use_client_cost": "on",
        **fields,
    }
    return client.post(url(ApiKey, "add"), data)


def test_a_new_api_keys_secret_is_shown_once_and_never_stored(su_client, org, superuser):
    response = add_key(su_client, org)

    assert response.status_code == 200
    assert "it will not be shown again" in response.content.decode()
    full_key = re.search(r"tly_[0-9a-f]{12}_[\w-]+", response.content.decode()).group()
    prefix, secret = ApiKey.split(full_key)
    key = ApiKey.objects.get(prefix=prefix)
    assert key.check_secret(secret)
    assert key.created_by == superuser
    assert not any(secret in str(value) for value in ApiKey.objects.filter(pk=key.pk).values().get().values())

    for page in (url(ApiKey, "change", key.pk), url(ApiKey, "changelist"), url(ApiKey, "add")):
        html = su_client.get(page).content.decode()
        assert secret not in html
    assert prefix in su_client.get(url(ApiKey, "change", key.pk)).content.decode()
    assert key.secret_hash not in su_client.get(url(ApiKey, "change", key.pk)).content.decode()
    assert secret not in str(su_client.cookies)
    assert not any(secret in str(value) for value in su_client.session.values())
    assert not any(secret in f"{e.object_repr} {e.change_message}" for e in LogEntry.objects.all())


def test_an_api_key_cannot_reach_into_another_org(su_client, org, other_org, member, outsider):
    globex_team = Team.objects.create(org=other_org, name="Globex platform")

    response = add_key(su_client, org, default_team=globex_team.pk)
    assert "must belong to the same organization" in response.content.decode()
    response = add_key(su_client, org, owner=outsider.pk)
    assert "The owner must be a member" in response.content.decode()
    assert not ApiKey.objects.exists()

    add_key(su_client, org, owner=member.pk)
    assert ApiKey.objects.get().owner == member


def test_an_org_admin_creates_keys_only_in_their_org(admin_client_, org, other_org):
    assert add_key(admin_client_, other_org).status_code == 200  # the form again: not a valid choice
    assert not ApiKey.objects.exists()

    assert "it will not be shown again" in add_key(admin_client_, org).content.decode()
    assert ApiKey.objects.get().org == org


def test_a_new_key_takes_the_otlp_settings_of_its_form(su_client, org):
    add_key(su_client, org, otlp_usage_source="logs", otlp_use_client_cost="")

    key = ApiKey.objects.get()
    assert (key.otlp_usage_source, key.otlp_use_client_cost) == ("logs", False)


def test_an_org_admin_changes_their_keys_otlp_settings(admin_client_, org):
    key = ApiKey(org=org, name="collector")
    key.set_new_secret()
    key.save()
    assert (key.otlp_usage_source, key.otlp_use_client_cost) == ("auto", True)
    data = form_data(admin_client_.get(url(ApiKey, "change", key.pk)))
    data.pop("otlp_use_client_cost", None)  # unticked

    response = admin_client_.post(url(ApiKey, "change", key.pk), {**data, "otlp_usage_source": "metrics"})

    assert response.status_code == 302
    key.refresh_from_db()
    assert (key.otlp_usage_source, key.otlp_use_client_cost) == ("metrics", False)


def test_an_api_keys_page_shows_its_otlp_exports_read_only(su_client, org):
    from metering.services import record_otlp_export

    key = ApiKey(org=org, name="collector")
    key.set_new_secret()
    key.save()
    assert "None yet." in su_client.get(url(ApiKey, "change", key.pk)).content.decode()
    record_otlp_export(key, "metrics", stored=7, duplicates=2, ignored=1, rejected=3, message="bad <point>")

    response = su_client.get(url(ApiKey, "change", key.pk))

    html = response.content.decode()
    assert "<td>Metrics</td>" in html
    assert "<td>7</td><td>2</td><td>1</td><td>3</td><td>bad &lt;point&gt;</td>" in html
    assert "otlp_exports" not in response.context["adminform"].form.fields  # shown, not editable


def test_the_revoke_action_revokes_active_keys(su_client, org):
    active = ApiKey(org=org, name="a")
    revoked = ApiKey(org=org, name="b", revoked_at=timezone.now() - timedelta(days=1))
    for key in (active, revoked):
        key.set_new_secret()
        key.save()

    response = su_client.post(
        url(ApiKey, "changelist"), {"action": "revoke", "_selected_action": [active.pk, revoked.pk]}, follow=True
    )

    assert "Revoked 1 API key." in response.content.decode()
    active.refresh_from_db()
    assert not active.is_active
    assert ApiKey.objects.get(pk=revoked.pk).revoked_at == revoked.revoked_at


def test_the_status_filter_separates_active_and_revoked_keys(su_client, org):
    for name, revoked_at in (("live", None), ("dead", timezone.now())):
        key = ApiKey(org=org, name=name, revoked_at=revoked_at)
        key.set_new_secret()
        key.save()

    def names(status):
        response = su_client.get(url(ApiKey, "changelist"), {"status": status})
        return [key.name for key in response.context["cl"].result_list]

    assert names("active") == ["live"]
    assert names("revoked") == ["dead"]
