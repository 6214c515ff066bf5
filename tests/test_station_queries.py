"""The central station's cost does not grow with its tiles, on the page and in the socket's
hello, and its tiles show what the live status messages show (monitoring/dashboard_views.py,
monitoring/consumers.py, monitoring/live.py)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from monitoring import consumers, live
from monitoring.models import Alarm, Beat, Episode, Patient, Recording

pytestmark = pytest.mark.django_db

# the streaming analyzer's pickled state is about 120 kB on a live recording; no page reads it
STREAM_STATE = b"\x00" * 120_000


def admit(number: int, clinician=None) -> Patient:
    """A patient with a live device recording (with analyzer state) and two open alarms."""
    patient = Patient.objects.create(
        mrn=f"MRN-Q{number:03d}", name=f"Patient {number}", ward="W", bed=str(number)
    )
    if clinician is not None:
        patient.clinicians.add(clinician)
    recording(patient)
    Alarm.objects.create(patient=patient, kind="HR_HIGH", priority="warning", message="HR high")
    Alarm.objects.create(patient=patient, kind="VT", priority="critical", message=f"VT {number}")
    return patient


def recording(patient: Patient, **fields) -> Recording:
    """A recording of ``patient`` (a live device one whose last chunk came just now, unless
    ``fields`` say otherwise), with analyzer state."""
    fields.setdefault("last_chunk_at", timezone.now())
    return Recording.objects.create(
        patient=patient,
        sampling_rate_hz=250.0,
        gain_adc_per_mv=200.0,
        lead_names=["II"],
        stream_state=STREAM_STATE,
        **fields,
    )


def add_beats(recording: Recording, labels: str, rr_samples: int = 200) -> None:
    """Beats with these labels, one every ``rr_samples`` (a V comes a quarter early, as a
    premature beat does, and the next beat back on the grid)."""
    Beat.objects.bulk_create(
        Beat(
            recording=recording,
            index=index,
            sample=(index + 1) * rr_samples - (rr_samples // 4 if label == "V" else 0),
            label=label,
            confidence=0.9,
            probabilities={label: 0.9},
            p_wave=0.95 if label == "N" else None,  # a consistent sinus P wave
        )
        for index, label in enumerate(labels)
    )


def station_queries(client) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/station/")
    assert response.status_code == 200
    return [query["sql"] for query in queries.captured_queries]


def test_station_queries_do_not_grow_with_the_tiles(client, clinician, other_clinician):
    client.force_login(clinician)
    for number in range(2):
        admit(number, clinician)
    admit(90, other_clinician)  # not this clinician's: no tile, but rows in the same tables
    two = station_queries(client)
    for number in range(2, 6):
        admit(number, clinician)
    six = station_queries(client)
    page = client.get("/station/").content.decode()
    assert page.count('class="tile critical"') == 6
    assert len(six) == len(two), "\n".join(sql[:90] for sql in six)


def test_station_does_not_read_the_analyzer_state(client, staff_user):
    admit(1)
    client.force_login(staff_user)
    assert not [sql[:90] for sql in station_queries(client) if "stream_state" in sql]


def test_the_station_reads_of_the_acknowledging_user_only_the_name(client, staff_user):
    patient = admit(1)
    Alarm.objects.filter(patient=patient).delete()
    Alarm.objects.create(
        patient=patient,
        kind="PVC",
        priority="warning",
        message="PVC 12/min > 10/min",
        acknowledged_by=staff_user,
        acknowledged_at=timezone.now(),
        state="acknowledged",
    )
    client.force_login(staff_user)
    alarm_reads = [sql for sql in station_queries(client) if "monitoring_alarm" in sql]
    assert alarm_reads and not [sql for sql in alarm_reads if "password" in sql]
    [tile] = client.get("/station/").context["tiles"]
    assert tile["alarm"]["acknowledged_by"] == "staff"


def test_a_tile_shows_the_alarm_top_alarm_picks(client, staff_user, clinician):
    """Priority, acknowledgement and age disagree: priority first, then one nobody
    acknowledged, then the newest; a resolved warning never shows (only critical alarms
    latch: tests/test_live.py)."""
    now = timezone.now()
    first, second = admit(1, clinician), admit(2, clinician)
    Alarm.objects.filter(patient__in=[first, second]).delete()

    def alarm(patient, kind, priority, age_s, acknowledged=False, state="raised"):
        return Alarm.objects.create(
            patient=patient,
            kind=kind,
            priority=priority,
            message=f"{kind} of {patient.name}",
            raised_at=now - timedelta(seconds=age_s),
            state="acknowledged" if acknowledged else state,
            acknowledged_by=staff_user if acknowledged else None,
            acknowledged_at=now if acknowledged else None,
        )

    alarm(first, "HR_HIGH", "warning", age_s=5)  # the newest, but only a warning
    alarm(first, "VT", "critical", age_s=30, acknowledged=True)  # newer, but acknowledged
    alarm(first, "VF", "critical", age_s=300)  # the oldest critical nobody acknowledged
    expected = alarm(first, "PAUSE", "critical", age_s=120)  # a newer one: this one
    alarm(first, "AF", "warning", age_s=1, state="resolved")  # over, and it does not latch
    # the second patient's alarms are newer and interleave with the first's
    alarm(second, "VT", "critical", age_s=2, acknowledged=True)
    alarm(second, "PVC", "warning", age_s=3)

    client.force_login(staff_user)
    response = client.get("/station/")
    tiles = {tile["patient"].pk: tile["alarm"] for tile in response.context["tiles"]}
    assert tiles[first.pk] == live.top_alarm(first.pk)
    assert tiles[first.pk] == {
        "id": expected.pk,
        "kind": "PAUSE",
        "priority": "critical",
        "message": "PAUSE of Patient 1",
        "state": "raised",
        "acknowledged_by": None,
        "unacknowledged": 3,
    }
    # every open alarm acknowledged but a warning: the acknowledged critical one leads
    assert tiles[second.pk] == live.top_alarm(second.pk)
    assert (tiles[second.pk]["kind"], tiles[second.pk]["acknowledged_by"]) == ("VT", "staff")
    assert tiles[second.pk]["unacknowledged"] == 1
    page = response.content.decode()
    assert f'class="tile critical" id="tile-{first.pk}"' in page
    assert "PAUSE of Patient 1" in page and "VF of Patient 1" not in page


def test_a_clinician_sees_only_their_patients_and_their_alarms(client, clinician, other_clinician):
    mine = [admit(number, clinician) for number in range(3)]
    theirs = admit(7, other_clinician)
    discharged = admit(8, clinician)
    Patient.objects.filter(pk=discharged.pk).update(is_active=False)
    client.force_login(clinician)
    response = client.get("/station/")
    assert [tile["patient"].pk for tile in response.context["tiles"]] == [p.pk for p in mine]
    page = response.content.decode()
    assert f'id="tile-{theirs.pk}"' not in page and "VT 7" not in page
    assert f'id="tile-{discharged.pk}"' not in page and "VT 8" not in page
    assert all(f"VT {number}" in page for number in range(3))


def test_the_live_view_names_the_recording_the_socket_names(client, clinician, patient):
    """The live page's recording is ``live.current_recording``'s when one is live: a device
    recording (not an upload), the newest by start then id; its analyzer state left unread."""
    started = timezone.now() - timedelta(minutes=5)
    recording(patient, started_at=started)
    newest = recording(patient, started_at=started)  # the same start: the later row
    # newer, not a device
    recording(patient, source=Recording.Source.UPLOAD, started_at=timezone.now())
    recording(patient, started_at=timezone.now(), status=Recording.Status.CLOSED)
    client.force_login(clinician)
    page = client.get(f"/patients/{patient.pk}/live/").content.decode()
    current = live.current_recording(patient.pk)
    assert current.pk == newest.pk and f">#{newest.pk} · 250.0 Hz" in page
    assert "stream_state" in current.get_deferred_fields()


def test_the_live_view_names_the_analysed_lead_as_the_socket_does(client, clinician, patient):
    from monitoring.consumers import backlog_messages

    Recording.objects.create(
        patient=patient,
        sampling_rate_hz=250.0,
        gain_adc_per_mv=200.0,
        n_channels=2,
        lead_names=["I", "II"],
        analysis_lead=1,
    )
    client.force_login(clinician)
    page = client.get(f"/patients/{patient.pk}/live/").content.decode()
    hello, _ = backlog_messages(patient.pk, since_s=0)
    assert hello["recording"]["lead"] == "II"
    assert "· lead II<" in page and "· lead I<" not in page


def hello_queries(patient_ids: list[int]) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        tiles, _ = consumers.station_backlog(patient_ids, set(), 0.0)
    assert [tile["id"] for tile in tiles] == patient_ids
    return [query["sql"] for query in queries.captured_queries]


def test_the_station_sockets_hello_does_not_grow_with_the_tiles(clinician):
    """The socket's hello (at connect, and at every recheck that changes the patients) was
    4 queries a tile (5 without a live recording): the recording, its recent beats, its
    ongoing episodes, the alarm; 9 queries for 2 tiles, 25 for 6."""
    patients = []
    for number in range(6):
        patients.append(admit(number, clinician))
        recording = patients[-1].recordings.get()
        add_beats(recording, "NNNNVNNNNNNNNVNNNNNN")
        Episode.objects.create(recording=recording, kind="VT", start_s=1.0, end_s=2.0)
    ids = [patient.pk for patient in patients]
    two, six = hello_queries(ids[:2]), hello_queries(ids)
    assert len(six) == len(two), "\n".join(sql[:90] for sql in six)


def test_the_station_sockets_hello_does_not_read_the_analyzer_state(clinician):
    ids = [admit(number, clinician).pk for number in range(2)]
    assert not [sql[:90] for sql in hello_queries(ids) if "stream_state" in sql]


def test_the_hello_tiles_say_what_each_patients_own_status_says(clinician):
    """The tiles, read for all patients at once, equal each patient's status read alone, for
    every kind of tile; the backlog's status is the tile's."""
    now = timezone.now()

    def patient(number: int) -> Patient:
        return Patient.objects.create(mrn=f"MRN-M{number}", name=f"Mix {number}", bed=str(number))

    # live, with PVCs among more beats than the rhythm reads (a PAC before the last
    # RHYTHM_BEATS + 1 beats must not show); a newer finished recording of other beats that
    # must not be chosen
    ectopic = patient(1)
    live_one = recording(ectopic, started_at=now - timedelta(hours=1), analysis_cursor=9000)
    labels = "NNS" + "N" * 7 + "NNNVNNNNNNVNNNNNNN"
    add_beats(live_one, labels)
    assert live.recent_beats_of([live_one])[live_one.pk][1] == list(labels[-17:])
    add_beats(recording(ectopic, status=Recording.Status.CLOSED, started_at=now), "N" * 20, 150)
    # only a finished recording, 60 bpm: history, no heart rate or rhythm
    finished = patient(2)
    add_beats(
        recording(finished, status=Recording.Status.CLOSED, analysis_cursor=3000), "N" * 12, 250
    )
    # no recording at all, but open alarms (and a resolved one)
    alarmed = patient(3)
    Alarm.objects.create(patient=alarmed, kind="HR_HIGH", priority="warning", message="HR high")
    Alarm.objects.create(patient=alarmed, kind="PAUSE", priority="critical", message="Pause")
    Alarm.objects.create(  # over and acknowledged: it does not latch
        patient=alarmed,
        kind="VT",
        priority="critical",
        message="old",
        state="resolved",
        acknowledged_at=timezone.now(),
    )
    # an ongoing VT (and a pause that ended), with beats that alone would read "Sinus"
    tachy = patient(4)
    vt_recording = recording(tachy)
    add_beats(vt_recording, "N" * 20)
    Episode.objects.create(
        recording=vt_recording, kind="VT", start_s=3.0, end_s=4.0, details={"ongoing": True}
    )
    Episode.objects.create(recording=vt_recording, kind="PAUSE", start_s=1.0, end_s=2.5)
    Alarm.objects.create(patient=tachy, kind="VT", priority="critical", message="VT")
    # a live recording with no beats yet
    quiet = patient(5)
    recording(quiet)
    ids = [ectopic.pk, finished.pk, alarmed.pk, tachy.pk, quiet.pk]

    tiles, messages = consumers.station_backlog(ids, set(ids), 0.0)

    def without_time(status: dict) -> dict:
        # what depends on the moment it is read: the clock, and the last chunk's age
        return {k: v for k, v in status.items() if k not in ("time", "signal_age_s")}

    for tile in tiles:
        current = live.current_recording(tile["id"])
        alone = live.status_message(current, tile["id"])
        assert tile["recording"] == (current.pk if current else None)
        assert {key: tile[key] for key in ("hr_bpm", "rhythm", "signal", "alarm")} == {
            key: alone[key] for key in ("hr_bpm", "rhythm", "signal", "alarm")
        }
        backlog = [m for m in messages if m["type"] == "status" and m["patient"] == tile["id"]]
        assert [without_time(m) for m in backlog] == [
            {**without_time(alone), "patient": tile["id"]}
        ]
    by_id = {tile["id"]: tile for tile in tiles}
    # what each kind of tile reads, so that the comparison above compares something
    assert (by_id[ectopic.pk]["recording"], by_id[ectopic.pk]["rhythm"]) == (
        live_one.pk,
        "Sinus + PVCs",
    )
    assert by_id[ectopic.pk]["signal"] == "live"
    assert [by_id[finished.pk][key] for key in ("hr_bpm", "rhythm", "signal")] == [
        None,
        None,
        "ended",
    ]
    assert (by_id[alarmed.pk]["recording"], by_id[alarmed.pk]["alarm"]["kind"]) == (None, "PAUSE")
    assert by_id[alarmed.pk]["signal"] == "none"
    assert by_id[alarmed.pk]["alarm"]["unacknowledged"] == 2
    assert (by_id[tachy.pk]["rhythm"], by_id[tachy.pk]["alarm"]["kind"]) == ("VT", "VT")
    assert (by_id[quiet.pk]["hr_bpm"], by_id[quiet.pk]["rhythm"]) == (None, None)
    assert by_id[ectopic.pk]["alarm"] is None


# --- No signal ---------------------------------------------------------------------------


def test_the_signal_is_live_while_chunks_come_and_stale_after_the_limit(patient, settings):
    """``signal_state`` reads the live recording's last chunk (its start before any chunk, as
    the device-offline rule does) against ``DEVICE_OFFLINE_S``; a closed one has ended."""
    now = timezone.now()
    limit = timedelta(seconds=settings.DEVICE_OFFLINE_S)
    streaming = recording(patient, last_chunk_at=now - limit)
    assert live.signal_state(streaming, now) == "live"
    assert live.signal_state(streaming, now + timedelta(seconds=0.5)) == "stale"
    assert live.signal_state(streaming, now - timedelta(seconds=5)) == "live"  # a clock behind
    opened = recording(patient, last_chunk_at=None, started_at=now - timedelta(seconds=3))
    assert live.signal_state(opened, now) == "live"
    assert live.signal_state(opened, now + limit) == "stale"
    closed = recording(patient, status=Recording.Status.CLOSED, last_chunk_at=now)
    assert live.signal_state(closed, now) == "ended"
    assert live.signal_state(None, now) == "none"
    assert live.signal_age_s(streaming, now + timedelta(seconds=0.5)) == limit.seconds + 0.5
    assert live.signal_age_s(closed, now) is None


def test_a_silent_devices_status_has_no_heart_rate_whatever_alarm_is_on_top(patient):
    """The reviewer's case: a device killed 45 s ago, its last beats at 65 bpm, an older
    "AF onset" warning and the "Device offline" technical alarm open. The warning stays the
    top alarm (priority first), and the status says "stale" with no heart rate or rhythm, so
    the pages can say "No signal" whatever alarm they show."""
    now = timezone.now()
    silent = recording(patient, last_chunk_at=now - timedelta(seconds=45), analysis_cursor=9000)
    add_beats(silent, "N" * 20, rr_samples=231)  # 65 bpm at 250 Hz
    Alarm.objects.create(
        patient=patient,
        kind="AF",
        priority="warning",
        message="AF onset",
        raised_at=now - timedelta(minutes=3),
    )
    Alarm.objects.create(
        patient=patient, kind="DEVICE_OFFLINE", priority="technical", message="Device offline"
    )

    status = live.status_message(silent, patient.pk)
    assert [status[key] for key in ("hr_bpm", "rhythm", "signal")] == [None, None, "stale"]
    assert 45 <= status["signal_age_s"] < 50
    assert status["alarm"]["message"] == "AF onset"
    assert status["last_sample"] == 9000

    # the same beats, with a chunk a moment ago: a heart rate and a rhythm again
    Recording.objects.filter(pk=silent.pk).update(last_chunk_at=timezone.now())
    silent.refresh_from_db()
    status = live.status_message(silent, patient.pk)
    assert (round(status["hr_bpm"]), status["rhythm"], status["signal"]) == (65, "Sinus", "live")


def test_the_patient_hello_of_a_closed_recording_says_it_is_not_live(patient):
    """The silence timeout closed the recording (after 5 min): the live view's hello names it
    not live, and the status after the backlog has no heart rate or rhythm from its beats."""
    now = timezone.now()
    closed = recording(
        patient,
        status=Recording.Status.CLOSED,
        closed_by=Recording.ClosedBy.SILENCE,
        last_chunk_at=now - timedelta(minutes=5),
        ended_at=now,
    )
    add_beats(closed, "N" * 20, rr_samples=158)  # 95 bpm

    hello, messages = consumers.backlog_messages(patient.pk, since_s=10)
    assert hello["recording"]["id"] == closed.pk and hello["recording"]["live"] is False
    status = messages[-1]
    assert status["type"] == "status"
    assert [status[key] for key in ("hr_bpm", "rhythm", "signal")] == [None, None, "ended"]
    (tile,) = consumers.station_backlog([patient.pk], set(), 0.0)[0]
    assert [tile[key] for key in ("hr_bpm", "rhythm", "signal")] == [None, None, "ended"]


def test_the_station_hello_of_silent_patients_reads_no_beats(clinician):
    """Beats and episodes are read only for recordings that bring a signal: a station of
    silent or finished patients costs fewer queries, not more."""
    now = timezone.now()
    patients = [admit(number, clinician) for number in range(3)]
    Recording.objects.filter(patient=patients[0]).update(last_chunk_at=now - timedelta(minutes=1))
    Recording.objects.filter(patient=patients[1]).update(status=Recording.Status.CLOSED)
    Recording.objects.filter(patient=patients[2]).delete()
    queries = hello_queries([patient.pk for patient in patients])
    assert not [sql[:90] for sql in queries if "monitoring_beat" in sql or "episode" in sql]
