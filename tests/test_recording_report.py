"""The recording's Holter-style report (monitoring/recording_report.py) on its results page
and in its analysis API: AF burden by monitored time, ectopy per hour of analysed signal and
one row per clock hour, for an upload and for a device recording with a gap and a leads-off
span. A cardiologist reviewing a night could read neither from any page (2026-12 request):
the page gave the burden by beats only.

The recordings are built beat by beat with a known pattern (no signal: the report reads the
chunks' positions, the beats and the episodes), 2.5 h from 22:00 in Europe/Berlin:

- 60 bpm for two hours, then 50 bpm (RR 1.2 s) for the last half hour;
- 30 V beats in the second hour (23:00-00:00), 5 S beats in the last half hour;
- an AF episode from 3300 s to 4500 s, across the 23:00 boundary (5 min before it, 15 after);
- a VT episode at 4000 s, pauses at 1000 s and 6700 s.

The device recording misses a 1-s gap at 5000 s, a 10-min gap from 6000 s and has its leads
off from 7800 s to 8100 s; no beat is stored there.
"""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from monitoring.models import AnalysisStatus, Beat, Episode, Patient, Recording, SampleChunk
from monitoring.recording_report import recording_report

pytestmark = pytest.mark.django_db

FS_HZ = 250.0
ZONE = "Europe/Berlin"
STARTED_AT = datetime(2026, 1, 15, 21, 0, 0, tzinfo=UTC)  # 22:00:00 CET
SPAN_S = 9000.0
V_TIMES_S = [3610.0 + 60.0 * i for i in range(30)]  # 3610 ... 5350 s: the second hour
S_BEATS = range(850, 855)  # the 50-bpm beats 7200 + 1.2 j: 8220.0 ... 8224.8 s
GAPS_S = [(5000.0, 5001.0), (6000.0, 6600.0)]
LEADS_OFF_S = (7800.0, 8100.0)


def beat_times_s() -> list[float]:
    """60 bpm from 0 to 7200 s, then 50 bpm to the end."""
    return [float(k) for k in range(7200)] + [7200.0 + 1.2 * j for j in range(1500)]


def store_beats(recording: Recording, times_s: list[float]) -> None:
    v_times = {round(t * FS_HZ) for t in V_TIMES_S}
    s_times = {round((7200.0 + 1.2 * j) * FS_HZ) for j in S_BEATS}
    beats = []
    for index, time_s in enumerate(times_s):
        sample = round(time_s * FS_HZ)
        label = "V" if sample in v_times else "S" if sample in s_times else "N"
        beats.append(
            Beat(
                recording=recording,
                index=index,
                sample=sample,
                label=label,
                confidence=0.9,
                probabilities={label: 0.9},
            )
        )
    Beat.objects.bulk_create(beats, batch_size=5000)


def store_episodes(recording: Recording) -> None:
    for kind, start_s, end_s in [
        ("PAUSE", 1000.0, 1003.5),
        ("AF", 3300.0, 4500.0),
        ("VT", 4000.0, 4003.0),
        ("PAUSE", 6700.0, 6703.5),
    ]:
        Episode.objects.create(recording=recording, kind=kind, start_s=start_s, end_s=end_s)


def store_chunks(recording: Recording, ranges_s: list[tuple[float, float, bool]]) -> None:
    """Chunks over ``[start_s, end_s)`` (leads off or not), at most a minute each. No samples:
    the report reads the chunks' positions, never their data."""
    chunks, seq = [], 0
    for start_s, end_s, lead_off in ranges_s:
        first, end = round(start_s * FS_HZ), round(end_s * FS_HZ)
        while first < end:
            n_samples = min(end - first, round(60 * FS_HZ))
            chunks.append(
                SampleChunk(
                    recording=recording,
                    seq=seq,
                    first_sample=first,
                    n_samples=n_samples,
                    data=b"",
                    lead_off=lead_off,
                )
            )
            seq, first = seq + 1, first + n_samples
    SampleChunk.objects.bulk_create(chunks)


def in_any(time_s: float, spans: list[tuple[float, float]]) -> bool:
    return any(start <= time_s < end for start, end in spans)


@pytest.fixture(autouse=True)
def berlin(settings):
    settings.TIME_ZONE = ZONE


