"""create_org, create_user and create_api_key, against the contract in DESIGN §5."""

from io import StringIO

import pytest
from django.contrib.auth import get_user
from django.core.management import CommandError, call_command

from accounts.models import ApiKey, Membership, Organization, Role, Team, User
from accounts.services import api_key_authenticate


def run(*args, **options) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


# --- create_org ---------------------------------------------------------------


def test_create_org_creates_an_org(db):
    output = run("create_org", "initech", "--name", "Initech", "--timezone", "America/Chicago", "--currency", "EUR")
    org = Organization.objects.get(slug="initech")
    assert (org.name, org.timezone, org.currency) == ("Initech", "America/Chicago", "EUR")
    assert "Created" in output


def test_a_new_org_is_in_usd_unless_told_otherwise(db):
    run("create_org", "initech", "--name", "Initech", "--timezone", "UTC")
    assert Organization.objects.get(slug="initech").currency == "USD"


def test_create_org_on_an_existing_slug_updates_it_and_says_so(org):
    output = run("create_org", "acme", "--name", "Acme Corp", "--timezone", "Europe/Paris")
    org.refresh_from_db()
    assert (org.name, org.timezone, org.currency) == ("Acme Corp", "Europe/Paris", "USD")
    assert "Updated" in output and "name" in output and "timezone" in output
    assert Organization.objects.count() == 1


def test_create_org_run_twice_changes_nothing_the_second_time(db):
    run("create_org", "initech", "--name", "Initech", "--timezone", "UTC")
    output = run("create_org", "initech", "--name", "Initech", "--timezone", "UTC")
    assert "nothing changed" in output
    assert Organization.objects.count() == 1


def test_a_bad_time_zone_is_refused_by_name_and_nothing_is_stored(org):
    with pytest.raises(CommandError, match="Mars/Olympus_Mons"):
        run("create_org", "initech", "--name", "Initech", "--timezone", "Mars/Olympus_Mons")
    with pytest.raises(CommandError, match="Mars/Olympus_Mons"):
        run("create_org", "acme", "--name", "Acme", "--timezone", "Mars/Olympus_Mons")
    assert list(Organization.objects.values_list("slug", "timezone")) == [("acme", "Europe/Berlin")]


def test_a_bad_slug_or_currency_is_refused(db):
    with pytest.raises(CommandError, match="slug"):
        run("create_org", "not a slug", "--name", "X", "--timezone", "UTC")
    with pytest.raises(CommandError, match="currency"):
        run("create_org", "x", "--name", "X", "--timezone", "UTC", "--currency", "dollars")
    assert not Organization.objects.exists()


# --- create_user --------------------------------------------------------------


def test_create_user_makes_a_member_who_cannot_log_in_without_a_password(org):
    output = run("create_user", "acme", "New.Person@Example.com", "--role", "member", "--team", "Platform")
    user = User.objects.get(email="new.person@example.com")
    membership = Membership.objects.get(user=user, org=org)
    assert membership.role == Role.MEMBER
    assert list(membership.teams.values_list("name", flat=True)) == ["Platform"]
    assert not user.has_usable_password() and not user.is_staff
    assert "cannot log in" in output


def test_teams_named_are_created_if_missing_and_existing_ones_reused(org, platform_team):
    run("create_user", "acme", "ana@example.com", "--role", "manager", "--team", "Platform", "--team", "Data")
    membership = Membership.objects.get(user__email="ana@example.com")
    assert sorted(membership.teams.values_list("name", flat=True)) == ["Data", "Platform"]
    assert membership.teams.get(name="Platform") == platform_team
    assert Team.objects.filter(org=org).count() == 2


def test_a_password_lets_the_user_log_in(client, org):
    run("create_user", "acme", "ana@example.com", "--role", "member", "--password", "s3cret-passphrase")
    signed_in = client.post("/login/", {"username": "ana@example.com", "password": "s3cret-passphrase"})
    assert signed_in.status_code == 302
    assert get_user(client).email == "ana@example.com"


