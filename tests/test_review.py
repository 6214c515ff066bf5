"""Full-disclosure review: access, the signal window endpoint, event navigation, and the
WFDB and CSV exports read back (wfdb.rdrecord, wfdb.rdann, csv) for an upload and for a
device recording with a gap. The WFDB export holds our labels as ``.cspk`` and an upload's
own reference labels, when it had some, as ``.atr``."""

import csv
import io
import tracemalloc
import zipfile
from datetime import UTC, datetime

import numpy as np
import pytest
import wfdb
from django.utils import timezone

from inference.aami import aami_class
from inference.analysis import beat_saliency
from inference.datasets.mitdb import load_record
from inference.synthetic import generate
from monitoring.models import (
    Alarm,
    AlarmKind,
    AlarmPriority,
    AnalysisStatus,
    Beat,
    Episode,
    Recording,
    SampleChunk,
)
from monitoring.review import WFDB_INVALID_ADC, csv_zip, rhythm_annotations
from tests.upload_helpers import mitdb_folder, synthetic_wfdb, wfdb_excerpt

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery")]

FS_HZ = 250.0
GAP = (2500, 3000)  # samples [2500, 3000) of the device recording were never received
N_SAMPLES = 5500
V_SAMPLES = (700, 1900, 4100)
SPIKE_SAMPLE, SPIKE_ADC = 1234, 3000  # 15 mV at 200 ADC units per mV
DIP_SAMPLE, DIP_ADC = 1240, -2000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def api(client, clinician):
    client.force_login(clinician)
    return client


@pytest.fixture
def device_recording(recording, rng):
    """The conftest recording (250 Hz, 200 ADC/mV, lead II) with two chunks around a gap,
    a beat every 0.8 s (three of them V), an AF episode across the gap, and an alarm."""
    recording.baseline_adc = 7
    recording.save()
    adc = rng.integers(-300, 300, size=N_SAMPLES).astype(np.int16)
    adc[SPIKE_SAMPLE], adc[DIP_SAMPLE] = SPIKE_ADC, DIP_ADC
    for seq, (start, end) in enumerate(((0, GAP[0]), (GAP[1], N_SAMPLES))):
        SampleChunk.from_samples(recording, seq, start, adc[start:end]).save()
    samples = [s for s in range(100, N_SAMPLES, 200) if not GAP[0] <= s < GAP[1]]
    Beat.objects.bulk_create(
        Beat(
            recording=recording,
            index=i,
            sample=s,
            label="V" if s in V_SAMPLES else ("S" if s == 1500 else "N"),
            confidence=0.9,
            probabilities={"N": 0.1, "S": 0.0, "V": 0.9, "F": 0.0, "Q": 0.0},
        )
        for i, s in enumerate(samples)
    )
    Episode.objects.create(recording=recording, kind="AF", start_s=4.0, end_s=16.0)
    Alarm.objects.create(
        patient=recording.patient,
        recording=recording,
        kind=AlarmKind.PVC,
        priority=AlarmPriority.WARNING,
        message="PVC 12/min > 10",
        details={"sample": 4100},
    )
    recording.test_adc = adc
    return recording


# --- Access -----------------------------------------------------------------------------


def test_the_review_page_shows_an_assigned_recording(api, device_recording):
    response = api.get(f"/recordings/{device_recording.pk}/review/")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="review-canvas"' in page and "review.js" in page
    assert f"/api/recordings/{device_recording.pk}/export.zip?format=wfdb" in page
    overview = response.context["overview"]
    assert overview["beat_counts"] == {"N": 20, "S": 1, "V": 3, "F": 0, "Q": 0}
    assert overview["gaps_s"] == [[GAP[0] / FS_HZ, GAP[1] / FS_HZ]]
    assert [a["sample"] for a in overview["alarms"]] == [4100]
    assert overview["duration_s"] == N_SAMPLES / FS_HZ
    # the page's JSON has the wall-clock start, for clock times in the view range
    assert overview["started_at"] == device_recording.started_at.isoformat()
    assert overview["time_zone"] == "UTC" and 'id="view-clock"' in page
    assert 'id="review-overview"' in page and device_recording.started_at.isoformat() in page


def test_the_patient_and_results_pages_link_to_the_review(api, device_recording):
    link = f'href="/recordings/{device_recording.pk}/review/"'
    assert link in api.get(f"/patients/{device_recording.patient.pk}/").content.decode()
    assert link in api.get(f"/recordings/{device_recording.pk}/").content.decode()


def test_an_unassigned_clinician_gets_404_everywhere(client, other_clinician, device_recording):
    client.force_login(other_clinician)
    pk = device_recording.pk
    for url in (
        f"/recordings/{pk}/review/",
        f"/api/recordings/{pk}/signal/",
        f"/api/recordings/{pk}/events/?kind=V&after_s=0",
        f"/api/recordings/{pk}/range.png",
        f"/api/recordings/{pk}/go-to/?at=5",
        f"/api/recordings/{pk}/export.zip?format=wfdb",
        f"/api/recordings/{pk}/export.csv",
    ):
        assert client.get(url).status_code == 404, url


def test_login_is_required(client, device_recording):
    pk = device_recording.pk
    page = client.get(f"/recordings/{pk}/review/")
    assert page.status_code == 302 and "/login/" in page["Location"]
    assert client.get(f"/api/recordings/{pk}/signal/").status_code == 401
    assert client.get(f"/api/recordings/{pk}/go-to/?at=5").status_code == 401
    assert client.get(f"/api/recordings/{pk}/export.zip?format=wfdb").status_code == 401


def test_staff_see_any_recording(client, staff_user, device_recording):
    client.force_login(staff_user)
    assert client.get(f"/recordings/{device_recording.pk}/review/").status_code == 200


# --- Go to a time ----------------------------------------------------------------------


def go_to(api, recording, at):
    return api.get(f"/api/recordings/{recording.pk}/go-to/", {"at": at})


