from django.urls import path

from dashboards import views

urlpatterns = [
    path("", views.home, name="home"),
    path("<slug:org_slug>/overview/", views.overview, name="overview"),
    path("<slug:org_slug>/usage/", views.usage, name="usage"),
    path("<slug:org_slug>/analytics/", views.analytics, name="analytics"),
    path("<slug:org_slug>/agents/", views.agents, name="agents"),
    path("<slug:org_slug>/resources/", views.resources, name="resources"),
    path("<slug:org_slug>/live/", views.live_mode, name="live_mode"),
]
