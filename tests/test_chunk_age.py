"""A chunk's ``age_ms``: how long before its post its last sample was taken.

The reference firmware samples from boot, before Wi-Fi is up; its first chunks wait in the
ring and go out oldest first. The server took every chunk as just sampled, so the recording
the first one opened started late by that wait (an exploratory test: Wi-Fi up after 8 s, the
start 7.01 s late and the newest sample 6.95 s in the future for the whole session). With the
age, the opening chunk dates sample 0 right; and a chunk sampled before the device was
assigned to its current patient (a session that had no recording yet when the device was
moved) no longer opens that patient's recording (docs/device-protocol.md, "The chunk's age").
Through the real device API, with a fake clock.
"""

import json
import struct
import zlib
from datetime import datetime, timedelta

import pytest
from aiohttp import web
from django.utils import timezone
from rest_framework.test import APIClient

from monitoring.ingest import ASSIGNMENT_TOLERANCE_S, MAX_SAMPLE_ZERO_AGE_S
from monitoring.models import Device, Recording, SampleChunk
from monitoring.protocol import MAX_CHUNK_AGE_MS, encode_binary_chunk
from tests.test_device_ingest import json_body, make_chunk, post_binary, post_json
from tests.test_device_session_time import FS, second
from tests.test_simulator import ScriptedServer

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(device, device_token):
    # assigned a day ago: the chunks of these tests were sampled since (the tests of the
    # assignment move the device, which dates it anew)
    Device.objects.filter(pk=device.pk).update(assigned_at=timezone.now() - timedelta(days=1))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Device {device_token}")
    return api


def started_at(session: str) -> datetime:
    return Recording.objects.get(session=session).started_at


# --- Dating the recording ----------------------------------------------------------------


def test_the_firmware_boot_backlog_dates_the_recording_at_boot(client, clock):
    """The exploratory test's boot: Wi-Fi up 8 s after sampling began, the eight chunks
    sampled meanwhile sent oldest first, then one a second. With their ages the recording
    starts at boot and its newest sample is never in the future; without, 7 s late."""
    booted = clock.now
    clock.advance(8)
    for index in range(8):
        # chunk k's last sample was taken at k + 1 s; the backlog goes out as fast as it can
        age_ms = round(((clock.now - booted).total_seconds() - (index + 1)) * 1000)
        assert post_json(client, second(index, age_ms=age_ms)).status_code == 201
        clock.advance(0.05)
    assert started_at("b0075eed") == booted
    for index in range(8, 20):
        clock.now = booted + timedelta(seconds=index + 1, milliseconds=30)
        assert post_json(client, second(index, age_ms=30)).status_code == 201
        recording = Recording.objects.get()
        newest_taken_at = recording.started_at + timedelta(seconds=recording.end_sample / FS)
        assert newest_taken_at <= clock.now

    # the same boot from a client without ages: late by the first chunk's wait, 7 s
    booted = clock.now
    clock.advance(8)
    assert post_json(client, second(0, session="0dd0a9e5")).status_code == 201
    assert started_at("0dd0a9e5") - booted == timedelta(seconds=7)


def test_a_first_chunk_8_s_old_is_dated_8_s_earlier_than_without(client, clock):
    assert post_json(client, second(3, session="00000001")).status_code == 201
    assert post_json(client, second(3, session="00000002", age_ms=8000)).status_code == 201
    assert post_binary(client, second(3, session="00000003", age_ms=8000)).status_code == 201
    without = started_at("00000001")
    assert without == clock.now - timedelta(seconds=4)
    assert started_at("00000002") == started_at("00000003") == without - timedelta(seconds=8)


def test_later_chunks_ages_do_not_move_the_start(client, clock):
    """Only the opening chunk dates the recording: the start never moves."""
    assert post_json(client, second(0, age_ms=2000)).status_code == 201
    opened = started_at("b0075eed")
    clock.advance(1)
    assert post_json(client, second(1, age_ms=600_000)).status_code == 201
    assert post_json(client, second(2, age_ms=0)).status_code == 201
    assert started_at("b0075eed") == opened