def start_at(recording, moment: datetime) -> None:
    Recording.objects.filter(pk=recording.pk).update(started_at=moment)
    recording.refresh_from_db()


def test_go_to_takes_seconds_or_a_clock_time_past_midnight(api, device_recording, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    # 23:59:55 in Berlin (22:59:55 UTC in winter); 22 s stored, so it runs past midnight
    start_at(device_recording, datetime(2026, 1, 15, 22, 59, 55, tzinfo=UTC))
    assert go_to(api, device_recording, "12.5").json()["time_s"] == 12.5
    assert go_to(api, device_recording, "23:59:58").json()["time_s"] == 3.0
    body = go_to(api, device_recording, "00:00:05")  # the next day: after midnight
    assert body.status_code == 200
    assert body.json()["time_s"] == 10.0 and body.json()["clock"] == "2026-01-16T00:00:05+01:00"
    assert go_to(api, device_recording, "0:00:05.5").json()["time_s"] == 10.5
    assert go_to(api, device_recording, "00:00").json()["time_s"] == 5.0
    # before the start's clock time means the next day's, far past the end
    answer = go_to(api, device_recording, "23:59:50")
    assert answer.status_code == 400 and "past its end" in answer.json()["detail"]


def test_go_to_counts_real_seconds_across_a_clock_change(api, device_recording, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    # 01:59:50 on the night the clocks go from 02:00 to 03:00: 03:00:05 is 15 s later
    start_at(device_recording, datetime(2026, 3, 29, 0, 59, 50, tzinfo=UTC))
    assert go_to(api, device_recording, "03:00:05").json()["time_s"] == 15.0


def test_go_to_a_clock_time_the_clocks_showed_twice(api, device_recording, settings):
    """On 2026-10-25 Berlin's clocks went from 03:00 CEST back to 02:00 CET: 02:30 happened
    twice. "Go to" takes the first at or after the start and says which one it took and where
    the other is. It read every such time in summer time: for a recording started in the
    repeated hour's second pass, a time in it lay before the start, and it went to 0 s."""
    settings.TIME_ZONE = "Europe/Berlin"
    start_at(device_recording, datetime(2026, 10, 25, 0, 29, 50, tzinfo=UTC))  # 02:29:50 CEST
    body = go_to(api, device_recording, "02:30:00").json()
    assert body["time_s"] == 10.0 and body["clock"] == "2026-10-25T02:30:00+02:00"
    assert body["note"] == (
        "02:30:00 happened twice on 2026-10-25 in Europe/Berlin (the clocks were put back): "
        "this is the first, 02:30:00 CEST (UTC+02:00); the other, 02:30:00 CET, is past the "
        "recording's end."
    )
    start_at(device_recording, datetime(2026, 10, 25, 1, 29, 50, tzinfo=UTC))  # 02:29:50 CET
    body = go_to(api, device_recording, "02:30:00").json()
    assert body["time_s"] == 10.0 and body["clock"] == "2026-10-25T02:30:00+01:00"
    assert "this is the second, 02:30:00 CET (UTC+01:00)" in body["note"]
    assert "the other, 02:30:00 CEST, is before the recording's start" in body["note"]
    # seconds, or a time that happened once, say nothing more
    assert go_to(api, device_recording, "5").json()["note"] == ""
    start_at(device_recording, datetime(2026, 10, 25, 2, 29, 50, tzinfo=UTC))  # 03:29:50 CET
    assert go_to(api, device_recording, "03:30:00").json()["note"] == ""


def test_go_to_refuses_a_clock_time_the_clocks_skipped(api, device_recording, settings):
    """On 2026-03-29 Berlin's clocks went from 02:00 CET to 03:00 CEST: 02:00:05 never
    happened. It was read as 02:00:05 CET, which is 03:00:05 CEST, and went there silently."""
    settings.TIME_ZONE = "Europe/Berlin"
    start_at(device_recording, datetime(2026, 3, 29, 0, 59, 50, tzinfo=UTC))  # 01:59:50 CET
    answer = go_to(api, device_recording, "02:00:05")
    assert answer.status_code == 400
    assert answer.json()["detail"] == (
        "02:00:05 did not happen on 2026-03-29 in Europe/Berlin: the clocks went from "
        "02:00 CET to 03:00 CEST"
    )


def test_go_to_the_start_as_the_page_shows_it(api, device_recording, settings):
    """started_at has microseconds (the ingest's clock); the page shows it to the second. The
    time shown, or its minute, is the start, not the next day's (past the end)."""
    settings.TIME_ZONE = "Europe/Berlin"
    start_at(device_recording, datetime(2026, 1, 15, 11, 0, 0, 400_000, tzinfo=UTC))
    page = api.get(f"/recordings/{device_recording.pk}/review/").content.decode()
    assert "Started 2026-01-15 12:00:00 CET (Europe/Berlin)" in page
    for typed in ("12:00:00", "12:00"):
        answer = go_to(api, device_recording, typed)
        assert answer.status_code == 200, answer.json()
        assert answer.json()["time_s"] == 0.0
    assert go_to(api, device_recording, "12:00:05").json()["time_s"] == pytest.approx(4.6)
    # decimals that round up to the next second are not wrapped to the second's start
    body = go_to(api, device_recording, "12:00:09.9999999").json()
    assert body["time_s"] == pytest.approx(9.6, abs=1e-6)
    # a second before the shown start is the next day's, far past the end
    answer = go_to(api, device_recording, "11:59:59")
    assert answer.status_code == 400 and "past its end" in answer.json()["detail"]


def test_go_to_reads_a_clock_time_in_the_zone_the_page_shows(api, device_recording, settings):
    settings.TIME_ZONE = "UTC"
    start_at(device_recording, datetime(2026, 1, 15, 11, 0, 0, 400_000, tzinfo=UTC))
    with timezone.override("Europe/Berlin"):  # a zone activated for the request
        response = api.get(f"/recordings/{device_recording.pk}/review/")
        assert "Started 2026-01-15 12:00:00" in response.content.decode()
        # the view range's clock (review.js formats in the page's time_zone) agrees
        assert response.context["overview"]["time_zone"] == "Europe/Berlin"
        body = go_to(api, device_recording, "12:00:05").json()
    assert body["time_s"] == pytest.approx(4.6)
    assert body["clock"] == "2026-01-15T12:00:05+01:00"


@pytest.mark.parametrize(
    ("at", "message"),
    [
        ("", "seconds (e.g. 75) or a clock time"),
        ("noon", "seconds (e.g. 75) or a clock time"),
        ("nan", "seconds (e.g. 75) or a clock time"),
        ("25:00", "is not a clock time"),
        ("12:60", "is not a clock time"),
        ("-1", "outside the recording"),
        ("99", "outside the recording (0 to 22.0 s stored)"),
    ],
)
def test_a_bad_go_to_answers_400_naming_it(api, device_recording, at, message):
    answer = go_to(api, device_recording, at)
    assert answer.status_code == 400 and message in answer.json()["detail"]


# --- The signal window ------------------------------------------------------------------


def test_a_short_window_answers_every_sample_in_mv(api, device_recording):
    response = api.get(
        f"/api/recordings/{device_recording.pk}/signal/?start_s=4.9&length_s=0.2&max_points=100"
    )
    assert response.status_code == 200
    window = response.json()
    assert window["step"] == 1 and window["start_sample"] == 1225
    expected = (device_recording.test_adc[1225:1275] - 7) / 200.0
    assert window["values"] == pytest.approx(expected.tolist())
    assert window["duration_s"] == pytest.approx(N_SAMPLES / FS_HZ)


def test_decimation_keeps_the_min_and_max_and_shows_the_gap(api, device_recording):
    response = api.get(
        f"/api/recordings/{device_recording.pk}/signal/?start_s=0&length_s=100&max_points=200"
    )
    window = response.json()
    step = window["step"]
    assert step == 28  # 5500 samples (clipped at the end) in at most 200 bins
    assert len(window["min"]) == len(window["max"]) == -(-N_SAMPLES // step)
    # the one 15 mV spike and the -10 mV dip survive, in the bins that hold them
    assert max(v for v in window["max"] if v is not None) == pytest.approx((SPIKE_ADC - 7) / 200)
    assert window["max"][SPIKE_SAMPLE // step] == pytest.approx((SPIKE_ADC - 7) / 200)
    assert window["min"][DIP_SAMPLE // step] == pytest.approx((DIP_ADC - 7) / 200)
    # bins wholly inside the gap are null, bins with any stored sample are not
    for i, (low, high) in enumerate(zip(window["min"], window["max"], strict=True)):
        inside_gap = GAP[0] <= i * step and (i + 1) * step <= GAP[1]
        assert (low is None) == inside_gap and (high is None) == inside_gap, i
    assert {b["label"] for b in window["beats"]} == {"N", "S", "V"}
    assert window["end_sample"] == N_SAMPLES


def test_an_undecimated_window_has_null_in_the_gap(api, device_recording):
    window = api.get(
        f"/api/recordings/{device_recording.pk}/signal/?start_s=9.9&length_s=0.2&max_points=50"
    ).json()
    assert window["start_sample"] == 2475 and window["step"] == 1
    values = window["values"]
    assert all(v is not None for v in values[:25]) and all(v is None for v in values[25:])


@pytest.mark.parametrize(
    "query, message",
    [
        ("start_s=abc", "start_s must be a number"),
        ("start_s=-1", "start_s must be from 0"),
        ("start_s=22", "start_s must be from 0"),
        ("start_s=nan", "finite"),
        ("length_s=0", "length_s must be more than 0"),
        ("length_s=9000", "at most 7200"),
        ("max_points=5", "max_points must be from 10"),
        ("max_points=many", "whole number"),
        ("channel=1", "channel must be from 0 to 0"),
    ],
)
def test_bad_parameters_answer_400(api, device_recording, query, message):
    response = api.get(f"/api/recordings/{device_recording.pk}/signal/?{query}")
    assert response.status_code == 400
    assert message in response.json()["detail"]


# --- Navigation -------------------------------------------------------------------------


def test_next_and_previous_v_beat(api, device_recording):
    url = f"/api/recordings/{device_recording.pk}/events/"
    first = api.get(url, {"kind": "V", "after_s": 0}).json()["events"]
    assert [e["sample"] for e in first] == [700]
    # asked from the beat the view is centred on, the next one is the following V beat
    following = api.get(url, {"kind": "V", "after_s": first[0]["time_s"]}).json()["events"]
    assert following[0]["sample"] == 1900 and following[0]["beat"] == 10
    back = api.get(url, {"kind": "V", "before_s": 1900 / FS_HZ}).json()["events"]
    assert [e["sample"] for e in back] == [700]
    assert api.get(url, {"kind": "V", "after_s": 4100 / FS_HZ}).json()["events"] == []
    several = api.get(url, {"kind": "V", "after_s": 0, "limit": 10}).json()["events"]
    assert [e["sample"] for e in several] == list(V_SAMPLES)
    assert [e["sample"] for e in api.get(url, {"kind": "S", "after_s": 0}).json()["events"]] == [
        1500
    ]


def test_next_alarm_and_episode(api, device_recording):
    url = f"/api/recordings/{device_recording.pk}/events/"
    alarm = api.get(url, {"kind": "alarm", "after_s": 1}).json()["events"][0]
    assert alarm["sample"] == 4100 and alarm["message"] == "PVC 12/min > 10"
    assert api.get(url, {"kind": "alarm", "after_s": 17}).json()["events"] == []
    episode = api.get(url, {"kind": "episode", "after_s": 0}).json()["events"][0]
    assert episode["episode_kind"] == "AF" and episode["time_s"] == 4.0


@pytest.mark.parametrize(
    "params", [{"kind": "X", "after_s": 0}, {"kind": "V"}, {"kind": "V", "after_s": "x"}]
)
def test_bad_event_queries_answer_400(api, device_recording, params):
    response = api.get(f"/api/recordings/{device_recording.pk}/events/", params)
    assert response.status_code == 400


@pytest.mark.parametrize("params", [{"kind": "V"}, {"kind": "V", "after_s": 1, "before_s": 2}])
def test_events_need_exactly_one_of_after_s_and_before_s(api, device_recording, params):
    # as docs/review.md and the schema's parameter descriptions say
    response = api.get(f"/api/recordings/{device_recording.pk}/events/", params)
    assert response.status_code == 400
    assert response.json() == {"detail": "give exactly one of after_s and before_s"}


@pytest.mark.parametrize("kind", ["V", "alarm", "episode"])
@pytest.mark.parametrize("name", ["after_s", "before_s"])
@pytest.mark.parametrize(
    ("value", "message"),
    [
        # 1e308 s in samples overflowed int(round(...)): a 500 (OverflowError)
        ("1e308", "must be from 0 to 315576000 s (10 years), got 1e+308"),
        ("1e20", "must be from 0 to 315576000 s (10 years), got 1e+20"),
        ("-1", "must be from 0 to 315576000 s (10 years), got -1"),
        ("-1e308", "got -1e+308"),
        ("inf", "must be a finite number of seconds"),
        ("-inf", "must be a finite number of seconds"),
        ("nan", "must be a finite number of seconds"),
        ("1e400", "must be a finite number of seconds"),  # a float overflows to inf
        ("soon", "must be a number of seconds, got 'soon'"),
    ],
)
def test_an_event_time_out_of_range_answers_400_naming_it(
    api, device_recording, kind, name, value, message
):
    response = api.get(
        f"/api/recordings/{device_recording.pk}/events/", {"kind": kind, name: value}
    )
    assert response.status_code == 400, response.content
    assert response.json()["detail"].startswith(f"{name} ") and message in response.json()["detail"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1e308", "limit must be a whole number, got '1e308'"),
        ("inf", "limit must be a whole number, got 'inf'"),
        ("nan", "limit must be a whole number, got 'nan'"),
        ("2.5", "limit must be a whole number, got '2.5'"),
        ("9" * 5000, "limit must be a whole number"),  # past int()'s digit limit
        ("99999999999999999999", "limit must be from 1 to 1000, got 99999999999999999999"),
        ("-1", "limit must be from 1 to 1000, got -1"),
        ("0", "limit must be from 1 to 1000, got 0"),
    ],
)
def test_an_event_limit_out_of_range_answers_400_naming_it(api, device_recording, value, message):
    url = f"/api/recordings/{device_recording.pk}/events/"
    response = api.get(url, {"kind": "V", "after_s": 0, "limit": value})
    assert response.status_code == 400, response.content
    assert message in response.json()["detail"]


def test_event_times_at_the_bounds_are_taken(api, device_recording):
    url = f"/api/recordings/{device_recording.pk}/events/"
    assert api.get(url, {"kind": "V", "after_s": "0"}).json()["events"][0]["sample"] == 700
    # past the recording's end (the viewer's centre can lie there) but within the bound
    assert api.get(url, {"kind": "V", "after_s": "315576000"}).json()["events"] == []
    last = api.get(url, {"kind": "V", "before_s": "315576000"}).json()["events"]
    assert [e["sample"] for e in last] == [4100]
    assert api.get(url, {"kind": "V", "before_s": "0"}).json()["events"] == []


@pytest.mark.parametrize(
    "query",
    [
        "start_s=1e308",
        "start_s=-1e308",
        "start_s=inf",
        "length_s=1e308",
        "length_s=-inf",
        "length_s=nan",
        "max_points=1e308",
        "max_points=inf",
        "channel=1e308",
        "channel=-1",
    ],
)
def test_the_signal_window_answers_400_to_extreme_numbers(api, device_recording, query):
    response = api.get(f"/api/recordings/{device_recording.pk}/signal/?{query}")
    assert response.status_code == 400, response.content
    assert response.json()["detail"].startswith(query.split("=")[0])


def test_the_strip_png_of_a_device_recording(api, device_recording):
    response = api.get(f"/api/recordings/{device_recording.pk}/range.png?start_s=8&length_s=6")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert response.content[:8] == b"\x89PNG\r\n\x1a\n"
    too_long = api.get(f"/api/recordings/{device_recording.pk}/range.png?length_s=99")
    assert too_long.status_code == 400
    for bad in ("abc", "nan", "inf"):
        refused = api.get(f"/api/recordings/{device_recording.pk}/range.png?length_s={bad}")
        assert refused.status_code == 400
        assert refused.json()["detail"].startswith("length_s"), bad  # names the parameter


def test_the_range_png_draws_the_lead_asked_for(api, recording):
    """``channel`` picks the lead as the signal window does (the same 400s); without it the
    analysed lead is drawn."""
    recording.n_channels, recording.lead_names = 2, ["I", "V1"]
    recording.save()
    t_s = np.arange(int(10 * FS_HZ)) / FS_HZ
    adc = np.stack([200 * np.sin(2 * np.pi * t_s), 400 * np.sign(np.sin(np.pi * t_s))], axis=1)
    SampleChunk.from_samples(recording, 0, 0, adc.astype(np.int16)).save()
    url = f"/api/recordings/{recording.pk}/range.png"
    pictures = [api.get(url, {"length_s": "5", "channel": str(c)}) for c in (0, 1)]
    assert all(p.status_code == 200 and p.content[:8] == PNG_MAGIC for p in pictures)
    assert pictures[0].content != pictures[1].content
    assert api.get(url, {"length_s": "5"}).content == pictures[0].content  # the analysed lead
    for bad, message in (("2", "channel must be from 0 to 1"), ("x", "channel must be a whole")):
        refused = api.get(url, {"channel": bad})
        assert refused.status_code == 400 and refused.json()["detail"].startswith(message)


# --- The results strip and saliency of a device recording ---------------------------------


def test_the_results_strip_of_a_device_recording_with_a_gap(api, device_recording):
    """strip.png draws a strip across a gap (the gap as a gap), and the recording runs to
    where it ends: a start in its last seconds, after the gap, is taken."""
    device_recording.analysis_status = AnalysisStatus.DONE
    device_recording.save()
    url = f"/api/recordings/{device_recording.pk}/strip.png"
    across = api.get(url, {"start_s": "8", "length_s": "6"})  # the gap is 10-12 s
    assert across.status_code == 200 and across.content[:8] == PNG_MAGIC
    # 22 s from the start, 20 s of it stored
    last = api.get(url, {"start_s": "21"})
    assert last.status_code == 200 and last.content[:8] == PNG_MAGIC
    # a start that rounds to the end's sample still draws the last sample
    assert api.get(url, {"start_s": "21.999"}).status_code == 200
    past = api.get(url, {"start_s": "22"})
    assert past.status_code == 400 and "0 to 22.00 s" in past.json()["detail"]


def test_a_beat_after_a_gap_is_explained_from_its_own_stretch(api, device_recording):
    """The streaming analysis starts afresh after a gap, so a beat there is explained from
    the stretch after the gap, its beats counted from that stretch's first."""
    device_recording.analysis_status = AnalysisStatus.DONE
    device_recording.save()
    beat = device_recording.beats.get(sample=3100)  # the first beat after the gap
    response = api.get(f"/api/recordings/{device_recording.pk}/beats/{beat.index + 1}/saliency/")
    assert response.status_code == 200, response.content
    data = response.json()
    stretch_mv = (device_recording.test_adc[GAP[1] :] - 7) / 200.0
    samples = device_recording.beats.filter(sample__gte=GAP[1]).order_by("sample")
    peaks = np.array(samples.values_list("sample", flat=True)) - GAP[1]
    expected = beat_saliency(stretch_mv, FS_HZ, peaks, 0)
    assert data["start"] == expected["start"] + GAP[1]
    assert data["values"] == expected["values"] and data["label"] == expected["label"]
    strip = api.get(f"/api/recordings/{device_recording.pk}/strip.png", {"beat": beat.index + 1})
    assert strip.status_code == 200 and strip.content[:8] == PNG_MAGIC


def test_a_beat_where_no_signal_is_stored_cannot_be_explained(api, device_recording):
    device_recording.analysis_status = AnalysisStatus.DONE
    device_recording.save()
    Beat.objects.create(
        recording=device_recording,
        index=99,
        sample=2700,
        label="N",
        confidence=0.9,
        probabilities={"N": 0.9, "S": 0.0, "V": 0.1, "F": 0.0, "Q": 0.0},
    )
    pk = device_recording.pk
    for response in (
        api.get(f"/api/recordings/{pk}/beats/100/saliency/"),
        api.get(f"/api/recordings/{pk}/strip.png", {"beat": "100"}),
    ):
        assert response.status_code == 409
        assert response.json()["detail"] == (
            "beat 100 lies in a gap: no signal is stored at sample 2700"
        )


def test_strip_and_saliency_read_only_the_signal_around_the_beat(api, recording, rng, monkeypatch):
    """Half an hour in 30-s chunks: explaining a beat in the middle decodes the chunks of the
    few minutes its features depend on (inference.beats.saliency_excerpt), not all 60."""
    chunk, n_chunks = int(30 * FS_HZ), 60
    adc = rng.integers(-300, 300, size=chunk * n_chunks).astype(np.int16)
    for seq in range(n_chunks):
        piece = adc[seq * chunk : (seq + 1) * chunk]
        SampleChunk.from_samples(recording, seq, seq * chunk, piece).save()
    Beat.objects.bulk_create(
        Beat(
            recording=recording,
            index=i,
            sample=sample,
            label="N",
            confidence=0.9,
            probabilities={"N": 0.9, "S": 0.0, "V": 0.1, "F": 0.0, "Q": 0.0},
        )
        for i, sample in enumerate(range(100, len(adc), 200))
    )
    recording.analysis_status = AnalysisStatus.DONE
    recording.save()
    decoded = []
    samples = SampleChunk.samples

    def counting(chunk_row):
        decoded.append(chunk_row.first_sample)
        return samples(chunk_row)

    monkeypatch.setattr(SampleChunk, "samples", counting)
    beat = recording.beats.get(sample=100 + 200 * 1125)  # 15 minutes in
    for url, params in (
        (f"/api/recordings/{recording.pk}/strip.png", {"beat": beat.index + 1}),
        (f"/api/recordings/{recording.pk}/beats/{beat.index + 1}/saliency/", {}),
    ):
        decoded.clear()
        assert api.get(url, params).status_code == 200
        # about 230 beats (3 minutes) before it and a minute on each side
        assert len(set(decoded)) <= 14, sorted(set(decoded))
        assert min(decoded) > beat.sample - 5 * 60 * FS_HZ


# --- Exports ----------------------------------------------------------------------------


def read_wfdb_zip(content: bytes, folder, name: str):
    """The zip's file names, its record, and our annotations (``.cspk``) when there are."""
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        archive.extractall(folder)
        names = sorted(archive.namelist())
    record = wfdb.rdrecord(str(folder / name), physical=False)
    ours = wfdb.rdann(str(folder / name), "cspk") if f"{name}.cspk" in names else None
    return names, record, ours


def test_wfdb_export_of_a_device_recording_with_a_gap(api, device_recording, tmp_path):
    response = api.get(f"/api/recordings/{device_recording.pk}/export.zip?format=wfdb")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    name = f"recording-{device_recording.pk}"
    names, record, ours = read_wfdb_zip(response.content, tmp_path, name)
    # our labels under their own annotator; no .atr: a device recording has no reference
    assert names == [f"{name}.cspk", f"{name}.dat", f"{name}.hea"]
    assert record.fs == FS_HZ and record.fmt == ["16"] and record.sig_name == ["II"]
    assert record.adc_gain == [200.0] and record.baseline == [7]
    adc = record.d_signal[:, 0]
    stored = np.r_[0 : GAP[0], GAP[1] : N_SAMPLES]
    np.testing.assert_array_equal(adc[stored], device_recording.test_adc[stored])
    assert (adc[GAP[0] : GAP[1]] == WFDB_INVALID_ADC).all()
    physical = wfdb.rdrecord(str(tmp_path / name)).p_signal[:, 0]
    assert np.isnan(physical[GAP[0] : GAP[1]]).all() and np.isfinite(physical[stored]).all()

    beats = [(a, s) for a, s in zip(ours.sample, ours.symbol, strict=True) if s != "+"]
    expected = list(device_recording.beats.order_by("sample").values_list("sample", "label"))
    symbols = {"N": "N", "S": "A", "V": "V"}
    assert beats == [(sample, symbols[label]) for sample, label in expected]
    notes = zip(ours.sample, ours.symbol, ours.aux_note, strict=True)
    rhythm = [(int(a), note) for a, s, note in notes if s == "+"]
    assert rhythm == [(1000, "(AFIB"), (4000, "(N")]


def test_csv_export_of_a_device_recording_with_a_gap(api, device_recording):
    response = api.get(f"/api/recordings/{device_recording.pk}/export.csv")
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["time_s", "sample", "II_mv", "lead_off"]
    body = rows[1:]
    assert len(body) == N_SAMPLES
    assert [int(r[1]) for r in body] == list(range(N_SAMPLES))
    assert float(body[1000][0]) == pytest.approx(1000 / FS_HZ)
    gap_cells = [r[2:] for r in body[GAP[0] : GAP[1]]]
    assert gap_cells == [["", ""]] * (GAP[1] - GAP[0])
    stored = [i for i in range(N_SAMPLES) if not GAP[0] <= i < GAP[1]]
    back = np.array([round(float(body[i][2]) * 200 + 7) for i in stored])
    np.testing.assert_array_equal(back, device_recording.test_adc[stored])


def test_a_lead_name_that_a_spreadsheet_would_run_is_written_as_text(api, device_recording):
    device_recording.lead_names = ['=HYPERLINK("http://evil.example","x")']
    device_recording.save()
    response = api.get(f"/api/recordings/{device_recording.pk}/export.csv")
    header = next(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert header == ["time_s", "sample", '\'=HYPERLINK("http://evil.example","x")_mv', "lead_off"]


def test_csv_zip_holds_the_signal_and_the_beats(api, device_recording):
    response = api.get(f"/api/recordings/{device_recording.pk}/export.zip?format=csv")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    name = f"recording-{device_recording.pk}"
    assert response["Content-Disposition"] == f'attachment; filename="{name}-csv.zip"'
    with zipfile.ZipFile(io.BytesIO(response.getvalue())) as archive:
        assert sorted(archive.namelist()) == [
            f"{name}-beats.csv",
            f"{name}-info.csv",
            f"{name}-signal.csv",
        ]
        beats = list(csv.DictReader(io.StringIO(archive.read(f"{name}-beats.csv").decode())))
        signal = archive.read(f"{name}-signal.csv")
    assert [int(b["sample"]) for b in beats] == list(
        device_recording.beats.order_by("index").values_list("sample", flat=True)
    )
    # the signal CSV of export.csv, byte for byte
    alone = api.get(f"/api/recordings/{device_recording.pk}/export.csv")
    assert signal == b"".join(alone.streaming_content)


def test_the_csv_zip_never_holds_the_signal_csv_whole(recording, rng):
    """The signal CSV goes into the zip a chunk's rows at a time: the most memory the export
    takes at once is a fraction of the CSV's size (it was the whole CSV joined, then encoded:
    over twice its size; a 24-hour recording took 1.2 GB)."""
    chunk, n_chunks = 1000, 150
    adc = rng.integers(-300, 300, size=n_chunks * chunk).astype(np.int16)
    SampleChunk.objects.bulk_create(
        SampleChunk.from_samples(recording, seq, seq * chunk, adc[seq * chunk : (seq + 1) * chunk])
        for seq in range(n_chunks)
    )
    tracemalloc.start()
    try:
        archive_file = csv_zip(recording)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    with archive_file, zipfile.ZipFile(archive_file) as archive:
        csv_bytes = archive.getinfo(f"recording-{recording.pk}-signal.csv").file_size
    assert csv_bytes > 3_000_000
    assert peak_bytes < csv_bytes / 2, (peak_bytes, csv_bytes)


def test_the_exports_say_when_the_recording_started(api, device_recording, settings, tmp_path):
    """The WFDB header's base date and time on the clock the pages show (the site's zone, as
    an upload reads them), with comments giving the offset and naming the zone; the CSV zip's
    info file in UTC; the signal CSV gets no clock column. Until 2026-12-07 the WFDB base
    time was in UTC: 23:59:58 for a start the pages showed as 19:59:58 EDT."""
    settings.TIME_ZONE = "America/New_York"
    device_recording.started_at = datetime(2025, 3, 9, 23, 59, 58, 250000, tzinfo=UTC)
    device_recording.save()
    name = f"recording-{device_recording.pk}"
    page = api.get(f"/recordings/{device_recording.pk}/review/").content.decode()
    assert "Started 2025-03-09 19:59:58 EDT" in page
    response = api.get(f"/api/recordings/{device_recording.pk}/export.zip?format=wfdb")
    _, record, _ = read_wfdb_zip(response.content, tmp_path, name)
    assert record.base_datetime == datetime(2025, 3, 9, 19, 59, 58, 250000)  # naive, EDT
    assert record.comments == [
        "started_at 2025-03-09T19:59:58.250000-04:00",
        "time_zone America/New_York (the base time and date are its clock)",
    ]

    response = api.get(f"/api/recordings/{device_recording.pk}/export.zip?format=csv")
    with zipfile.ZipFile(io.BytesIO(response.getvalue())) as archive:
        info = list(csv.DictReader(io.StringIO(archive.read(f"{name}-info.csv").decode())))
        header = archive.read(f"{name}-signal.csv").decode().split("\n", 1)[0]
    assert info == [
        {
            "record": name,
            "started_at": "2025-03-09T23:59:58.250000+00:00",
            "fs_hz": "250",
            "n_samples": str(N_SAMPLES),
        }
    ]
    assert datetime.fromisoformat(info[0]["started_at"]) == device_recording.started_at
    assert header == "time_s,sample,II_mv,lead_off"


def test_a_bad_export_format_answers_400(api, recording):
    response = api.get(f"/api/recordings/{recording.pk}/export.zip?format=edf")
    assert response.status_code == 400
    assert response.json()["detail"] == "format must be wfdb or csv, got 'edf'"


@pytest.mark.parametrize("url", ["export.zip?format=wfdb", "export.zip?format=csv", "export.csv"])
def test_every_export_of_a_recording_with_no_samples_answers_the_same_400(api, recording, url):
    # a device recording just opened: a CSV of its header alone would read as lost signal
    assert not recording.chunks.exists()
    response = api.get(f"/api/recordings/{recording.pk}/{url}")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "detail": f"recording {recording.pk} has no samples stored yet: nothing to export"
    }


def test_the_review_page_of_a_recording_with_no_samples_offers_no_export(api, recording):
    # every export of it answers 400 (above): the page says why instead of offering them
    page = api.get(f"/recordings/{recording.pk}/review/").content.decode()
    assert "Nothing to export yet: no samples of this recording are stored." in page
    assert "export.zip" not in page and "export.csv" not in page


def test_overlapping_episodes_become_rhythm_changes(device_recording):
    Episode.objects.create(recording=device_recording, kind="TACHY", start_s=6.0, end_s=8.0)
    Episode.objects.create(recording=device_recording, kind="PAUSE", start_s=19.0, end_s=21.0)
    changes = rhythm_annotations(device_recording, N_SAMPLES)
    assert changes == [
        (1000, "(AFIB"),
        (1500, "(TACHY"),
        (2000, "(AFIB"),
        (4000, "(N"),
        (4750, "(PAUSE"),
        (5250, "(N"),
    ]


def upload_and_analyse(api, patient, files, django_capture_on_commit_callbacks) -> Recording:
    from tests.upload_helpers import api_upload

    with django_capture_on_commit_callbacks(execute=True):
        response = api_upload(api, patient.pk, files)
    assert response.status_code == 201, response.content
    recording = Recording.objects.get(pk=response.json()["id"])
    assert recording.analysis_status == "done", recording.analysis_error
    return recording


def check_wfdb_round_trip(api, recording, original, tmp_path):
    """The export holds the upload's ADC values, rate, gains and names, and our beats."""
    response = api.get(f"/api/recordings/{recording.pk}/export.zip?format=wfdb")
    assert response.status_code == 200
    name = f"recording-{recording.pk}"
    _, record, ours_annotation = read_wfdb_zip(response.content, tmp_path, name)
    np.testing.assert_array_equal(record.d_signal, original.d_signal)
    assert record.fs == original.fs and record.sig_name == original.sig_name
    assert record.adc_gain == pytest.approx(original.adc_gain)
    assert record.baseline == original.baseline
    beats = list(recording.beats.order_by("sample").values_list("sample", "label"))
    assert len(beats) > 5
    symbols = {"N": "N", "S": "A", "V": "V", "F": "F", "Q": "Q"}
    ours = [
        (int(a), s) for a, s in zip(ours_annotation.sample, ours_annotation.symbol, strict=True)
    ]
    assert [b for b in ours if b[1] != "+"] == [(s, symbols[label]) for s, label in beats]
    return ours


def test_wfdb_export_of_a_synthetic_upload(
    api, patient, tmp_path, django_capture_on_commit_callbacks
):
    source = tmp_path / "source"
    source.mkdir()
    files = synthetic_wfdb(source, "syn", seconds=20.0)
    recording = upload_and_analyse(api, patient, files, django_capture_on_commit_callbacks)
    original = wfdb.rdrecord(str(source / "syn"), physical=False)
    check_wfdb_round_trip(api, recording, original, tmp_path)
    names = sorted(zipfile.ZipFile(io.BytesIO(export_wfdb(api, recording))).namelist())
    # uploaded without an .atr: no reference, so none in the export either
    assert names == [f"recording-{recording.pk}.{ext}" for ext in ("cspk", "dat", "hea")]


def export_wfdb(api, recording) -> bytes:
    response = api.get(f"/api/recordings/{recording.pk}/export.zip?format=wfdb")
    assert response.status_code == 200
    return response.content


def test_wfdb_export_holds_the_uploads_reference_as_atr(
    api, patient, tmp_path, django_capture_on_commit_callbacks
):
    """An upload's own .atr comes back as the export's .atr (the WFDB reference annotator),
    our beats as .cspk: evaluating the export scores our beats against the reference, not
    against themselves."""
    source = tmp_path / "source"
    source.mkdir()
    files = synthetic_wfdb(source, "syn", seconds=20.0)
    # The reference: the synthetic beats with a mix of MIT-BIH symbols our model would not
    # all give (L is class N, A class S), after a rhythm mark that is not a beat.
    beat_samples = [int(s) for s in generate(20.0, fs=250.0, seed=3).beats]
    symbols = [("N", "L", "A", "V")[i % 4] for i in range(len(beat_samples))]
    wfdb.wrann(
        "syn",
        "atr",
        np.array([0, *beat_samples], dtype=np.int64),
        np.array(["+", *symbols]),
        aux_note=["(N", *[""] * len(beat_samples)],
        fs=250,
        write_dir=str(source),
    )
    files["syn.atr"] = (source / "syn.atr").read_bytes()
    recording = upload_and_analyse(api, patient, files, django_capture_on_commit_callbacks)
    expected_labels = [aami_class(symbol) for symbol in symbols]
    assert recording.reference_annotations == {"samples": beat_samples, "labels": expected_labels}

    export = tmp_path / "export"
    name = f"recording-{recording.pk}"
    names, _, ours = read_wfdb_zip(export_wfdb(api, recording), export, name)
    assert names == [f"{name}.atr", f"{name}.cspk", f"{name}.dat", f"{name}.hea"]

    # .atr is the reference: its samples, and the WFDB symbol of each reference class
    reference = wfdb.rdann(str(export / name), "atr")
    assert reference.sample.tolist() == beat_samples
    assert reference.symbol == [{"N": "N", "S": "A", "V": "V"}[c] for c in expected_labels]
    # read the way the evaluation reads a MIT-BIH record, it gives the reference classes
    loaded = load_record(export, name, lead="II")
    assert loaded.beat_samples.tolist() == beat_samples
    assert [aami_class(symbol) for symbol in loaded.beat_symbols] == expected_labels

    # .cspk holds our beats, not the reference
    beats = list(recording.beats.order_by("sample").values_list("sample", "label"))
    symbols_of = {"N": "N", "S": "A", "V": "V", "F": "F", "Q": "Q"}
    ours_beats = [(int(a), s) for a, s in zip(ours.sample, ours.symbol, strict=True) if s != "+"]
    assert ours_beats == [(sample, symbols_of[label]) for sample, label in beats]
    assert ours_beats != list(zip(beat_samples, reference.symbol, strict=True))

    # the export uploads again as it is: its .cspk is left out, its .atr is the reference
    again_files = {path.name: path.read_bytes() for path in sorted(export.iterdir())}
    assert f"{name}.cspk" in again_files
    again = upload_and_analyse(api, patient, again_files, django_capture_on_commit_callbacks)
    assert again.reference_annotations == recording.reference_annotations


def test_wfdb_export_of_a_mitdb_upload(api, patient, tmp_path, django_capture_on_commit_callbacks):
    mitdb_folder()
    source = tmp_path / "source"
    source.mkdir()
    files = wfdb_excerpt(source, "208", seconds=30.0)
    recording = upload_and_analyse(api, patient, files, django_capture_on_commit_callbacks)
    original = wfdb.rdrecord(str(source / "208"), physical=False)
    ours = check_wfdb_round_trip(api, recording, original, tmp_path)
    # the export's .atr is the excerpt's reference: every beat, in the same class
    exported = load_record(tmp_path, f"recording-{recording.pk}")
    reference = load_record(source, "208")
    np.testing.assert_array_equal(exported.beat_samples, reference.beat_samples)
    assert [aami_class(s) for s in exported.beat_symbols] == [
        aami_class(s) for s in reference.beat_symbols
    ]
    # record 208 has frequent PVCs: some of our beats are V, and the viewer finds them
    assert any(symbol == "V" for _, symbol in ours)
    first_v = min(sample for sample, symbol in ours if symbol == "V")
    found = api.get(f"/api/recordings/{recording.pk}/events/", {"kind": "V", "after_s": 0}).json()[
        "events"
    ]
    assert found[0]["sample"] == first_v


def test_an_upload_whose_leads_share_a_name_exports_with_unique_names(api, patient, tmp_path):
    """Some PhysioNet headers name two signals alike (``ECG``, ``ECG``); the upload keeps
    them, and wfdb.wrsamp refused them: the WFDB export answered 500."""
    from tests.upload_helpers import api_upload

    adc = np.random.default_rng(3).integers(-300, 300, size=(2500, 2)).astype(np.int16)
    wfdb.wrsamp(
        "twins",
        fs=250,
        units=["mV", "mV"],
        sig_name=["ECG", "other"],
        d_signal=adc,
        fmt=["16", "16"],
        adc_gain=[200.0, 200.0],
        baseline=[0, 0],
        write_dir=str(tmp_path),
    )
    header = (tmp_path / "twins.hea").read_text().replace(" other\n", " ECG\n")
    files = {"twins.hea": header.encode(), "twins.dat": (tmp_path / "twins.dat").read_bytes()}
    response = api_upload(api, patient.pk, files)
    assert response.status_code == 201, response.json()
    recording = Recording.objects.get(pk=response.json()["id"])
    assert recording.lead_names == ["ECG", "ECG"]  # as the file names them

    response = api.get(f"/api/recordings/{recording.pk}/export.zip?format=wfdb")
    assert response.status_code == 200
    name = f"recording-{recording.pk}"
    _, record, _ = read_wfdb_zip(response.content, tmp_path / "export", name)
    assert record.sig_name == ["ECG", "ECG-ch2"]
    assert np.array_equal(record.d_signal, adc)

    lines = b"".join(api.get(f"/api/recordings/{recording.pk}/export.csv").streaming_content)
    assert lines.decode().splitlines()[0] == "time_s,sample,ECG_mv,ECG-ch2_mv,lead_off"


def test_export_lead_names_never_repeat():
    from monitoring.review import export_lead_names

    def names(*leads):
        return export_lead_names(Recording(lead_names=list(leads), n_channels=len(leads)))

    assert names("II") == ["II"]
    assert names("ECG", "ECG", "ECG") == ["ECG", "ECG-ch2", "ECG-ch3"]
    assert names("ECG", "ECG", "ECG-ch2") == ["ECG", "ECG-ch2'", "ECG-ch2"]
