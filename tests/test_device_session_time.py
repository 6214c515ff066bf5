"""When a device recording's samples were taken, and how far ahead of that a device may be.

Sample ``i`` lies ``i / fs_hz`` after the recording's ``started_at``. The chunk that opens a
recording dates it (its last sample was taken about when it arrived), so a recording whose
first stored chunk lies minutes into its session is shown at the right time, and the bound on
samples the device cannot have taken yet counts from that sample 0 (docs/device-protocol.md).
The clock is a fake one where a test needs time to pass.
"""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from monitoring import review
from monitoring.alarms import check_devices
from monitoring.api.trend import hr_trend
from monitoring.ingest import MAX_SAMPLE_ZERO_AGE_S, close_silent_recordings
from monitoring.models import Alarm, AlarmKind, AlarmPriority, Beat, Device, Recording
from tests.test_device_ingest import make_chunk, post_json

pytestmark = pytest.mark.django_db

FS = 250


@pytest.fixture
def client(device_token):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Device {device_token}")
    return api


def second(index: int, session="b0075eed", **fields):
    """The chunk of the session's second ``index`` (one second at 250 Hz, seq = index)."""
    return make_chunk(seq=index, first_sample=index * FS, n=FS, session=session, **fields)


# --- Bug 1: the bound counts from the session's sample 0 ---------------------------------


def test_a_backlog_whose_oldest_chunk_opens_the_recording_is_stored_whole(client, clock, settings):
    """The device boots, its link comes up 650 s later, its buffer holds 530-650 s and it sends
    oldest first: every chunk is stored (the bound used to count from the moment the recording
    opened, so 600-649 s answered 400 and the firmware dropped them: 50 s lost)."""
    settings.DEVICE_MAX_AHEAD_S = 600
    booted = clock.now
    clock.advance(650)
    codes = {}
    for index in range(530, 650):
        codes[index] = post_json(client, second(index)).status_code
        clock.advance(0.05)  # a backlog goes out as fast as the link allows
    assert set(codes.values()) == {201}, {i: c for i, c in codes.items() if c != 201}
    recording = Recording.objects.get()
    assert recording.chunks.count() == 120
    assert (recording.end_sample, recording.stored_samples) == (650 * FS, 120 * FS)
    # dated from the opening chunk, taken as just sampled: late by that chunk's age, 119 s,
    # at most the firmware's buffer (docs/device-protocol.md)
    assert recording.started_at - booted == timedelta(seconds=650 - 531)
    # the device goes on in real time
    clock.advance(1)
    assert post_json(client, second(650)).status_code == 201


def test_chunks_sent_in_real_time_after_an_opening_chunk_600_s_in_are_all_stored(
    client, clock, settings
):
    """The opening chunk at 600 s (the furthest a first chunk may lie) then one chunk a second:
    601 + k s into the session at k s after the open used to be refused while k < 20."""
    settings.DEVICE_MAX_AHEAD_S = 600
    assert post_json(client, second(600)).status_code == 201
    codes = []
    for k in range(1, 31):
        clock.advance(1)
        codes.append(post_json(client, second(600 + k)).status_code)
    assert codes == [201] * 30
    assert Recording.objects.get().end_sample == 631 * FS


def test_the_bound_still_holds_from_the_dated_start(client, clock, settings):
    """What stays refused: a first chunk beyond DEVICE_MAX_AHEAD_S (409 new_session), and a
    later chunk beyond (time since sample 0) x 1.05 + DEVICE_MAX_AHEAD_S (400)."""
    settings.DEVICE_MAX_AHEAD_S = 600
    too_far = post_json(client, second(601))
    assert too_far.status_code == 409 and too_far.json()["code"] == "new_session"
    assert not Recording.objects.exists()
    assert post_json(client, second(300)).status_code == 201  # sample 0: 301 s ago
    clock.advance(100)
    # 401 s since sample 0: 401 x 1.05 + 600 = 1021.05 s is the furthest a chunk may reach
    furthest = make_chunk(seq=1020, first_sample=1020 * FS, n=12, session="b0075eed")
    assert post_json(client, furthest).status_code == 201
    ahead = post_json(client, second(1021))
    assert ahead.status_code == 400, ahead.content
    assert "whose sample 0 was taken 401 s ago" in ahead.json()["detail"]
    assert "cannot be more than 600 s ahead" in ahead.json()["detail"]


# --- Bug 2: sample 0 is when it was taken, not when the first chunk arrived --------------


