"""The handover report (monitoring/patient_report.py): a patient's night across their device
recordings, per clock hour, on the page /patients/<id>/report/ and in
GET /api/patients/<id>/report/. The registrar reconstructing a night at the morning handover
could read only one recording at a time, and a night is often several (a device restarted).

The night, in Europe/Berlin, built beat by beat (no signal: the report reads the chunks'
positions, the beats and the episodes):

- recording A from 22:00:00 to 23:30:00: 60 bpm, a pause at 22:16:40, 30 V beats from
  23:10:00, a VT episode at 23:11:40;
- the device restarts: recording B from 23:30:01.8 to 01:00:01.8: 50 bpm (RR 1.2 s), 5 S
  beats at 23:32, an AF episode from 00:00:01.8 for 20 minutes, its leads off for 5 minutes
  from 00:30:01.8. A's last beat and B's first are 2.8 s apart: under live.MAX_RR_S, so
  only keeping the recordings apart keeps that span out of the heart rate.

Beside it, what the report must leave out: an upload of the same patient over the same night
and another patient's device recording.
"""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from monitoring.alarm_history import TimeRange
from monitoring.models import Alarm, AnalysisStatus, Beat, Episode, Patient, Recording
from monitoring.patient_report import clock_hour_edges, patient_report
from tests.test_alarm_history import make_alarm
from tests.test_recording_report import FS_HZ, store_chunks

pytestmark = pytest.mark.django_db

ZONE = "Europe/Berlin"
A_START = datetime(2026, 1, 15, 21, 0, 0, tzinfo=UTC)  # 22:00:00 CET
A_SPAN_S = 5400.0
B_START = A_START + timedelta(seconds=A_SPAN_S + 1.8)  # 23:30:01.8 CET
B_SPAN_S = 5400.0
A_V_TIMES_S = [4200.0 + k for k in range(30)]  # 23:10:00 ... 23:10:29
B_S_BEATS = range(100, 105)  # 120.0 ... 124.8 s into B: 23:32:01.8 ...
B_AF_S = (1798.2, 2998.2)  # 00:00:00 to 00:20:00
B_LEADS_OFF_S = (3598.2, 3898.2)  # 00:30:00 to 00:35:00
NIGHT_START = datetime(2026, 1, 15, 21, 0, 0, tzinfo=UTC)  # 22:00 CET
NIGHT_END = datetime(2026, 1, 16, 0, 0, 0, tzinfo=UTC)  # 01:00 CET


@pytest.fixture(autouse=True)
def berlin(settings):
    settings.TIME_ZONE = ZONE


def device_recording(patient, started_at, span_s, ended=True, **fields) -> Recording:
    end = round(span_s * FS_HZ)
    return Recording.objects.create(
        patient=patient,
        sampling_rate_hz=FS_HZ,
        gain_adc_per_mv=200.0,
        lead_names=["II"],
        started_at=started_at,
        ended_at=started_at + timedelta(seconds=span_s) if ended else None,
        status=Recording.Status.CLOSED if ended else Recording.Status.LIVE,
        analysis_status=AnalysisStatus.DONE,
        analysis_cursor=end,
        end_sample=end,
        stored_samples=end,
        **fields,
    )


def store(recording, times_s, labels=None, episodes=()):
    labels = labels or {}
    Beat.objects.bulk_create(
        [
            Beat(
                recording=recording,
                index=index,
                sample=round(time_s * FS_HZ),
                label=labels.get(index, "N"),
                confidence=0.9,
                probabilities={labels.get(index, "N"): 0.9},
            )
            for index, time_s in enumerate(times_s)
        ],
        batch_size=5000,
    )
    for kind, start_s, end_s in episodes:
        Episode.objects.create(recording=recording, kind=kind, start_s=start_s, end_s=end_s)


def a_times_s():
    return [float(k) for k in range(int(A_SPAN_S))]


def b_times_s():
    lo, hi = B_LEADS_OFF_S
    return [t for t in (1.2 * j for j in range(4500)) if not lo <= t < hi]


