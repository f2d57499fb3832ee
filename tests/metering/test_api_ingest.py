"""POST /api/v1/ingest, through HTTP, against the contract in DESIGN §5."""

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone as djtz

from accounts.models import Membership, Role, User
from accounts.services import api_key_create
from metering.models import (
    ActivityEvent,
    CostSource,
    DirtyDay,
    LLMModel,
    ModelPrice,
    ResourceUsage,
    Session,
    UsageRecord,
)

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
URL = "/api/v1/ingest"


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def ingest_key(org):
    return api_key_create(org=org, name="ingest", scopes={"ingest"})[1]


@pytest.fixture
def sonnet(db):
    # The default price list has this model; replace its prices with the test's own.
    model = LLMModel.objects.get_or_create(name="claude-sonnet-4-5", defaults={"provider": "anthropic"})[0]
    model.prices.all().delete()
    ModelPrice.objects.create(
        model=model,
        effective_from=date(2026, 1, 1),
        input=Decimal(3),
        cached_input=Decimal("0.3"),
        cache_write=Decimal("3.75"),
        output=Decimal(15),
    )
    return model


def post(client, key, body, **extra):
    payload = body if isinstance(body, (str, bytes)) else json.dumps(body)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    return client.post(URL, payload, content_type="application/json", **headers, **extra)


def usage(n=0, **fields):
    return {
        "request_id": f"req-{n}",
        "timestamp": "2026-11-20T10:00:00+01:00",
        "user": "ana@example.com",
        "model": "claude-sonnet-4-5",
        "input_tokens": 1000,
        "output_tokens": 200,
        **fields,
    }


def test_a_valid_batch_is_stored_and_counted(client, org, ingest_key, sonnet):
    body = {
        "usage": [
            usage(1, cached_input_tokens=400, team="Platform", project="Atlas", tags=["prod", "ci"]),
            usage(2, user="bob@example.com"),
        ],
        "activity": [
            {
                "event_id": "e-1",
                "timestamp": "2026-11-20T09:12:00+01:00",
                "kind": "diff_accepted",
                "user": "ana@example.com",
                "lines_added": 12,
                "lines_removed": 3,
            }
        ],
        "resources": [
            {
                "resource_id": "w-1",
                "start": "2026-11-20T08:00:00Z",
                "end": "2026-11-20T09:00:00Z",
                "agent": "QA",
                "cpu_cores": 2,
                "ram_gb": "4.5",
                "storage_gb": 10,
            }
        ],
    }
    response = post(client, ingest_key, body)
    assert response.status_code == 200, response.content
    assert response.json() == {"accepted": 4, "duplicates": 0, "rejected": []}
    record = UsageRecord.objects.get(request_id="req-1")
    assert (record.org, record.user.email, record.team.name, record.project.name) == (
        org,
        "ana@example.com",
        "Platform",
        "Atlas",
    )
    assert sorted(record.tags.values_list("name", flat=True)) == ["ci", "prod"]
    assert record.timestamp == datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)
    assert ActivityEvent.objects.get().lines_added == 12
    assert ResourceUsage.objects.get().ram_gb == Decimal("4.5")


def test_records_are_priced_at_the_price_in_force_and_remember_it(client, ingest_key, sonnet):
    post(client, ingest_key, {"usage": [usage(1, cached_input_tokens=400, cache_write_tokens=100, output_tokens=200)]})
    record = UsageRecord.objects.get()
    # 500 fresh input × $3 + 400 cached × $0.30 + 100 written × $3.75 + 200 output × $15, per million
    assert (
        record.cost
        == (Decimal(500 * 3) + Decimal(400) * Decimal("0.3") + Decimal(100) * Decimal("3.75") + Decimal(200 * 15))
        / 10**6
    )
    assert (record.cost_source, record.price) == (CostSource.PRICED, sonnet.prices.get())


