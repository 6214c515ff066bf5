"""A chunk whose ``session`` and ``recording`` contradict each other is refused, unstored.

It was stored in the named recording: a chunk of session "other" naming recording 10 (opened
as session "oc1") landed in oc1's recording, and its seq counted in next_seq among oc1's.
"""

import numpy as np
import pytest
from rest_framework.test import APIClient

from monitoring.models import Recording, SampleChunk
from monitoring.protocol import (
    BINARY_CONTENT_TYPE,
    Chunk,
    encode_binary_chunk,
    encode_json_chunk,
)

pytestmark = pytest.mark.django_db

CHUNKS = "/api/device/v1/chunks/"
OPEN = "/api/device/v1/recordings/open/"


@pytest.fixture
def client(device_token):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Device {device_token}")
    return api


def open_recording(client, session: str) -> int:
    response = client.post(
        OPEN, {"session": session, "fs_hz": 250, "gain_adc_per_mv": 200}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()["recording"]


def chunk(seq: int, session: str, recording_id: int | None = None) -> Chunk:
    return Chunk(
        seq=seq,
        first_sample=seq * 250,
        fs_hz=250.0,
        gain_adc_per_mv=200.0,
        n_channels=1,
        samples=np.arange(250, dtype=np.int16).reshape(-1, 1),
        session=session,
        recording_id=recording_id,
    )


def post_json(client, body: Chunk):
    return client.post(CHUNKS, encode_json_chunk(body), content_type="application/json")


def test_a_chunk_naming_another_sessions_recording_is_refused(client):
    recording_id = open_recording(client, "oc1")
    response = post_json(client, chunk(0, "other", recording_id))
    assert response.status_code == 400, response.content
    assert response.json() == {
        "detail": f"the chunk names recording {recording_id}, opened with session 'oc1', but "
        "carries session 'other'; send that recording's session, or none"
    }
    assert SampleChunk.objects.count() == 0
    assert Recording.objects.get().next_seq == 0  # and no recording opened for "other"


def test_a_session_naming_a_recording_opened_without_one_is_refused(client):
    recording_id = open_recording(client, "")
    response = post_json(client, chunk(0, "late-session", recording_id))
    assert response.status_code == 400
    assert "opened with no session" in response.json()["detail"]
    assert SampleChunk.objects.count() == 0 and Recording.objects.count() == 1


@pytest.mark.parametrize("session", ["oc1", ""])
def test_the_recordings_own_session_or_none_is_stored(client, session):
    recording_id = open_recording(client, "oc1")
    response = post_json(client, chunk(0, session, recording_id))
    assert response.status_code == 201, response.content
    assert response.json()["recording"] == recording_id
    assert Recording.objects.get(pk=recording_id).chunks.count() == 1


def test_a_binary_chunk_goes_by_its_session_alone(client):
    # the binary body has no recording field: its session id picks the recording, so it
    # cannot contradict one; another session opens its own recording
    recording_id = open_recording(client, "0000000a")
    body = encode_binary_chunk(chunk(0, "0000000b"))
    response = client.post(CHUNKS, body, content_type=BINARY_CONTENT_TYPE)
    assert response.status_code == 201, response.content
    assert response.json()["recording"] != recording_id
    assert Recording.objects.get(session="0000000b").chunks.count() == 1
    assert not Recording.objects.get(pk=recording_id).chunks.exists()
