"""The scope matrix (issue 17): each surface × each viewer gets exactly its scope, and every route
of the site has a row (tables.py holds both tables and says how each answer is read)."""

import pytest
import time_machine
from django.contrib import admin as django_admin
from django.db import transaction
from django.test import override_settings
from django.urls import URLResolver, get_resolver, resolve

from dashboards import views as dashboard_views
from dashboards.routing import websocket_urlpatterns
from metering.api import api
from tests.dashboards.data import NOW
from tests.scope.tables import SOCKET, SURFACES, VIEWERS, build_world, expected, observe


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    """One world for the module, built once (per test it would be most of the run time): it lives
    in a transaction of its own that each test's (a savepoint inside it) rolls back to, and that
    is rolled back when the module is done. Time stands still at NOW all along."""
    with time_machine.travel(NOW, tick=False):
        with django_db_blocker.unblock():
            outer = transaction.atomic()
            outer.__enter__()
            try:
                with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
                    built = build_world()
            except BaseException:
                transaction.set_rollback(True)
                outer.__exit__(None, None, None)
                raise
        yield built
        with django_db_blocker.unblock():
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


@pytest.mark.django_db
@pytest.mark.parametrize("surface", SURFACES, ids=lambda s: s.name)
def test_each_viewer_gets_exactly_their_scope(world, surface):
    seen = {viewer.name: observe(surface, viewer.name, *world.client(viewer)) for viewer in VIEWERS}
    assert seen == {viewer.name: expected(surface, viewer) for viewer in VIEWERS}


# --- Completeness: no route without a row -------------------------------------------------------

# Routes deliberately outside the matrix, and why.
OUT_OF_MATRIX = {
    "healthz",  # open probes by design (README), no org data: tests/usage_site/test_health.py
    "readyz",
    "api:api-root",  # ninja's 404 that locates the docs
    # Django's own admin pages with no org data in them.
    "admin:login",
    "admin:logout",
    "admin:password_change",
    "admin:password_change_done",
    "admin:jsi18n",
    "admin:view_on_site",  # Tally's models have no get_absolute_url
    "admin:auth_user_password_change",  # guarded by the user admin's change permission (tests/accounts/test_admin.py)
}
# An object's add, change, delete and history pages are guarded by the same ModelAdmin permissions
# and queryset as its changelist, which has a row; tests/accounts/test_admin.py opens them across orgs.
PER_OBJECT = ("_add", "_change", "_delete", "_history")


def named_routes(patterns, namespace=None):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from named_routes(pattern.url_patterns, pattern.namespace or namespace)
        elif pattern.name:  # unnamed: the admin's redirects and catch-all, which serve nothing of their own
            yield f"{namespace}:{pattern.name}" if namespace else pattern.name


def covered_routes() -> set[str]:
    return {resolve(surface.path).view_name for surface in SURFACES}


def test_every_route_has_a_row():
    routes = {name for name in named_routes(get_resolver().url_patterns) if not name.endswith(PER_OBJECT)}
    assert routes - OUT_OF_MATRIX - covered_routes() == set()
    assert OUT_OF_MATRIX & covered_routes() == set(), "a route both in a row and out of the matrix"


def test_every_api_operation_has_a_row():
    operations = {
        (method.lower(), f"api:{operation.view_func.__name__}")
        for _, router in api._routers
        for path_view in router.path_operations.values()
        for operation in path_view.operations
        for method in operation.methods
    }
    rows = {(surface.method, resolve(surface.path).view_name) for surface in SURFACES}
    assert operations - rows == set()


def test_every_htmx_section_has_a_row():
    sections = {
        (name.removesuffix("_SECTIONS").lower(), section)
        for name, table in vars(dashboard_views).items()
        if name.endswith("_SECTIONS") and name != "LIVE_SECTIONS"
        for section in table.values()
    }
    rows = {(s.path.split("/")[2], s.params["section"]) for s in SURFACES if "section" in s.params}
    assert sections == rows


def test_every_admin_model_has_a_row():
    paths = {f"/admin/{model._meta.app_label}/{model._meta.model_name}/" for model in django_admin.site._registry}
    assert paths <= {surface.path for surface in SURFACES}


def test_every_websocket_route_has_a_row():
    assert [str(route.pattern) for route in websocket_urlpatterns] == ["ws/<slug:org_slug>/live/"]
    assert SOCKET.path == "/ws/acme/live/"