def test_a_cost_sent_by_the_client_wins_to_the_last_digit(client, ingest_key, sonnet):
    # A JSON number, not a string: it must not pass through a float on the way in.
    item = json.dumps(usage(1))[:-1] + ', "cost": 0.1234567891}'
    post(client, ingest_key, '{"usage": [%s]}' % item)
    record = UsageRecord.objects.get()
    assert (record.cost, record.cost_source, record.price) == (Decimal("0.1234567891"), CostSource.CLIENT, None)


def test_a_model_without_a_price_is_stored_at_zero_and_flagged(client, ingest_key):
    post(client, ingest_key, {"usage": [usage(1, model="brand-new-model")]})
    record = UsageRecord.objects.get()
    assert (record.cost, record.cost_source, record.model.name) == (0, CostSource.UNPRICED, "brand-new-model")


def test_a_resent_batch_stores_nothing_new_and_reports_every_item_as_duplicate(client, ingest_key, sonnet):
    body = {
        "usage": [usage(1), usage(2)],
        "activity": [
            {"event_id": "e-1", "timestamp": "2026-11-20T09:00:00Z", "kind": "commit", "user": "ana@example.com"}
        ],
        "resources": [{"resource_id": "w-1", "start": "2026-11-20T08:00:00Z", "end": "2026-11-20T09:00:00Z"}],
    }
    assert post(client, ingest_key, body).json()["accepted"] == 4
    assert post(client, ingest_key, body).json() == {"accepted": 0, "duplicates": 4, "rejected": []}
    assert (UsageRecord.objects.count(), ActivityEvent.objects.count(), ResourceUsage.objects.count()) == (2, 1, 1)


def test_an_id_repeated_within_one_batch_is_stored_once(client, ingest_key, sonnet):
    response = post(client, ingest_key, {"usage": [usage(1), usage(1, input_tokens=5)]})
    assert response.json() == {"accepted": 1, "duplicates": 1, "rejected": []}
    assert UsageRecord.objects.get().input_tokens == 1000  # the first one wins


def test_the_same_request_id_in_another_org_is_a_different_record(client, ingest_key, other_org, sonnet):
    other_key = api_key_create(org=other_org, name="theirs", scopes={"ingest"})[1]
    post(client, ingest_key, {"usage": [usage(1)]})
    assert post(client, other_key, {"usage": [usage(1)]}).json()["accepted"] == 1
    assert set(UsageRecord.objects.values_list("org__slug", flat=True)) == {"acme", "globex"}


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="SQLite caps the parameters of one statement, so Django splits big bulk inserts there",
)
def test_queries_do_not_grow_with_the_batch_size(client, ingest_key, sonnet):
    def queries_for(n, offset):
        # Every call names new users, teams, projects, ... so both create the same kinds of rows.
        items = [
            usage(
                offset + i,
                user=f"u{offset + i}@example.com",
                project=f"p{offset}-{i % 7}",
                agent=f"a{offset}-{i % 3}",
                repository=f"r{offset}-{i % 4}",
                session_id=f"s{offset + i}",
                tags=[f"t{offset}-{i % 5}"],
                team=f"T{offset}-{i % 2}",
                model=f"m{offset}",
            )
            for i in range(n)
        ]
        activity = [
            {
                "event_id": f"e{offset + i}",
                "timestamp": "2026-11-20T09:00:00Z",
                "kind": "agent_run",
                "user": f"u{offset + i}@example.com",
                "session_id": f"s{offset + i}",
            }
            for i in range(n)
        ]
        with CaptureQueriesContext(connection) as ctx:
            assert post(client, ingest_key, {"usage": items, "activity": activity}).json()["accepted"] == 2 * n
        return len(ctx.captured_queries)

    post(client, ingest_key, {"usage": []})  # the key's last_used_at is written once a minute; get it done
    small, large = queries_for(5, 0), queries_for(400, 1000)
    assert large == small


