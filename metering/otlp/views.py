"""OTLP/HTTP intake: POST /v1/metrics, /v1/logs and /v1/traces at the site root (DESIGN §12).

The answers follow §12.2. OTLP clients retry only 429, 502, 503 and 504 and drop the data on any
other error, so an item that is wrong is rejected in a 200's partial_success, never a 400.
"""

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.services import api_key_authenticate
from metering.api import DB_RETRY_AFTER_SECONDS
from metering.otlp import wire
from metering.otlp.intake import accept
from metering.ratelimit import seconds_until_allowed


@csrf_exempt
@require_POST
def metrics(request: HttpRequest) -> HttpResponse:
    return export(request, "metrics")


@csrf_exempt
@require_POST
def logs(request: HttpRequest) -> HttpResponse:
    return export(request, "logs")


@csrf_exempt
@require_POST
def traces(request: HttpRequest) -> HttpResponse:
    return export(request, "traces")


def export(request: HttpRequest, signal: str) -> HttpResponse:
    try:
        media = wire.media_type(request.headers.get("Content-Type", ""))
    except wire.WireError as exc:
        # We cannot answer in an encoding the client did not use, so plain text.
        return HttpResponse(exc.message, status=415, content_type="text/plain; charset=utf-8")
    try:
        coding = wire.content_coding(request.headers.get("Content-Encoding", ""))
        token = bearer_token(request)
        key = api_key_authenticate(presented=token) if token else None
        if key is None:
            return status_response(
                media,
                401,
                "Send an active API key: 'Authorization: Bearer <key>'.",
                {"WWW-Authenticate": 'Bearer realm="tally"'},
            )
        if not key.scope_ingest:
            return status_response(media, 403, "This API key does not have the 'ingest' scope.")
        wait = seconds_until_allowed(key.pk)
        if wait:
            return status_response(
                media, 429, "Too many requests for this API key; slow down.", {"Retry-After": str(wait)}
            )
        message = wire.decode_request(signal, wire.read_body(request), media=media, coding=coding)
        outcome = accept(signal, message, key)
    except wire.WireError as exc:
        return status_response(media, exc.status, exc.message, exc.headers)
    except (OperationalError, InterfaceError):
        # The intake is one transaction, so nothing was stored; the client resends after Retry-After.
        return status_response(
            media,
            503,
            "The database is unavailable; nothing was stored. Retry later.",
            {"Retry-After": str(DB_RETRY_AFTER_SECONDS)},
        )
    body = wire.encode_response(signal, media, rejected=outcome.rejected, error_message=outcome.message)
    return HttpResponse(body, content_type=media)


def bearer_token(request: HttpRequest) -> str:
    """The token of `Authorization: Bearer <token>` (scheme in any case), or ""."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def status_response(media: str, status: int, message: str, headers: dict[str, str] | None = None) -> HttpResponse:
    response = HttpResponse(wire.encode_status(media, status, message), status=status, content_type=media)
    for name, value in (headers or {}).items():
        response[name] = value
    return response
