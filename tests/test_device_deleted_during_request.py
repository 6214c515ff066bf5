"""A device deleted while its request is in flight gets the 401 of an unknown token, not a 500.

The token is checked when the request is authenticated; ``ingest_chunk`` and the open
endpoint then lock the device's row with ``.get()``, whose DoesNotExist was a 500 when an
admin had deleted the device in between. The deletion is made to fall in that window by
deleting the device right after the authentication.
"""

import json

import pytest
from rest_framework.test import APIClient

from monitoring.authentication import DeviceTokenAuthentication
from monitoring.models import Device, Recording, SampleChunk
from monitoring.protocol import JSON_CONTENT_TYPE

pytestmark = pytest.mark.django_db

CHUNK = {
    "session": "s1",
    "seq": 0,
    "first_sample": 0,
    "fs_hz": 250,
    "gain_adc_per_mv": 200,
    "samples": [1, 2, 3],
}
OPEN = {"session": "s1", "fs_hz": 250, "gain_adc_per_mv": 200}


@pytest.fixture
def client(device_token):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Device {device_token}")
    return api


@pytest.fixture
def deleted_after_authentication(monkeypatch, device):
    authenticate = DeviceTokenAuthentication.authenticate

    def authenticate_then_delete(self, request):
        result = authenticate(self, request)
        if result is not None:
            Device.objects.filter(pk=result[1].pk).delete()  # an admin, meanwhile
        return result

    monkeypatch.setattr(DeviceTokenAuthentication, "authenticate", authenticate_then_delete)
    return device


@pytest.mark.parametrize(
    ("url", "body"),
    [("/api/device/v1/chunks/", CHUNK), ("/api/device/v1/recordings/open/", OPEN)],
    ids=["chunk", "open"],
)
def test_a_device_deleted_during_the_request_gets_401(
    client, deleted_after_authentication, url, body
):
    response = client.post(url, data=json.dumps(body), content_type=JSON_CONTENT_TYPE)
    assert response.status_code == 401, response.content
    serial = deleted_after_authentication.serial
    assert response.json() == {
        "detail": f"device {serial} no longer exists (it was deleted): its token is no longer valid"
    }
    assert response["WWW-Authenticate"] == "Device"
    assert not Recording.objects.exists() and not SampleChunk.objects.exists()


def test_the_device_still_there_is_answered_as_before(client, device):
    response = client.post(
        "/api/device/v1/chunks/", data=json.dumps(CHUNK), content_type=JSON_CONTENT_TYPE
    )
    assert response.status_code == 201, response.content


def test_closing_a_session_of_a_deleted_device_answers_404_not_500(
    client, deleted_after_authentication
):
    # the close looks recordings up by filter: the deleted device's no longer name it (SET_NULL)
    response = client.post(
        "/api/device/v1/recordings/close/",
        data=json.dumps({"session": "s1"}),
        content_type=JSON_CONTENT_TYPE,
    )
    assert response.status_code == 404, response.content
    assert response.json() == {"detail": "no such recording of this device"}
