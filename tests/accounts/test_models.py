import hmac

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from accounts.models import ApiKey, Membership, Team, User
from accounts.services import api_key_authenticate, api_key_create
from tests.conftest import make_user


def test_emails_are_unique_whatever_their_case(db):
    make_user("Ana@Example.com")
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(email="ana@example.COM")


def test_a_user_has_one_membership_per_org(org, member):
    with pytest.raises(IntegrityError), transaction.atomic():
        Membership.objects.create(user=member, org=org, role="admin")


def test_the_database_refuses_an_unknown_role(org):
    user = make_user("x@acme.test")
    with pytest.raises(IntegrityError), transaction.atomic():
        Membership.objects.create(user=user, org=org, role="owner")


def test_an_external_id_names_one_member_per_org(org, member, web_member):
    Membership.objects.filter(user=member).update(external_id="emp-7")
    with pytest.raises(IntegrityError), transaction.atomic():
        Membership.objects.filter(user=web_member).update(external_id="emp-7")
    # Blank external ids are not identities: any number may be blank.
    assert Membership.objects.filter(org=org, external_id="").count() == 1


def test_team_names_are_unique_within_an_org(org, other_org, platform_team):
    Team.objects.create(org=other_org, name="Platform")
    with pytest.raises(IntegrityError), transaction.atomic():
        Team.objects.create(org=org, name="Platform")


def test_the_database_refuses_a_key_with_no_scope(org):
    key = ApiKey(org=org, name="ci", scope_ingest=False, scope_read=False)
    key.set_new_secret()
    with pytest.raises(IntegrityError), transaction.atomic():
        key.save()


def test_the_database_refuses_a_key_whose_secret_is_not_a_hash(org):
    key = ApiKey(org=org, name="ci")
    full_key = key.set_new_secret()
    key.secret_hash = ApiKey.split(full_key)[1]  # the secret in clear, as a careless writer might
    with pytest.raises(IntegrityError), transaction.atomic():
        key.save()


def test_a_new_key_stores_only_its_prefix_and_a_hash(org):
    key = ApiKey(org=org, name="ci")
    full_key = key.set_new_secret()
    key.save()
    prefix, secret = ApiKey.split(full_key)
    stored = ApiKey.objects.filter(pk=key.pk).values().get()
    assert stored["prefix"] == prefix
    assert all(secret not in str(value) for value in stored.values())
    assert key.check_secret(secret)
    assert not key.check_secret(secret[:-1] + ("x" if secret[-1] != "x" else "y"))


@pytest.mark.parametrize("presented", ["", "tly_", "tly_abc_def", "sk-123", "tly_0123456789ab_", "xyz_0123456789ab_s"])
def test_keys_not_shaped_like_ours_do_not_split(presented):
    assert ApiKey.split(presented) is None


def test_two_new_keys_never_share_a_prefix_or_secret(org):
    first, second = ApiKey(org=org, name="a"), ApiKey(org=org, name="b")
    assert first.set_new_secret() != second.set_new_secret()
    assert first.prefix != second.prefix and first.secret_hash != second.secret_hash


def test_a_key_cannot_default_to_another_orgs_team_or_project_or_be_owned_by_an_outsider(org, other_org, outsider):
    from accounts.services import api_key_create
    from metering.models import Project

    their_team = Team.objects.create(org=other_org, name="Theirs")
    their_project = Project.objects.create(org=other_org, name="Theirs")
    for wrong in ({"default_team": their_team}, {"default_project": their_project}, {"owner": outsider}):
        with pytest.raises(ValidationError) as refused:
            api_key_create(org=org, name="k", scopes={"ingest"}, **wrong)
        assert set(refused.value.message_dict) == set(wrong)
    assert not ApiKey.objects.exists()


def test_a_presented_secret_is_compared_in_constant_time(org, monkeypatch):
    """The stored hash and the presented secret's meet only in hmac.compare_digest, whose time
    does not depend on where they differ: no timing oracle for guessing a key."""
    key, full_key = api_key_create(org=org, name="gateway", scopes={"ingest"})
    compared = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    wrong = full_key[:-4] + ("AAAA" if not full_key.endswith("AAAA") else "BBBB")

    assert api_key_authenticate(presented=full_key) == key
    assert api_key_authenticate(presented=wrong) is None
    assert [a for a, _ in compared] == [key.secret_hash, key.secret_hash]
    assert compared[0][1] == key.secret_hash != compared[1][1]
