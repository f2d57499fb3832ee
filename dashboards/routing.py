from django.urls import path

from dashboards.consumers import LiveConsumer

websocket_urlpatterns = [
    path("ws/<slug:org_slug>/live/", LiveConsumer.as_asgi()),
]


def live_socket_path(org_slug: str) -> str:
    """The path of an org's Live Mode socket (Django's reverse() knows only HTTP routes)."""
    return f"/ws/{org_slug}/live/"