def build_upload(patient: Patient) -> Recording:
    recording = Recording.objects.create(
        patient=patient,
        source=Recording.Source.UPLOAD,
        source_name="night.hea",
        upload_format="wfdb",
        sampling_rate_hz=FS_HZ,
        gain_adc_per_mv=200.0,
        lead_names=["II"],
        started_at=STARTED_AT,
        analysis_status=AnalysisStatus.DONE,
        end_sample=round(SPAN_S * FS_HZ),
        stored_samples=round(SPAN_S * FS_HZ),
    )
    store_chunks(recording, [(0.0, SPAN_S, False)])
    store_beats(recording, beat_times_s())
    store_episodes(recording)
    return recording


def build_streamed(patient: Patient) -> Recording:
    """The device recording, analysed to its end."""
    end = round(SPAN_S * FS_HZ)
    recording = Recording.objects.create(
        patient=patient,
        sampling_rate_hz=FS_HZ,
        gain_adc_per_mv=200.0,
        lead_names=["II"],
        started_at=STARTED_AT,
        analysis_status=AnalysisStatus.DONE,
        analysis_cursor=end,
        end_sample=end,
        stored_samples=end - round(601 * FS_HZ),
    )
    store_chunks(
        recording,
        [
            (0.0, 5000.0, False),
            (5001.0, 6000.0, False),
            (6600.0, 7800.0, False),
            (*LEADS_OFF_S, True),
            (8100.0, SPAN_S, False),
        ],
    )
    missing = [*GAPS_S, LEADS_OFF_S]
    store_beats(recording, [t for t in beat_times_s() if not in_any(t, missing)])
    store_episodes(recording)
    return recording


@pytest.fixture(scope="module")
def night(django_db_setup, django_db_blocker):
    """The two recordings, stored once for the module (8,700 beats each took 1-2 s a test to
    store); each test's changes are rolled back with its transaction."""
    with django_db_blocker.unblock():
        reader = User.objects.create_user(username="holter-reader", password="pw-holter-1")
        patient = Patient.objects.create(mrn="MRN-HOLTER", name="Night Patient")
        patient.clinicians.add(reader)
        pks = {"upload": build_upload(patient).pk, "streamed": build_streamed(patient).pk}
    yield pks
    with django_db_blocker.unblock():
        Recording.objects.filter(patient=patient).delete()
        patient.delete()
        reader.delete()


@pytest.fixture
def upload(night):
    return Recording.objects.get(pk=night["upload"])


@pytest.fixture
def streamed(night):
    return Recording.objects.get(pk=night["streamed"])


@pytest.fixture
def api(client, night):
    client.force_login(User.objects.get(username="holter-reader"))
    return client


def table_rows(page: str, table_id: str) -> list[list[str]]:
    table = page.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    body = table.split("<tbody>", 1)[1]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body)]


def text_of(page: str, element_id: str) -> str:
    inner = page.split(f'id="{element_id}">', 1)[1].split("</dd>", 1)[0]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", inner)).strip()


# --- The report itself -------------------------------------------------------------------


def test_an_uploads_hours_rates_and_af_burden_by_time(upload):
    report = recording_report(upload)
    assert report["analysed_s"] == 9000.0
    assert report["af_s"] == 1200.0
    assert report["af_time_fraction"] == 0.1333  # 20 min of 2.5 h
    assert report["per_hour"]["V"] == 12.0  # 30 V beats in 2.5 h
    assert report["per_hour"]["S"] == 2.0
    assert report["per_hour"]["N"] == round((8700 - 35) / 2.5, 1)
    assert report["hours_by"] == "clock" and report["time_zone"] == ZONE
    hours = report["hours"]
    assert [(h["start_s"], h["end_s"]) for h in hours] == [(0, 3600), (3600, 7200), (7200, 9000)]
    assert hours[0]["start"] == "2026-01-15T21:00:00+00:00"
    assert hours[2]["end"] == "2026-01-15T23:30:00+00:00"
    assert [h["analysed_s"] for h in hours] == [3600.0, 3600.0, 1800.0]
    assert [h["n_beats"] for h in hours] == [3600, 3600, 1500]
    assert [h["n_v_beats"] for h in hours] == [0, 30, 0]
    assert [h["n_s_beats"] for h in hours] == [0, 0, 5]
    assert [h["af_s"] for h in hours] == [300.0, 900.0, 0.0]  # across the 23:00 boundary
    assert [h["n_pauses"] for h in hours] == [1, 1, 0]
    assert [h["n_vt"] for h in hours] == [0, 1, 0]
    assert hours[0]["heart_rate_bpm"] == {"mean": 60.0, "min": 60.0, "max": 60.0}
    assert hours[1]["heart_rate_bpm"] == {"mean": 60.0, "min": 60.0, "max": 60.0}
    # 50 bpm, with the 1-s interval from the last 60-bpm beat: 8 intervals of 1 + 7 x 1.2 s
    # are its fastest running mean (51.1 bpm)
    assert hours[2]["heart_rate_bpm"] == {"mean": 50.0, "min": 50.0, "max": 51.1}