def test_an_admin_can_open_the_django_admin(org):
    run("create_user", "acme", "boss@example.com", "--role", "admin")
    assert User.objects.get(email="boss@example.com").is_staff


def test_create_user_again_updates_role_and_teams_and_keeps_the_password(org, member, platform_team, web_team):
    output = run("create_user", "acme", "MEMBER@acme.test", "--role", "manager", "--team", "Web")
    member.refresh_from_db()
    membership = Membership.objects.get(user=member, org=org)
    assert membership.role == Role.MANAGER
    assert list(membership.teams.all()) == [web_team]
    assert member.has_usable_password()  # no --password: left as it was
    assert "Updated" in output
    assert User.objects.filter(email__iexact="member@acme.test").count() == 1


def test_create_user_run_twice_gives_the_same_result(org):
    for _ in range(2):
        run("create_user", "acme", "ana@example.com", "--role", "member", "--team", "Data")
    assert (User.objects.count(), Membership.objects.count(), Team.objects.count()) == (1, 1, 1)


def test_a_user_of_another_org_is_added_to_this_one(org, outsider):
    run("create_user", "acme", outsider.email, "--role", "member")
    assert set(outsider.memberships.values_list("org__slug", flat=True)) == {"acme", "globex"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["nope", "ana@example.com", "--role", "member"], "nope"),
        (["acme", "ana@example.com", "--role", "owner"], "owner"),
        (["acme", "not-an-email", "--role", "member"], "not-an-email"),
        (["acme", "ana@example.com", "--role", "member", "--password", "123"], "too short"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_stored(org, args, message):
    with pytest.raises(CommandError, match=message):
        run("create_user", *args)
    assert not User.objects.exists() and not Membership.objects.exists()


# --- create_api_key -----------------------------------------------------------


def test_create_api_key_prints_a_working_key_alone_on_its_last_line(org):
    output = run("create_api_key", "acme", "CI")
    lines = output.splitlines()
    full_key = lines[-1]
    assert full_key.startswith("tly_") and full_key == full_key.strip() and len(lines) > 1
    key = api_key_authenticate(presented=full_key)
    assert (key.org, key.name, key.scopes, key.owner) == (org, "CI", ["ingest"], None)


def test_the_database_holds_only_a_hash_of_the_secret(org):
    full_key = run("create_api_key", "acme", "CI").splitlines()[-1]
    secret = full_key.split("_", 2)[2]
    key = ApiKey.objects.get()
    assert key.secret_hash == ApiKey.hash_secret(secret)
    stored = [str(value) for value in ApiKey.objects.values().get().values()]
    assert not any(secret in value for value in stored)


def test_scopes_and_owner_are_set_as_asked(org, manager):
    full_key = run(
        "create_api_key", "acme", "Dash", "--scope", "read", "--scope", "ingest", "--user", "Manager@Acme.test"
    ).splitlines()[-1]
    key = api_key_authenticate(presented=full_key)
    assert (key.scopes, key.owner) == (["ingest", "read"], manager)


def test_a_read_only_key_has_no_ingest_scope(org):
    run("create_api_key", "acme", "Reader", "--scope", "read")
    assert ApiKey.objects.get().scopes == ["read"]


def test_each_run_creates_a_new_key(org):
    first = run("create_api_key", "acme", "CI").splitlines()[-1]
    second = run("create_api_key", "acme", "CI").splitlines()[-1]
    assert first != second and ApiKey.objects.count() == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["nope", "CI"], "nope"),
        (["acme", "CI", "--user", "outsider@globex.test"], "not a member"),
        (["acme", "CI", "--scope", "write"], "write"),
    ],
)
def test_a_bad_org_user_or_scope_is_refused_and_no_key_is_made(org, outsider, args, message):
    with pytest.raises(CommandError, match=message):
        run("create_api_key", *args)
    assert not ApiKey.objects.exists()