def build_a(patient):
    recording = device_recording(patient, A_START, A_SPAN_S)
    store_chunks(recording, [(0.0, A_SPAN_S, False)])
    v_indices = {int(t) for t in A_V_TIMES_S}
    store(
        recording,
        a_times_s(),
        labels=dict.fromkeys(v_indices, "V"),
        episodes=[("PAUSE", 1000.0, 1003.5), ("VT", 4300.0, 4303.0)],
    )
    return recording


def build_b(patient):
    recording = device_recording(patient, B_START, B_SPAN_S)
    store_chunks(
        recording,
        [
            (0.0, B_LEADS_OFF_S[0], False),
            (*B_LEADS_OFF_S, True),
            (B_LEADS_OFF_S[1], B_SPAN_S, False),
        ],
    )
    store(recording, b_times_s(), labels=dict.fromkeys(B_S_BEATS, "S"), episodes=[("AF", *B_AF_S)])
    return recording


@pytest.fixture(scope="module")
def night(django_db_setup, django_db_blocker):
    """The night, stored once for the module (each test's changes are rolled back)."""
    with django_db_blocker.unblock():
        reader = User.objects.create_user(username="handover-reader", password="pw-handover-1")
        outsider = User.objects.create_user(username="handover-outsider", password="pw-out-1")
        patient = Patient.objects.create(mrn="MRN-HANDOVER", name="Handover Patient")
        other = Patient.objects.create(mrn="MRN-OTHER-NIGHT", name="Other Patient")
        patient.clinicians.add(reader)
        other.clinicians.add(reader, outsider)
        a, b = build_a(patient), build_b(patient)
        # left out: the same patient's upload over the night, another patient's device
        upload = device_recording(
            patient,
            A_START,
            A_SPAN_S,
            source=Recording.Source.UPLOAD,
            upload_format="wfdb",
            source_name="night.hea",
        )
        store_chunks(upload, [(0.0, A_SPAN_S, False)])
        store(upload, [0.5 * k for k in range(int(2 * A_SPAN_S))], labels={5: "V", 9: "S"})
        theirs = device_recording(other, A_START, A_SPAN_S)
        store_chunks(theirs, [(0.0, A_SPAN_S, False)])
        store(theirs, a_times_s(), labels=dict.fromkeys(range(100), "V"))
    yield {"patient": patient.pk, "a": a.pk, "b": b.pk, "other": other.pk}
    with django_db_blocker.unblock():
        Recording.objects.filter(patient__in=[patient, other]).delete()
        Alarm.objects.filter(patient__in=[patient, other]).delete()
        patient.delete()
        other.delete()
        reader.delete()
        outsider.delete()


@pytest.fixture
def patient(night):
    return Patient.objects.get(pk=night["patient"])


@pytest.fixture
def reader(client, night):
    client.force_login(User.objects.get(username="handover-reader"))
    return client


def the_night() -> TimeRange:
    return TimeRange(NIGHT_START, NIGHT_END, "custom", "from and to")


def heart_rate(intervals_s: list[float]) -> float:
    """The mean heart rate of RR intervals, rounded as the report rounds it."""
    return round(60.0 * len(intervals_s) / sum(intervals_s), 1)


