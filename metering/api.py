"""The JSON API, version 1: ingestion (DESIGN §5). Schema at /api/v1/openapi.json."""

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError
from ninja import NinjaAPI, Schema, Status
from ninja.errors import AuthenticationError
from ninja.security import HttpBearer

from accounts.services import api_key_authenticate
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
        "Missing, unknown or revoked API key: send 'Authorization: Bearer <key>'.",
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
