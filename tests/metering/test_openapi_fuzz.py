"""Schemathesis drives every operation of /api/v1/openapi.json with generated requests, positive and
negative, as six kinds of caller: no request may cause a 5xx, every response must match the schema,
and an ingest request stores exactly the items it reports as accepted (none when it is refused).

bench/fuzz.py runs the same cases (CASE_CHECKS, `call_and_check`) by the ten thousand.

Stateful testing has nothing to follow here: no response carries a value that another operation
takes (ingest answers counts; the analytics read by org slug), so the schema has no links.
Instead `call_and_check` links each accepted ingest request to its resend, which must store
nothing more and report every item it accepted as a duplicate.
"""

from dataclasses import dataclass
from datetime import timedelta

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.models import Organization
from accounts.services import api_key_create
from metering.models import ActivityEvent, ResourceUsage, UsageRecord
from metering.schemas import MAX_AGE

schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
ORG, OTHER_ORG = "acme", "globex"
# Who calls: the fuzzer draws one per case. name -> (org slug, scopes, revoked); None: no key at all.
CALLERS = {
    "ingest+read key": (ORG, {"ingest", "read"}, False),
    "ingest key": (ORG, {"ingest"}, False),
    "read key": (ORG, {"read"}, False),
    "revoked key": (ORG, {"ingest", "read"}, True),
    "other org's key": (OTHER_ORG, {"ingest", "read"}, False),
    "no key": None,
}
# Where an ingest item's times are: DESIGN section 5 refuses them beyond 400 days old or 5 minutes ahead.
TIME_FIELDS = {"usage": ("timestamp",), "activity": ("timestamp",), "resources": ("start", "end")}


def caller_headers(org: Organization, other_org: Organization) -> dict[str, dict[str, str]]:
    """Each of CALLERS' keys made in the database: caller name -> the headers it sends."""
    orgs = {ORG: org, OTHER_ORG: other_org}
    headers = {}
    for name, how in CALLERS.items():
        if how is None:
            headers[name] = {}
            continue
        slug, scopes, revoked = how
        key, secret = api_key_create(org=orgs[slug], name=f"fuzz: {name}", scopes=scopes)
        if revoked:
            key.revoked_at = timezone.now()
            key.save(update_fields=["revoked_at"])
        headers[name] = {"Authorization": f"Bearer {secret}"}
    return headers


# --- Steering generation towards requests that get past the first check -------------------------


@schema.hook
def flatmap_path_parameters(ctx, path_parameters):
    """Mostly the org the keys belong to; else another existing org or whatever was generated."""
    if not isinstance(path_parameters, dict) or "org" not in path_parameters:
        return st.just(path_parameters)
    orgs = st.sampled_from([ORG, ORG, ORG, OTHER_ORG, path_parameters["org"]])
    return orgs.map(lambda org: {**path_parameters, "org": org})


def recent_moment() -> st.SearchStrategy[str]:
    """A time the ingest accepts (from 400 days ago to 4 minutes ahead), in a zone of its own."""
    seconds = st.integers(min_value=-int(MAX_AGE.total_seconds()) + 3600, max_value=240)
    hours = st.integers(min_value=-12, max_value=14)
    return st.tuples(seconds, hours).map(
        lambda pair: (
            (timezone.now() + timedelta(seconds=pair[0]))
            .astimezone(timezone.get_fixed_timezone(pair[1] * 60))
            .isoformat()
        )
    )


@schema.hook
def flatmap_body(ctx, body):
    """Gives about half of the generated ingest items recent times: generated date-times are
    almost never within 400 days, so without this no item would ever be stored."""
    if not isinstance(body, dict) or not any(isinstance(body.get(kind), list) for kind in TIME_FIELDS):
        return st.just(body)
    parts = []
    for kind, fields in TIME_FIELDS.items():
        items = body.get(kind)
        if not isinstance(items, list):
            parts.append(st.just(items))
            continue
        choices = [
            st.one_of(st.just(item), st.fixed_dictionaries({f: recent_moment() for f in fields}).map(item.__or__))
            if isinstance(item, dict)
            else st.just(item)
            for item in items
        ]
        parts.append(st.tuples(*choices).map(list))
    return st.tuples(*parts).map(
        lambda lists: {**body, **{k: v for k, v in zip(TIME_FIELDS, lists, strict=True) if k in body}}
    )


# --- What each case must show ----------------------------------------------------------------


def stored_rows() -> int:
    """Usage records, activity events and resource allocations in the database, of every org."""
    return UsageRecord.objects.count() + ActivityEvent.objects.count() + ResourceUsage.objects.count()


@dataclass
class Outcome:
    status: int
    resend_status: int | None = None  # an ingest that stored items is sent again


def call_and_check(case, headers: dict[str, str]) -> Outcome:
    """Call the API with `case`, check the answer against the schema (CHECKS) and what the database
    holds afterwards; for an ingest that accepted items, send it again and check that too.
    Raises AssertionError (or schemathesis' FailureGroup) with what went wrong."""
    before = stored_rows()
    response = case.call(headers=headers)
    case.validate_response(response, checks=CHECKS)
    stored = stored_rows() - before
    if not case.operation.path.endswith("/ingest") or response.status_code not in (200, 207):
        assert stored == 0, f"{stored} items stored by a request answered {response.status_code}"
        return Outcome(response.status_code)
    first = response.json()
    assert stored == first["accepted"], f"{stored} items stored, {first['accepted']} reported accepted"
    if not first["accepted"]:
        return Outcome(response.status_code)
    again = case.call(headers=headers)
    case.validate_response(again, checks=CHECKS)
    assert stored_rows() - before == stored, "the resent batch stored more items"
    second = again.json()
    assert again.status_code == response.status_code, (response.status_code, again.status_code)
    assert second["accepted"] == 0, f"the resent batch had {second['accepted']} new items"
    assert second["duplicates"] == first["accepted"] + first["duplicates"], (first, second)
    assert len(second["rejected"]) == len(first["rejected"]), (first, second)
    return Outcome(response.status_code, again.status_code)


# --- The test --------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def keep_the_test_connection():
    """Requests here bypass Django's test client, which would stop Django from
    closing the test's connection (and its transaction) when a request ends."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def callers(org, other_org, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 0  # hundreds of cases a minute: a 429 would hide the rest
    return caller_headers(org, other_org)


@schema.parametrize()
@schema.given(caller=st.sampled_from(sorted(CALLERS)))
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@pytest.mark.django_db
def test_the_api_never_fails_answers_as_documented_and_stores_only_what_it_accepts(case, caller, callers):
    call_and_check(case, callers[caller])
