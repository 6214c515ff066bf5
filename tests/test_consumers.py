import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from cardiospike.asgi import application
from monitoring.consumers import CLOSE_UNAUTHENTICATED, StatusConsumer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


async def connect_as(user):
    communicator = WebsocketCommunicator(StatusConsumer.as_asgi(), "/ws/status/")
    communicator.scope["user"] = user
    connected, code = await communicator.connect()
    return communicator, connected, code


async def test_it_refuses_an_anonymous_websocket():
    communicator, connected, code = await connect_as(AnonymousUser())
    assert connected is False
    assert code == CLOSE_UNAUTHENTICATED


async def test_it_greets_an_authenticated_user_and_answers_pings(django_user_model):
    user = await database_sync_to_async(django_user_model.objects.create_user)("nurse")
    communicator, connected, _ = await connect_as(user)
    assert connected
    assert await communicator.receive_json_from() == {"type": "hello", "user": "nurse"}
    await communicator.send_json_to({"type": "ping", "id": 7})
    assert await communicator.receive_json_from() == {"type": "pong", "id": 7}
    await communicator.disconnect()


async def test_it_answers_malformed_messages_with_an_error(django_user_model):
    user = await database_sync_to_async(django_user_model.objects.create_user)("nurse2")
    communicator, connected, _ = await connect_as(user)
    await communicator.receive_json_from()
    await communicator.send_to(text_data="{not json")
    reply = await communicator.receive_json_from()
    assert reply["type"] == "error" and "JSON" in reply["error"]
    await communicator.send_json_to(["ping"])
    assert (await communicator.receive_json_from())["type"] == "error"
    # the connection survives bad input
    await communicator.send_json_to({"type": "ping", "id": 1})
    assert (await communicator.receive_json_from())["type"] == "pong"
    await communicator.disconnect()


async def test_it_refuses_a_websocket_from_a_foreign_origin():
    communicator = WebsocketCommunicator(
        application, "/ws/status/", headers=[(b"origin", b"http://evil.example.com")]
    )
    connected, _ = await communicator.connect()
    assert connected is False
