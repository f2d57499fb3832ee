"""The runtime pieces are wired: one ASGI app for HTTP and websockets, a working channel layer."""

import gc

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.conf import settings

from usage_site.asgi import application
from usage_site.celery import app as celery_app
from usage_site.server import GC_THRESHOLD


@pytest.mark.django_db(transaction=True)
def test_the_asgi_app_serves_http():
    response = async_to_sync(
        HttpCommunicator(application, "GET", "/admin/login/", headers=[(b"host", b"127.0.0.1")]).get_response
    )()
    assert response["status"] == 200
    assert b"csrfmiddlewaretoken" in response["body"]


def test_loading_the_asgi_app_tunes_the_garbage_collector():
    """Its request-sized garbage dies young, and full collections skip what the app loaded."""
    assert gc.get_threshold() == GC_THRESHOLD
    assert gc.get_freeze_count() > 0


def test_the_asgi_app_refuses_websockets_from_foreign_origins():
    async def connect():
        communicator = WebsocketCommunicator(
            application, "/ws/anything/", headers=[(b"origin", b"https://evil.example")]
        )
        connected, _ = await communicator.connect()
        await communicator.disconnect()
        return connected

    assert async_to_sync(connect)() is False


def test_the_channel_layer_delivers_a_message():
    """With REDIS_URL set this goes through the real Redis server, else the in-memory layer."""
    layer = get_channel_layer()

    async def round_trip():
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "ping", "n": 1})
        return await layer.receive(channel)

    assert async_to_sync(round_trip)() == {"type": "ping", "n": 1}
    expected = "RedisChannelLayer" if settings.REDIS_URL else "InMemoryChannelLayer"
    assert type(layer).__name__ == expected


def test_celery_uses_redis_when_configured_and_runs_eagerly_otherwise():
    if settings.REDIS_URL:
        assert celery_app.conf.broker_url == settings.REDIS_URL
        assert not celery_app.conf.task_always_eager
    else:
        assert celery_app.conf.task_always_eager