def test_a_first_chunk_minutes_into_its_session_dates_sample_0_back(client, device, patient):
    """A device switched on unassigned (its chunks refused) and assigned 5 minutes later:
    its first stored chunk begins at sample 300 x 250. Its samples, beats and alarms are shown
    when they happened, not 300 s late."""
    before = timezone.now()
    opening = second(300, lead_off=True)
    assert post_json(client, opening).status_code == 201
    after = timezone.now()
    recording = Recording.objects.get()
    assert before - timedelta(seconds=301) <= recording.started_at <= after - timedelta(seconds=301)
    assert after - before < timedelta(seconds=2)  # so the bounds above are tight

    # the leads-off alarm raised now names the newest sample: taken now
    now = timezone.now()
    check_devices(now)
    alarm = Alarm.objects.get(kind=AlarmKind.LEADS_OFF)
    assert alarm.details["sample"] == opening.end_sample - 1
    sampled_at = recording.started_at + timedelta(seconds=alarm.details["sample"] / FS)
    assert abs((sampled_at - alarm.raised_at).total_seconds()) < 2
    # an alarm without a sample is placed where the signal was when it was raised: at the
    # chunk, not 300 s before it (before any stored sample)
    offline = Alarm.objects.create(
        patient=patient,
        recording=recording,
        kind=AlarmKind.DEVICE_OFFLINE,
        priority=AlarmPriority.TECHNICAL,
        message="No data",
        raised_at=now,
    )
    assert abs(review.alarm_sample(offline, recording) - opening.end_sample) < 2 * FS

    # beats in the chunk fall in the last minute of the heart-rate trend (they used to lie
    # 300 s in the future: no point at all)
    for index, sample in enumerate((75_000, 75_100, 75_200)):
        Beat.objects.create(
            recording=recording,
            index=index,
            sample=sample,
            label="N",
            confidence=0.9,
            probabilities={"N": 0.9},
        )
    points = hr_trend(patient, minutes=5, now=now)
    assert [(p["hr_bpm"], p["intervals"]) for p in points] == [(150.0, 2)]
    assert points[0]["time"] == (now - timedelta(minutes=1)).isoformat()


def test_an_explicit_open_is_sample_0_and_a_reopen_does_not_move_the_start(client, clock, settings):
    settings.DEVICE_SILENCE_CLOSE_S = 300
    opened_at = clock.now
    response = client.post(
        "/api/device/v1/recordings/open/",
        data={"session": "explicit", "fs_hz": FS, "gain_adc_per_mv": 200},
        format="json",
    )
    assert response.status_code == 201, response.content
    clock.advance(20)
    assert post_json(client, second(20, session="explicit")).status_code == 201
    recording = Recording.objects.get()
    assert recording.started_at == opened_at  # opened before its samples: sample 0 then

    # silent for 10 minutes: closed; a late chunk reopens it, the start stays
    clock.advance(600)
    assert close_silent_recordings() == [recording.pk]
    clock.advance(10)
    assert post_json(client, second(21, session="explicit")).status_code == 201
    recording.refresh_from_db()
    assert recording.status == Recording.Status.LIVE
    assert recording.started_at == opened_at


def test_a_client_without_session_ids_is_dated_back_at_most_a_day(
    client, device, other_patient, clock
):
    # moved after 20 minutes, it goes on from where it counts: its new recording starts then
    assert post_json(client, make_chunk(seq=0, session="")).status_code == 201
    Device.objects.filter(pk=device.pk).update(patient=other_patient)
    moved = make_chunk(seq=1200, first_sample=FS * 1200, session="")
    assert post_json(client, moved).status_code == 201
    new = Recording.objects.get(patient=other_patient)
    assert new.started_at == clock.now - timedelta(seconds=1201)
    # a sample index no clock reaches (it would date the recording before year 1) opens no
    # recording: refused, and the live one of the other patient stays live
    Device.objects.filter(pk=device.pk).update(patient=device.patient)
    absurd = make_chunk(seq=7, first_sample=2**53 - FS, session="")
    response = post_json(client, absurd)
    assert response.status_code == 400, response.content
    assert "cannot be more than 600 s ahead" in response.json()["detail"]
    assert not Recording.objects.filter(patient=device.patient, status=Recording.Status.LIVE)
    assert Recording.objects.get(pk=new.pk).status == Recording.Status.LIVE
    # a count a little over a day in: its recording starts a day back (no further)
    day_in = make_chunk(seq=7, first_sample=FS * round(MAX_SAMPLE_ZERO_AGE_S + 300), session="")
    assert post_json(client, day_in).status_code == 201
    newest = Recording.objects.get(patient=device.patient, status=Recording.Status.LIVE)
    assert newest.started_at == clock.now - timedelta(seconds=MAX_SAMPLE_ZERO_AGE_S)
