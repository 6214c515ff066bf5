"""Device protocol v1 ingest: chunks stored once, acknowledged, and every bad chunk refused.

Each refusal also checks that nothing was stored (no chunk, no recording opened).
"""

import json
import struct
import zlib
from datetime import timedelta

import numpy as np
import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from monitoring.ingest import close_silent_recordings
from monitoring.models import ApiToken, Device, Recording, SampleChunk
from monitoring.protocol import (
    BINARY_CONTENT_TYPE,
    MAX_BODY_BYTES,
    MAX_CHUNK_FRAMES,
    MAX_GAIN_ADC_PER_MV,
    MIN_GAIN_ADC_PER_MV,
    Chunk,
    encode_binary_chunk,
    encode_json_chunk,
)
from monitoring.recordings import summarize

pytestmark = pytest.mark.django_db

URL = "/api/device/v1/chunks/"


@pytest.fixture
def client(device_token):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Device {device_token}")
    return api


def make_chunk(seq=0, first_sample=None, n=250, session="a1b2c3d4", rng=None, **fields):
    rng = rng or np.random.default_rng(seq)
    n_channels = fields.pop("n_channels", 1)
    samples = rng.integers(-2000, 2000, size=(n, n_channels)).astype(np.int16)
    return Chunk(
        seq=seq,
        first_sample=seq * n if first_sample is None else first_sample,
        fs_hz=fields.pop("fs_hz", 250.0),
        gain_adc_per_mv=fields.pop("gain_adc_per_mv", 200.0),
        n_channels=n_channels,
        samples=samples,
        session=session,
        **fields,
    )


def post_json(client, chunk=None, body=None, **extra):
    data = body if body is not None else encode_json_chunk(chunk)
    return client.post(URL, data=data, content_type="application/json", **extra)


def post_binary(client, chunk=None, body=None):
    data = body if body is not None else encode_binary_chunk(chunk)
    return client.post(URL, data=data, content_type=BINARY_CONTENT_TYPE)


def json_body(**fields):
    base = {
        "session": "s1",
        "seq": 0,
        "first_sample": 0,
        "fs_hz": 250,
        "gain_adc_per_mv": 200,
        "samples": [1, 2, 3],
    }
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


def assert_nothing_stored():
    assert SampleChunk.objects.count() == 0
    assert Recording.objects.count() == 0


# --- Accepted chunks --------------------------------------------------------------------


def test_first_chunk_opens_a_recording_and_is_acknowledged(client, device, patient):
    chunk = make_chunk(seq=0, battery_pct=81, lead_off=True, baseline_adc=12)
    response = post_json(client, chunk)

    assert response.status_code == 201, response.content
    recording = Recording.objects.get()
    assert response.json() == {
        "recording": recording.pk,
        "seq": 0,
        "stored": True,
        "next_seq": 1,
        "end_sample": 250,
        "missing_samples": 0,
    }
    assert recording.patient == patient and recording.device == device
    assert recording.session == "a1b2c3d4"
    assert recording.sampling_rate_hz == 250.0 and recording.gain_adc_per_mv == 200.0
    assert recording.baseline_adc == 12 and recording.status == Recording.Status.LIVE
    stored = SampleChunk.objects.get()
    np.testing.assert_array_equal(stored.samples(), chunk.samples)
    device.refresh_from_db()
    assert device.last_seen_at is not None
    assert device.battery_pct == 81 and device.lead_off is True


def test_binary_and_json_chunks_store_the_same_samples(client):
    chunks = [make_chunk(seq=i, n_channels=3) for i in range(4)]
    for chunk in chunks:
        post = post_binary if chunk.seq % 2 else post_json
        assert post(client, chunk).status_code == 201
    recording = Recording.objects.get()
    assert recording.n_channels == 3 and len(recording.lead_names) == 3
    stored = np.concatenate([c.samples() for c in recording.chunks.order_by("first_sample")])
    np.testing.assert_array_equal(stored, np.concatenate([c.samples for c in chunks]))


def test_a_resent_chunk_is_stored_once_and_acknowledged_again(client):
    chunk = make_chunk(seq=0)
    first = post_binary(client, chunk)
    again = post_binary(client, chunk)
    also_json = post_json(client, chunk)

    assert first.status_code == 201
    assert again.status_code == 200 and also_json.status_code == 200
    assert again.json()["stored"] is False and again.json()["next_seq"] == 1
    assert SampleChunk.objects.count() == 1