def test_the_start_stays_within_a_day_whatever_the_age(client, clock):
    """A client without sessions counts from where it likes: its sample index and the age
    together still date sample 0 at most MAX_SAMPLE_ZERO_AGE_S back."""
    end_s = MAX_SAMPLE_ZERO_AGE_S - 1
    chunk = make_chunk(seq=0, first_sample=int(end_s * FS) - FS, n=FS, session="")
    chunk.age_ms = MAX_CHUNK_AGE_MS
    assert post_json(client, chunk).status_code == 201
    assert Recording.objects.get().started_at == clock.now - timedelta(
        seconds=MAX_SAMPLE_ZERO_AGE_S
    )


# --- Refused values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (json_body(age_ms="8000"), 'age_ms must be an integer, got "8000"'),
        (json_body(age_ms=8000.5), "age_ms must be an integer, got 8000.5"),
        (json_body(age_ms=True), "age_ms must be an integer, got true"),
        (json_body(age_ms=-1), "age_ms must be 0 to 3600000"),
        (json_body(age_ms=MAX_CHUNK_AGE_MS + 1), "got 3600001"),
        (json_body(age_ms=2**64), "age_ms must be 0 to 3600000"),
        (json_body(age_ms=0).replace(b'"age_ms": 0', b'"age_ms": NaN'), "age_ms is NaN"),
        (json_body(age_ms=0).replace(b'"age_ms": 0', b'"age_ms": -Infinity'), "age_ms is -Inf"),
    ],
    ids=["string", "fraction", "bool", "negative", "over-an-hour", "huge", "nan", "infinity"],
)
def test_an_age_that_cannot_be_is_refused_naming_the_field(client, body, words):
    response = post_json(client, body=body)
    assert response.status_code == 400, response.content
    assert words in response.json()["detail"]
    assert not SampleChunk.objects.exists() and not Recording.objects.exists()


def test_a_null_age_is_no_age(client, clock):
    assert post_json(client, body=json_body(session="s1", age_ms=None)).status_code == 201
    assert started_at("s1") == clock.now - timedelta(seconds=3 / FS)


def _with_crc(payload: bytes) -> bytes:
    return payload + struct.pack("<I", zlib.crc32(payload))


def test_a_binary_age_over_an_hour_or_without_its_bytes_is_refused(client):
    body = encode_binary_chunk(second(0, age_ms=1000))
    huge = _with_crc(body[:-8] + struct.pack("<I", MAX_CHUNK_AGE_MS + 1))
    response = post_binary(client, body=huge)
    assert response.status_code == 400
    assert "age_ms must be 0 to 3600000" in response.json()["detail"]
    # flag bit 2 set, but no age after the samples
    missing = _with_crc(body[:-8])
    response = post_binary(client, body=missing)
    assert response.status_code == 400
    assert "and 4 bytes of age_ms (flag bit 2)" in response.json()["detail"]
    assert not Recording.objects.exists()


# --- A backlog sampled before the device's assignment ------------------------------------


def move(device: Device, patient) -> None:
    """The dashboard's "assign device": save() dates ``assigned_at``."""
    device.patient = patient
    device.save()


def first_chunk_taken_before_assignment(clock, seconds: float, **fields):
    """Chunk 0 of a session that had no recording yet, arriving 5 s after the move, whose
    first sample was taken ``seconds`` before it (negative: after)."""
    clock.advance(5)
    age_ms = round((5 + seconds - 1) * 1000)  # its last sample: 1 s after its first
    return second(0, session="0ff1ce00", age_ms=age_ms, **fields)


