"""The site's URLs plus stand-ins for the five dashboard pages, so the layout can be rendered before they exist.

Once dashboards/urls.py routes the pages itself, tests can use the real URLconf and this file can go.
"""

from django.contrib import admin
from django.http import HttpResponse
from django.urls import include, path

from dashboards.templatetags.tally import DASHBOARD_PAGES


def stand_in(request, org_slug):
    return HttpResponse()


urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("accounts.urls")),
    path("", include("dashboards.urls")),
    *[path(f"<slug:org_slug>/{name}/", stand_in, name=name) for name, _ in DASHBOARD_PAGES],
]