def test_chunks_out_of_order_fill_in_and_next_seq_names_the_lowest_missing(client):
    acks = {}
    for seq in (0, 2, 3, 1, 5):
        response = post_json(client, make_chunk(seq=seq))
        assert response.status_code == 201
        acks[seq] = response.json()
    assert acks[2]["next_seq"] == 1 and acks[3]["next_seq"] == 1
    assert acks[3]["missing_samples"] == 250  # chunk 1 not there yet
    assert acks[1]["next_seq"] == 4 and acks[1]["missing_samples"] == 0
    assert acks[5]["next_seq"] == 4 and acks[5]["missing_samples"] == 250
    summary = summarize(Recording.objects.get())
    assert summary["missing_samples"] == 250  # chunk 4 never came: a gap, not invented
    assert summary["n_samples"] == 5 * 250


def test_a_new_session_opens_a_new_recording_and_closes_the_old(client):
    post_json(client, make_chunk(seq=0, session="00000001"))
    post_json(client, make_chunk(seq=0, session="00000002"))
    old, new = Recording.objects.order_by("pk")
    assert old.status == Recording.Status.CLOSED and old.closed_by == "server"
    assert new.status == Recording.Status.LIVE and new.session == "00000002"


def test_a_late_chunk_of_a_session_a_newer_one_closed_is_stored_not_reopened(client):
    """A request of the old session still in flight when the device started anew (a retry
    after a timeout): its samples are kept, but the recording stays closed. It used to go
    live again beside the new session's, listed as live until the silence timeout."""
    post_json(client, make_chunk(seq=0, session="00000001"))
    post_json(client, make_chunk(seq=0, session="00000002"))
    late = post_json(client, make_chunk(seq=1, session="00000001"))
    assert late.status_code == 201
    old, new = Recording.objects.order_by("pk")
    assert old.chunks.count() == 2
    assert old.status == Recording.Status.CLOSED and old.closed_by == "server"
    assert old.ended_at is not None
    assert new.status == Recording.Status.LIVE


def live_recordings_of(device) -> list[str]:
    return list(
        Recording.objects.filter(device=device, status=Recording.Status.LIVE).values_list(
            "session", flat=True
        )
    )


def test_a_recording_closed_by_silence_is_replaced_too_and_a_late_chunk_does_not_reopen_it(
    client, device
):
    """Closed for silence, then the device starts a new session: the old session is over as
    well. Its late chunk (a request in flight from before the restart) used to reopen it, live
    beside the new one: two live recordings of one device until the silence timeout."""
    post_json(client, make_chunk(seq=0, session="00000001"))
    assert len(close_silent_recordings(now=timezone.now() + timedelta(seconds=301))) == 1
    post_json(client, make_chunk(seq=0, session="00000002"))
    late = post_json(client, make_chunk(seq=1, session="00000001"))

    assert late.status_code == 201  # stored, nothing is lost
    old, new = Recording.objects.order_by("pk")
    assert old.chunks.count() == 2
    assert (old.status, old.closed_by) == (Recording.Status.CLOSED, "server")
    assert live_recordings_of(device) == ["00000002"]


@pytest.mark.parametrize(
    ("rival", "closed_by", "late_status"),
    [("device", "device", 409), ("silence", "server", 201)],
    ids=["the device's close", "the silence sweep"],
)
def test_a_close_that_commits_while_a_new_session_opens_is_not_overwritten(
    client, device, monkeypatch, rival, closed_by, late_status
):
    """On PostgreSQL (READ COMMITTED) another transaction can close the old recording between
    the moment ``open_recording`` reads the device's live recordings and the moment it closes
    them: the device's own close request (``/recordings/close/``, which locks the recording but
    not the device) or the sweep closing it for silence. Played here in that order, in one
    connection. Written from its stale read, the server's close turned the device's close
    (final: a late chunk of that session must start a new one) into a replacement (a late
    chunk is stored). A close by silence ends as a replacement either way: the new session
    replaced that recording too, so a late chunk must not make it live again."""
    from monitoring import ingest

    post_json(client, make_chunk(seq=0, session="00000001"))
    close = ingest.close_recording

    def rival_commits_first(recording, by, now=None):
        if by == Recording.ClosedBy.SERVER:  # open_recording, after its read
            fresh = Recording.objects.get(pk=recording.pk)
            close(fresh, Recording.ClosedBy(rival), timezone.now())
        return close(recording, by, now)

    monkeypatch.setattr(ingest, "close_recording", rival_commits_first)
    assert post_json(client, make_chunk(seq=0, session="00000002")).status_code == 201
    monkeypatch.undo()

    old = Recording.objects.get(session="00000001")
    assert (old.status, old.closed_by) == (Recording.Status.CLOSED, closed_by)
    late = post_json(client, make_chunk(seq=1, session="00000001"))
    assert late.status_code == late_status
    assert live_recordings_of(device) == ["00000002"]