def test_a_backlog_from_before_the_move_does_not_open_the_new_patients_recording(
    client, clock, device, patient, other_patient
):
    """A session started during a link outage on the first patient; the device moved before
    the link came back. Its first chunk would open the second patient's recording with the
    first patient's ECG: answered as the existing move is, 409 new_session, backlog drop."""
    move(device, other_patient)
    response = post_json(client, first_chunk_taken_before_assignment(clock, 20))
    assert response.status_code == 409, response.content
    answer = response.json()
    assert list(answer)[:2] == ["code", "backlog"]
    assert answer["code"] == "new_session" and answer["backlog"] == "drop"
    assert answer["detail"].startswith(
        "the chunk's first sample was taken 20 s before the device was assigned to its current "
        "patient; start a new session and drop the samples not yet acknowledged"
    )
    assert response.content.index(b'"backlog"') < 200  # the firmware reads 200 bytes
    assert not Recording.objects.exists() and not SampleChunk.objects.exists()
    # the device's new session starts with the first sample after the answer
    clock.advance(1)
    assert post_json(client, second(0, session="00000bed", age_ms=0)).status_code == 201
    assert Recording.objects.get().patient == other_patient


def test_without_an_age_the_same_backlog_still_opens_the_recording(
    client, clock, device, other_patient
):
    """An older client: the server cannot tell when the chunk was sampled (the gap left)."""
    move(device, other_patient)
    chunk = first_chunk_taken_before_assignment(clock, 20)
    chunk.age_ms = None
    assert post_json(client, chunk).status_code == 201
    assert Recording.objects.get().patient == other_patient


@pytest.mark.parametrize(
    ("before_s", "status"),
    [(-3.0, 201), (ASSIGNMENT_TOLERANCE_S - 0.5, 201), (ASSIGNMENT_TOLERANCE_S + 0.5, 409)],
    ids=["after", "within-tolerance", "beyond-tolerance"],
)
def test_the_assignment_counts_with_a_small_tolerance(
    client, clock, device, other_patient, before_s, status
):
    move(device, other_patient)
    response = post_binary(client, first_chunk_taken_before_assignment(clock, before_s))
    assert response.status_code == status, response.content


def test_a_device_switched_on_before_it_was_assigned_opens_its_recording_dated_back(
    client, clock, device, patient
):
    """Its session's sample 0 lies before the assignment, but the chunk that opens the
    recording was sampled after it (the earlier ones were refused with 403): stored, and
    dated back to sample 0 as before."""
    Device.objects.filter(pk=device.pk).update(patient=None, assigned_at=None)
    switched_on = clock.now
    clock.advance(300)
    assert post_json(client, second(299, age_ms=0)).status_code == 403
    device.refresh_from_db()
    move(device, patient)
    clock.advance(1)
    assert post_json(client, second(300, age_ms=0)).status_code == 201
    assert started_at("b0075eed") == switched_on


def test_a_chunk_without_a_session_is_not_checked(client, clock, device, other_patient):
    """It cannot be asked to start again: it opens the recording as before."""
    move(device, other_patient)
    chunk = first_chunk_taken_before_assignment(clock, 20)
    chunk.session = ""
    assert post_json(client, chunk).status_code == 201


# --- The simulator sends it ----------------------------------------------------------------


@pytest.mark.parametrize("body_format", ["json", "binary"])
def test_the_simulator_sends_each_chunks_age_at_each_post(body_format):
    """A chunk that waited (here a 503 and the backoff) is resent older: its age is measured
    before every post, as the firmware's is."""

    async def fails_once(server, chunk):
        if len(server.posts) == 1:
            return web.json_response({"detail": "restarting"}, status=503)
        return server.ack(chunk)

    server = ScriptedServer(fails_once)
    report = server.run(duration_s=2.0, body_format=body_format)

    assert [chunk.seq for chunk in server.posts] == [0, 0, 1, 2, 3]
    assert report.chunks_acked == 4
    ages_ms = [chunk.age_ms for chunk in server.posts]
    assert all(isinstance(age, int) and age >= 0 for age in ages_ms), ages_ms
    # the resend left after the backoff (1 s of device time at 10x: 100 ms of wall time)
    assert ages_ms[1] >= 100 and ages_ms[1] > ages_ms[0], ages_ms


def test_the_age_is_in_the_simulators_json_as_the_protocol_names_it():
    from monitoring.protocol import encode_json_chunk

    assert json.loads(encode_json_chunk(second(0, age_ms=8000)))["age_ms"] == 8000
    assert "age_ms" not in json.loads(encode_json_chunk(second(0)))
