from django.contrib import admin
from django.urls import include, path

from metering.api import api
from metering.otlp import views as otlp
from usage_site import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    # OTLP/HTTP's default paths, which SDKs append to OTEL_EXPORTER_OTLP_ENDPOINT (DESIGN §12.1).
    path("v1/metrics", otlp.metrics, name="otlp_metrics"),
    path("v1/logs", otlp.logs, name="otlp_logs"),
    path("v1/traces", otlp.traces, name="otlp_traces"),
    path("", include("accounts.urls")),
    path("", include("dashboards.urls")),
]