def test_closing_recordings_does_not_read_the_analyzer_state(client, settings):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    post_json(client, make_chunk(seq=0, session="00000001"))
    Recording.objects.update(stream_state=b"\x00" * 120_000)  # as a live analysis leaves it
    with CaptureQueriesContext(connection) as new_session:
        post_json(client, make_chunk(seq=0, session="00000002"))
    settings.DEVICE_SILENCE_CLOSE_S = 0.0
    Recording.objects.filter(session="00000002").update(stream_state=b"\x00" * 120_000)
    with CaptureQueriesContext(connection) as silence:
        assert len(close_silent_recordings()) == 1
    assert Recording.objects.filter(status=Recording.Status.CLOSED).count() == 2
    for queries in (new_session, silence):
        reads = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
        assert reads and not [sql[:120] for sql in reads if "stream_state" in sql]


def test_the_device_state_comes_from_its_newest_chunk_only(client, device):
    """Battery and lead-off follow the newest samples: a late chunk filling in behind them or
    a re-sent one (after a reconnect) carries a state up to minutes old."""

    def state():
        device.refresh_from_db()
        return device.lead_off, device.battery_pct

    assert post_json(client, make_chunk(seq=0, battery_pct=80)).status_code == 201
    assert post_json(client, make_chunk(seq=2, battery_pct=78)).status_code == 201
    assert state() == (False, 78)
    seen = device.last_seen_at
    # chunk 1, sampled before chunk 2, with the electrode off then
    assert post_json(client, make_chunk(seq=1, battery_pct=79, lead_off=True)).status_code == 201
    assert state() == (False, 78)
    assert device.last_seen_at > seen  # the device is still seen
    # chunk 0 again (its acknowledgment lost), as the device's queue holds it now
    assert post_json(client, make_chunk(seq=0, battery_pct=50, lead_off=True)).status_code == 200
    assert state() == (False, 78)
    # even the newest chunk, re-sent: the state it carried was applied when it was stored
    assert post_json(client, make_chunk(seq=2, battery_pct=60, lead_off=True)).status_code == 200
    assert state() == (False, 78)
    assert post_json(client, make_chunk(seq=3, battery_pct=77, lead_off=True)).status_code == 201
    assert state() == (True, 77)


def test_the_gain_limits_are_the_recordings(client):
    """A chunk is refused for a gain its recording could not keep (objects.create does not run
    the field's validators: a gain of 1e-9 was stored), and accepted at the limits."""
    field = Recording._meta.get_field("gain_adc_per_mv")
    assert sorted(v.limit_value for v in field.validators) == [
        MIN_GAIN_ADC_PER_MV,
        MAX_GAIN_ADC_PER_MV,
    ]
    tiny = post_binary(client, make_chunk(gain_adc_per_mv=1e-9, session="0000000a"))
    assert tiny.status_code == 400
    assert "gain_adc_per_mv must be between 0.001 and 1e+06" in tiny.json()["detail"]
    assert_nothing_stored()
    lowest = make_chunk(gain_adc_per_mv=MIN_GAIN_ADC_PER_MV, session="0000000b")
    highest = make_chunk(gain_adc_per_mv=MAX_GAIN_ADC_PER_MV, session="0000000c")
    assert [post_binary(client, chunk).status_code for chunk in (lowest, highest)] == [201, 201]
    assert Recording.objects.count() == 2


def test_a_chunk_without_session_goes_to_the_live_recording(client):
    post_json(client, make_chunk(seq=0, session="abc"))
    response = post_json(client, make_chunk(seq=1, session=""))
    assert response.status_code == 201
    assert Recording.objects.count() == 1 and SampleChunk.objects.count() == 2


