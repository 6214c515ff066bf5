"""The heart-rate trend over the live view's longer ranges (up to 24 h), its gaps, and the
trend of one recording (morning handover of 2026-12-08: "how was the night" could not be read;
a 4-minute device outage was drawn as a straight line through the missing data)."""

from datetime import datetime, timedelta

import numpy as np
import pytest
from django.utils import timezone

from monitoring.api.trend import GAP_MIN_S, binned_rate, hr_trend_window
from monitoring.models import AnalysisStatus, Beat, Recording

pytestmark = pytest.mark.django_db

FS_HZ = 250.0


def add_beats(recording: Recording, times_s: list[float]) -> None:
    Beat.objects.bulk_create(
        Beat(
            recording=recording,
            index=index,
            sample=round(time_s * FS_HZ),
            label="N",
            confidence=0.9,
            probabilities={"N": 0.9},
        )
        for index, time_s in enumerate(times_s)
    )


def beats(start_s: float, end_s: float, rr_s: float) -> list[float]:
    return list(np.arange(start_s, end_s, rr_s))


def parse(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def test_a_24_hour_trend_has_a_point_a_minute_and_reports_an_outage_as_a_gap(
    client, clinician, patient, device
):
    now = timezone.now()
    start = now - timedelta(hours=23)
    recording = Recording.objects.create(
        patient=patient,
        device=device,
        sampling_rate_hz=FS_HZ,
        gain_adc_per_mv=200.0,
        lead_names=["II"],
        started_at=start,
    )
    # the night: 75 bpm for an hour from 22 h ago, the device silent for 4 minutes, then
    # 60 bpm for half an hour
    outage_s = (3600.0 + 3600.0, 3600.0 + 3600.0 + 240.0)  # from the recording's start
    add_beats(recording, beats(3600.0, outage_s[0], 0.8) + beats(outage_s[1], 9240.0, 1.0))

    window = hr_trend_window(patient, 1440, now=now)
    since = parse(window["start"])
    assert since == now - timedelta(hours=24) and parse(window["end"]) == now
    points = window["points"]
    # a point for each whole minute with beats, none in the outage, none in the silent hours
    assert 89 <= len(points) <= 93
    outage = (start + timedelta(seconds=outage_s[0]), start + timedelta(seconds=outage_s[1]))
    for point in points:
        time = parse(point["time"])
        assert (time - since).total_seconds() % 60 == 0  # bins from the window's start
        assert not (outage[0] <= time and time + timedelta(minutes=1) <= outage[1])
        assert point["hr_bpm"] in (75.0, 60.0)
    rates = [point["hr_bpm"] for point in points]
    assert rates.count(75.0) >= 59 and rates.count(60.0) >= 29
    # the gaps: before the first beat, the outage, after the last beat
    gaps = [(parse(gap["start"]), parse(gap["end"])) for gap in window["gaps"]]
    assert len(gaps) == 3
    assert gaps[0][0] == since and abs(gaps[0][1] - (start + timedelta(hours=1))) < timedelta(
        seconds=1
    )
    assert abs(gaps[1][0] - outage[0]) < timedelta(seconds=1)
    assert abs(gaps[1][1] - outage[1]) < timedelta(seconds=1.1)  # the first interval after it
    assert gaps[2][1] == now and abs(gaps[2][0] - (start + timedelta(seconds=9239))) < timedelta(
        seconds=1.1
    )

    client.force_login(clinician)
    body = client.get(f"/api/patients/{patient.pk}/hr-trend/?minutes=1440").json()
    assert (body["minutes"], body["bin_s"], body["gap_min_s"]) == (1440, 60, GAP_MIN_S)
    # the API's window ends at its own now, seconds after the one above on a loaded machine,
    # so its minute bins may cut the beats differently: the same bounds, not the same count
    assert 89 <= len(body["points"]) <= 93 and len(body["gaps"]) == 3
    assert {"start", "end"} <= set(body)


def test_a_silence_between_two_minutes_with_points_is_a_gap():
    # beats up to 10 s into minute 0, none for 70 s, then from 20 s into minute 1: both
    # minutes have a point, and the gap between them says not to join them
    times_s = np.array(beats(0.0, 10.5, 0.5) + beats(80.0, 180.0, 0.5))
    bins, gaps = binned_rate([times_s], 180.0)
    assert [number for number, _, _ in bins] == [0, 1, 2]
    assert len(gaps) == 1 and gaps[0][0] == pytest.approx(10.0) and gaps[0][1] == 80.0
    # a shorter silence is no gap (fewer than GAP_MIN_S without an interval)
    times_s = np.array(beats(0.0, 10.5, 0.5) + beats(60.0, 180.0, 0.5))
    assert binned_rate([times_s], 180.0)[1] == []


def test_the_binned_rate_is_60_over_the_median_rr_of_each_minute(rng):
    # the vectorised median against the plain per-minute one it replaced
    times_s = np.cumsum(rng.uniform(0.3, 1.6, size=5000))
    bins, _ = binned_rate([times_s], float(times_s[-1]) + 1)
    rr_s, ends_s = np.diff(times_s), times_s[1:]
    expected = []
    for number in range(int(ends_s[-1] // 60) + 1):
        inside = rr_s[(ends_s // 60) == number]
        if inside.size >= 2:
            expected.append((number, round(60.0 / float(np.median(inside)), 1), inside.size))
    assert bins == expected


def test_overlapping_recordings_leave_no_gap_where_either_has_beats():
    first = np.array(beats(0.0, 200.0, 1.0))
    second = np.array(beats(150.0, 400.0, 1.0))
    assert binned_rate([first, second], 400.0)[1] == []
    assert binned_rate([first], 400.0)[1] == [(199.0, 400.0)]


def test_a_recording_has_a_trend_in_seconds_from_its_start(client, clinician, patient):
    upload = Recording.objects.create(
        patient=patient,
        source=Recording.Source.UPLOAD,
        sampling_rate_hz=FS_HZ,
        gain_adc_per_mv=200.0,
        lead_names=["MLII"],
        end_sample=round(900 * FS_HZ),
        analysis_status=AnalysisStatus.DONE,
    )
    # 5 minutes at 75 bpm, 3 minutes without beats, 4 minutes at 60 bpm, 3 minutes to the end
    add_beats(upload, beats(0.0, 300.0, 0.8) + beats(480.0, 720.5, 1.0))
    client.force_login(clinician)
    body = client.get(f"/api/recordings/{upload.pk}/hr-trend/").json()
    assert body["recording"] == upload.pk and body["bin_s"] == 60
    assert body["started_at"] is None  # the file gave no start: its upload time is no clock
    assert body["duration_s"] == 900.0
    assert [(p["start_s"], p["hr_bpm"]) for p in body["points"]] == [
        (0, 75.0),
        (60, 75.0),
        (120, 75.0),
        (180, 75.0),
        (240, 75.0),
        (480, 60.0),
        (540, 60.0),
        (600, 60.0),
        (660, 60.0),
    ]
    assert body["gaps"] == [
        {"start_s": pytest.approx(299.2), "end_s": 480.0},
        {"start_s": 720.0, "end_s": 900.0},
    ]


def test_a_recording_trend_waits_for_the_analysis_and_is_private(
    client, clinician, patient, other_patient
):
    pending = Recording.objects.create(
        patient=patient,
        source=Recording.Source.UPLOAD,
        sampling_rate_hz=FS_HZ,
        gain_adc_per_mv=200.0,
        lead_names=["MLII"],
        analysis_status=AnalysisStatus.PENDING,
    )
    hidden = Recording.objects.create(
        patient=other_patient, sampling_rate_hz=FS_HZ, gain_adc_per_mv=200.0, lead_names=["II"]
    )
    assert client.get(f"/api/recordings/{pending.pk}/hr-trend/").status_code == 401
    client.force_login(clinician)
    response = client.get(f"/api/recordings/{pending.pk}/hr-trend/")
    assert response.status_code == 409 and "no analysis results yet" in response.json()["detail"]
    assert client.get(f"/api/recordings/{hidden.pk}/hr-trend/").status_code == 404