def test_a_device_recordings_gaps_and_leads_off_are_no_monitored_time(streamed):
    report = recording_report(streamed)
    hours = report["hours"]
    # the second hour misses 1 s + 600 s, the last 300 s of leads off
    assert [h["analysed_s"] for h in hours] == [3600.0, 2999.0, 1500.0]
    assert report["analysed_s"] == 8099.0
    assert report["af_time_fraction"] == round(1200 / 8099, 4)
    assert report["per_hour"]["V"] == round(30 / (8099 / 3600), 1)  # 13.3, not 12.0
    assert report["per_hour"]["S"] == round(5 / (8099 / 3600), 1)
    assert [h["n_beats"] for h in hours] == [3600, 2999, 1250]
    assert [h["n_v_beats"] for h in hours] == [0, 30, 0]
    assert [h["n_s_beats"] for h in hours] == [0, 0, 5]
    assert [h["af_s"] for h in hours] == [300.0, 900.0, 0.0]
    # The 1-s gap leaves beats 2 s apart and the 10-min gap 601 s: neither is a heart rate
    # (read as one, the hour's slowest 8-beat mean was 53.3 bpm)
    assert hours[1]["heart_rate_bpm"] == {"mean": 60.0, "min": 60.0, "max": 60.0}
    assert hours[2]["heart_rate_bpm"] == {"mean": 50.0, "min": 50.0, "max": 51.1}


def test_a_live_recordings_signal_counts_up_to_its_analysis_cursor(streamed):
    # the worker has analysed up to 8400 s; the 10 min stored after it have no beats yet
    streamed.analysis_cursor = round(8400 * FS_HZ)
    report = recording_report(streamed)
    assert [h["analysed_s"] for h in report["hours"]] == [3600.0, 2999.0, 900.0]
    assert report["analysed_s"] == 7499.0
    assert report["hours"][2]["end_s"] == 9000.0  # the row still reaches the stored end


def test_af_time_counts_only_where_the_signal_was_analysed(streamed):
    # an AF episode stored over the leads-off span (7800-8100 s): its 300 s there are no
    # monitored time, so they count neither above nor below the line
    Episode.objects.create(recording=streamed, kind="AF", start_s=7700.0, end_s=8200.0)
    report = recording_report(streamed)
    assert [h["af_s"] for h in report["hours"]] == [300.0, 900.0, 200.0]
    assert report["af_s"] == 1400.0
    assert report["af_time_fraction"] == round(1400 / 8099, 4)


def test_a_start_within_an_hour_cuts_the_first_row_at_the_start(upload):
    Recording.objects.filter(pk=upload.pk).update(
        started_at=STARTED_AT - timedelta(minutes=20)
    )  # 21:40 CET
    hours = recording_report(Recording.objects.get(pk=upload.pk))["hours"]
    assert [(h["start_s"], h["end_s"]) for h in hours] == [
        (0, 1200),
        (1200, 4800),
        (4800, 8400),
        (8400, 9000),
    ]
    assert [h["af_s"] for h in hours] == [0.0, 1200.0, 0.0, 0.0]
    assert [h["n_v_beats"] for h in hours] == [0, 20, 10, 0]  # 3610-4750 s, 4810-5350 s