def test_explicit_open_then_chunks_naming_the_recording(client):
    response = client.post(
        "/api/device/v1/recordings/open/",
        data={"session": "explicit", "fs_hz": 500, "gain_adc_per_mv": 100},
        format="json",
    )
    assert response.status_code == 201, response.content
    recording_id = response.json()["recording"]
    chunk = make_chunk(seq=0, session="", fs_hz=500.0, gain_adc_per_mv=100.0)
    chunk.recording_id = recording_id
    assert post_json(client, chunk).status_code == 201
    assert Recording.objects.get().chunks.count() == 1
    # a retried open answers the same recording, and says it created nothing
    again = client.post(
        "/api/device/v1/recordings/open/",
        data={"session": "explicit", "fs_hz": 500, "gain_adc_per_mv": 100},
        format="json",
    )
    assert again.status_code == 200, again.content
    assert again.json() == {"recording": recording_id, "session": "explicit"}
    assert Recording.objects.count() == 1


def test_close_on_request_then_a_late_chunk_is_refused(client):
    post_json(client, make_chunk(seq=0, session="closing"))
    response = client.post(
        "/api/device/v1/recordings/close/", data={"session": "closing"}, format="json"
    )
    assert response.status_code == 200 and response.json()["status"] == "closed"
    again = client.post(
        "/api/device/v1/recordings/close/", data={"session": "closing"}, format="json"
    )
    assert again.status_code == 200

    late = post_json(client, make_chunk(seq=1, session="closing"))
    assert late.status_code == 409
    assert "closed by the device" in late.json()["detail"]
    assert late.json()["code"] == "new_session"  # the device sends it in a new session
    assert SampleChunk.objects.count() == 1
    # opening the closed session again is refused the same way
    reopen = client.post(
        "/api/device/v1/recordings/open/",
        data={"session": "closing", "fs_hz": 250, "gain_adc_per_mv": 200},
        format="json",
    )
    assert reopen.status_code == 409
    recording = Recording.objects.get()
    detail = f"recording {recording.pk} was closed by the device; start a new session"
    assert reopen.json() == {"code": "new_session", "detail": detail}


def test_silence_closes_a_recording_and_a_late_chunk_reopens_it(client, settings):
    settings.DEVICE_SILENCE_CLOSE_S = 0.0
    post_json(client, make_chunk(seq=0))
    recording = Recording.objects.get()
    assert close_silent_recordings() == [recording.pk]
    recording.refresh_from_db()
    assert recording.status == Recording.Status.CLOSED and recording.closed_by == "silence"

    assert post_json(client, make_chunk(seq=1)).status_code == 201
    recording.refresh_from_db()
    assert recording.status == Recording.Status.LIVE and recording.chunks.count() == 2


def test_silence_closes_an_explicitly_opened_recording_that_never_got_a_chunk(client):
    """No chunk, so no ``last_chunk_at``: the silence counts from the open (it never closed,
    and stayed the patient's live recording for good)."""
    response = client.post(
        "/api/device/v1/recordings/open/",
        data={"session": "opened", "fs_hz": 250, "gain_adc_per_mv": 200},
        format="json",
    )
    recording = Recording.objects.get(pk=response.json()["recording"])
    assert close_silent_recordings() == []  # just opened
    later = recording.started_at + timedelta(seconds=301)
    assert close_silent_recordings(now=later) == [recording.pk]
    recording.refresh_from_db()
    assert recording.status == Recording.Status.CLOSED and recording.closed_by == "silence"


# --- Authentication and ownership -------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [None, "Device csd_not-a-real-token", "Device", "Bearer abc"],
    ids=["none", "unknown", "empty", "other-scheme"],
)
def test_unknown_or_missing_credentials_answer_401(device, header):
    api = APIClient()
    if header:
        api.credentials(HTTP_AUTHORIZATION=header)
    response = post_json(api, make_chunk())
    assert response.status_code == 401
    assert_nothing_stored()


def test_a_revoked_device_answers_401(client, device):
    Device.objects.filter(pk=device.pk).update(is_active=False)
    assert post_json(client, make_chunk()).status_code == 401
    assert_nothing_stored()


