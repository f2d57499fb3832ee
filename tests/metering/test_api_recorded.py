"""The analytics API answers byte for byte as recorded before the query layer was split (issue 21),
and its OpenAPI schema too.

The demo org (seeded small, time frozen) is asked each endpoint with a spread of ranges,
intervals, filters and viewers; every answer's body must equal the recorded one. PostgreSQL and
SQLite give the same bodies here. A change that means to alter an answer re-records with
`TALLY_RECORD_ANSWERS=1 pytest tests/metering/test_api_recorded.py` and says why in its commit.
"""

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine
from django.test import Client

from accounts.models import Organization, User
from accounts.services import api_key_create
from metering.demo import demo_org_rebuild
from metering.models import DirtyDay

NOW = datetime(2026, 11, 18, 14, 30, tzinfo=UTC)  # a Wednesday afternoon in Berlin
BASE = "/api/v1/demo/sessions/analytics/"
QUERIES = (
    "",
    "range=7d",
    "range=24h",
    "range=14d&team=Platform",
    "month=2026-11&model=claude-sonnet-4-5",
    "range=7d&tag=prod",
    "range=7d&tag=prod&tag=ci",
    "start=2026-11-10&end=2026-11-12&agent=Code%20Assistant",
    "range=30d&service_type=embedding",
    "range=7d&user=nobody@example.com",
)
TIMESERIES = (
    "metric=cost",
    "metric=tokens&interval=day&range=7d",
    "metric=requests&interval=1h&range=24h",
    "metric=sessions&interval=6h&range=7d",
    "metric=sessions&interval=week",
    "metric=cost&interval=5m&range=24h&team=Platform",
)
RECORDING = Path(__file__).with_name("recorded_answers.json")


def cases() -> list[str]:
    urls = [f"{BASE}{endpoint}?{q}" for endpoint in ("summary", "by-agent", "cost-breakdown") for q in QUERIES]
    return urls + [f"{BASE}timeseries?{q}" for q in TIMESERIES]


@pytest.fixture
def demo(db):
    with time_machine.travel(NOW, tick=False):
        demo_org_rebuild(days=21, users=12, seed=5, now=NOW)
        org = Organization.objects.get(slug="demo")
        # A day still dirty (late records, say) is read raw: one answer path more.
        DirtyDay.objects.get_or_create(org=org, day=datetime(2026, 11, 12).date())
        yield org


def answers(org) -> dict[str, str]:
    _, secret = api_key_create(org=org, name="recording", scopes={"read"})
    viewers = {"key": {"HTTP_AUTHORIZATION": f"Bearer {secret}"}}
    for login in ("manager@example.com", "member@example.com"):
        client = Client()
        client.force_login(User.objects.get(email=login))
        viewers[login] = client
    out = {}
    for viewer, how in viewers.items():
        for url in cases():
            if isinstance(how, Client):
                response = how.get(url)
            else:
                response = Client().get(url, **how)
            assert response.status_code == 200, (viewer, url, response.content)
            out[f"{viewer} {url}"] = response.content.decode()
    out["/api/v1/openapi.json"] = Client().get("/api/v1/openapi.json").content.decode()
    return out


def test_every_answer_is_byte_for_byte_the_recorded_one(demo):
    path = RECORDING
    with time_machine.travel(NOW, tick=False):
        got = answers(demo)
    if os.environ.get("TALLY_RECORD_ANSWERS") == "1":
        path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    recorded = json.loads(path.read_text())
    assert set(got) == set(recorded)
    for case, body in got.items():
        assert body == recorded[case], case