def test_unknown_users_become_members_without_a_login(client, org, ingest_key, member, sonnet):
    post(
        client,
        ingest_key,
        {
            "usage": [
                usage(1, user="New.Person@Example.com"),
                usage(2, user="emp-4711"),
                usage(3, user=member.email.upper()),
            ]
        },
    )
    newcomer = User.objects.get(email="new.person@example.com")
    assert not newcomer.has_usable_password()
    by_external_id = Membership.objects.get(org=org, external_id="emp-4711")
    assert (by_external_id.role, by_external_id.user.has_usable_password()) == (Role.MEMBER, False)
    # An existing user is matched whatever the case of their email.
    assert UsageRecord.objects.get(request_id="req-3").user == member
    assert Membership.objects.get(org=org, user=newcomer).role == Role.MEMBER


def test_a_records_team_defaults_to_its_users_team_and_keeps_it(
    client, org, ingest_key, member, platform_team, web_team, sonnet
):
    post(client, ingest_key, {"usage": [usage(1, user=member.email)]})
    membership = member.memberships.get()
    membership.teams.set([web_team])
    post(client, ingest_key, {"usage": [usage(2, user=member.email)]})
    teams = dict(UsageRecord.objects.values_list("request_id", "team__name"))
    assert teams == {"req-1": "Platform", "req-2": "Web"}


def test_a_keys_defaults_fill_in_team_and_project(client, org, web_team, sonnet):
    from metering.models import Project

    project = Project.objects.create(org=org, name="Atlas")
    key = api_key_create(org=org, name="scoped", scopes={"ingest"}, default_team=web_team, default_project=project)[1]
    post(client, key, {"usage": [usage(1), usage(2, team="Platform", project="Other")]})
    got = dict((r, (t, p)) for r, t, p in UsageRecord.objects.values_list("request_id", "team__name", "project__name"))
    assert got == {"req-1": ("Web", "Atlas"), "req-2": ("Platform", "Other")}


@pytest.mark.parametrize(
    "provider, usage_object, expected",
    [
        # OpenAI Chat Completions: prompt tokens already include cached ones.
        (
            "openai",
            {
                "prompt_tokens": 1200,
                "completion_tokens": 300,
                "total_tokens": 1500,
                "prompt_tokens_details": {"cached_tokens": 1000},
                "completion_tokens_details": {"reasoning_tokens": 120},
            },
            (1200, 1000, 0, 300, 120),
        ),
        # OpenAI Responses API.
        (
            "openai",
            {
                "input_tokens": 900,
                "output_tokens": 80,
                "input_tokens_details": {"cached_tokens": 512},
                "output_tokens_details": {"reasoning_tokens": 64},
                "total_tokens": 980,
            },
            (900, 512, 0, 80, 64),
        ),
        # Anthropic reports cache reads and writes outside input_tokens.
        (
            "anthropic",
            {
                "input_tokens": 50,
                "cache_read_input_tokens": 2000,
                "cache_creation_input_tokens": 300,
                "output_tokens": 400,
            },
            (2350, 2000, 300, 400, 0),
        ),
        (None, {"input_tokens": 7, "cache_read_input_tokens": 10, "output_tokens": 1}, (17, 10, 0, 1, 0)),
    ],
)
def test_provider_usage_objects_are_converted_to_our_convention(
    client, ingest_key, sonnet, provider, usage_object, expected
):
    item = {k: v for k, v in usage(1, usage=usage_object).items() if k not in ("input_tokens", "output_tokens")}
    if provider:
        item["provider"] = provider
    assert post(client, ingest_key, {"usage": [item]}).status_code == 200
    record = UsageRecord.objects.get()
    assert (
        record.input_tokens,
        record.cached_input_tokens,
        record.cache_write_tokens,
        record.output_tokens,
        record.reasoning_tokens,
    ) == expected