def test_a_user_token_cannot_post_chunks(clinician, device):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {ApiToken.issue(clinician)[1]}")
    assert post_json(api, make_chunk()).status_code in (401, 403)
    assert_nothing_stored()


def test_a_chunk_for_another_devices_recording_answers_403(client, other_patient):
    other = Device.objects.create(serial="DEV-OTHER", patient=other_patient)
    foreign = Recording.objects.create(
        patient=other_patient,
        device=other,
        sampling_rate_hz=250,
        gain_adc_per_mv=200,
        lead_names=["II"],
    )
    chunk = make_chunk()
    chunk.recording_id = foreign.pk
    response = post_json(client, chunk)
    assert response.status_code == 403
    assert "another device" in response.json()["detail"]
    assert SampleChunk.objects.count() == 0
    closing = client.post(
        "/api/device/v1/recordings/close/", data={"recording": foreign.pk}, format="json"
    )
    assert closing.status_code == 403
    foreign.refresh_from_db()
    assert foreign.status == Recording.Status.LIVE


def test_a_device_without_a_patient_answers_403(client, device):
    Device.objects.filter(pk=device.pk).update(patient=None)
    response = post_json(client, make_chunk())
    assert response.status_code == 403 and "not assigned" in response.json()["detail"]
    assert_nothing_stored()


# --- Chunks that contradict their recording ---------------------------------------------


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"fs_hz": 360.0}, "fs_hz 360 contradicts"),
        ({"gain_adc_per_mv": 400.0}, "gain_adc_per_mv 400 contradicts"),
        ({"n_channels": 2}, "n_channels 2 contradicts"),
        ({"baseline_adc": 100}, "baseline_adc 100 contradicts"),
    ],
)
def test_a_chunk_contradicting_its_recording_answers_400(client, change, words):
    assert post_json(client, make_chunk(seq=0)).status_code == 201
    response = post_json(client, make_chunk(seq=1, **change))
    assert response.status_code == 400
    assert words in response.json()["detail"]
    assert SampleChunk.objects.count() == 1


def test_same_seq_with_other_samples_answers_409(client):
    assert post_json(client, make_chunk(seq=0, rng=np.random.default_rng(1))).status_code == 201
    response = post_json(client, make_chunk(seq=0, rng=np.random.default_rng(2)))
    assert response.status_code == 409 and "other samples" in response.json()["detail"]
    # a conflict, not "start a new session": the device drops the chunk
    assert "code" not in response.json()
    assert SampleChunk.objects.count() == 1


def test_overlapping_samples_under_another_seq_answer_409(client):
    assert post_json(client, make_chunk(seq=0, first_sample=0)).status_code == 201
    response = post_json(client, make_chunk(seq=1, first_sample=100))
    assert response.status_code == 409 and "overlap" in response.json()["detail"]
    assert "code" not in response.json()
    assert SampleChunk.objects.count() == 1


def test_samples_the_device_cannot_have_taken_yet_answer_400(client, settings):
    """Late samples are normal (a device buffers what it could not send); early ones are not:
    one chunk at sample 2**53 would make every export fill a gap of that many samples."""
    settings.DEVICE_MAX_AHEAD_S = 600
    assert post_json(client, make_chunk(seq=0, first_sample=0)).status_code == 201
    recording = Recording.objects.get()
    # 120 s of buffer sent as the link comes back: well inside the bound
    assert post_json(client, make_chunk(seq=1, first_sample=250 * 120)).status_code == 201
    for first_sample in (2**53 - 250, 250 * 601):
        response = post_json(client, make_chunk(seq=2, first_sample=first_sample))
        assert response.status_code == 400
        assert "cannot be more than 600 s ahead" in response.json()["detail"]
    assert SampleChunk.objects.count() == 2
    # an hour later the device may well be an hour further on
    Recording.objects.filter(pk=recording.pk).update(
        started_at=recording.started_at - timedelta(hours=1)
    )
    assert post_json(client, make_chunk(seq=2, first_sample=250 * 3700)).status_code == 201
    # a new session beginning far ahead (a device switched on before it was assigned) is
    # asked to start again: it resends the chunk as sample 0 of a new session
    late_start = make_chunk(seq=900, first_sample=250 * 900, session="switched-on-early")
    response = post_json(client, late_start)
    assert response.status_code == 409 and response.json()["code"] == "new_session"
    assert Recording.objects.count() == 1
    late_start.session, late_start.seq, late_start.first_sample = "renumbered", 0, 0
    assert post_json(client, late_start).status_code == 201