def test_the_night_adds_up_both_recordings_hour_by_hour(patient, night):
    report = patient_report(patient, the_night())

    assert [row["id"] for row in report["recordings"]] == [night["a"], night["b"]]
    hours = report["hours"]
    assert [row["start"] for row in hours] == [
        "2026-01-15T21:00:00+00:00",
        "2026-01-15T22:00:00+00:00",
        "2026-01-15T23:00:00+00:00",
    ]
    # 22-23: A alone; 23-00: A's half hour and B's 29 min 58.2 s; 00-01: B without its
    # 5 minutes of leads off
    assert [row["analysed_s"] for row in hours] == [3600.0, 1800.0 + 1798.2, 3300.0]
    assert [row["recordings"] for row in hours] == [
        [night["a"]],
        [night["a"], night["b"]],
        [night["b"]],
    ]
    b_in_23 = [t for t in b_times_s() if t < 1798.2]
    assert [row["n_beats"] for row in hours] == [
        3600,
        1800 + len(b_in_23),
        len([t for t in b_times_s() if 1798.2 <= t < 5398.2]),
    ]
    assert [row["n_v_beats"] for row in hours] == [0, 30, 0]
    assert [row["n_s_beats"] for row in hours] == [0, 5, 0]
    assert [row["n_pauses"] for row in hours] == [1, 0, 0]
    assert [row["n_vt"] for row in hours] == [0, 1, 0]
    assert [row["af_s"] for row in hours] == [0.0, 0.0, 1200.0]

    # 23-00: A's 1,800 one-second intervals and B's 1.2-s ones, never the 2.8 s from A's
    # last beat to B's first (an 8-beat mean over it would read 42.9 bpm)
    assert hours[1]["heart_rate_bpm"] == {
        "mean": heart_rate([1.0] * 1800 + [1.2] * (len(b_in_23) - 1)),
        "min": 50.0,
        "max": 60.0,
    }
    assert hours[0]["heart_rate_bpm"] == {"mean": 60.0, "min": 60.0, "max": 60.0}
    # 00-01: no interval across the leads-off span
    assert hours[2]["heart_rate_bpm"] == {"mean": 50.0, "min": 50.0, "max": 50.0}

    analysed_s = 3600.0 + 1800.0 + 1798.2 + 3300.0
    assert report["analysed_s"] == round(analysed_s, 1)
    assert report["af_s"] == 1200.0
    assert report["af_time_fraction"] == round(1200.0 / analysed_s, 4)
    assert report["counts"]["V"] == 30 and report["counts"]["S"] == 5
    assert report["n_beats"] == sum(row["n_beats"] for row in hours)
    assert report["per_hour"]["V"] == round(30 / (analysed_s / 3600), 1)
    assert report["n_pauses"] == 1 and report["n_vt"] == 1
    assert report["heart_rate_bpm"]["min"] == 50.0
    assert report["heart_rate_bpm"]["max"] == 60.0
    assert report["overlaps"] == []


def test_the_range_cuts_the_recordings(patient, night):
    start = NIGHT_START + timedelta(minutes=30)  # 22:30
    end = NIGHT_END - timedelta(minutes=45)  # 00:15
    report = patient_report(patient, TimeRange(start, end, "custom", "from and to"))

    hours = report["hours"]
    assert [(row["start"], row["end"]) for row in hours] == [
        ("2026-01-15T21:30:00+00:00", "2026-01-15T22:00:00+00:00"),
        ("2026-01-15T22:00:00+00:00", "2026-01-15T23:00:00+00:00"),
        ("2026-01-15T23:00:00+00:00", "2026-01-15T23:15:00+00:00"),
    ]
    assert [row["analysed_s"] for row in hours] == [1800.0, 3598.2, 900.0]
    assert hours[0]["n_beats"] == 1800  # A's beats from 22:30 (1800 s) to 23:00
    assert hours[0]["n_pauses"] == 0  # the pause at 22:16:40 is before the range
    assert hours[2]["af_s"] == 900.0  # AF from 00:00 to the range's end at 00:15
    assert [row["analysed_s"] for row in report["recordings"]] == [3600.0, 1798.2 + 900.0]


def test_recordings_at_the_same_time_both_count_and_are_named(patient, night):
    """A second device on the patient from 00:00 to 00:10: its beats add to the hour, and the
    report names the ten minutes the two recordings share."""
    second = device_recording(patient, NIGHT_END - timedelta(hours=1), 600.0)
    store_chunks(second, [(0.0, 600.0, False)])
    store(second, [float(k) for k in range(600)], labels={10: "V"})

    report = patient_report(patient, the_night())

    assert [row["id"] for row in report["recordings"]] == [night["a"], night["b"], second.pk]
    assert report["overlaps"] == [{"recordings": [night["b"], second.pk], "seconds": 600.0}]
    last = report["hours"][2]
    assert last["recordings"] == [night["b"], second.pk]
    assert last["analysed_s"] == 3300.0 + 600.0
    assert last["n_v_beats"] == 1
    # each recording's intervals on their own: 50 and 60 bpm, nothing between them
    assert last["heart_rate_bpm"]["min"] == 50.0 and last["heart_rate_bpm"]["max"] == 60.0


