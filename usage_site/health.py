"""Probes for load balancers and orchestrators (DESIGN §14): `GET /healthz`, the process is up;
`GET /readyz`, the database and, when REDIS_URL is set, Redis answer (200), or which of them
does not (503).

Cheap and open: no login, no rate limit, no model query, exempt from the HTTPS redirect (a
probe speaks plain HTTP to the process). The database is tried on a connection of its own
with a short connect timeout, so a server that is down answers in READY_TIMEOUT_S, not after
the connection pool's wait.
"""

import logging

import psycopg
import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)

READY_TIMEOUT_S = 2


@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _database}
    if settings.REDIS_URL:
        checks["redis"] = _redis
    failed = []
    for name, check in checks.items():
        try:
            check()
        except Exception as exc:
            # The class only: a driver's message can name hosts and users, which a public probe does not show.
            logger.warning("readyz: %s unavailable: %s", name, type(exc).__name__)
            failed.append(name)
    body = {
        "status": "unavailable" if failed else "ok",
        "checks": {name: "unavailable" if name in failed else "ok" for name in checks},
    }
    if failed:
        body["failed"] = failed
    return JsonResponse(body, status=503 if failed else 200, headers={"Cache-Control": "no-store"})


def _database() -> None:
    if connection.vendor == "postgresql":
        params = connection.get_connection_params() | {"connect_timeout": READY_TIMEOUT_S}
        with psycopg.connect(**params) as conn:
            conn.execute("SELECT 1")
    else:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")


def _redis() -> None:
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=READY_TIMEOUT_S, socket_timeout=READY_TIMEOUT_S
    )
    try:
        client.ping()
    finally:
        client.close()