def test_a_recording_whose_start_is_unknown_counts_hours_from_its_start(upload):
    # the file gave no start: its start is the upload's time, which is no clock time
    Recording.objects.filter(pk=upload.pk).update(started_at=upload.created_at)
    report = recording_report(Recording.objects.get(pk=upload.pk))
    assert report["hours_by"] == "elapsed" and report["time_zone"] is None
    assert [(h["start_s"], h["end_s"], h["start"]) for h in report["hours"]] == [
        (0, 3600, None),
        (3600, 7200, None),
        (7200, 9000, None),
    ]


def test_a_beat_on_the_hour_counts_in_the_hour_it_opens(upload):
    """Started at 21:45:22.649 CET, 1000 Hz: sample 877,351 is 22:00:00.000. The row's edge
    summed in floats (-2722.649 + 3600) lands a hair below 877.351, and put that beat in
    the row before, the one that ends at 22:00 (found by a review, about 1 start in 100,000)."""
    Recording.objects.filter(pk=upload.pk).update(
        sampling_rate_hz=1000.0, started_at=datetime(2026, 1, 15, 20, 45, 22, 649000, tzinfo=UTC)
    )
    Beat.objects.filter(recording=upload, index=0).update(sample=877_351)
    Beat.objects.filter(recording=upload).exclude(index=0).delete()
    Episode.objects.filter(recording=upload).delete()
    hours = recording_report(Recording.objects.get(pk=upload.pk))["hours"]
    assert hours[1]["start_s"] == 877.351
    assert [h["n_beats"] for h in hours[:2]] == [0, 1]


@pytest.mark.parametrize("status", [AnalysisStatus.PENDING, AnalysisStatus.FAILED])
def test_no_report_until_the_analysis_is_done(upload, status):
    upload.analysis_status = status
    assert recording_report(upload) is None


def test_an_analysed_device_recording_with_nothing_stored_has_no_rates(recording):
    recording.analysis_status = AnalysisStatus.DONE
    report = recording_report(recording)
    assert report["analysed_s"] == 0.0 and report["hours"] == []
    assert report["af_time_fraction"] is None and report["per_hour"]["V"] is None


def short_upload(patient) -> Recording:
    """An analysed 20-s upload with a beat a second: the small side of the query-count tests."""
    short = Recording.objects.create(
        patient=patient,
        source=Recording.Source.UPLOAD,
        upload_format="wfdb",
        sampling_rate_hz=FS_HZ,
        gain_adc_per_mv=200.0,
        lead_names=["II"],
        started_at=STARTED_AT,
        analysis_status=AnalysisStatus.DONE,
        end_sample=round(20 * FS_HZ),
    )
    store_chunks(short, [(0.0, 20.0, False)])
    store_beats(short, [float(k) for k in range(20)])
    return short


def test_the_queries_do_not_grow_with_beats_or_hours(upload, django_assert_num_queries):
    short = short_upload(upload.patient)
    # the chunks' positions, the beats, the episodes: 3 for 20 beats in 1 hour as for 8,700
    # in 3 hours
    for recording in (short, upload):
        with django_assert_num_queries(3):
            recording_report(recording)


# --- The results page --------------------------------------------------------------------


def test_the_results_page_shows_af_burden_by_time_rates_and_the_hours(api, streamed):
    page = api.get(f"/recordings/{streamed.pk}/").content.decode()
    assert text_of(page, "af-burden") == "AF 14.8 % of monitored time (20.0 min in AF episodes)"
    assert text_of(page, "ectopy-rates") == (
        "V 13.3 /h · S 2.2 /h (beats per hour of analysed signal)"
    )
    assert text_of(page, "analysed-time").startswith("2 h 15 min of ECG")
    # the burden by beats is named so, beside the rate per hour
    assert "<th>Per hour</th><th>Burden (% of beats)</th>" in page
    v_row = page.split('data-class="V">', 1)[1].split("</tr>", 1)[0]
    assert '<td class="per-hour">13.3 /h</td>' in v_row
    assert "Clock hour (Europe/Berlin)" in page
    rows = table_rows(page, "hourly")
    assert rows == [
        ["22:00–23:00", "60.0", "3600", "60", "60", "60", "0", "0", "1", "5.0", "0"],
        ["23:00–00:00", "50.0", "2999", "60", "60", "60", "30", "0", "1", "15.0", "1"],
        ["2026-01-16 00:00–00:30", "25.0", "1250", "50", "50", "51", "0", "5", "0", "0.0", "0"],
    ]
    # the trend is drawn from the recording's own trend endpoint, by the live view's code
    assert f'data-url="/api/recordings/{streamed.pk}/hr-trend/"' in page
    assert "cardiospike/hrtrend.js" in page and "cardiospike/results.js" in page