def test_it_counts_the_alarms_active_in_the_range(patient, night):
    at = NIGHT_START
    make_alarm(
        patient,
        0,
        at + timedelta(minutes=72),
        kind="VT",
        priority="critical",
        resolved_at=at + timedelta(minutes=75),
    )
    # raised before the range and open through it: part of the night
    make_alarm(patient, 2 * 3600, at, kind="LEADS_OFF", state="active")
    # resolved before the range, and another patient's: not
    make_alarm(patient, 3 * 3600, at, kind="AF", resolved_at=at - timedelta(minutes=150))
    make_alarm(
        Patient.objects.get(pk=night["other"]),
        0,
        at + timedelta(minutes=10),
        kind="VT",
        priority="critical",
        state="active",
    )

    alarms = patient_report(patient, the_night())["alarms"]

    assert sorted((row["kind"], row["priority"], row["count"]) for row in alarms) == [
        ("LEADS_OFF", "warning", 1),
        ("VT", "critical", 1),
    ]


def test_the_queries_do_not_grow_with_the_hours(patient):
    """Three a recording, one for the recordings and one for the alarms, whether the range
    has 3 hourly rows or 24."""
    with CaptureQueriesContext(connection) as short:
        patient_report(patient, the_night())
    day = TimeRange(NIGHT_END - timedelta(hours=24), NIGHT_END, "custom", "from and to")
    with CaptureQueriesContext(connection) as long:
        report = patient_report(patient, day)
    assert len(report["hours"]) == 24
    assert len(short.captured_queries) == len(long.captured_queries) == 2 + 3 * 2


def test_a_night_across_the_autumn_clock_change_has_a_row_for_each_hour(settings):
    """2026-10-25 in Berlin: 02:00-03:00 happens twice, so 22:00 to 06:00 is 9 hours."""
    start = datetime(2026, 10, 24, 20, 0, tzinfo=UTC)  # 22:00 CEST
    end = datetime(2026, 10, 25, 5, 0, tzinfo=UTC)  # 06:00 CET
    edges = clock_hour_edges(start, end)
    assert len(edges) == 10
    assert all(b - a == timedelta(hours=1) for a, b in zip(edges, edges[1:], strict=False))
    # a range that does not start on the hour: its first row is cut, the next on the hour
    edges = clock_hour_edges(start + timedelta(minutes=20), start + timedelta(hours=2))
    assert [edge.minute for edge in edges] == [20, 0, 0]