def test_sessions_span_every_record_and_event_across_batches(client, ingest_key, sonnet):
    post(client, ingest_key, {"usage": [usage(1, session_id="s-1", timestamp="2026-11-20T10:00:00Z", agent="QA")]})
    post(
        client,
        ingest_key,
        {
            "usage": [usage(2, session_id="s-1", timestamp="2026-11-20T10:30:00Z")],
            "activity": [
                {
                    "event_id": "e-1",
                    "timestamp": "2026-11-20T09:45:00Z",
                    "kind": "session_start",
                    "user": "ana@example.com",
                    "session_id": "s-1",
                }
            ],
        },
    )
    session = Session.objects.get()
    assert (session.first_seen.isoformat(), session.last_seen.isoformat()) == (
        "2026-11-20T09:45:00+00:00",
        "2026-11-20T10:30:00+00:00",
    )
    assert session.agent.name == "QA"
    assert UsageRecord.objects.filter(session=session).count() == 2


def test_ingestion_marks_the_org_local_days_it_touches(client, org, ingest_key, sonnet):
    # 23:30 UTC on the 19th is already the 20th in Berlin (the org's zone).
    post(
        client,
        ingest_key,
        {
            "usage": [usage(1, timestamp="2026-11-19T23:30:00Z")],
            "resources": [{"resource_id": "w-1", "start": "2026-11-17T12:00:00Z", "end": "2026-11-18T12:00:00Z"}],
        },
    )
    days = set(DirtyDay.objects.filter(org=org).values_list("day", flat=True))
    assert days == {date(2026, 11, 20), date(2026, 11, 17), date(2026, 11, 18)}


def test_late_items_are_accepted_up_to_400_days(client, ingest_key, sonnet):
    old = (NOW - timedelta(days=399)).isoformat()
    too_old = (NOW - timedelta(days=401)).isoformat()
    response = post(client, ingest_key, {"usage": [usage(1, timestamp=old), usage(2, timestamp=too_old)]})
    assert response.status_code == 207
    assert response.json()["rejected"] == [
        {"kind": "usage", "index": 1, "id": "req-2", "errors": {"timestamp": ["Must not be more than 400 days old."]}}
    ]


BAD_ITEMS = [
    ("naive timestamp", {"timestamp": "2026-11-20T10:00:00"}, "timestamp"),
    ("unparsable timestamp", {"timestamp": "yesterday"}, "timestamp"),
    ("future timestamp", {"timestamp": (NOW + timedelta(minutes=6)).isoformat()}, "timestamp"),
    ("negative tokens", {"input_tokens": -1}, "input_tokens"),
    ("fractional tokens", {"output_tokens": 1.5}, "output_tokens"),
    ("tokens as a string", {"output_tokens": "12"}, "output_tokens"),
    ("tokens as a boolean", {"input_tokens": True}, "input_tokens"),
    ("cached above input", {"cached_input_tokens": 1001}, "cached_input_tokens"),
    ("reasoning above output", {"reasoning_tokens": 201}, "reasoning_tokens"),
    ("unknown service type", {"service_type": "telepathy"}, "service_type"),
    ("unknown status", {"status": "meh"}, "status"),
    ("missing request_id", {"request_id": None}, "request_id"),
    ("missing user", {"user": None}, "user"),
    ("missing model", {"model": None}, "model"),
    ("over-long request_id", {"request_id": "r" * 201}, "request_id"),
    ("over-long user", {"user": "u" * 255}, "user"),
    ("malformed email", {"user": "ana@@example"}, "user"),
    ("tags not a list", {"tags": "prod"}, "tags"),
    ("negative cost", {"cost": -1}, "cost"),
    ("misspelt field", {"input_token": 5}, "input_token"),
    ("tokens and a usage object", {"usage": {"prompt_tokens": 5}}, "usage"),
    ("unrecognised usage object", {"input_tokens": None, "output_tokens": None, "usage": {"foo": 1}}, "usage"),
]


