"""The JSON API, version 1: ingestion (DESIGN §5) and analytics (DESIGN §8). Schema at /api/v1/openapi.json."""

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404
from ninja import NinjaAPI, Schema, Status
from ninja.errors import AuthenticationError
from ninja.security import HttpBearer, django_auth
from pydantic import PlainSerializer, WithJsonSchema

from accounts.access import Scope, scope_for_api_key, scope_for_request
from accounts.models import ApiKey
from accounts.services import api_key_authenticate
from metering import selectors
from metering.forms import RANGES, AnalyticsForm
from metering.models import ServiceType
from metering.pricing import format_money
from metering.ratelimit import seconds_until_allowed
from metering.schemas import MAX_ITEMS, IngestBody, IngestResult, loads_exact
from metering.services import ingest_batch

DB_RETRY_AFTER_SECONDS = 5


class Error(Schema):
    detail: str


class ApiError(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


class TallyAPI(NinjaAPI):
    def get_openapi_schema(self, *args, **kwargs):
        # The ingest view validates items one by one (so one bad item cannot sink
        # a batch), so ninja does not see the body model: add it here.
        schema = super().get_openapi_schema(*args, **kwargs)
        body = IngestBody.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(body.pop("$defs", {}))
        components["IngestBody"] = body
        return schema


api = TallyAPI(
    title="Tally API",
    version="1",
    urls_namespace="api",
    openapi_url="/openapi.json",
    docs_url="/docs",
    description="Send usage records, activity events and resource allocations; read analytics.",
)


class ApiKeyBearer(HttpBearer):
    """`Authorization: Bearer tly_<prefix>_<secret>`."""

    def authenticate(self, request, token):
        return api_key_authenticate(presented=token)


def respond_error(request, status: int, detail: str, headers: dict | None = None):
    response = api.create_response(request, {"detail": detail}, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


@api.exception_handler(ApiError)
def on_api_error(request, exc: ApiError):
    return respond_error(request, exc.status, exc.detail, exc.headers)


@api.exception_handler(AuthenticationError)
def on_authentication_error(request, exc):
    return respond_error(
        request,
        401,
        "Log in, or send an active API key: 'Authorization: Bearer <key>'.",
        {"WWW-Authenticate": 'Bearer realm="tally"'},
    )


@api.exception_handler(OperationalError)
@api.exception_handler(InterfaceError)
def on_database_unavailable(request, exc: DatabaseError):
    # Nothing was stored (the batch is one transaction); the client can resend safely.
    return respond_error(
        request,
        503,
        "The database is unavailable; nothing was stored. Retry later.",
        {"Retry-After": str(DB_RETRY_AFTER_SECONDS)},
    )


def read_ingest_body(request) -> dict[str, list]:
    """The body's item lists, or ApiError 400/413 with a message saying what is wrong."""
    declared = request.META.get("CONTENT_LENGTH")
    if declared and declared.isdigit() and int(declared) > settings.API_MAX_BODY_BYTES:
        raise ApiError(413, "The body is larger than 5 MB; send fewer items per request.")
    body = request.body
    if len(body) > settings.API_MAX_BODY_BYTES:
        raise ApiError(413, "The body is larger than 5 MB; send fewer items per request.")
    try:
        data = loads_exact(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"The body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, 'The body must be a JSON object: {"usage": [...], "activity": [...], "resources": [...]}.')
    unknown = sorted(set(data) - {"usage", "activity", "resources"})
    if unknown:
        raise ApiError(400, f"Unknown top-level keys: {', '.join(unknown)}. Expected usage, activity, resources.")
    lists = {}
    for name in ("usage", "activity", "resources"):
        value = data.get(name, [])
        if not isinstance(value, list):
            raise ApiError(400, f"'{name}' must be a list of objects.")
        lists[name] = value
    total = sum(len(items) for items in lists.values())
    if total > MAX_ITEMS:
        raise ApiError(413, f"{total} items in one request; at most {MAX_ITEMS} are accepted.")
    return lists


INGEST_ERRORS = {code: Error for code in (400, 401, 403, 413, 429, 503)}


@api.post(
    "/ingest",
    auth=ApiKeyBearer(),
    response={200: IngestResult, 207: IngestResult, **INGEST_ERRORS},
    summary="Ingest usage records, activity events and resource allocations",
    description=(
        "Each item is validated on its own: 200 when all were accepted or already known (duplicates), "
        "207 when some were rejected (see `rejected`). Accepted items are durable when the response is sent."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/IngestBody"}}},
        }
    },
)
def ingest(request):
    key = request.auth
    if not key.scope_ingest:
        raise ApiError(403, "This API key does not have the 'ingest' scope.")
    wait = seconds_until_allowed(key.pk)
    if wait:
        raise ApiError(429, "Too many requests for this API key; slow down.", {"Retry-After": str(wait)})
    result = ingest_batch(org=key.org, api_key=key, **read_ingest_body(request))
    return Status(207 if result.rejected else 200, result)


# --- Analytics (read) ---------------------------------------------------------------------------

# The selectors answer with Decimals and aware datetimes (in the org's zone); on the wire money is
# an exact decimal string (DESIGN section 8) and a time RFC 3339 with the zone's offset.
Money = Annotated[Decimal, PlainSerializer(format_money, return_type=str), WithJsonSchema({"type": "string"})]
Moment = Annotated[datetime, PlainSerializer(datetime.isoformat, return_type=str), WithJsonSchema({"type": "string"})]


class Summary(Schema):
    start: Moment
    end: Moment
    requests: int
    failed_requests: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    total_tokens: int
    cost: Money
    sessions: int
    avg_session_duration_seconds: float
    avg_cost_per_session: Money
    unique_users: int
    agent_runs: int
    accepted_diffs: int
    tasks_completed: int
    lines_of_code: int
    unique_models: int
    active_projects: int
    total_projects: int
    conversations: int


class Point(Schema):
    start: Moment
    value: int | Money


class Timeseries(Schema):
    metric: str
    interval: str
    points: list[Point]


class AgentRow(Schema):
    agent: str | None
    sessions: int
    requests: int
    total_tokens: int
    cost: Money
    avg_cost_per_session: Money
    avg_duration_seconds: float


class ByAgent(Schema):
    agents: list[AgentRow]


class BreakdownRow(Schema):
    name: str | None
    cost: Money
    requests: int
    total_tokens: int


class CostBreakdown(Schema):
    total: Money
    by_model: list[BreakdownRow]
    by_project: list[BreakdownRow]
    by_user: list[BreakdownRow]
    by_team: list[BreakdownRow]
    by_service_type: list[BreakdownRow]
    # Beyond DESIGN section 8: a record counts under each of its tags, so these rows overlap.
    by_tag: list[BreakdownRow]
    by_tag_note: str


READ_AUTH = [ApiKeyBearer(), django_auth]
READ_ERRORS = {code: Error for code in (400, 401, 403, 404, 503)}
FILTERS_HELP = (
    "Parameters: `start`, `end` (RFC 3339, or YYYY-MM-DD in the org's zone; default the last 30 days) and "
    "repeatable `team`, `user`, `project`, `repository`, `agent`, `model`, `api_key`, `tag`, `service_type` "
    "(names, emails). Money is a decimal string; lists are sorted by cost, highest first."
)


def read_scope(request, org_slug: str) -> Scope:
    """The caller's scope in the org: a logged-in user's, or a read key's (404 for another org)."""
    if isinstance(request.auth, ApiKey):
        key = request.auth
        if key.org.slug != org_slug:
            raise Http404("No such organization")
        if not key.scope_read:
            raise ApiError(403, "This API key does not have the 'read' scope.")
        return scope_for_api_key(key)
    return scope_for_request(request, org_slug)


def analytics_form(request, org: str) -> tuple[AnalyticsForm, selectors.Query]:
    scope = read_scope(request, org)
    form = AnalyticsForm(request.GET, org=scope.org)
    if not form.is_valid():
        raise ApiError(400, form.error_text())
    return form, form.query(scope)


def filter_parameters(*, series: bool) -> list[dict]:
    """The query parameters of FILTERS_HELP, added to the schema's (ninja's `org`): AnalyticsForm
    reads them from request.GET, so ninja does not see them, and clients (and the schema's fuzzer)
    would not know them."""

    def query(name: str, schema: dict) -> dict:
        return {"in": "query", "name": name, "required": False, "schema": schema}

    def one_of(values) -> dict:
        return {"type": "string", "enum": list(values)}

    text = {"type": "string"}
    parameters = [
        query("range", one_of([*RANGES, "month"])),
        *(query(name, text) for name in ("month", "start", "end")),
        *(query(name, {"type": "array", "items": text}) for name in selectors.DIMENSIONS if name != "service_type"),
        query("service_type", {"type": "array", "items": one_of(ServiceType.values)}),
    ]
    if series:
        parameters += [query("metric", one_of(selectors.METRICS)), query("interval", one_of(selectors.INTERVALS))]
    return parameters


def analytics_get(path: str, response, summary: str):
    return api.get(
        f"/{{org}}/sessions/analytics/{path}",
        auth=READ_AUTH,
        response={200: response, **READ_ERRORS},
        summary=summary,
        description=FILTERS_HELP,
        tags=["analytics"],
        openapi_extra={"parameters": filter_parameters(series=path == "timeseries")},
    )


@analytics_get("summary", Summary, "KPI totals of a period")
def analytics_summary(request, org: str):
    _, query = analytics_form(request, org)
    return selectors.summary(query)


@analytics_get("timeseries", Timeseries, "One metric over time, every bucket present")
def analytics_timeseries(request, org: str):
    form, query = analytics_form(request, org)
    metric = form.cleaned_data["metric"] or "cost"
    return selectors.timeseries(query, metric=metric, interval=form.cleaned_data["interval"] or None)


@analytics_get("by-agent", ByAgent, "Usage and sessions per agent")
def analytics_by_agent(request, org: str):
    _, query = analytics_form(request, org)
    return selectors.by_agent(query)


@analytics_get("cost-breakdown", CostBreakdown, "Cost by model, project, user, team, service type and tag")
def analytics_cost_breakdown(request, org: str):
    _, query = analytics_form(request, org)
    return selectors.cost_breakdown(query)