def table_rows(page: str, table_id: str) -> list[list[str]]:
    table = page.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    body = table.split("<tbody>", 1)[1]
    rows = re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)
    return [
        [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        for row in rows
    ]


def test_the_page_shows_the_night(reader, patient, night):
    page = reader.get(
        f"/patients/{patient.pk}/report/?from=2026-01-15+22:00&to=2026-01-16+00:59:59"
    ).content.decode()

    hours = table_rows(page, "report-hours")
    assert [row[0] for row in hours] == ["22:00–23:00", "23:00–00:00", "2026-01-16 00:00–01:00"]
    assert [row[1] for row in hours] == ["60.0", "60.0", "55.0"]  # analysed minutes
    assert [row[6] for row in hours] == ["0", "30", "0"]  # V beats
    assert [row[9] for row in hours] == ["0.0", "0.0", "20.0"]  # AF minutes
    assert hours[1][11] == f"{night['a']}, {night['b']}"
    recordings = table_rows(page, "report-recordings")
    assert [row[0] for row in recordings] == [str(night["a"]), str(night["b"])]
    assert "Research software, not a medical device" in page
    # the alarm history of the same range, pinned to its from and to
    assert (
        f"/patients/{patient.pk}/alarms/?from=2026-01-15+22%3A00%3A00+CET"
        "&amp;to=2026-01-16+00%3A59%3A59+CET" in page
    )


def test_the_api_gives_the_same_report(reader, patient):
    response = reader.get(
        f"/api/patients/{patient.pk}/report/",
        {"since": "2026-01-15T22:00:00+01:00", "until": "2026-01-16T01:00:00+01:00"},
    )
    assert response.status_code == 200
    assert response.json() == patient_report(patient, the_night())


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("from=2026-01-16+01:00&to=2026-01-15+22:00", "must be before to"),
        ("from=2026-01-01+00:00&to=2026-01-15+00:00", "at most 7 days"),
        ("from=yesterday", "from must be a date and time"),
        ("range=1y", "range must be one of"),
    ],
)
def test_a_bad_range_on_the_page_says_what_is_wrong(reader, patient, query, error):
    response = reader.get(f"/patients/{patient.pk}/report/?{query}")
    assert response.status_code == 400
    assert error in response.content.decode()


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"since": "2026-01-15T22:00:00"}, "must give its zone"),
        ({"since": "tonight"}, "since must be an ISO 8601"),
        (
            {"since": "2026-01-16T01:00:00+01:00", "until": "2026-01-15T22:00:00+01:00"},
            "must be before until",
        ),
        ({"since": "2026-01-01T00:00:00Z", "until": "2026-01-15T00:00:00Z"}, "at most 7 days"),
    ],
)
def test_a_bad_range_in_the_api_is_a_400_naming_it(reader, patient, params, error):
    response = reader.get(f"/api/patients/{patient.pk}/report/", params)
    assert response.status_code == 400
    assert error in response.json()["detail"]


def test_a_clinician_not_assigned_to_the_patient_gets_404(client, patient):
    client.force_login(User.objects.get(username="handover-outsider"))
    assert client.get(f"/patients/{patient.pk}/report/").status_code == 404
    assert client.get(f"/api/patients/{patient.pk}/report/").status_code == 404


def test_the_patient_page_and_the_alarm_history_link_the_report(reader, patient):
    for path in (f"/patients/{patient.pk}/", f"/patients/{patient.pk}/alarms/"):
        assert f'href="/patients/{patient.pk}/report/"' in reader.get(path).content.decode()


def test_no_recording_in_the_range_says_so(reader, patient):
    page = reader.get(
        f"/patients/{patient.pk}/report/?from=2026-02-01+22:00&to=2026-02-02+06:00"
    ).content.decode()
    assert 'id="report-empty"' in page
    assert 'id="report-hours"' not in page


def test_a_range_typed_across_the_autumn_clock_change_has_an_hour_a_row(reader, patient):
    """From 00:00 CEST to 05:59:59 CET on 2026-10-25 is 7 hours: 02:00-03:00 comes twice.
    Read in the zone, as the page reads typed times, and stepped on the wall clock, one of
    them was lost and its row held two hours' beats (found by a review)."""
    start = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)  # 00:00 CEST
    dst_night = device_recording(patient, start, 7 * 3600.0)
    store_chunks(dst_night, [(0.0, 7 * 3600.0, False)])
    store(dst_night, [float(k) for k in range(7 * 3600)])

    page = reader.get(
        f"/patients/{patient.pk}/report/?from=2026-10-25+00:00&to=2026-10-25+05:59:59"
    ).content.decode()

    hours = table_rows(page, "report-hours")
    assert [row[2] for row in hours] == ["3600"] * 7
    assert [row[0] for row in hours][2:4] == ["02:00 CEST–02:00 CET", "02:00 CET–03:00 CET"]


def test_a_recording_that_fell_silent_before_the_range_is_not_read(patient, night):
    """Never closed (no ended_at), silent since last week: no part of tonight."""
    old = device_recording(patient, NIGHT_START - timedelta(days=7), 600.0, ended=False)
    assert old.ended_at is None
    report = patient_report(patient, the_night())
    assert [row["id"] for row in report["recordings"]] == [night["a"], night["b"]]