def test_a_client_without_session_ids_goes_on_counting_after_a_move(client, device, other_patient):
    # it cannot be asked to start again: moved after 20 minutes, it goes on from where it
    # counts, in a new recording of its new patient (dated back to that count's sample 0)
    assert post_json(client, make_chunk(seq=0, session="")).status_code == 201
    Device.objects.filter(pk=device.pk).update(patient=None)
    Device.objects.filter(pk=device.pk).update(patient=other_patient)
    moved = make_chunk(seq=1200, first_sample=250 * 1200, session="")
    assert post_json(client, moved).status_code == 201
    assert Recording.objects.get(patient=other_patient).end_sample == 250 * 1201


def test_a_client_without_session_ids_cannot_be_far_ahead_of_time_either(
    client, device, other_patient, settings
):
    """Without a session a chunk gets no 409 new_session (the client could not act on it), but
    it is held to the same bound: at sample 2**53 the review and export of its recording would
    build an array from sample 0 to there, and the analysis wait at a gap of that length."""
    settings.DEVICE_MAX_AHEAD_S = 600
    assert post_json(client, make_chunk(seq=0, first_sample=0, session="")).status_code == 201
    recording = Recording.objects.get()
    for first_sample in (2**53 - 250, 250 * 601):
        response = post_json(client, make_chunk(seq=1, first_sample=first_sample, session=""))
        assert response.status_code == 400, response.content
        detail = response.json()["detail"]
        assert "cannot be more than 600 s ahead" in detail and "without a session" in detail
        assert "code" not in response.json()
    recording.refresh_from_db()
    assert recording.end_sample == 250 and SampleChunk.objects.count() == 1
    # a buffer sent late, and a device an hour on an hour later: stored
    buffered = make_chunk(seq=1, first_sample=250 * 120, session="")
    assert post_json(client, buffered).status_code == 201
    Recording.objects.filter(pk=recording.pk).update(
        started_at=recording.started_at - timedelta(hours=1)
    )
    in_an_hour = make_chunk(seq=2, first_sample=250 * 3700, session="")
    assert post_json(client, in_an_hour).status_code == 201

    # a chunk naming an explicitly opened recording (sample 0 when it was opened) but no session
    opened = client.post(
        "/api/device/v1/recordings/open/",
        data={"session": "explicit", "fs_hz": 250, "gain_adc_per_mv": 200},
        format="json",
    )
    assert opened.status_code == 201, opened.content
    named = make_chunk(seq=0, first_sample=2**53 - 250, session="")
    named.recording_id = opened.json()["recording"]
    assert post_json(client, named).status_code == 400
    named.first_sample = 0
    assert post_json(client, named).status_code == 201

    # the chunk that would open a recording (the device moved): refused, and nothing of it
    # stays, not even the close of the device's live recording
    Device.objects.filter(pk=device.pk).update(patient=other_patient)
    opening = make_chunk(seq=5, first_sample=2**53 - 250, session="")
    response = post_json(client, opening)
    assert response.status_code == 400, response.content
    assert "its recording, whose sample 0 was taken 86400 s ago" in response.json()["detail"]
    assert not Recording.objects.filter(patient=other_patient).exists()
    assert Recording.objects.get(session="explicit").status == Recording.Status.LIVE


