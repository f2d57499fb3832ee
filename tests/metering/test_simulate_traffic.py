"""manage.py simulate_traffic: realistic records through the real ingest API of a running server
(pytest-django's live_server: HTTP is all the command needs)."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.models import ApiKey
from metering.models import UsageRecord
from metering.services import ingest_batch

pytestmark = pytest.mark.django_db(transaction=True)


def seed(org):
    """A few recent records for the command to copy the shape of."""
    now = timezone.now().isoformat()
    items = [
        {"request_id": "seed-1", "timestamp": now, "user": "member@acme.test", "model": "m-a", "project": "Atlas",
         "agent": "Code Assistant", "input_tokens": 5000, "cached_input_tokens": 4000, "output_tokens": 400,
         "tags": ["ci"], "cost": "0.01"},
        {"request_id": "seed-2", "timestamp": now, "user": "web@acme.test", "model": "m-b", "input_tokens": 800,
         "output_tokens": 90, "cost": "0.002"},
    ]  # fmt: skip
    assert not ingest_batch(org=org, usage=items).rejected


def simulate(live_server, *args) -> str:
    out = StringIO()
    err = StringIO()
    call_command("simulate_traffic", "--url", live_server.url, *args, stdout=out, stderr=err)
    assert "rejected" not in err.getvalue()
    return out.getvalue()


def test_it_posts_records_shaped_like_the_orgs_through_the_api_and_revokes_its_key(
    live_server, org, member, web_member
):
    seed(org)

    output = simulate(live_server, "--org", "acme", "--rate", "40", "--seconds", "1.5", "--seed", "3")

    simulated = UsageRecord.objects.filter(org=org, request_id__startswith="sim-")
    assert simulated.count() > 10
    assert f"Sent {simulated.count():,} records" in output
    assert set(simulated.values_list("user__email", flat=True)) <= {"member@acme.test", "web@acme.test"}
    assert set(simulated.values_list("model__name", flat=True)) <= {"m-a", "m-b"}
    assert simulated.exclude(session=None).count() == simulated.count()
    (key,) = ApiKey.objects.filter(org=org)
    assert key.revoked_at is not None
    assert set(simulated.values_list("api_key", flat=True)) == {key.pk}


def test_it_needs_usage_to_copy(live_server, org):
    with pytest.raises(CommandError, match="no usage"):
        simulate(live_server, "--org", "acme", "--seconds", "0.1")


def test_it_names_a_missing_org_and_a_bad_rate(live_server, org):
    with pytest.raises(CommandError, match="No org"):
        simulate(live_server, "--org", "nope")
    with pytest.raises(CommandError, match="rate"):
        simulate(live_server, "--org", "acme", "--rate", "0")


def test_it_says_when_the_server_is_not_there(org, member):
    seed(org)
    with pytest.raises(CommandError, match="Cannot reach"):
        call_command("simulate_traffic", "--org", "acme", "--url", "http://127.0.0.1:1", "--rate", "50", "--seconds", "1",
                     stdout=StringIO())  # fmt: skip
    assert ApiKey.objects.get(org=org).revoked_at is not None