def test_an_uploads_page_rows_and_rates(api, upload):
    page = api.get(f"/recordings/{upload.pk}/").content.decode()
    assert text_of(page, "af-burden") == "AF 13.3 % of monitored time (20.0 min in AF episodes)"
    assert text_of(page, "ectopy-rates").startswith("V 12.0 /h · S 2.0 /h")
    assert [row[:3] for row in table_rows(page, "hourly")] == [
        ["22:00–23:00", "60.0", "3600"],
        ["23:00–00:00", "60.0", "3600"],
        ["2026-01-16 00:00–00:30", "30.0", "1500"],
    ]


def test_hours_without_a_clock_start_are_counted_from_the_start(api, upload):
    Recording.objects.filter(pk=upload.pk).update(started_at=upload.created_at)
    page = api.get(f"/recordings/{upload.pk}/").content.decode()
    assert "Hours from the start" in page
    assert [row[0] for row in table_rows(page, "hourly")] == ["0:00–1:00", "1:00–2:00", "2:00–2:30"]
    assert "hours from the start (the file gave no start time)" in page


def test_an_hour_across_a_daylight_saving_change_names_its_zones(api, upload):
    # 00:30 CEST on the night the clocks go back (03:00 CEST is 02:00 CET)
    Recording.objects.filter(pk=upload.pk).update(
        started_at=datetime(2026, 10, 24, 22, 30, tzinfo=UTC)
    )
    page = api.get(f"/recordings/{upload.pk}/").content.decode()
    assert [row[0] for row in table_rows(page, "hourly")] == [
        "00:30–01:00",
        "01:00–02:00",
        "02:00 CEST–02:00 CET",  # 2.5 h after 00:30 CEST is 02:00 CET
    ]


def test_a_pending_or_empty_recording_shows_no_figures(api, upload):
    upload.analysis_status = AnalysisStatus.PENDING
    upload.save()
    page = api.get(f"/recordings/{upload.pk}/").content.decode()
    assert 'id="hourly"' not in page and 'id="af-burden"' not in page
    assert "recording-hr-trend" not in page
    # a device recording analysed but with no signal yet: dashes, no division by zero
    recording = Recording.objects.create(
        patient=upload.patient,
        sampling_rate_hz=FS_HZ,
        gain_adc_per_mv=200.0,
        lead_names=["II"],
        analysis_status=AnalysisStatus.DONE,
    )
    response = api.get(f"/recordings/{recording.pk}/")
    assert response.status_code == 200
    page = response.content.decode()
    assert text_of(page, "af-burden") == "—"
    assert text_of(page, "ectopy-rates") == "—"
    assert 'id="no-hours"' in page


def test_the_page_queries_do_not_grow_with_beats_or_hours(api, upload):
    def queries(recording: Recording) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert api.get(f"/recordings/{recording.pk}/").status_code == 200
        return len(captured)

    short = short_upload(upload.patient)
    Episode.objects.create(recording=short, kind="AF", start_s=2.0, end_s=5.0)
    assert queries(short) == queries(upload)


# --- The API -----------------------------------------------------------------------------


def test_the_analysis_api_gives_the_report(api, streamed, upload):
    answer = api.get(f"/api/recordings/{streamed.pk}/analysis/").json()
    assert answer["report"] == recording_report(streamed)
    assert answer["report"]["af_time_fraction"] == round(1200 / 8099, 4)
    assert [h["n_v_beats"] for h in answer["report"]["hours"]] == [0, 30, 0]
    upload.analysis_status = AnalysisStatus.PENDING
    upload.save()
    assert api.get(f"/api/recordings/{upload.pk}/analysis/").json()["report"] is None