# --- Malformed bodies -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"{not json", 400, "malformed JSON"),
        (b"[1, 2, 3]", 400, "JSON object"),
        (json_body(samples=[]), 400, "samples is empty"),
        (json_body(samples=[1, 2.5]), 400, "samples[1] must be an integer"),
        (json_body(samples=[1, "2"]), 400, "samples[1] must be an integer"),
        (json_body(samples=[1, True]), 400, "samples[1] must be an integer"),
        (json_body(samples=[40000]), 400, "outside the int16 range"),
        (
            b'{"seq": 0, "first_sample": 0, "fs_hz": 250, "gain_adc_per_mv": 200, '
            b'"samples": [1, NaN]}',
            400,
            "NaN",
        ),
        (json_body(samples=[1, 2, 3], n_channels=2), 400, "whole number of 2-channel"),
        (json_body(seq=-1), 400, "seq must be"),
        (json_body(seq=...), 400, "seq is required"),
        (json_body(fs_hz="250"), 400, "fs_hz must be a number"),
        (json_body(fs_hz=50), 400, "outside 100-2000 Hz"),
        (json_body(gain_adc_per_mv=0), 400, "gain_adc_per_mv must be between 0.001 and 1e+06"),
        (json_body(gain_adc_per_mv=1e-9), 400, "ADC units per mV, got 1e-09"),
        (json_body(gain_adc_per_mv=2e6), 400, "ADC units per mV, got 2e+06"),
        (json_body(n_channels=17), 400, "n_channels must be between"),
        (json_body(battery_pct=120), 400, "battery_pct must be 0-100"),
        (json_body(extra=1), 400, "unknown field(s): extra"),
        (json_body(version=2), 400, "version 2 is not supported"),
        (json_body(samples=[0] * (MAX_CHUNK_FRAMES + 1)), 413, "at most 5000"),
        # these two were 500s: RecursionError and OverflowError escaped the parser
        (b"[" * 1100 + b"]" * 1100, 400, "malformed JSON: nested too deeply"),
        (json_body(fs_hz=10**400), 400, "fs_hz must be a finite number"),
        # json.loads raises a plain ValueError for an integer of over 4,300 digits
        (json_body(seq=0).replace(b'"seq": 0', b'"seq": 1' + b"0" * 5000), 400, "malformed JSON"),
    ],
    ids=lambda value: str(value)[:30],
)
def test_malformed_json_chunks_are_refused_with_the_reason(client, body, status, words):
    response = post_json(client, body=body)
    assert response.status_code == status, response.content
    assert words in response.json()["detail"]
    assert_nothing_stored()


@pytest.mark.parametrize("path", ["recordings/open/", "recordings/close/"])
def test_open_and_close_refuse_json_nested_too_deeply_in_the_same_shape(client, path):
    deep = b"[" * 1100 + b"]" * 1100
    response = client.post(f"/api/device/v1/{path}", data=deep, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"detail": "malformed JSON: nested too deeply"}


def test_open_refuses_a_rate_beyond_float_range(client):
    body = json.dumps({"fs_hz": 10**400, "gain_adc_per_mv": 200})
    response = client.post(
        "/api/device/v1/recordings/open/", data=body, content_type="application/json"
    )
    assert response.status_code == 400
    assert "fs_hz must be a finite number" in response.json()["detail"]
    assert_nothing_stored()


def test_an_oversized_body_answers_413_before_it_is_parsed(client):
    response = post_json(client, body=b" " * (MAX_BODY_BYTES + 1))
    assert response.status_code == 413
    assert_nothing_stored()


def test_an_unknown_content_type_answers_415(client):
    response = client.post(URL, data=b"1,2,3", content_type="text/csv")
    assert response.status_code == 415 and "unsupported content type" in response.json()["detail"]
    assert_nothing_stored()


def _corrupt(body: bytes, offset: int, value: bytes, fix_crc: bool = True) -> bytes:
    changed = body[:offset] + value + body[offset + len(value) :]
    if fix_crc:
        changed = changed[:-4] + struct.pack("<I", zlib.crc32(changed[:-4]))
    return changed


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda b: _corrupt(b, 40, b"\x00\x7f", fix_crc=False), "CRC-32 mismatch"),
        (lambda b: _corrupt(b, 0, b"XXXX"), "must start with"),
        (lambda b: _corrupt(b, 4, b"\x02"), "version 2"),
        (lambda b: _corrupt(b, 36, struct.pack("<H", 300)), "header says 300 frames"),
        (lambda b: b[:20], "shorter than"),
        (lambda b: _corrupt(b, 24, struct.pack("<f", float("nan"))), "fs_hz must be"),
    ],
    ids=["crc", "magic", "version", "length", "truncated", "nan-rate"],
)
def test_corrupt_binary_chunks_are_refused_with_the_reason(client, mutate, words):
    response = post_binary(client, body=mutate(encode_binary_chunk(make_chunk())))
    assert response.status_code == 400, response.content
    assert words in response.json()["detail"]
    assert_nothing_stored()


# --- Throttling -------------------------------------------------------------------------


