"""The OpenAPI schema of the device endpoints says what they take and answer.

``recordings/open/`` and ``recordings/close/`` read JSON only (415 "send application/json"
otherwise), but the schema listed form-encoded and multipart bodies, and left out the 401,
413, 415 and 429 they answer.
"""

import json

import pytest
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from monitoring.models import Recording
from monitoring.protocol import MAX_BODY_BYTES

pytestmark = pytest.mark.django_db

OPEN = "/api/device/v1/recordings/open/"
CLOSE = "/api/device/v1/recordings/close/"
CHUNKS = "/api/device/v1/chunks/"
OPEN_BODY = {"session": "9f3a61c2", "fs_hz": 250, "gain_adc_per_mv": 1241.2}


@pytest.fixture(scope="module")
def schema():
    with GENERATOR_STATS.silence():
        return SchemaGenerator().get_schema(request=None, public=True)


@pytest.fixture
def device_client(device_token):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Device {device_token}")
    return api


@pytest.mark.parametrize("path", [OPEN, CLOSE])
def test_the_schema_lists_json_bodies_only(schema, path):
    assert set(schema["paths"][path]["post"]["requestBody"]["content"]) == {"application/json"}


@pytest.mark.parametrize(
    ("path", "codes"),
    [
        (OPEN, {"200", "201", "400", "401", "403", "409", "413", "415", "429"}),
        (CLOSE, {"200", "400", "401", "403", "404", "413", "415", "429"}),
        (CHUNKS, {"200", "201", "400", "401", "403", "404", "409", "413", "415", "429"}),
    ],
)
def test_the_schema_lists_every_answer(schema, path, codes):
    assert set(schema["paths"][path]["post"]["responses"]) == codes


def test_the_schema_gives_opens_required_fields_and_an_example(schema):
    content = schema["paths"][OPEN]["post"]["requestBody"]["content"]["application/json"]
    name = content["schema"]["$ref"].rsplit("/", 1)[-1]
    assert set(schema["components"]["schemas"][name]["required"]) == {"fs_hz", "gain_adc_per_mv"}
    (example,) = content["examples"].values()
    assert {"fs_hz", "gain_adc_per_mv", "session"} <= set(example["value"])


@pytest.mark.parametrize("path", [OPEN, CLOSE])
@pytest.mark.parametrize("format_", ["multipart", "form"])
def test_a_form_body_gets_the_415_the_schema_now_lists(device_client, path, format_):
    if format_ == "multipart":
        response = device_client.post(path, OPEN_BODY, format="multipart")
    else:
        response = device_client.post(
            path, "session=x", content_type="application/x-www-form-urlencoded"
        )
    assert response.status_code == 415
    assert response.json() == {"detail": "send application/json"}
    assert Recording.objects.count() == 0


@pytest.mark.parametrize("path", [OPEN, CLOSE])
def test_the_listed_401_413_and_429_are_answered(settings, device_client, path):
    assert APIClient().post(path, OPEN_BODY, format="json").status_code == 401
    too_large = json.dumps({"session": "x" * (MAX_BODY_BYTES + 1)})
    assert device_client.post(path, too_large, content_type="application/json").status_code == 413
    settings.DEVICE_THROTTLE_RATE = "2/min"
    answers = [device_client.post(path, {}, format="json").status_code for _ in range(3)]
    assert answers[-1] == 429


def test_the_documented_open_example_opens_a_recording(device_client):
    # the body docs/device-protocol.md gives for an explicit open
    response = device_client.post(
        OPEN,
        {
            "session": "9f3a61c2",
            "fs_hz": 250,
            "gain_adc_per_mv": 1241.2,
            "baseline_adc": 2048,
            "n_channels": 1,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    recording = Recording.objects.get()
    assert response.json() == {"recording": recording.pk, "session": "9f3a61c2"}
    assert recording.baseline_adc == 2048 and recording.sampling_rate_hz == 250.0