@pytest.mark.parametrize("name, change, field", BAD_ITEMS, ids=[b[0] for b in BAD_ITEMS])
def test_a_bad_item_is_rejected_with_its_field_and_stores_nothing(client, ingest_key, sonnet, name, change, field):
    item = {k: v for k, v in {**usage(1), **change}.items() if v is not None}
    response = post(client, ingest_key, {"usage": [usage(0), item]})
    assert response.status_code == 207
    body = response.json()
    assert body["accepted"] == 1
    [rejection] = body["rejected"]
    assert (rejection["kind"], rejection["index"]) == ("usage", 1)
    assert rejection["id"] == (item["request_id"] if isinstance(item.get("request_id"), str) else None)
    assert field in rejection["errors"] and all(rejection["errors"][field])
    assert list(UsageRecord.objects.values_list("request_id", flat=True)) == ["req-0"]


def test_bad_activity_and_resource_items_are_rejected_on_their_own(client, ingest_key):
    body = {
        "activity": [
            {"event_id": "e-1", "timestamp": "2026-11-20T09:00:00Z", "kind": "daydream", "user": "a@example.com"},
            "not an object",
        ],
        "resources": [{"resource_id": "w-1", "start": "2026-11-20T09:00:00Z", "end": "2026-11-20T08:00:00Z"}],
    }
    response = post(client, ingest_key, body)
    assert response.status_code == 207
    rejected = {(r["kind"], r["index"]): r["errors"] for r in response.json()["rejected"]}
    assert set(rejected) == {("activity", 0), ("activity", 1), ("resources", 0)}
    assert "kind" in rejected[("activity", 0)] and "end" in rejected[("resources", 0)]
    assert not ActivityEvent.objects.exists() and not ResourceUsage.objects.exists()