def test_a_binary_battery_of_255_is_unknown_even_with_the_present_flag(client, device):
    """255 is the binary body's "unknown" (docs/device-protocol.md); a device that sets the
    "battery present" flag with it (a gauge not read yet) showed a charge of 255 %."""
    body = encode_binary_chunk(make_chunk(battery_pct=80))
    assert post_binary(client, body=_corrupt(body, 34, b"\xff")).status_code == 201
    device.refresh_from_db()
    assert device.battery_pct is None


def test_a_device_posting_too_fast_is_throttled(client, settings):
    from django.core.cache import cache

    cache.clear()
    settings.DEVICE_THROTTLE_RATE = "3/min"
    codes = [post_json(client, make_chunk(seq=i)).status_code for i in range(5)]
    assert codes == [201, 201, 201, 429, 429]
    cache.clear()


def test_the_schema_documents_the_device_endpoints(staff_user):
    api = APIClient()
    api.force_authenticate(staff_user)
    schema = api.get(reverse("api-schema"), HTTP_ACCEPT="application/json").json()
    paths = schema["paths"]
    chunk = paths["/api/device/v1/chunks/"]["post"]
    assert set(chunk["requestBody"]["content"]) == {"application/json", BINARY_CONTENT_TYPE}
    assert {"201", "200", "400", "401", "403", "409", "413", "415", "429"} <= set(
        chunk["responses"]
    )
    assert "/api/device/v1/recordings/close/" in paths


def test_a_chunk_costs_the_same_few_queries_however_long_the_recording(client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    counts = []
    for seq in range(40):
        with CaptureQueriesContext(connection) as queries:
            assert post_json(client, make_chunk(seq=seq)).status_code == 201
        counts.append(len(queries))
    # the first chunk opens the recording; after that the count is flat (no per-chunk scan)
    assert max(counts[2:]) == min(counts[2:]) <= 12, counts


# --- A new session after a move or a discharge drops the device's backlog ----------------


def test_a_moved_device_is_told_to_drop_its_backlog(client, device, other_patient):
    """Its unacknowledged samples were taken on the previous patient: resent in the new
    session, an exploratory test's 26 s of one patient's ECG opened the next patient's
    recording and raised an HR alarm there. The answer says "backlog": "drop", after "code"
    (the firmware reads the first 200 bytes)."""
    assert post_json(client, make_chunk(seq=0)).status_code == 201
    Device.objects.filter(pk=device.pk).update(patient=other_patient)
    response = post_json(client, make_chunk(seq=1))
    assert response.status_code == 409
    assert list(response.json())[:2] == ["code", "backlog"]
    assert response.json()["code"] == "new_session" and response.json()["backlog"] == "drop"
    assert "drop the samples not yet acknowledged" in response.json()["detail"]
    assert response.content.index(b'"backlog"') < 200
    assert SampleChunk.objects.count() == 1


def test_a_discharged_stay_drops_the_backlog_but_the_devices_own_close_keeps_it(
    client, device, patient
):
    post_json(client, make_chunk(seq=0, session="00000001"))
    Recording.objects.update(status=Recording.Status.CLOSED, closed_by=Recording.ClosedBy.DISCHARGE)
    discharged = post_json(client, make_chunk(seq=1, session="00000001")).json()
    assert discharged["code"] == "new_session" and discharged["backlog"] == "drop"
    post_json(client, make_chunk(seq=0, session="00000002"))
    Recording.objects.filter(session="00000002").update(
        status=Recording.Status.CLOSED, closed_by=Recording.ClosedBy.DEVICE
    )
    closed = post_json(client, make_chunk(seq=1, session="00000002")).json()
    assert closed["code"] == "new_session" and "backlog" not in closed


def test_a_session_the_device_closed_then_moved_still_drops_its_backlog(
    client, device, other_patient
):
    """The patient is checked before the close: the device's own close made the answer keep
    the backlog, which would have gone to the new patient (found in review)."""
    post_json(client, make_chunk(seq=0, session="00000001"))
    Recording.objects.update(status=Recording.Status.CLOSED, closed_by=Recording.ClosedBy.DEVICE)
    Device.objects.filter(pk=device.pk).update(patient=other_patient)
    answer = post_json(client, make_chunk(seq=1, session="00000001")).json()
    assert answer["code"] == "new_session" and answer["backlog"] == "drop"