@pytest.mark.parametrize(
    "body, message",
    [
        ("{not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('"usage"', "must be a JSON object"),
        ('{"usage": {"request_id": "x"}}', "'usage' must be a list"),
        ('{"records": []}', "Unknown top-level keys: records"),
        ('{"usage": [{"request_id": "x", "cost": NaN}]}', "not valid JSON"),
    ],
)
def test_a_body_of_the_wrong_shape_is_400(client, ingest_key, body, message):
    response = post(client, ingest_key, body)
    assert response.status_code == 400
    assert message in response.json()["detail"]


def test_more_than_1000_items_is_413(client, ingest_key):
    response = post(client, ingest_key, {"usage": [usage(i) for i in range(600)], "activity": [{}] * 401})
    assert response.status_code == 413
    assert not UsageRecord.objects.exists()


def test_a_body_over_5_mb_is_413(client, ingest_key):
    response = post(client, ingest_key, {"usage": [usage(1, metadata={"blob": "x" * (5 * 1024 * 1024)})]})
    assert response.status_code == 413
    assert not UsageRecord.objects.exists()


def test_missing_unknown_and_malformed_keys_are_401(client, org, ingest_key):
    prefix = ingest_key.split("_")[1]
    for key in (None, "tly_nope_nope", f"tly_{prefix}_wrong-secret", "Basic abc"):
        response = post(client, key, {"usage": [usage(1)]})
        assert response.status_code == 401, key
        assert "API key" in response.json()["detail"]
    assert not UsageRecord.objects.exists()


def test_a_revoked_key_is_401(client, org):
    key, secret = api_key_create(org=org, name="old", scopes={"ingest"})
    key.revoked_at = djtz.now()
    key.save()
    assert post(client, secret, {"usage": [usage(1)]}).status_code == 401


def test_a_key_without_the_ingest_scope_is_403(client, org):
    secret = api_key_create(org=org, name="reader", scopes={"read"})[1]
    response = post(client, secret, {"usage": [usage(1)]})
    assert response.status_code == 403
    assert not UsageRecord.objects.exists()


def test_a_key_only_ever_writes_into_its_own_org(client, org, other_org, sonnet):
    theirs = api_key_create(org=other_org, name="theirs", scopes={"ingest"})[1]
    post(client, theirs, {"usage": [usage(1, team="Platform")]})
    record = UsageRecord.objects.get()
    assert record.org == other_org and record.team.org == other_org
    assert not UsageRecord.objects.filter(org=org).exists()


def test_a_key_over_its_rate_is_429_with_retry_after(client, ingest_key, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 2
    from django.core.cache import cache

    cache.clear()
    codes = [post(client, ingest_key, {"usage": []}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    response = post(client, ingest_key, {"usage": [usage(1)]})
    assert response.status_code == 429 and 1 <= int(response["Retry-After"]) <= 60
    assert not UsageRecord.objects.exists()


def test_the_key_records_when_it_was_last_used(client, org, ingest_key):
    post(client, ingest_key, {"usage": []})
    assert org.api_keys.get().last_used_at == NOW


def test_the_openapi_schema_describes_the_ingest_body(client):
    schema = client.get("/api/v1/openapi.json").json()
    operation = schema["paths"]["/api/v1/ingest"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/IngestBody"
    }
    assert set(operation["responses"]) >= {"200", "207", "400", "401", "403", "413", "429", "503"}
    usage_item = schema["components"]["schemas"]["UsageItem"]
    assert set(usage_item["required"]) == {"request_id", "timestamp", "user", "model"}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="kills a PostgreSQL backend")
@pytest.mark.django_db(transaction=True)
def test_a_lost_database_is_503_with_retry_after_and_stores_nothing(client, ingest_key, sonnet):
    import psycopg

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    params = connection.get_connection_params()
    with psycopg.connect(
        **{k: v for k, v in params.items() if k in ("host", "port", "user", "dbname", "password")}, autocommit=True
    ) as admin_connection:
        admin_connection.execute("SELECT pg_terminate_backend(%s)", [pid])
    response = post(client, ingest_key, {"usage": [usage(1)]})
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "nothing was stored" in response.json()["detail"]
    connection.close()  # as Django does at the end of a real request
    assert not UsageRecord.objects.exists()
    assert post(client, ingest_key, {"usage": [usage(1)]}).status_code == 200


@pytest.mark.parametrize("field", ["request_id", "user", "model", "project", "session_id"])
def test_nul_characters_are_rejected_not_a_server_error(client, ingest_key, field):
    response = post(client, ingest_key, {"usage": [usage(1, **{field: "a\u0000b"})]})
    assert response.status_code == 207
    assert field in response.json()["rejected"][0]["errors"]


def test_text_postgresql_cannot_store_is_rejected_inside_metadata_too(client, ingest_key):
    body = '{"usage": [%s, %s]}' % (
        json.dumps(usage(1, metadata={"note": "a\u0000b"})),
        json.dumps(usage(2))[:-1] + ', "project": "\\ud800"}',
    )
    response = post(client, ingest_key, body)
    assert response.status_code == 207
    assert [list(r["errors"]) for r in response.json()["rejected"]] == [["metadata"], ["project"]]


def test_resource_quantities_beyond_their_columns_are_rejected(client, ingest_key):
    item = {
        "resource_id": "w-1",
        "start": "2026-11-20T08:00:00Z",
        "end": "2026-11-20T09:00:00Z",
        "cpu_cores": "123456789.5",
        "ram_gb": "0.00001",
    }
    errors = post(client, ingest_key, {"resources": [item]}).json()["rejected"][0]["errors"]
    assert set(errors) == {"cpu_cores", "ram_gb"}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs concurrent writers on one database")
@pytest.mark.django_db(transaction=True)
def test_concurrent_resends_of_one_batch_store_each_item_once(org, sonnet):
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from django.db import connections
    from django.test import Client

    secret = api_key_create(org=org, name="racer", scopes={"ingest"})[1]
    body = {"usage": [usage(i, session_id=f"s-{i % 3}", tags=["race"]) for i in range(50)]}
    start = Barrier(4)

    def send(_):
        start.wait()
        try:
            return post(Client(), secret, body).json()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(send, range(4)))
    assert sum(r["accepted"] for r in results) == 50
    assert sum(r["duplicates"] for r in results) == 150
    assert UsageRecord.objects.count() == 50
    assert UsageRecord.objects.filter(tags__name="race").count() == 50
